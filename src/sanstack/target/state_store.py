"""Small state files that must survive ``kill -9`` and power loss whole (APTPL, SPC-4 §5.13.5).

``write_atomically`` writes the new contents to a temporary file in the same directory,
fsyncs it, renames it over the old file, then fsyncs the directory: at any instant the
file holds either the complete old state or the complete new one, never a torn mix
(rename is atomic within a filesystem; the directory fsync makes the rename durable).
Each file also carries a CRC32C so that a medium that returns garbage is noticed.

``ReservationFile`` is the target's ``ReservationStore`` (``scsi/logical_unit.py``): one
such file per LUN, named by the LUN's NAA so that it follows the device, not its number.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
from pathlib import Path
from typing import Any

from sanstack.block.device import DeviceIdentity
from sanstack.errors import SanstackError
from sanstack.iscsi.digest import crc32c
from sanstack.scsi.pr import PersistentReservations

FORMAT = "sanstack-state/1"


class StateFileError(SanstackError):
    """A state file exists but cannot be used; the message names the file and the reason."""


def write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Unique per writer: two writers must never share (and rename away) one temporary file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def save_state(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` (JSON-able) with a format tag and a checksum."""
    body = json.dumps(state, sort_keys=True, separators=(",", ":"))
    envelope = {"format": FORMAT, "crc32c": crc32c(body.encode()), "state": body}
    write_atomically(path, json.dumps(envelope).encode() + b"\n")


def load_state(path: Path) -> dict[str, Any] | None:
    """The saved state, None if there is none, ``StateFileError`` if it is damaged."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        envelope = json.loads(raw)
        if envelope.get("format") != FORMAT:
            raise StateFileError(f"{path}: unknown format {envelope.get('format')!r}")
        body = envelope["state"]
        if crc32c(body.encode()) != envelope["crc32c"]:
            raise StateFileError(f"{path}: checksum mismatch, the file is damaged")
        state = json.loads(body)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise StateFileError(f"{path}: not a sanstack state file ({exc})") from None
    if not isinstance(state, dict):
        raise StateFileError(f"{path}: the state is not an object")
    return state


def remove_stale_temporaries(directory: Path) -> None:
    """Temporary files left by a writer that was killed before its rename."""
    for tmp in directory.glob(".*.tmp"):
        with contextlib.suppress(OSError):
            tmp.unlink()


class ReservationFile:
    """A LUN's persistent reservations in a state file (APTPL, SPC-4 §5.13.5)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._save_lock = asyncio.Lock()

    @classmethod
    def in_directory(cls, directory: Path, identity: DeviceIdentity) -> ReservationFile:
        return cls(directory / f"pr-{identity.naa.hex()}.json")

    def load(self) -> PersistentReservations | None:
        state = load_state(self.path)
        if state is None:
            return None
        try:
            return PersistentReservations.from_dict(state)
        except (ValueError, KeyError, TypeError) as exc:
            raise StateFileError(f"{self.path}: unusable reservation state ({exc})") from None

    async def save(self, reservations: PersistentReservations) -> None:
        """Saves run one at a time and each writes the state as it is when its turn comes,
        so concurrent PR OUTs can never leave an older state on disk after a newer one."""
        async with self._save_lock:
            await asyncio.to_thread(save_state, self.path, reservations.to_dict())
