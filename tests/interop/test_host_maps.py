"""Multipath maps over the host's shared sessions, against sanstack's target: 64 maps over
two sessions, one portal reset while every map carries I/O."""

from __future__ import annotations

import asyncio
import os
import random
from pathlib import Path

import pytest
from tests.support.processes import free_port, running_target
from tests.support.waits import until

from sanstack.host.isids import IsidStore
from sanstack.host.sessions import SessionOptions, SessionPool
from sanstack.mpio.device import MultipathDevice
from sanstack.mpio.no_path import NoPathRetry
from sanstack.mpio.path_slot import (
    MultipathOptions,
    PathAddress,
)
from sanstack.tools.fault_proxy import FaultProxy

pytestmark = pytest.mark.interop
IQN = "iqn.2026-11.org.sanstack:maps"
HOST = "iqn.2026-11.org.sanstack:maps-host"
MAPS = 64
BS = 512


class MapLoad:
    """One map's writes and read-backs, one at a time: every read must return the last
    acknowledged write of its blocks."""

    def __init__(self, device: MultipathDevice, seed: int) -> None:
        self.device = device
        self.rng = random.Random(seed)
        self.written: dict[int, bytes] = {}
        self.done = 0
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while not self.stop.is_set():
            lba = self.rng.randrange(0, 64) * 8
            if self.rng.random() < 0.5 or lba not in self.written:
                data = os.urandom(8 * BS)
                await self.device.write(lba, data)
                self.written[lba] = data
            else:
                assert bytes(await self.device.read(lba, 8)) == self.written[lba]
            self.done += 1

    async def verify(self) -> None:
        """After ``stop``: the load ended without error and every block reads back."""
        await asyncio.wait_for(self.task, 60)
        for lba, data in self.written.items():
            assert bytes(await self.device.read(lba, 8)) == data


def test_64_maps_over_two_shared_sessions_survive_a_portal_reset(tmp_path: Path) -> None:
    ports = [free_port(), free_port()]
    with running_target(tmp_path, IQN, ports, ["memory:1M"] * MAPS):

        async def body() -> None:
            proxies = [await FaultProxy("127.0.0.1", port).start() for port in ports]
            portals = [PathAddress("127.0.0.1", p.listen_port) for p in proxies]
            options = SessionOptions(nop_interval=0.5, nop_timeout=1.0, reconnect_min=0.05)
            pool = SessionPool(HOST, IsidStore(tmp_path / "host"), options)
            shared = [pool.session(IQN, portal) for portal in portals]
            assert all([await s.wait_up(10) for s in shared])
            map_options = MultipathOptions(
                selector="round-robin",  # both paths carry every map's I/O
                no_path_retry=NoPathRetry.parse("30"),
                checker_interval=0.5,
            )
            maps = await asyncio.gather(
                *(
                    MultipathDevice.over(
                        [(s, n) for s in shared], map_options, target_name=IQN, lun=n
                    )
                    for n in range(MAPS)
                )
            )
            assert len({m.identity.naa for m in maps}) == MAPS
            assert all(s.listeners == MAPS for s in shared)

            def paths(index: int, key: str) -> list[object]:
                return [m.status()["paths"][index][key] for m in maps]

            await until(
                lambda: set(paths(0, "state")) == set(paths(1, "state")) == {"active"},
                10,
                "every map has both paths",
            )
            loads = [MapLoad(m, seed=n) for n, m in enumerate(maps)]
            started = [load.done for load in loads]
            await until(
                lambda: all(ld.done >= s + 5 for ld, s in zip(loads, started, strict=True)),
                30,
                "every map carries I/O",
            )
            completed_on_1 = paths(1, "completed")
            await until(
                lambda: sum(int(str(n)) for n in paths(0, "in_flight")) >= 8,
                10,
                "I/O in flight on path 0",
            )
            proxies[0].reset()  # at once: those I/Os are re-driven on path 1
            # Every map fails the path (one notice from the shared session), its I/O
            # moves to the other path, and the path comes back to every map.
            await until(lambda: all(f == 1 for f in paths(0, "failures")), 10, "path 0 failed")
            await until(
                lambda: all(
                    int(str(after)) >= int(str(before)) + 3
                    for before, after in zip(completed_on_1, paths(1, "completed"), strict=True)
                ),
                30,
                "every map completed I/O on the other path",
            )
            await until(lambda: set(paths(0, "state")) == {"active"}, 15, "path 0 back in all")
            completed_on_0 = paths(0, "completed")
            await until(
                lambda: all(
                    int(str(after)) >= int(str(before)) + 3
                    for before, after in zip(completed_on_0, paths(0, "completed"), strict=True)
                ),
                30,
                "every map carries I/O on the path that came back",
            )
            assert shared[0].logins == 2 and shared[1].logins == 1
            assert all(f == 0 for f in paths(1, "failures"))
            for load in loads:
                load.stop.set()
            for load in loads:
                await load.verify()
            await asyncio.gather(*(m.close() for m in maps))
            assert all(s.listeners == 0 for s in shared)
            await pool.close()
            for proxy in proxies:
                await proxy.close()

        asyncio.run(body())
