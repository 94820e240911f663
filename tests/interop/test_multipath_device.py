"""MultipathDevice over a host's shared sessions against a real target process, each path
through a fault proxy."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from tests.support.processes import free_port, running_target
from tests.support.shared_maps import map_over, shared_sessions
from tests.support.waits import until

from sanstack.block.device import DeviceNotReady
from sanstack.host.rescan import group_new
from sanstack.host.sessions import SessionOptions
from sanstack.initiator.lun_device import ISCSIDevice, ReservationConflict
from sanstack.mpio.device import MultipathDevice
from sanstack.mpio.discovery import report_luns
from sanstack.mpio.no_path import NoPathRetry
from sanstack.mpio.path_slot import (
    MultipathOptions,
    PathAddress,
)
from sanstack.scsi.pr_codec import PRType
from sanstack.tools.fault_proxy import FaultProxy

pytestmark = pytest.mark.interop
IQN = "iqn.2026-11.org.sanstack:mpio"
INITIATOR = "iqn.2026-11.org.sanstack:mpio-host"
BS = 512


@asynccontextmanager
async def multipath(
    ports: list[int], *, no_path_retry: str = "10", lun: int = 0
) -> AsyncIterator[tuple[MultipathDevice, list[FaultProxy]]]:
    """A host's map of ``lun`` over one shared session per portal, each through a proxy."""
    proxies = [await FaultProxy("127.0.0.1", port).start() for port in ports]
    options = MultipathOptions(
        no_path_retry=NoPathRetry.parse(no_path_retry),
        checker_interval=0.2,
    )
    portals = [PathAddress("127.0.0.1", p.listen_port) for p in proxies]
    try:
        async with shared_sessions(INITIATOR, IQN, portals) as shared:
            device = await map_over(shared, lun, options)
            try:
                yield device, proxies
            finally:
                await device.close()
    finally:
        for proxy in proxies:
            await proxy.close()


class _Load:
    """Random writes then read-backs on ``device`` until ``finish``: the tests inject faults
    as the load makes progress, never after a guessed time."""

    def __init__(self, device: MultipathDevice, seed: int) -> None:
        self.device = device
        self.rng = random.Random(seed)
        self.written: dict[int, bytes] = {}
        self.done = 0
        self.worst = 0.0
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self.stop.is_set():
            lba = self.rng.randrange(0, 2048) * 8
            began = loop.time()
            if self.rng.random() < 0.5 or lba not in self.written:
                data = os.urandom(8 * BS)
                await self.device.write(lba, data)
                self.written[lba] = data
            else:
                assert bytes(await self.device.read(lba, 8)) == self.written[lba]
            self.worst = max(self.worst, loop.time() - began)
            self.done += 1

    async def progressed(self, ios: int) -> None:
        """Wait until ``ios`` more I/Os completed (or the load failed)."""
        target = self.done + ios
        await until(lambda: self.done >= target or self.task.done(), 30, f"{ios} more I/Os")
        if self.task.done():
            self.task.result()

    async def finish(self) -> tuple[int, float]:
        """Stop, check every block written reads back; (I/Os done, longest I/O)."""
        self.stop.set()
        await asyncio.wait_for(self.task, 60)
        for lba, data in self.written.items():
            assert bytes(await self.device.read(lba, 8)) == data
        return self.done, self.worst


def _states(device: MultipathDevice) -> list[str]:
    return [str(p["state"]) for p in device.status()["paths"]]


def _failures(device: MultipathDevice, index: int) -> int:
    return int(device.status()["paths"][index]["failures"])


def _failed_again(device: MultipathDevice, index: int) -> Callable[[], bool]:
    """True once path ``index`` has failed since this call."""
    before = _failures(device, index)
    return lambda: _failures(device, index) > before


async def _all_active(device: MultipathDevice) -> None:
    await until(lambda: set(_states(device)) == {"active"}, 15, "every path active")


def test_reset_and_restore_of_either_path_loses_nothing(tmp_path: Path) -> None:
    ports = [free_port(), free_port()]
    with running_target(tmp_path, IQN, ports, ["memory:16M"]):

        async def body() -> None:
            async with multipath(ports) as (device, proxies):
                assert device.num_blocks == 16 * 2048
                load = _Load(device, seed=1)
                for victim in (0, 1, 0):
                    # One path at a time: the other carries the I/O meanwhile.
                    await _all_active(device)
                    await load.progressed(30)
                    noticed = _failed_again(device, victim)
                    proxies[victim].reset()
                    await until(noticed, 15, f"path {victim} failed")
                await _all_active(device)
                await load.progressed(30)
                done, worst = await load.finish()
                assert done > 100
                assert worst < 1.0, f"a reset stalled I/O for {worst:.2f}s"

        asyncio.run(body())


def test_blackholed_path_is_failed_by_nop_timeout(tmp_path: Path) -> None:
    ports = [free_port(), free_port()]
    with running_target(tmp_path, IQN, ports, ["memory:16M"]):

        async def body() -> None:
            async with multipath(ports) as (device, proxies):
                load = _Load(device, seed=2)
                await load.progressed(20)
                proxies[0].blackhole()
                await until(lambda: _states(device)[0] == "failed", 10, "path 0 failed")
                await load.progressed(50)  # on the other path
                done, worst = await load.finish()
                assert done > 50
                assert worst < 5.0, f"a blackhole stalled I/O for {worst:.2f}s"
                # Logins through the blackhole cannot succeed: the path stays failed.
                assert _states(device)[0] == "failed"
                proxies[0].restore()

        asyncio.run(body())


def test_a_write_held_by_a_blackhole_never_overwrites_a_later_write(tmp_path: Path) -> None:
    """The first try of a write sits in a blackholed path (the proxy holds it, as a stalled
    port or a slow network would) and reaches the target after the path failed; the caller
    writes the same blocks again once its write is acknowledged. The map must not have
    acknowledged it through the other path while that first try could still land."""
    ports = [free_port(), free_port()]
    with running_target(tmp_path, IQN, ports, ["memory:16M"]):

        async def body() -> None:
            async with multipath(ports) as (device, proxies):
                old, first, second = (os.urandom(8 * BS) for _ in range(3))
                await device.write(0, old)
                # Every I/O of one caller goes to the same path (service-time, by name).
                busy = min(range(2), key=lambda i: device.slots[i].label)
                proxies[busy].blackhole()

                async def caller() -> None:
                    await device.write(0, first)
                    await device.write(0, second)

                task = asyncio.create_task(caller())
                await until(lambda: task.done() or device.in_doubt == 1, 10, "held or acknowledged")
                before = proxies[busy].bytes_to_target
                proxies[busy].restore()  # the held first try goes on to the target
                await until(lambda: proxies[busy].bytes_to_target > before, 10, "first try sent")
                await asyncio.wait_for(task, 15)
                await _all_active(device)
                got = bytes(await device.read(0, 8))
                assert got == second, "an acknowledged write was overwritten by an earlier one"

        asyncio.run(body())


def test_all_paths_down_queues_then_resumes_or_fails(tmp_path: Path) -> None:
    ports = [free_port(), free_port()]
    with running_target(tmp_path, IQN, ports, ["memory:16M"]):

        async def body() -> None:
            async with multipath(ports, no_path_retry="3") as (device, proxies):
                data = os.urandom(BS * 8)
                for proxy in proxies:
                    proxy.down()
                # Back within the bound: the queued write completes without error.
                write = asyncio.create_task(device.write(0, data))
                await until(lambda: device.queued == 1, 10, "the write waits for a path")
                assert not write.done()
                proxies[1].up()
                await asyncio.wait_for(write, 10)
                assert bytes(await device.read(0, 8)) == data
                # Down past the bound: a clear error, and the device stays usable.
                proxies[1].down()
                started = asyncio.get_running_loop().time()
                with pytest.raises(DeviceNotReady, match="all paths"):
                    await device.read(0, 8)
                waited = asyncio.get_running_loop().time() - started
                assert waited >= 2.5
                for proxy in proxies:
                    proxy.up()
                await until(lambda: "active" in _states(device), 15, "a path back")
                assert bytes(await device.read(0, 8)) == data

        asyncio.run(body())


def test_close_with_io_queued_on_dead_paths_ends_every_io(tmp_path: Path) -> None:
    ports = [free_port(), free_port()]
    with running_target(tmp_path, IQN, ports, ["memory:16M"]):

        async def body() -> None:
            before = len(asyncio.all_tasks())
            async with multipath(ports, no_path_retry="queue") as (device, proxies):
                for proxy in proxies:
                    proxy.down()
                ios = [asyncio.create_task(device.read(i * 8, 8)) for i in range(32)]
                await until(lambda: device.queued == 32, 10, "every read waits for a path")
                await device.close()
                results = await asyncio.wait_for(asyncio.gather(*ios, return_exceptions=True), 10)
                assert all(isinstance(r, DeviceNotReady) for r in results)
            assert len(asyncio.all_tasks()) <= before

        asyncio.run(body())


@asynccontextmanager
async def two_nodes(
    ports: list[int],
) -> AsyncIterator[tuple[list[MultipathDevice], list[FaultProxy]]]:
    """Two hosts (two initiator names), each with one shared session per proxy and a map
    of LUN 0 over them."""
    proxies = [await FaultProxy("127.0.0.1", port).start() for port in ports]
    portals = [PathAddress("127.0.0.1", p.listen_port) for p in proxies]
    nodes: list[MultipathDevice] = []
    try:
        async with contextlib.AsyncExitStack() as stack:
            for n in (1, 2):
                name = f"{INITIATOR}-{n}"
                shared = await stack.enter_async_context(
                    shared_sessions(name, IQN, portals, SessionOptions())
                )
                options = MultipathOptions(checker_interval=0.2)
                node = await map_over(shared, 0, options)
                stack.push_async_callback(node.close)
                nodes.append(node)
            yield nodes, proxies
    finally:
        for proxy in proxies:
            await proxy.close()


def test_reservations_over_multipath_fence_a_node_on_every_path(tmp_path: Path) -> None:
    ports = [free_port(), free_port()]
    with running_target(tmp_path, IQN, ports, ["memory:16M"]):

        async def body() -> None:
            async with two_nodes(ports) as ((node1, node2), proxies):
                # Node 1 registers while its second path is down; that path must be
                # registered when it comes back, before it carries I/O.
                proxies[1].down()
                await until(lambda: _states(node1)[1] == "failed", 10, "node 1's path 1 down")
                await node1.pr_register(0x1111)
                proxies[1].up()
                await node2.pr_register(0x2222)
                # A path is active only once registered: with every path of both nodes
                # active, every I_T nexus holds its node's key.
                await _all_active(node1)
                await _all_active(node2)
                keys = await node1.pr_read_keys()
                assert sorted(keys.reservation_keys) == [0x1111, 0x1111, 0x2222, 0x2222]
                we_ro = PRType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY
                await node1.pr_reserve(we_ro)
                await node1.pr_preempt(0x2222, we_ro, abort=True)
                # The fenced node gets RESERVATION CONFLICT on every path: an error for the
                # caller, never a path failure.
                for _ in range(4):
                    with pytest.raises(ReservationConflict):
                        await node2.write(0, bytes(BS))
                assert all(p["state"] == "active" for p in node2.status()["paths"])
                assert bytes(await node2.read(0, 1)) == bytes(BS)
                await node1.write(0, b"\x01" * BS)
                reservation = await node2.pr_read_reservation()
                assert (reservation.reservation_key, reservation.pr_type) == (0x1111, we_ro)

        asyncio.run(body())


def test_release_and_clear_over_multipath_with_a_dead_path(tmp_path: Path) -> None:
    """RELEASE goes down every path (only the holder's nexus releases): a dead other path
    is failed and does not stop it. CLEAR goes down one path: when that one is dead
    (blackholed, noticed by the NOP timeout) the other carries it."""
    ports = [free_port(), free_port()]
    with running_target(tmp_path, IQN, ports, ["memory:16M"]):

        async def body() -> None:
            async with two_nodes(ports) as ((node1, node2), proxies):
                await node1.pr_register(0xA1)
                await node2.pr_register(0xB2)
                await node1.pr_reserve(PRType.WRITE_EXCLUSIVE)
                with pytest.raises(ReservationConflict):
                    await node2.write(0, bytes(BS))
                proxies[1].blackhole()
                await node1.pr_release(PRType.WRITE_EXCLUSIVE)
                assert _states(node1)[1] == "failed"
                assert (await node2.pr_read_reservation()).pr_type is None
                await node2.write(0, b"\x02" * BS)  # no reservation: anyone writes
                proxies[1].restore()
                await _all_active(node1)
                await _all_active(node2)
                keys = await node2.pr_read_keys()
                assert sorted(keys.reservation_keys) == [0xA1, 0xA1, 0xB2, 0xB2]
                await node1.pr_reserve(PRType.WRITE_EXCLUSIVE)
                proxies[0].blackhole()  # node 1's first path: its CLEAR goes there first
                await node1.pr_clear()
                assert _states(node1)[0] == "failed"
                assert (await node2.pr_read_keys()).reservation_keys == ()
                assert (await node2.pr_read_reservation()).pr_type is None
                # Back after the CLEAR, node 1's path must not bring its old key back (node
                # 2 does not know of the CLEAR: its returning path may re-register 0xB2).
                proxies[0].restore()
                await _all_active(node1)
                assert 0xA1 not in (await node1.pr_read_keys()).reservation_keys
                await node2.write(0, b"\x03" * BS)
                assert bytes(await node1.read(0, 1)) == b"\x03" * BS

        asyncio.run(body())


def test_alua_standby_moves_io_to_the_optimized_path_without_errors(tmp_path: Path) -> None:
    ports = [free_port(), free_port()]
    with running_target(tmp_path, IQN, ports, ["memory:16M"]) as daemon:

        async def set_state(tag: int, state: str) -> None:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "sanstack.cli.main", "target", "alua", IQN, str(tag),
                state, "--control", str(daemon.control),
            )  # fmt: skip
            assert await asyncio.wait_for(process.wait(), 60) == 0

        def groups(device: MultipathDevice) -> list[tuple[object, object]]:
            return sorted((p["alua"], p["active_group"]) for p in device.status()["paths"])

        async def body() -> None:
            async with multipath(ports) as (device, _proxies):
                load = _Load(device, seed=3)
                await load.progressed(20)
                await set_state(1, "standby")
                standby = [("active_optimized", True), ("standby", False)]
                await until(lambda: groups(device) == standby, 10, "port group 1 standby")
                await load.progressed(20)  # on the optimized path alone
                await set_state(1, "active-optimized")
                both = [("active_optimized", True)] * 2
                await until(lambda: groups(device) == both, 10, "both paths optimized")
                done, _worst = await load.finish()
                assert done >= 40

        asyncio.run(body())


def test_paths_are_grouped_by_identity_and_shared_paths_come_and_go(tmp_path: Path) -> None:
    ports = [free_port(), free_port()]
    with running_target(tmp_path, IQN, ports, ["memory:8M", "memory:16M", "memory:4M"]):

        async def body() -> None:
            portals = [PathAddress("127.0.0.1", port) for port in ports]
            async with shared_sessions(INITIATOR, IQN, portals) as shared:
                # What the host's scan reads through every session, grouped as it does.
                identified = []
                for s in shared:
                    assert s.session is not None
                    numbers = await report_luns(s.session)
                    assert numbers == [0, 1, 2]
                    for n in numbers:
                        lun = await ISCSIDevice.open(s.session, n)
                        identified.append((s, n, lun.identity.naa.hex()))
                found = group_new(identified, (), {}, lambda s: s.target).maps
                assert len(found) == 3
                assert all({s for s, _n in paths} == set(shared) for paths in found.values())
                by_lun = {paths[0][1]: naa for naa, paths in found.items()}
                assert all(len({n for _s, n in paths}) == 1 for paths in found.values())
                assert sorted(by_lun) == [0, 1, 2]
                options = MultipathOptions(checker_interval=0.2)
                device = await map_over(shared, 1, options)
                try:
                    assert device.identity.naa.hex() == by_lun[1]
                    load = _Load(device, seed=5)
                    await load.progressed(20)
                    # Taken away under load: I/O in flight on it ends with its answer.
                    await device.remove_shared_path(shared[0], 1)
                    assert [p["path"] for p in device.status()["paths"]] == [shared[1].name]
                    await load.progressed(20)
                    # A session reaching another device is refused as a path of this map.
                    with pytest.raises(ValueError, match="not this map's device"):
                        await device.add_shared_path(shared[0], 2)
                    await device.add_shared_path(shared[0], 1)
                    await load.progressed(20)
                    done, _worst = await load.finish()
                    assert done > 50
                    assert all(p["state"] == "active" for p in device.status()["paths"])
                    assert len(device.status()["paths"]) == 2
                finally:
                    await device.close()

        asyncio.run(body())
