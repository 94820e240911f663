"""Every target a daemon serves, and the session table RFC 7143 §6.3.5 needs.

The registry is what a login sees (which targets exist, who may reach them, with what
credentials and from which portal group) and what the control plane lists. It keeps one
entry per live session keyed by its I_T nexus, so a login that reuses an ISID reinstates
(closes) the old session first.
"""

from __future__ import annotations

import logging
from typing import Protocol

from sanstack.iscsi.discovery import send_targets_response
from sanstack.iscsi.negotiation import SessionType
from sanstack.scsi.command import Nexus
from sanstack.target.model import Target

log = logging.getLogger(__name__)


class Session(Protocol):
    """What the registry needs of a live session: a way to end it."""

    def reinstated(self) -> None: ...


class TargetRegistry:
    """The targets of one daemon, by name."""

    def __init__(self, targets: list[Target] | None = None) -> None:
        self.targets: dict[str, Target] = {}
        self.sessions: dict[Nexus, Session] = {}
        self._next_tsih = 1
        for target in targets or []:
            self.add(target)

    def add(self, target: Target) -> None:
        if target.name in self.targets:
            raise ValueError(f"target {target.name} is defined twice")
        self.targets[target.name] = target

    def allocate_tsih(self) -> int:
        """A fresh, non-zero 16-bit target session identifying handle (RFC 7143 §11.12.6)."""
        tsih = self._next_tsih
        self._next_tsih = tsih % 0xFFFF + 1
        return tsih

    def send_targets(self, value: str, initiator_name: str, current: str | None) -> bytes:
        """The SendTargets answer (RFC 7143 Appendix C) for this initiator."""
        return send_targets_response(
            value,
            [(t.name, t.send_targets_entries()) for t in self.targets.values()],
            lambda name: self.targets[name].initiator_allowed(initiator_name),
            session_type=SessionType.NORMAL if current else SessionType.DISCOVERY,
            current_target=current,
        )

    def session_started(self, nexus: Nexus, session: Session) -> None:
        old = self.sessions.get(nexus)
        if old is not None and old is not session:
            log.info("reinstating session of %s", nexus.initiator_port)
            old.reinstated()
        self.sessions[nexus] = session
        target = self.targets.get(nexus.target_name)
        if target is not None:
            target.nexus_up(nexus)

    def session_ended(self, nexus: Nexus, session: Session) -> None:
        if self.sessions.get(nexus) is session:
            del self.sessions[nexus]
        target = self.targets.get(nexus.target_name)
        if target is not None:
            target.nexus_down(nexus)

    async def close(self) -> None:
        """Flush and close every device of every target."""
        for target in self.targets.values():
            for lu in target.luns.values():
                try:
                    await lu.device.flush()
                except Exception:
                    log.exception("flush of LUN %d of %s failed", lu.lun, target.name)
                await lu.device.close()
