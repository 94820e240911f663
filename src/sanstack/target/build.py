"""Turn checked target specs into live targets with open devices."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from sanstack.block.device import BlockDevice, DeviceIdentity
from sanstack.block.file import FileDevice
from sanstack.block.memory import MemoryDevice
from sanstack.errors import ConfigError
from sanstack.target.config import LunSpec, TargetSpec
from sanstack.target.model import PortalGroup, Target
from sanstack.target.registry import TargetRegistry
from sanstack.target.state_store import ReservationFile

if TYPE_CHECKING:
    from sanstack.snapshot.service import VolumeService


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


# Opens a file or memory LUN's device: (spec, target name, field name) -> device.
DeviceOpener = Callable[[LunSpec, str, str], BlockDevice]


async def open_lun_device(
    spec: LunSpec,
    target_name: str,
    field_name: str,
    volumes: VolumeService | None,
    open_plain: DeviceOpener = open_device,
) -> BlockDevice:
    """``open_plain`` (``open_device``), and the ``volume`` and ``snapshot`` backstores
    through ``volumes`` (one ``SnapshotVolume`` per file, however many LUNs name it)."""
    if spec.backstore not in ("volume", "snapshot"):
        return open_plain(spec, target_name, field_name)
    from sanstack.snapshot.model import NotAVolume, SnapshotNotFound, VolumeError, VolumeHeld
    from sanstack.snapshot.service import VolumeService, describe_holder, naming

    assert spec.path is not None
    if volumes is None:  # a registry built alone: its LUN leases still close what they open
        volumes = VolumeService()
    try:
        device = await volumes.open_lun(spec.path, spec.snapshot)
    except OSError as exc:
        problem = f"cannot open {spec.path}: {exc.strerror or exc}"
        raise ConfigError(f"{field_name}.path", problem) from None
    except (NotAVolume, SnapshotNotFound) as exc:
        where = "snapshot" if isinstance(exc, SnapshotNotFound) else "path"
        raise ConfigError(f"{field_name}.{where}", naming(str(spec.path), exc)) from None
    except VolumeHeld as exc:  # refused (exit 1), not bad input
        held = describe_holder(str(spec.path), exc.holder).removeprefix("path: ")
        raise VolumeError(f"{field_name}.path: {held}") from None
    except VolumeError as exc:
        raise VolumeError(f"{field_name}.path: {naming(str(spec.path), exc)}") from None
    try:
        device.set_physical_block_size(spec.physical_block_size)
    except ValueError as exc:
        await device.close()
        raise ConfigError(f"{field_name}.physical_block_size", str(exc)) from None
    return device


async def build_registry(
    specs: list[TargetSpec],
    state_dir: Path | None = None,
    volumes: VolumeService | None = None,
    open_plain: DeviceOpener = open_device,
) -> TargetRegistry:
    """Open every LUN's device; on any failure close what was opened and re-raise.

    ``state_dir`` keeps each LUN's persistent reservations (APTPL) across restarts;
    ``volumes`` holds the snapshot volumes that ``volume`` and ``snapshot`` LUNs share;
    ``open_plain`` opens file and memory LUNs (target workers share their coordinator's
    open files, ``target/shared_files.py``).
    """
    if volumes is None and any(
        lun.backstore in ("volume", "snapshot") for spec in specs for lun in spec.luns
    ):
        from sanstack.snapshot.service import VolumeService

        volumes = VolumeService()  # one for the whole registry, so LUNs of one file share
    store_for = (
        None if state_dir is None else functools.partial(ReservationFile.in_directory, state_dir)
    )
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
                reservation_store_for=store_for,
            )
            for l_index, lun in enumerate(spec.luns):
                where = f"target[{t_index}].lun[{l_index}]"
                device = await open_lun_device(lun, spec.name, where, volumes, open_plain)
                opened.append(device)
                target.add_lun(lun.number, device)
            registry.add(target)
    except BaseException:
        for device in opened:
            await device.close()
        raise
    return registry
