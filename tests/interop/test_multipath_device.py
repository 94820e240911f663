"""MultipathDevice against a real target process, each path through a fault proxy."""

from __future__ import annotations

import asyncio
import os
import random
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from tests.support.processes import free_port, running_target

from sanstack.block.device import DeviceNotReady
from sanstack.initiator.lun_device import ReservationConflict
from sanstack.mpio.device import MultipathDevice, MultipathOptions, PathAddress
from sanstack.mpio.discovery import discover_devices
from sanstack.mpio.no_path import NoPathRetry
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
    proxies = [await FaultProxy("127.0.0.1", port).start() for port in ports]
    options = MultipathOptions(
        initiator_name=INITIATOR,
        no_path_retry=NoPathRetry.parse(no_path_retry),
        checker_interval=0.2,
        nop_interval=0.5,
        nop_timeout=1.0,
    )
    addresses = [PathAddress("127.0.0.1", p.listen_port) for p in proxies]
    device = await MultipathDevice.open(IQN, lun, addresses, options)
    try:
        yield device, proxies
    finally:
        await device.close()
        for proxy in proxies:
            await proxy.close()


async def _load(device: MultipathDevice, seconds: float, seed: int) -> tuple[int, float]:
    """Random writes then read-backs; returns (I/Os done, longest stall)."""
    rng = random.Random(seed)
    written: dict[int, bytes] = {}
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    done = 0
    worst = 0.0
    while loop.time() < end:
        lba = rng.randrange(0, 2048) * 8
        began = loop.time()
        if rng.random() < 0.5 or lba not in written:
            data = os.urandom(8 * BS)
            await device.write(lba, data)
            written[lba] = data
        else:
            assert bytes(await device.read(lba, 8)) == written[lba]
        worst = max(worst, loop.time() - began)
        done += 1
    for lba, data in written.items():
        assert bytes(await device.read(lba, 8)) == data
    return done, worst


def test_reset_and_restore_of_either_path_loses_nothing(tmp_path: Path) -> None:
    ports = [free_port(), free_port()]
    with running_target(tmp_path, IQN, ports, ["memory:16M"]):

        async def body() -> None:
            async with multipath(ports) as (device, proxies):
                assert device.num_blocks == 16 * 2048
                load = asyncio.create_task(_load(device, 4.0, seed=1))
                for victim in (0, 1, 0):
                    await asyncio.sleep(0.6)
                    proxies[victim].reset()
                done, worst = await load
                assert done > 100
                assert worst < 1.0, f"a reset stalled I/O for {worst:.2f}s"
                status = device.status()
                assert sum(p["failures"] for p in status["paths"]) >= 1

        asyncio.run(body())


def test_blackholed_path_is_failed_by_nop_timeout(tmp_path: Path) -> None:
    ports = [free_port(), free_port()]
    with running_target(tmp_path, IQN, ports, ["memory:16M"]):

        async def body() -> None:
            async with multipath(ports) as (device, proxies):
                load = asyncio.create_task(_load(device, 5.0, seed=2))
                await asyncio.sleep(0.5)
                proxies[0].blackhole()
                done, worst = await load
                assert done > 50
                assert worst < 5.0, f"a blackhole stalled I/O for {worst:.2f}s"
                assert device.status()["paths"][0]["state"] == "failed"
                proxies[0].restore()

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
                await asyncio.sleep(1.0)
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
                await asyncio.sleep(1.0)
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
                await asyncio.sleep(0.5)
                await device.close()
                results = await asyncio.wait_for(asyncio.gather(*ios, return_exceptions=True), 10)
                assert all(isinstance(r, DeviceNotReady) for r in results)
            assert len(asyncio.all_tasks()) <= before

        asyncio.run(body())


def test_reservations_over_multipath_fence_a_node_on_every_path(tmp_path: Path) -> None:
    ports = [free_port(), free_port()]
    with running_target(tmp_path, IQN, ports, ["memory:16M"]):

        async def body() -> None:
            proxies = [await FaultProxy("127.0.0.1", port).start() for port in ports]
            addresses = [PathAddress("127.0.0.1", p.listen_port) for p in proxies]

            def options(name: str) -> MultipathOptions:
                return MultipathOptions(initiator_name=name, checker_interval=0.2)

            node1 = await MultipathDevice.open(IQN, 0, addresses, options(f"{INITIATOR}-1"))
            node2 = await MultipathDevice.open(IQN, 0, addresses, options(f"{INITIATOR}-2"))
            try:
                # Node 1 registers while its second path is down; that path must be
                # registered when it comes back, before it carries I/O.
                proxies[1].down()
                await asyncio.sleep(0.5)
                await node1.pr_register(0x1111)
                proxies[1].up()
                await node2.pr_register(0x2222)
                for _ in range(50):
                    if all(p["state"] == "active" for p in node1.status()["paths"]):
                        break
                    await asyncio.sleep(0.1)
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
            finally:
                await node1.close()
                await node2.close()
                for proxy in proxies:
                    await proxy.close()

        asyncio.run(body())


def test_alua_standby_moves_io_to_the_optimized_path_without_errors(tmp_path: Path) -> None:
    ports = [free_port(), free_port()]
    with running_target(tmp_path, IQN, ports, ["memory:16M"]) as daemon:

        async def set_state(tag: int, state: str) -> None:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "sanstack.cli.main", "target", "alua", IQN, str(tag),
                state, "--control", str(daemon.control),
            )  # fmt: skip
            assert await process.wait() == 0

        async def body() -> None:
            async with multipath(ports) as (device, _proxies):
                load = asyncio.create_task(_load(device, 3.0, seed=3))
                await asyncio.sleep(0.5)
                await set_state(1, "standby")
                await asyncio.sleep(1.0)
                states = {
                    p["path"]: (p["alua"], p["active_group"]) for p in device.status()["paths"]
                }
                assert sorted(states.values()) == [("active_optimized", True), ("standby", False)]
                await set_state(1, "active-optimized")
                done, _worst = await load
                assert done > 50
                await asyncio.sleep(1.0)  # the checker re-reads the groups
                groups = [(p["alua"], p["active_group"]) for p in device.status()["paths"]]
                assert groups == [("active_optimized", True)] * 2

        asyncio.run(body())


def test_discovery_groups_paths_by_identity_and_paths_come_and_go(tmp_path: Path) -> None:
    ports = [free_port(), free_port()]
    with running_target(tmp_path, IQN, ports, ["memory:8M", "memory:16M", "memory:4M"]):

        async def body() -> None:
            addresses = [PathAddress("127.0.0.1", port) for port in ports]
            found = await discover_devices(addresses, IQN, initiator_name=INITIATOR)
            assert [d.lun for d in found] == [0, 1, 2]
            assert all(set(d.luns) == set(addresses) for d in found)
            assert len({d.naa for d in found}) == 3
            options = MultipathOptions(initiator_name=INITIATOR, checker_interval=0.2)
            device = await MultipathDevice.open(IQN, found[1].lun, addresses, options)
            try:
                assert device.identity.naa.hex() == found[1].naa
                load = asyncio.create_task(_load(device, 2.0, seed=5))
                await asyncio.sleep(0.5)
                await device.remove_path(addresses[0])  # I/O in flight re-driven, no error
                assert [p["path"] for p in device.status()["paths"]] == [str(addresses[1])]
                await device.add_path(addresses[0])
                done, _worst = await load
                assert done > 50
                assert all(p["state"] == "active" for p in device.status()["paths"])
            finally:
                await device.close()

        asyncio.run(body())
