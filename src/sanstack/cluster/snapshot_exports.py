"""A cluster group's snapshots as read-only NBD exports on the group's own address (asyncio
edge; the ``OnDemandExports`` of ``nbd/server.py``).

Snapshot ``SNAP`` of the volume on disk ``DISK`` is the export ``DISK@SNAP`` (a snapshot
name never holds ``@``). Every ready snapshot of every open volume of the group is listed
to a connection as it starts (``NBD_OPT_LIST``), so a snapshot taken a moment ago, by hand
or by the volume's schedule, is there for the next connection, and a deleted one is gone.

A snapshot is opened for the one connection that chooses it (``SnapshotVolume.open_snapshot``)
and closed when that connection ends: the connection holds the snapshot, so a delete
meanwhile only marks it deleting and its space comes back when the backup is done, and
nothing is held while nobody reads. After a failover the backup's client reconnects to the
same address and name, and the new owner opens the snapshot from the volume it just opened
(its reads wait for the free-space scan, as every snapshot read does).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Final

from sanstack.block.device import BlockDevice
from sanstack.edge.tasks import wait_ended
from sanstack.nbd import ExportInfo
from sanstack.snapshot.volume import SnapshotVolume

log = logging.getLogger(__name__)

SEPARATOR: Final = "@"
CLOSE_WAIT: Final = 10.0  # one snapshot's close: it may commit the end of a held delete


def export_name(disk: str, snapshot: str) -> str:
    return f"{disk}{SEPARATOR}{snapshot}"


class SnapshotExports:
    """The group's snapshots, opened per NBD connection; ``volumes`` gives the group's
    open volumes by disk as they are now (the group's steps replace the mapping)."""

    def __init__(self, group: str, volumes: Callable[[], Mapping[str, SnapshotVolume]]) -> None:
        self.group = group
        self._volumes = volumes
        self._closing: set[asyncio.Task[None]] = set()

    def infos(self) -> dict[str, ExportInfo]:
        offered: dict[str, ExportInfo] = {}
        for disk, volume in self._volumes().items():
            if volume.health() is not None:
                continue
            for record in volume.state.visible_snapshots():
                if record.deleting:
                    continue
                offered[export_name(disk, record.name)] = ExportInfo(
                    size=volume.capacity_bytes,
                    block_size=volume.block_size,
                    read_only=True,
                    description=f"snapshot {record.name} of {self.group}/{disk}",
                )
        return offered

    def open(self, name: str) -> BlockDevice:
        disk, _sep, snapshot = name.partition(SEPARATOR)
        volume = self._volumes().get(disk)
        if volume is None:
            raise LookupError(f"{name}: disk {disk} has no open volume in group {self.group}")
        device = volume.open_snapshot(snapshot)
        log.info("group %s: snapshot export %s opened for a connection", self.group, name)
        return device

    def release(self, device: BlockDevice) -> None:
        task = asyncio.get_running_loop().create_task(self._close(device), name="snapshot close")
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _close(self, device: BlockDevice) -> None:
        try:
            async with asyncio.timeout(CLOSE_WAIT):
                await device.close()
        except Exception as exc:  # its volume closed or fenced meanwhile: nothing left to do
            log.info("group %s: closing %r: %s", self.group, device, exc or type(exc).__name__)

    async def drain(self) -> None:
        """Until every released snapshot is closed (bounded): before the volumes close."""
        await wait_ended(list(self._closing), f"group {self.group} snapshot exports")
