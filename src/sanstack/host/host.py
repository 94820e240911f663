"""The host: discover targets, log in once per (target, portal), one map per LUN identity.

``Host.start`` does what iscsid and multipathd do at boot, in the quick form: a SendTargets
discovery on every given portal (with the host's discovery ISID), one shared session per
(target, portal) from the ``SessionPool`` (only the targets ``iqns`` names, when given),
REPORT LUNS through every session, each LUN's identity (VPD 0x83 NAA), then one
``MultipathDevice`` per identity over every (session, LUN number) that reaches it, never
grouped by name or number. Each map is exported under its WWID (``naa.<hex>``) and an
alias ``IQN/LUN`` (the first path's target and the number the target gives the LUN).

Logins go through the discovered target names, but always to the portal the host was given
(a proxy or NAT in front of the target then stays in the path).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sanstack.block.device import BlockDevice
from sanstack.host.isids import IsidStore
from sanstack.host.sessions import SessionOptions, SessionPool, SharedSession
from sanstack.initiator.lun_device import ISCSIDevice
from sanstack.initiator.session import LoginRefused, PathFailed, discover
from sanstack.mpio.device import MultipathDevice
from sanstack.mpio.discovery import report_luns
from sanstack.mpio.path_slot import (
    MultipathOptions,
    PathAddress,
)

log = logging.getLogger(__name__)

LOGIN_WAIT = 10.0  # for every session's first login at start
PROBE_TIMEOUT = 10.0
PROBE_CONCURRENCY = 64  # LUN probes in flight at once, per host


@dataclass(frozen=True, slots=True)
class HostConfig:
    initiator_name: str
    portals: Sequence[PathAddress]
    iqns: Sequence[str] = ()  # only these targets; every discovered one when empty
    state_dir: Path | None = None
    session: SessionOptions = field(default_factory=SessionOptions)
    maps: MultipathOptions | None = None
    luns: Sequence[int] = ()  # only these LUN numbers (``mpio export``); every one when empty


@dataclass(slots=True)
class HostMap:
    """One LUN identity: its map and the names it is exported under."""

    wwid: str
    alias: str
    device: MultipathDevice

    @property
    def exports(self) -> list[str]:
        return [self.wwid, self.alias]


class Host:
    """Sessions, maps and what ``sanstack host`` shows of them; see the module docstring."""

    def __init__(self, config: HostConfig) -> None:
        self.config = config
        self.isids = IsidStore(config.state_dir)
        self.pool = SessionPool(config.initiator_name, self.isids, config.session)
        self.map_options = config.maps or MultipathOptions(initiator_name=config.initiator_name)
        self.maps: dict[str, HostMap] = {}
        self._probes = asyncio.Semaphore(PROBE_CONCURRENCY)

    async def start(self) -> None:
        """Discover, log in, build every map; a portal or LUN that fails is logged, the rest
        go on. Raises nothing for a partly reachable SAN; ``maps`` says what was found."""
        found = await asyncio.gather(*(self._discover(p) for p in self.config.portals))
        shared = [
            self.pool.session(target, portal)
            for portal, targets in zip(self.config.portals, found, strict=True)
            for target in targets
        ]
        await asyncio.gather(*(s.wait_up(LOGIN_WAIT) for s in shared))
        per_session = await asyncio.gather(*(self._identities(s) for s in shared))
        groups: dict[str, list[tuple[SharedSession, int]]] = {}
        for session, identities in zip(shared, per_session, strict=True):
            for lun, naa in identities:
                groups.setdefault(naa, []).append((session, lun))
        built = await asyncio.gather(
            *(self._build(naa, paths) for naa, paths in groups.items()), return_exceptions=True
        )
        for naa, result in zip(groups, built, strict=True):
            if isinstance(result, BaseException):
                log.warning("map naa.%s not built: %s", naa, result)
            else:
                self.maps[naa] = result

    async def _discover(self, portal: PathAddress) -> list[str]:
        try:
            targets = await discover(
                portal.host,
                portal.port,
                initiator_name=self.config.initiator_name,
                isid=self.isids.discovery_isid(self.config.initiator_name),
                chap=self.config.session.chap,
                login_timeout=self.config.session.login_timeout,
            )
        except (PathFailed, LoginRefused, TimeoutError) as exc:
            log.warning("discovery through %s failed: %s", portal, exc)
            return []
        names = [name for name, _addresses in targets]
        wanted = set(self.config.iqns)
        return [n for n in names if not wanted or n in wanted]

    async def _identities(self, shared: SharedSession) -> list[tuple[int, str]]:
        """(LUN number, NAA) of every LUN behind ``shared``; none if it is not up."""
        session = shared.session
        if session is None:
            log.warning("%s: not logged in; its LUNs are not known yet", shared.name)
            return []
        try:
            numbers = await asyncio.wait_for(report_luns(session), PROBE_TIMEOUT)
        except (PathFailed, TimeoutError) as exc:
            log.warning("%s: REPORT LUNS failed: %s", shared.name, exc)
            return []
        if numbers is None:
            log.warning("%s: REPORT LUNS refused", shared.name)
            return []
        if self.config.luns:
            numbers = [n for n in numbers if n in self.config.luns]

        async def identify(lun: int) -> tuple[int, str] | None:
            async with self._probes:
                try:
                    device = await asyncio.wait_for(ISCSIDevice.open(session, lun), PROBE_TIMEOUT)
                except Exception as exc:  # one LUN that cannot be read is left out
                    log.warning("%s LUN %d: not usable: %s", shared.name, lun, exc)
                    return None
            return lun, device.identity.naa.hex()

        found = await asyncio.gather(*(identify(n) for n in numbers))
        return [f for f in found if f is not None]

    async def _build(self, naa: str, paths: list[tuple[SharedSession, int]]) -> HostMap:
        first, lun = paths[0]
        device = await MultipathDevice.over(
            list(paths), self.map_options, target_name=first.target, lun=lun
        )
        return HostMap(f"naa.{naa}", f"{first.target}/{lun}", device)

    def exports(self) -> dict[str, BlockDevice]:
        out: dict[str, BlockDevice] = {}
        for entry in self.maps.values():
            for name in entry.exports:
                out[name] = entry.device
        return out

    async def close(self) -> None:
        """Maps first (their I/O ends), then the sessions (logged out)."""
        await asyncio.gather(*(m.device.close() for m in self.maps.values()))
        await self.pool.close()

    # -- what ``sanstack host`` shows -------------------------------------------------------

    def status(self) -> dict[str, Any]:
        sessions = self.pool.status()
        return {
            "initiator": self.config.initiator_name,
            "sessions": sessions,
            "counts": {
                "sessions": len(sessions),
                "sessions_up": sum(1 for s in sessions if s["state"] == "up"),
                "maps": len(self.maps),
            },
        }

    def map_list(self) -> list[dict[str, Any]]:
        out = []
        for entry in self.maps.values():
            device = entry.device
            status = device.status()
            states = Counter(str(p["state"]) for p in status["paths"])
            out.append(
                {
                    "wwid": entry.wwid,
                    "alias": entry.alias,
                    "size_bytes": device.num_blocks * device.block_size,
                    "exports": entry.exports,
                    "paths": dict(sorted(states.items())),
                    "selector": status["selector"],
                    "queued": status["queued"],
                    "pr_key": (
                        f"0x{device.registration.key:x}" if device.registration.used else None
                    ),
                }
            )
        return out

    def path_list(self) -> list[dict[str, Any]]:
        out = []
        for entry in self.maps.values():
            for path in entry.device.status()["paths"]:
                out.append({"map": entry.alias, "wwid": entry.wwid, **path})
        return out
