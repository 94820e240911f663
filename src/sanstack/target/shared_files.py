"""File LUNs shared by a coordinator and its target workers (``--workers N``).

A ``FileDevice`` takes an exclusive ``flock`` so that no second process serves the same
file. The workers of one target must all serve it, and still no one else may: the
coordinator opens and locks each file once (``lock_files``), the workers inherit those
descriptors, and every process's ``FileDevice`` is a duplicate of the one locked open file
description (``SharedFileDevice``), which the lock belongs to.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

from sanstack.block.device import BlockDevice
from sanstack.block.file import BackstoreInUse, FileDevice
from sanstack.target.build import DeviceOpener
from sanstack.target.config import LunSpec, TargetSpec

# (target name, LUN number) -> the locked descriptor of its file.
SharedFds = dict[tuple[str, int], int]


class SharedFileDevice(FileDevice):
    """A ``FileDevice`` on a duplicate of an already locked descriptor."""

    def __init__(self, path: Path, shared_fd: int, spec: LunSpec) -> None:
        self._shared_fd = shared_fd
        super().__init__(
            path, block_size=spec.block_size, size_bytes=spec.size, read_only=spec.read_only
        )

    def _open(self, create: bool, size_bytes: int | None) -> int:
        return os.dup(self._shared_fd)


def lock_files(specs: list[TargetSpec]) -> SharedFds:
    """Open (creating a missing file that has a size) and lock every file LUN's file;
    ``BackstoreInUse`` when another process serves one. On failure nothing stays open."""
    fds: SharedFds = {}
    try:
        for spec in specs:
            for lun in spec.luns:
                if lun.backstore == "file" and lun.path is not None:
                    fds[(spec.name, lun.number)] = _lock(lun)
    except BaseException:
        close_files(fds)
        raise
    return fds


def _lock(lun: LunSpec) -> int:
    assert lun.path is not None
    flags = (os.O_RDONLY if lun.read_only else os.O_RDWR) | os.O_CLOEXEC
    try:
        fd = os.open(lun.path, flags)
    except FileNotFoundError:
        if lun.size is None or lun.read_only:
            raise FileNotFoundError(errno.ENOENT, "backing file does not exist", lun.path) from None
        fd = os.open(lun.path, flags | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise BackstoreInUse(
            f"{lun.path} is already served by another process or device (flock)"
        ) from None
    return fd


def close_files(fds: SharedFds) -> None:
    for fd in fds.values():
        os.close(fd)


def shared_opener(fds: SharedFds) -> DeviceOpener:
    """``build_registry``'s opener of file LUNs on the shared descriptors."""

    def open_shared(spec: LunSpec, target_name: str, field_name: str) -> BlockDevice:
        fd = fds.get((target_name, spec.number))
        assert spec.path is not None and fd is not None, field_name
        device = SharedFileDevice(spec.path, fd, spec)
        device.set_physical_block_size(spec.physical_block_size)
        return device

    return open_shared
