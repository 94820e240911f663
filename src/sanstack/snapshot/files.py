"""Volumes kept in files or block-device nodes: format, open with the writer lock, peek.

The exclusive ``flock`` of ``FileDevice`` says which process holds a volume for writing;
the superblock says who that is (host, pid, control socket), so a CLI command can act
through the holder's control plane instead of opening the device itself.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

from sanstack.block.file import BackstoreInUse, FileDevice
from sanstack.snapshot.layout import PAGE, newest_superblock
from sanstack.snapshot.model import (
    FormatOptions,
    Holder,
    NotAVolume,
    Progress,
    VolumeHeld,
    VolumeInfo,
)
from sanstack.snapshot.volume import SnapshotVolume, format_volume


def read_holder(path: str | Path) -> Holder | None:
    """Who holds the volume, from its superblock, without taking the lock."""
    try:
        with open(path, "rb") as f:
            head = f.read(2 * PAGE)
    except OSError as exc:
        raise NotAVolume(f"{path}: {exc.strerror or exc}") from None
    if len(head) < 2 * PAGE:
        raise NotAVolume(f"{path} is too small to hold a volume")
    return newest_superblock([head[:PAGE], head[PAGE:]]).holder


def _open_device(path: str | Path, *, create_size: int | None = None) -> FileDevice:
    try:
        return FileDevice(
            path, block_size=512, size_bytes=create_size, create=create_size is not None
        )
    except BackstoreInUse:
        holder = None
        with contextlib.suppress(NotAVolume):
            holder = read_holder(path)
        who = f"pid {holder.pid} on {holder.host}" if holder else "another process"
        raise VolumeHeld(f"{path} is held by {who}", holder) from None
    except FileNotFoundError:
        raise NotAVolume(f"{path} does not exist") from None
    except OSError as exc:
        raise NotAVolume(f"{path}: {exc.strerror or exc}") from None


async def open_volume_file(path: str | Path, *, holder: Holder | None = None) -> SnapshotVolume:
    device = _open_device(path)
    try:
        return await SnapshotVolume.open(device, holder=holder)
    except BaseException:
        await device.close()
        raise


async def format_volume_file(
    path: str | Path,
    size: int | None,
    options: FormatOptions,
    *,
    progress: Callable[[Progress], None] | None = None,
) -> VolumeInfo:
    """Format ``path`` (created or grown to ``size`` bytes if given) as an empty volume."""
    if size is not None and size % 4096:
        raise NotAVolume(f"size {size} is not a multiple of 4096 bytes")
    if size is None and not Path(path).exists():  # noqa: ASYNC240 - one stat, no I/O wait
        raise NotAVolume(f"{path} does not exist and no size was given")
    device = _open_device(path, create_size=size)
    try:
        return await format_volume(device, options, progress=progress)
    finally:
        await device.close()
