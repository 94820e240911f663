"""Small state files that must survive ``kill -9`` and power loss whole.

``write_atomically`` writes the new contents to a temporary file in the same directory,
fsyncs it, renames it over the old file, then fsyncs the directory: at any instant the
file holds either the complete old state or the complete new one, never a torn mix
(rename is atomic within a filesystem; the directory fsync makes the rename durable).
Each file also carries a CRC32C so that a medium that returns garbage is noticed.

Every daemon that keeps state across restarts uses these: the target's reservation files
(APTPL, ``target/state_store.py``) and the host's ISIDs (``host/isids.py``).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from pathlib import Path
from typing import Any

import google_crc32c

from sanstack.errors import SanstackError

FORMAT = "sanstack-state/1"


def crc32c(data: bytes) -> int:
    """CRC32C (Castagnoli), the same value ``iscsi.digest.crc32c`` computes."""
    return int(google_crc32c.value(data))


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
