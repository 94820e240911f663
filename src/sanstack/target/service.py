"""The target daemon's service API: what the CLI (and later a dashboard) can see and change.

Every call takes and returns plain JSON-able values, and every refusal is a
``ServiceError`` with an HTTP-like status and a one-line message naming the field, so the
control server (its routes are ``target/routes.py``) and any other front end are thin. The
API acts on a running ``TargetServer``; nothing here touches sockets itself.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from sanstack import __version__
from sanstack.block.device import BLOCK_SIZES
from sanstack.edge.tasks import wait_ended
from sanstack.errors import ConfigError, SanstackError, ServiceError
from sanstack.scsi.alua import TransitionRefused
from sanstack.scsi.alua_codec import ALUAState
from sanstack.scsi.codes import ASC
from sanstack.scsi.pr import ITNexus
from sanstack.target.build import open_lun_device
from sanstack.target.config import LunSpec, parse_size, volume_lun_spec
from sanstack.target.model import MAX_LUNS, PortalGroup, Target
from sanstack.target.registry import TargetRegistry

if TYPE_CHECKING:
    from sanstack.scsi.logical_unit import LogicalUnit
    from sanstack.snapshot.service import VolumeService
    from sanstack.target.server import ConnectionHandler


ALUA_STATE_NAMES = {
    "active-optimized": ALUAState.ACTIVE_OPTIMIZED,
    "active-non-optimized": ALUAState.ACTIVE_NON_OPTIMIZED,
    "standby": ALUAState.STANDBY,
    "unavailable": ALUAState.UNAVAILABLE,
    "transitioning": ALUAState.TRANSITIONING,
    "offline": ALUAState.OFFLINE,
}
_ALUA_NAMES = {state: name for name, state in ALUA_STATE_NAMES.items()}
_ALUA_NAMES[ALUAState.LOGICAL_BLOCK_DEPENDENT] = "lba-dependent"


class ServedTargets(Protocol):
    """What the service acts on: a ``TargetServer``, or the coordinator of target workers
    (``target/coordinator.py``), whose connections live in its workers."""

    registry: TargetRegistry
    connections: set[ConnectionHandler]

    @property
    def portals(self) -> list[tuple[str, int, int]]: ...

    async def disable_portal_group(self, target: Target, group: PortalGroup) -> None: ...

    async def enable_portal_group(self, target: Target, group: PortalGroup) -> None: ...


class TargetService:
    """Queries and changes on a running target server.

    ``volumes`` holds the snapshot volumes the daemon's LUNs (and control requests) use;
    the target daemon's control plane serves its API (``snapshot/routes.py``) beside this one.
    """

    def __init__(self, server: ServedTargets, volumes: VolumeService | None = None) -> None:
        from sanstack.snapshot.service import VolumeService

        self.server = server
        self.volumes = volumes if volumes is not None else VolumeService()

    # -- queries ---------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        registry = self.server.registry
        return {
            "version": __version__,
            "pid": os.getpid(),
            "targets": len(registry.targets),
            "luns": sum(len(t.luns) for t in registry.targets.values()),
            "sessions": len(registry.sessions),
            "connections": len(self.server.connections),
        }

    def targets(self) -> list[dict[str, Any]]:
        return [self._target_summary(t) for t in self.server.registry.targets.values()]

    def target(self, name: str) -> dict[str, Any]:
        return self._target_summary(self._target(name))

    def luns(self, name: str) -> list[dict[str, Any]]:
        target = self._target(name)
        return [_lun_summary(target.luns[n]) for n in sorted(target.luns)]

    def sessions(self) -> list[dict[str, Any]]:
        out = []
        for handler in sorted(self.server.connections, key=lambda h: h.peer):
            nexus = handler.nexus
            out.append(
                {
                    "peer": handler.peer,
                    "target": handler.target_name,
                    "portal_group": handler.tpgt,
                    "initiator": nexus.initiator_name if nexus else None,
                    "isid": f"0x{nexus.isid:012x}" if nexus else None,
                    "initiator_port": nexus.initiator_port if nexus else None,
                    "discovery": handler.target_name is None,
                    "outstanding_commands": (
                        handler.core.outstanding_commands if handler.core else 0
                    ),
                }
            )
        return out

    def reservations(self, name: str, number: int) -> dict[str, Any]:
        """A LUN's persistent reservation state (what READ FULL STATUS would say, and more)."""
        target = self._target(name)
        lu = target.luns.get(number)
        if lu is None:
            raise ServiceError(404, f"lun: {name} has no LUN {number}")
        pr = lu.pr
        reservation = pr.reservation
        return {
            "lun": number,
            "generation": pr.generation,
            "aptpl": pr.aptpl,
            "reservation": None
            if reservation is None
            else {
                "type": reservation.pr_type.name.lower().replace("_", "-"),
                "holder": _it_nexus(reservation.holder)
                if reservation.holder
                else "all-registrants",
            },
            "registrations": [
                {
                    **_it_nexus(r.nexus),
                    "key": f"0x{r.reservation_key:016x}",
                    "all_tg_pt": r.all_tg_pt,
                    "holder": pr.reservation is not None
                    and (pr.reservation.holder is None or pr.reservation.holder == r.nexus),
                }
                for r in pr.registrations
            ],
        }

    # -- portals ---------------------------------------------------------------------------

    async def set_portal_group_enabled(self, name: str, tag: int, enabled: bool) -> dict[str, Any]:
        """Take a portal group down (listeners closed, connections dropped) or up again."""
        target = self._target(name)
        group = target.portal_group(tag)
        if group is None:
            raise ServiceError(404, f"portal_group: {name} has no portal group {tag}")
        if enabled:
            await self.server.enable_portal_group(target, group)
        else:
            await self.server.disable_portal_group(target, group)
        return self._target_summary(target)

    def set_alua_state(self, name: str, tag: int, state: str) -> dict[str, Any]:
        """Set a portal group's ALUA state (an implicit change, SPC-4 §5.16.2.6)."""
        target = self._target(name)
        if target.portal_group(tag) is None:
            raise ServiceError(404, f"portal_group: {name} has no portal group {tag}")
        wanted = ALUA_STATE_NAMES.get(state)
        if wanted is None:
            choices = ", ".join(ALUA_STATE_NAMES)
            raise ServiceError(400, f"state: {state!r} is not one of {choices}")
        try:
            target.set_alua_state(tag, wanted)
        except TransitionRefused as exc:
            raise ServiceError(409, f"state: {exc}") from None
        return self._target_summary(target)

    # -- LUNs ------------------------------------------------------------------------------

    async def add_lun(self, name: str, request: dict[str, Any]) -> dict[str, Any]:
        target = self._target(name)
        spec = _lun_spec(request, target)
        try:
            device = await open_lun_device(spec, target.name, "lun", self.volumes)
        except ConfigError as exc:
            raise ServiceError(400, str(exc)) from None
        except SanstackError as exc:  # a volume held elsewhere, busy: refused, not bad input
            raise ServiceError(409, str(exc)) from None
        lu = target.add_lun(spec.number, device)
        _luns_changed(target, exclude=lu)
        return _lun_summary(lu)

    async def remove_lun(self, name: str, number: int) -> dict[str, Any]:
        """Remove a LUN: abort its tasks, wait for them, close its device; others run on."""
        target = self._target(name)
        lu = target.luns.get(number)
        if lu is None:
            raise ServiceError(404, f"lun: {name} has no LUN {number}")
        del target.luns[number]
        tasks = lu.logical_unit_reset(None)
        await wait_ended(tasks, "aborted tasks")
        await lu.device.flush()
        await lu.device.close()
        _luns_changed(target, exclude=None)
        return {"removed": number}

    # -- helpers ---------------------------------------------------------------------------

    def _target(self, name: str) -> Target:
        target = self.server.registry.targets.get(name.lower())
        if target is None:
            raise ServiceError(404, f"target: no target named {name}")
        return target

    def _target_summary(self, target: Target) -> dict[str, Any]:
        listening = {(h, p) for h, p, _t in self.server.portals}
        return {
            "name": target.name,
            "alias": target.alias,
            "luns": len(target.luns),
            "acl": sorted(target.allowed_initiators) if target.allowed_initiators else None,
            "chap": target.chap is not None,
            "portal_groups": [
                {
                    "tag": group.tag,
                    "enabled": group.enabled,
                    "alua_state": _ALUA_NAMES[target.alua.state_of_port(group.tag)],
                    "portals": [
                        {
                            "address": str(portal),
                            "listening": (portal.host, portal.port) in listening,
                        }
                        for portal in group.portals
                    ],
                }
                for group in target.portal_groups
            ],
            "nexuses": len(list(target.nexuses)),
        }


def _it_nexus(nexus: ITNexus) -> dict[str, Any]:
    return {
        "initiator": nexus.initiator_name,
        "isid": None if nexus.isid is None else f"0x{nexus.isid:012x}",
        "relative_target_port": nexus.relative_target_port_id,
    }


def _lun_summary(lu: LogicalUnit) -> dict[str, Any]:
    device = lu.device
    return {
        "lun": lu.lun,
        "backstore": getattr(device, "backstore", type(device).__name__),
        "path": str(getattr(device, "path", "")) or None,
        "block_size": device.block_size,
        "blocks": device.num_blocks,
        "size_bytes": device.capacity_bytes,
        "thin": device.thin_provisioned,
        "read_only": device.read_only,
        "naa": device.identity.naa.hex(),
        "serial": device.identity.unit_serial,
        "health": device.health() or "ok",
    }


def _lun_spec(request: dict[str, Any], target: Target) -> LunSpec:
    number = request.get("number")
    if number is None:
        number = next(n for n in range(MAX_LUNS) if n not in target.luns)
    if not isinstance(number, int) or isinstance(number, bool) or not 0 <= number < MAX_LUNS:
        raise ServiceError(400, f"number: {number!r} is not a LUN number 0..{MAX_LUNS - 1}")
    if number in target.luns:
        raise ServiceError(409, f"number: LUN {number} of {target.name} exists already")
    backstore = request.get("backstore", "file")
    if backstore in ("volume", "snapshot"):
        try:
            return volume_lun_spec(number, backstore, request, "")
        except ConfigError as exc:
            raise ServiceError(400, str(exc)) from None
    if backstore not in ("file", "memory"):
        choices = "'file', 'memory', 'volume' or 'snapshot'"
        raise ServiceError(400, f"backstore: {backstore!r} is not {choices}")
    block_size = request.get("block_size", 512)
    if block_size not in BLOCK_SIZES:
        raise ServiceError(400, f"block_size: {block_size!r} is not one of {BLOCK_SIZES}")
    try:
        size = parse_size(request["size"], "size") if request.get("size") is not None else None
    except ConfigError as exc:
        raise ServiceError(400, str(exc)) from None
    path = request.get("path")
    if backstore == "file":
        if not isinstance(path, str) or not path:
            raise ServiceError(400, "path: a file LUN needs a path")
        if size is None and not Path(path).exists():
            raise ServiceError(400, f"size: {path} does not exist, so a size is needed")
    elif size is None:
        raise ServiceError(400, "size: a memory LUN needs a size")
    if size is not None and size % block_size:
        raise ServiceError(400, f"size: {size} is not a multiple of block_size {block_size}")
    return LunSpec(number, backstore, Path(path) if path else None, size, block_size)


def _luns_changed(target: Target, *, exclude: LogicalUnit | None) -> None:
    """SPC-4 §6.33: every nexus learns that REPORT LUNS data changed, through any LUN."""
    for lu in target.luns.values():
        if lu is not exclude:
            lu.establish_unit_attention(ASC.REPORTED_LUNS_DATA_HAS_CHANGED)
