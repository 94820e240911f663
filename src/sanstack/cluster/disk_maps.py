"""The disks of the config as maps of the node's host (asyncio edge): found by name in O(1),
and every one of them there before the node joins.

``DiskMaps.find``: ``Host.find_map`` looks through every map for a name, and the node asks
for a disk's map on every PR command; with 1000 disks that was a third of a millisecond a
command, seconds of CPU in a failover. A map found is kept while the host still has it
(the same object under its WWID); a map the host replaced or removed is looked up again.

Nodes of a cluster start together (a power cut, a rolling restart of the SAN): each host's
first scan then opens its maps while the others do the same against the same target, and
under that load a map whose path probes time out is not built. A node that went on without
those maps would place groups on itself, fail them at once (no map for a disk) and, within a
second, reach their restart threshold on every node alike: a cluster that never onlines
them (seen with 1000 disks on three nodes). So before the node heartbeats, learns from the
disks or onlines anything, ``wait_for_maps`` asks the host to scan again until every disk
of the config has a map, bounded (``pending_timeout``); a disk still missing then is logged
and the node goes on without it (its group fails here and runs elsewhere), as before.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any, Final, Protocol

from sanstack.block.device import BlockDevice
from sanstack.cluster.model import DiskSpec
from sanstack.errors import SanstackError, ServiceError
from sanstack.host.host import HostMap

log = logging.getLogger(__name__)

RESCAN_GAP: Final = 1.0  # between two scans that left disks out: let the target breathe


class DiskMissing(SanstackError):
    """The host has no map for a disk of the config (not discovered, or its LUN is gone)."""


class NoExports:
    """The host's ``ExportTable``: a node exports groups, not every map."""

    def add_export(self, name: str, device: BlockDevice) -> None:
        pass

    def remove_export(self, name: str) -> None:
        pass


class MapSource(Protocol):
    """The host as this needs it: its maps by NAA, ``find_map`` and ``rescan``."""

    maps: dict[str, HostMap]

    def find_map(self, name: str) -> HostMap: ...

    async def rescan(self) -> list[dict[str, Any]]: ...


class DiskMaps:
    """Each disk's map by the disk's name (module docstring)."""

    def __init__(self, host: MapSource, disks: Sequence[DiskSpec]) -> None:
        self.host = host
        self.disks = tuple(disks)
        self.devices = {disk.name: disk.device for disk in disks}  # name -> WWID or alias
        self._found: dict[str, HostMap] = {}

    def find(self, disk: str) -> HostMap:
        """``disk``'s map; ``ServiceError`` (404) when the host has none."""
        entry = self._found.get(disk)
        if entry is not None and self.host.maps.get(entry.wwid.removeprefix("naa.")) is entry:
            return entry
        entry = self.host.find_map(self.devices[disk])
        self._found[disk] = entry
        return entry

    async def wait_all(self, bound: float) -> list[str]:
        """``wait_for_maps`` of every disk."""
        return await wait_for_maps(self.host, self.disks, bound)


def missing_maps(host: MapSource, disks: Sequence[DiskSpec]) -> list[str]:
    """The names of the disks the host has no map for, in the given order."""
    missing = []
    for disk in disks:
        try:
            host.find_map(disk.device)
        except ServiceError:
            missing.append(disk.name)
    return missing


async def wait_for_maps(host: MapSource, disks: Sequence[DiskSpec], bound: float) -> list[str]:
    """Rescan until every one of ``disks`` has a map or ``bound`` seconds passed; the names of
    those still without one."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + bound
    missing = missing_maps(host, disks)
    while missing and loop.time() < deadline:
        log.info(
            "%d of %d disks have no map yet (%s%s): scanning again",
            len(missing),
            len(disks),
            ", ".join(missing[:5]),
            ", ..." if len(missing) > 5 else "",
        )
        try:
            async with asyncio.timeout(max(0.0, deadline - loop.time())):
                await host.rescan()
        except TimeoutError:
            break
        except SanstackError as exc:  # a scan that failed as a whole: try again
            log.warning("scan for the missing disks failed: %s", exc)
        missing = missing_maps(host, disks)
        if missing and loop.time() + RESCAN_GAP < deadline:
            await asyncio.sleep(RESCAN_GAP)
    if missing:
        log.warning(
            "%d disks have no map after %g s (%s%s): their groups cannot run here",
            len(missing),
            bound,
            ", ".join(missing[:5]),
            ", ..." if len(missing) > 5 else "",
        )
    return missing
