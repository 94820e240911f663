"""A snapshot as a read-only ``BlockDevice``: serve it as a LUN or an NBD export for a backup.

The device holds its snapshot (ZFS's hold, Btrfs's send_in_progress): while it is open a
delete only marks the snapshot deleting, and its space comes back when the last reader
closes. So a backup never reads a chunk that has been handed to someone else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sanstack.block.device import (
    BlockDevice,
    DeviceIdentity,
    DeviceNotReady,
    DeviceReadOnly,
    LBAExtent,
)
from sanstack.snapshot.layout import SnapshotRecord

if TYPE_CHECKING:
    from sanstack.snapshot.volume import SnapshotVolume


class SnapshotDevice(BlockDevice):
    read_only = True
    thin_provisioned = True
    write_cache = False

    def __init__(self, volume: SnapshotVolume, record: SnapshotRecord) -> None:
        self.volume = volume
        self.name = record.name
        self.snapshot_id = record.id
        self.epoch = record.epoch
        self.block_size = volume.block_size
        self.num_blocks = volume.num_blocks
        uuid = volume.state.superblock.uuid_text
        self.identity = DeviceIdentity.from_seed(f"snapshot:{uuid}:{record.id}")
        self._closed = False

    def _check_open(self) -> None:
        if self._closed or self.volume.health() is not None:
            raise DeviceNotReady(f"snapshot {self.name!r} is closed")

    async def read(self, lba: int, count: int) -> bytes:
        self._check_open()
        return await self.volume.read_snapshot(self.epoch, lba, count)

    async def write(self, lba: int, data: bytes | memoryview) -> None:
        raise DeviceReadOnly(f"snapshot {self.name!r} is read-only")

    async def unmap(self, lba: int, count: int) -> None:
        raise DeviceReadOnly(f"snapshot {self.name!r} is read-only")

    async def flush(self) -> None:
        self._check_open()

    async def get_lba_status(self, lba: int, max_count: int) -> list[LBAExtent]:
        self._check_open()
        await self.volume.wait_scan()
        state = self.volume.state
        epoch = self.epoch
        return state.lba_status(lambda v: state.snapshot_chunk(epoch, v), lba, max_count)

    def health(self) -> str | None:
        if self._closed:
            return f"snapshot {self.name!r} is closed"
        return self.volume.health()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self.volume.release_snapshot(self, self.snapshot_id)

    def __repr__(self) -> str:
        return f"SnapshotDevice({self.name!r}, epoch {self.epoch})"
