"""``cluster/disk_maps.py``: a disk's map found by name without a search through every map
(and found again once the host replaced it), and the node's wait, bounded, for the maps a
slow first scan left out."""

from __future__ import annotations

import asyncio
from typing import Any

from sanstack.cluster.disk_maps import DiskMaps, missing_maps, wait_for_maps
from sanstack.cluster.model import DiskSpec
from sanstack.errors import SanstackError, ServiceError
from sanstack.host.host import HostMap

DISKS = (DiskSpec("d1", "naa.6001"), DiskSpec("d2", "iqn.2026-11.org.x:t/2"))


def host_map(naa: str, alias: str) -> HostMap:
    return HostMap(f"naa.{naa}", alias, device=object())  # type: ignore[arg-type]


class FakeHost:
    """Maps by NAA; each rescan adds the maps of the next list in ``scans``."""

    def __init__(self, *scans: list[HostMap], fail_scans: int = 0) -> None:
        self.maps: dict[str, HostMap] = {}
        self.scans = list(scans)
        self.lookups = 0
        self.rescans = 0
        self.fail_scans = fail_scans

    def add(self, entry: HostMap) -> None:
        self.maps[entry.wwid.removeprefix("naa.")] = entry

    def find_map(self, name: str) -> HostMap:
        self.lookups += 1
        for entry in self.maps.values():
            if name in entry.exports:
                return entry
        raise ServiceError(404, f"map: no map is exported as {name!r}")

    async def rescan(self) -> list[dict[str, Any]]:
        self.rescans += 1
        if self.rescans <= self.fail_scans:
            raise SanstackError("scan failed")
        for entry in self.scans.pop(0) if self.scans else []:
            self.add(entry)
        return []


def test_a_map_found_once_is_not_searched_for_again_until_the_host_replaces_it() -> None:
    host = FakeHost()
    first = host_map("6001", "iqn.2026-11.org.x:t/1")
    host.add(first)
    maps = DiskMaps(host, DISKS)
    assert maps.find("d1") is first
    assert maps.find("d1") is first
    assert host.lookups == 1
    # The host rebuilt the map (a LUN removed and added again): found anew.
    second = host_map("6001", "iqn.2026-11.org.x:t/1")
    host.add(second)
    assert maps.find("d1") is second
    assert host.lookups == 2
    # The map is gone: the host's own error, every time.
    del host.maps["6001"]
    for _ in range(2):
        try:
            maps.find("d1")
        except ServiceError as exc:
            assert exc.status == 404
        else:
            raise AssertionError("a map that is gone was found")
    assert maps.devices == {"d1": "naa.6001", "d2": "iqn.2026-11.org.x:t/2"}


def test_the_node_scans_again_until_every_disk_has_a_map() -> None:
    host = FakeHost([], [host_map("6002", "iqn.2026-11.org.x:t/2")])
    host.add(host_map("6001", "iqn.2026-11.org.x:t/1"))
    assert missing_maps(host, DISKS) == ["d2"]

    missing = asyncio.run(wait_for_maps(host, DISKS, 30.0))
    assert missing == []
    assert host.rescans == 2


def test_a_failed_scan_is_tried_again_and_what_never_comes_is_named_after_the_bound() -> None:
    host = FakeHost(fail_scans=1)
    loop_time: list[float] = []

    async def body() -> list[str]:
        loop = asyncio.get_running_loop()
        start = loop.time()
        missing = await wait_for_maps(host, DISKS, 1.5)
        loop_time.append(loop.time() - start)
        return missing

    assert asyncio.run(body()) == ["d1", "d2"]
    assert host.rescans >= 2
    assert loop_time[0] < 3.0


def test_nothing_is_scanned_when_every_disk_has_its_map() -> None:
    host = FakeHost()
    host.add(host_map("6001", "a/1"))
    host.add(host_map("6002", "iqn.2026-11.org.x:t/2"))
    assert asyncio.run(DiskMaps(host, DISKS).wait_all(5.0)) == []
    assert host.rescans == 0
