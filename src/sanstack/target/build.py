"""Turn checked target specs into live targets with open devices."""

from __future__ import annotations

from pathlib import Path

from sanstack.block.device import BlockDevice, DeviceIdentity
from sanstack.block.file import FileDevice
from sanstack.block.memory import MemoryDevice
from sanstack.errors import ConfigError
from sanstack.target.config import LunSpec, TargetSpec
from sanstack.target.registry import TargetRegistry
from sanstack.target.target import PortalGroup, Target


def open_device(spec: LunSpec, target_name: str, field_name: str) -> BlockDevice:
    device = _open_backstore(spec, target_name, field_name)
    device.set_physical_block_size(spec.physical_block_size)
    return device


def _open_backstore(spec: LunSpec, target_name: str, field_name: str) -> BlockDevice:
    if spec.backstore == "memory":
        assert spec.size is not None
        return MemoryDevice(
            spec.size // spec.block_size,
            spec.block_size,
            identity=DeviceIdentity.from_seed(f"memory:{target_name}:{spec.number}"),
            read_only=spec.read_only,
        )
    assert spec.path is not None
    try:
        return FileDevice(
            spec.path,
            block_size=spec.block_size,
            size_bytes=spec.size,
            create=spec.size is not None,
            read_only=spec.read_only,
        )
    except OSError as exc:
        raise ConfigError(field_name, f"cannot open {spec.path}: {exc.strerror or exc}") from None


async def build_registry(specs: list[TargetSpec], state_dir: Path | None = None) -> TargetRegistry:
    """Open every LUN's device; on any failure close what was opened and re-raise.

    ``state_dir`` keeps each LUN's persistent reservations (APTPL) across restarts.
    """
    registry = TargetRegistry()
    opened: list[BlockDevice] = []
    try:
        for t_index, spec in enumerate(specs):
            target = Target(
                name=spec.name,
                portal_groups=[PortalGroup(g.tag, list(g.portals)) for g in spec.portal_groups],
                alias=spec.alias,
                allowed_initiators=spec.initiators,
                chap=spec.chap,
                state_dir=state_dir,
            )
            for l_index, lun in enumerate(spec.luns):
                device = open_device(lun, spec.name, f"target[{t_index}].lun[{l_index}]")
                opened.append(device)
                target.add_lun(lun.number, device)
            registry.add(target)
    except BaseException:
        for device in opened:
            await device.close()
        raise
    return registry
