"""Reads started without a coroutine (``MultipathDevice.start_read``, what the host's NBD
export uses) against a real target process, each path through a fault proxy: a read whose
path fails is re-driven on the other path as a coroutine read would be, and a read given up
leaves nothing counted in flight and nothing told."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from tests.support.processes import free_port, running_target
from tests.support.shared_maps import map_over, shared_sessions
from tests.support.waits import until

from sanstack.mpio.device import MultipathDevice
from sanstack.mpio.no_path import NoPathRetry
from sanstack.mpio.path_slot import MultipathOptions, PathAddress
from sanstack.tools.fault_proxy import FaultProxy

pytestmark = pytest.mark.interop
IQN = "iqn.2026-11.org.sanstack:startread"
INITIATOR = "iqn.2026-11.org.sanstack:startread-host"
BS = 512
READ_BLOCKS = 8
PATTERN_BLOCKS = 2048

Parts = Sequence[bytes | memoryview]


@asynccontextmanager
async def multipath(ports: list[int]) -> AsyncIterator[tuple[MultipathDevice, list[FaultProxy]]]:
    proxies = [await FaultProxy("127.0.0.1", port).start() for port in ports]
    options = MultipathOptions(no_path_retry=NoPathRetry.parse("10"), checker_interval=0.2)
    portals = [PathAddress("127.0.0.1", p.listen_port) for p in proxies]
    try:
        async with shared_sessions(INITIATOR, IQN, portals) as shared:
            device = await map_over(shared, 0, options)
            try:
                yield device, proxies
            finally:
                await device.close()
    finally:
        for proxy in proxies:
            await proxy.close()


class Sink:
    """One read's ``ReadSink``: the data it got, and how (at once, or through the I/O loop
    as a task this test owns)."""

    def __init__(self, tasks: set[asyncio.Task[None]]) -> None:
        self.tasks = tasks
        self.data: bytes | None = None
        self.error: BaseException | None = None
        self.slow = False
        self.told = 0

    def read_done(self, parts: Parts) -> None:
        self.told += 1
        self.data = b"".join(parts)

    def read_slow(self, resume: Callable[[], Awaitable[Parts]]) -> None:
        self.told += 1
        self.slow = True

        async def rest() -> None:
            try:
                self.data = b"".join(await resume())
            except Exception as exc:  # kept for the assertion
                self.error = exc

        # Never run inside the call (a session's pump or teardown): a task of the test's.
        task = asyncio.get_running_loop().create_task(rest())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    @property
    def ended(self) -> bool:
        return self.data is not None or self.error is not None


def expected(lba: int, pattern: bytes) -> bytes:
    return pattern[lba * BS : (lba + READ_BLOCKS) * BS]


def in_flight(device: MultipathDevice) -> list[int]:
    return [int(p["in_flight"]) for p in device.status()["paths"]]


def test_reads_on_a_failed_path_are_driven_again_on_the_other(tmp_path: Path) -> None:
    ports = [free_port(), free_port()]
    with running_target(tmp_path, IQN, ports, ["memory:4M"]):

        async def body() -> None:
            async with multipath(ports) as (device, proxies):
                pattern = os.urandom(PATTERN_BLOCKS * BS)
                await device.write(0, pattern)
                tasks: set[asyncio.Task[None]] = set()
                reads: list[tuple[int, Sink]] = []

                def start(lba: int) -> None:
                    sink = Sink(tasks)
                    assert device.start_read(lba, READ_BLOCKS, sink) is not None
                    reads.append((lba, sink))

                # Commands on path 0 go nowhere, so some are in flight there when it fails.
                proxies[0].blackhole()
                lba = 0
                while in_flight(device)[0] < 4:
                    start(lba)
                    lba = (lba + READ_BLOCKS) % PATTERN_BLOCKS
                    await asyncio.sleep(0)
                stuck = in_flight(device)[0]
                proxies[0].reset()
                proxies[0].restore()
                await until(lambda: all(s.ended for _, s in reads), 20, "every read answered")
                for lba, sink in reads:
                    assert sink.error is None, sink.error
                    assert sink.data == expected(lba, pattern)
                    assert sink.told == 1
                assert sum(sink.slow for _, sink in reads) >= stuck
                assert in_flight(device) == [0, 0]
                # Once the path is back the reads start at once again.
                await until(
                    lambda: {p["state"] for p in device.status()["paths"]} == {"active"},
                    15,
                    "both paths active",
                )
                more = [Sink(tasks) for _ in range(8)]
                for i, sink in enumerate(more):
                    assert device.start_read(i * READ_BLOCKS, READ_BLOCKS, sink) is not None
                await until(lambda: all(s.ended for s in more), 10, "the later reads answered")
                assert all(not s.slow for s in more)

        asyncio.run(body())


def test_a_read_given_up_is_told_nothing_and_counted_out(tmp_path: Path) -> None:
    ports = [free_port(), free_port()]
    with running_target(tmp_path, IQN, ports, ["memory:4M"]):

        async def body() -> None:
            async with multipath(ports) as (device, proxies):
                tasks: set[asyncio.Task[None]] = set()
                for proxy in proxies:
                    proxy.blackhole()  # every read stays in flight
                sinks = [Sink(tasks) for _ in range(6)]
                tickets = [device.start_read(i * 8, READ_BLOCKS, s) for i, s in enumerate(sinks)]
                assert sum(in_flight(device)) == len(sinks)
                for ticket in tickets:
                    assert ticket is not None
                    ticket.cancel()
                assert in_flight(device) == [0, 0]
                for proxy in proxies:
                    proxy.restore()
                # The targets' late answers (or the aborts') reach no one, and the paths
                # go on carrying reads.
                late = Sink(tasks)
                assert device.start_read(0, READ_BLOCKS, late) is not None
                await until(lambda: late.ended, 15, "a read after the cancelled ones")
                assert late.error is None
                assert all(s.told == 0 for s in sinks)

        asyncio.run(body())
