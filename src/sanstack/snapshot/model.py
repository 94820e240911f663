"""The snapshot layer's public vocabulary: options, policies, listings and errors.

Everything here is plain data, JSON-friendly (``to_dict``), shared by the volume, its
service API, the control plane and the CLI, so each view prints the same fields.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, Final

from sanstack.errors import SanstackError

MAX_NAME_BYTES: Final = 63
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:+-]*$")


class VolumeError(SanstackError):
    """A volume or snapshot operation was refused; the message says why, in one line."""


class NotAVolume(VolumeError):
    """The device holds no sanstack volume (bad magic, checksum or unsupported version)."""


class VolumeHeld(VolumeError):
    """Another process holds the volume open for writing (its exclusive lock)."""

    def __init__(self, message: str, holder: Holder | None) -> None:
        super().__init__(message)
        self.holder = holder


class SnapshotNotFound(VolumeError):
    """No snapshot of that name exists (or it is being deleted)."""


class SnapshotExists(VolumeError):
    """A snapshot of that name already exists."""


class SnapshotRefused(VolumeError):
    """A new snapshot was refused: space above the warning threshold, too many
    snapshots, a restore running, or writes that did not drain in time."""


class VolumeBusy(VolumeError):
    """The operation conflicts with one in progress (a restore, a format)."""


def check_snapshot_name(name: object) -> str:
    """A snapshot name: 1..63 bytes of letters, digits and ``._:+-``, not starting with
    punctuation (it appears in ``FILE@NAME`` and in URLs of the control plane)."""
    if not isinstance(name, str) or not _NAME.match(name) or len(name.encode()) > MAX_NAME_BYTES:
        raise VolumeError(
            f"snapshot name {name!r} must be 1..{MAX_NAME_BYTES} letters, digits or ._:+- "
            "starting with a letter or digit"
        )
    return name


class OnFull(StrEnum):
    """What happens when a write needs snapshot space and none is left."""

    DELETE = "delete"  # delete snapshots by weight then age (never "keep" ones), then write
    FAIL_WRITES = "fail-writes"  # the writer gets SPACE ALLOCATION FAILED; snapshots stay


@dataclass(frozen=True, slots=True)
class SpacePolicy:
    """PSM's space policy, in percent of the snapshot reserve.

    At ``warn_percent`` new snapshots are refused (and a warning is logged); at
    ``delete_percent`` the oldest lowest-weight snapshots are deleted in the background
    (unless ``on_full`` is FAIL_WRITES); when the reserve is full a write that needs space
    either waits for such deletes or fails, per ``on_full``. A snapshot is never silently
    invalidated: it is either complete or deleted and gone from the list.
    """

    warn_percent: int = 80
    delete_percent: int = 90
    on_full: OnFull = OnFull.DELETE

    def __post_init__(self) -> None:
        if not 1 <= self.warn_percent <= 100:
            raise VolumeError(f"warn_percent {self.warn_percent} is not within 1..100")
        if not 1 <= self.delete_percent <= 100:
            raise VolumeError(f"delete_percent {self.delete_percent} is not within 1..100")

    def to_dict(self) -> dict[str, Any]:
        return {
            "warn_percent": self.warn_percent,
            "delete_percent": self.delete_percent,
            "on_full": self.on_full.value,
        }


@dataclass(frozen=True, slots=True)
class Schedule:
    """Take a snapshot every ``interval`` seconds; keep the newest ``keep`` scheduled ones.

    Scheduled snapshots are named ``{prefix}-YYYYmmddTHHMMSSZ`` and carry ``weight``;
    manual snapshots and "keep" ones are never pruned by the schedule.
    """

    interval: int
    keep: int
    weight: int = 1
    prefix: str = "auto"

    def __post_init__(self) -> None:
        if not 1 <= self.interval <= 366 * 86400:
            raise VolumeError(f"schedule interval {self.interval} s is not within 1 s..366 d")
        if not 1 <= self.keep <= 65535:
            raise VolumeError(f"schedule keep {self.keep} is not within 1..65535")
        if not 0 <= self.weight <= 255:
            raise VolumeError(f"schedule weight {self.weight} is not within 0..255")
        check_snapshot_name(self.prefix)
        if len(self.prefix) > 40:
            raise VolumeError(f"schedule prefix {self.prefix!r} is longer than 40 characters")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class FormatOptions:
    """``sanstack volume format`` choices; the defaults suit a LUN of a few GiB to TiB."""

    reserve_percent: int = 20  # of the space after metadata, for snapshot data (PSM: 10-20 %)
    block_size: int = 512  # the volume's logical block size
    chunk_size: int = 4096  # copy-on-write unit; a first write of a whole chunk needs no read
    max_snapshots: int = 4096

    def __post_init__(self) -> None:
        if not 1 <= self.reserve_percent <= 90:
            raise VolumeError(f"reserve_percent {self.reserve_percent} is not within 1..90")
        if self.block_size not in (512, 1024, 2048, 4096):
            raise VolumeError(f"block_size {self.block_size} is not 512, 1024, 2048 or 4096")
        cs = self.chunk_size
        if cs < self.block_size or cs & (cs - 1) or cs > 1 << 20:
            raise VolumeError(
                f"chunk_size {cs} must be a power of two from the block size to 1 MiB"
            )
        if not 16 <= self.max_snapshots <= 65536:
            raise VolumeError(f"max_snapshots {self.max_snapshots} is not within 16..65536")


@dataclass(frozen=True, slots=True)
class Holder:
    """Who holds a volume open for writing, as recorded in its superblock."""

    host: str
    pid: int
    control: str  # the holder's control socket path, "" when it has none

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    """One snapshot as ``snapshot list`` shows it."""

    name: str
    id: int
    created: float  # Unix time
    epoch: int
    weight: int
    keep: bool
    scheduled: bool
    state: str  # "ready" or "deleting" (held by a reader; reclaimed when it closes)
    size_bytes: int  # the volume size at the snapshot
    used_bytes: int  # snapshot space freed if this snapshot alone were deleted

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Progress:
    """A long operation's progress: ``done`` of ``total`` units (chunks)."""

    operation: str
    done: int
    total: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class VolumeInfo:
    """``volume info``: geometry, space, background work and settings."""

    uuid: str
    size_bytes: int
    block_size: int
    chunk_size: int
    reserve_bytes: int
    snapshot_used_bytes: int
    snapshot_used_percent: float
    free_bytes: int
    snapshots: int
    max_snapshots: int
    policy: SpacePolicy
    schedule: Schedule | None
    holder: Holder | None
    background: list[Progress] = field(default_factory=list)  # scan, reclaim, restore
    format_version: int = 2  # docs/volume-format.md

    def to_dict(self) -> dict[str, Any]:
        return {
            "uuid": self.uuid,
            "format_version": self.format_version,
            "size_bytes": self.size_bytes,
            "block_size": self.block_size,
            "chunk_size": self.chunk_size,
            "reserve_bytes": self.reserve_bytes,
            "snapshot_used_bytes": self.snapshot_used_bytes,
            "snapshot_used_percent": self.snapshot_used_percent,
            "free_bytes": self.free_bytes,
            "snapshots": self.snapshots,
            "max_snapshots": self.max_snapshots,
            "policy": self.policy.to_dict(),
            "schedule": self.schedule.to_dict() if self.schedule else None,
            "holder": self.holder.to_dict() if self.holder else None,
            "background": [p.to_dict() for p in self.background],
        }
