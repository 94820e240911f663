"""The two MPIO failures of ../shared/seeds, reproduced against sanstack's host: one shared
session per portal (``SessionPool``) and a multipath map per LUN over them.

KB963702: with more than 30 LUNs, a path failover under stress when no path is left freed a
device object that queued work still used (a crash). Here: 256 maps over the host's two
sessions under I/O and persistent-reservation work, every path lost (both sessions fail,
every map at once), maps closed while I/O is queued on them. Every I/O must end with
success or a clear ``DeviceNotReady``; no unhandled exception, no task left behind.

KB967724: with more than 30 LUNs at startup, the cluster's reservation work and MPIO's work
items deadlocked on a shared work queue. Here: 256 maps opened at once over the two sessions
while the second one flaps, each registering (on both I_T nexuses, again on every re-login)
and reserving at once (a cluster's disk arbitration at boot). All of it must finish within
a bound: nothing waits behind another LUN's work.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from pathlib import Path

import pytest
from tests.support.processes import free_port, running_target
from tests.support.shared_maps import map_over, shared_sessions
from tests.support.waits import until

from sanstack.block.device import DeviceNotReady
from sanstack.mpio.device import MultipathDevice
from sanstack.mpio.no_path import NoPathRetry
from sanstack.mpio.path_slot import (
    MultipathOptions,
    PathAddress,
)
from sanstack.scsi.pr_codec import PRType
from sanstack.tools.fault_proxy import FaultProxy

pytestmark = pytest.mark.interop
IQN = "iqn.2026-11.org.sanstack:kb"
LUNS = 256
NODE = "iqn.2026-11.org.sanstack:cluster-node-1"


def _options(no_path_retry: str) -> MultipathOptions:
    return MultipathOptions(no_path_retry=NoPathRetry.parse(no_path_retry), checker_interval=0.3)


@pytest.mark.timeout(300)
def test_kb963702_no_path_left_under_stress_with_many_luns(tmp_path: Path) -> None:
    ports = [free_port(), free_port()]
    with running_target(tmp_path, IQN, ports, ["memory:1M"] * LUNS):

        async def body() -> None:
            loop = asyncio.get_running_loop()
            unhandled: list[dict[str, object]] = []
            loop.set_exception_handler(lambda _l, context: unhandled.append(context))
            tasks_before = len(asyncio.all_tasks())
            proxies = [await FaultProxy("127.0.0.1", port).start() for port in ports]
            portals = [PathAddress("127.0.0.1", p.listen_port) for p in proxies]
            async with shared_sessions(NODE, IQN, portals) as shared:
                devices = await asyncio.gather(
                    *(map_over(shared, n, _options("queue")) for n in range(LUNS))
                )
                await asyncio.gather(*(d.pr_register(0x1000 + d.lun) for d in devices))
                rng = random.Random(963702)
                succeeded = [0]

                async def stress(device: MultipathDevice) -> list[BaseException | None]:
                    outcomes: list[BaseException | None] = []
                    for _ in range(200):
                        try:
                            if rng.random() < 0.1:
                                await device.pr_register(0x1000 + device.lun)
                            else:
                                await device.write(rng.randrange(0, 256) * 8, bytes(4096))
                            outcomes.append(None)
                            succeeded[0] += 1
                        except DeviceNotReady as exc:
                            outcomes.append(exc)
                            break
                    return outcomes

                work = [asyncio.create_task(stress(d)) for d in devices]
                await until(lambda: succeeded[0] >= 5 * LUNS, 60, "I/O and PR work under way")
                for proxy in proxies:  # every path gone while I/O and PR work are in flight
                    proxy.down()

                def stalled() -> bool:
                    """Every path of every map failed, and each map's work either waits
                    for a path (queued) or has ended."""
                    return all(
                        d.health() == "all paths down" and (d.queued or w.done())
                        for d, w in zip(devices, work, strict=True)
                    )

                await until(stalled, 30, "every map's work queued on dead paths")
                # Tear the maps down with I/O queued on dead paths: the KB's use-after-free.
                await asyncio.gather(*(d.close() for d in devices))
                outcomes = await asyncio.wait_for(asyncio.gather(*work), 30)
                for per_device in outcomes:
                    for outcome in per_device:
                        assert outcome is None or isinstance(outcome, DeviceNotReady)
                assert sum(1 for per in outcomes if per and per[-1] is not None) >= LUNS // 2
            for proxy in proxies:
                await proxy.close()
            await until(lambda: len(asyncio.all_tasks()) <= tasks_before, 10, "tasks ended")
            assert not unhandled, unhandled[:3]

        asyncio.run(body())


@pytest.mark.timeout(300)
def test_kb967724_many_luns_arbitrate_at_startup_without_waiting_on_each_other(
    tmp_path: Path,
) -> None:
    ports = [free_port(), free_port()]
    with running_target(tmp_path, IQN, ports, ["memory:1M"] * LUNS):

        async def body() -> None:
            proxies = [await FaultProxy("127.0.0.1", port).start() for port in ports]
            portals = [PathAddress("127.0.0.1", p.listen_port) for p in proxies]

            async def flap() -> None:
                while True:
                    proxies[1].reset()
                    await asyncio.sleep(0.3)

            async with shared_sessions(NODE, IQN, portals) as shared:
                flapping = asyncio.create_task(flap())
                logins = shared[1].logins

                def key_of(device: MultipathDevice) -> int:
                    return 0xC1_0000 + device.lun

                async def arbitrate(lun: int) -> MultipathDevice:
                    device = await map_over(shared, lun, _options("30"))
                    await device.pr_register(key_of(device))
                    await device.pr_reserve(PRType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY)
                    reservation = await device.pr_read_reservation()
                    assert reservation.reservation_key == key_of(device)
                    return device

                started = asyncio.get_running_loop().time()
                try:
                    devices = await asyncio.wait_for(
                        asyncio.gather(*(arbitrate(n) for n in range(LUNS))), 120
                    )
                    # Every map registers again, all at once, round after round, until the
                    # flapping session has come back (and every map re-registered its key
                    # on it) several times meanwhile.
                    while shared[1].logins < logins + 4:
                        await asyncio.wait_for(
                            asyncio.gather(*(d.pr_register(key_of(d)) for d in devices)), 60
                        )
                        assert asyncio.get_running_loop().time() - started < 120
                finally:
                    flapping.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await flapping
                elapsed = asyncio.get_running_loop().time() - started
                assert elapsed < 120
                # Every map usable on both paths within a bound, its key on both nexuses.
                await until(
                    lambda: all(
                        p["state"] == "active" for d in devices for p in d.status()["paths"]
                    ),
                    30,
                    "every map's two paths active",
                )
                await asyncio.wait_for(
                    asyncio.gather(*(d.write(0, bytes(4096)) for d in devices)), 30
                )
                for device in devices:
                    keys = (await device.pr_read_keys()).reservation_keys
                    assert sorted(keys) == [key_of(device)] * 2
                await asyncio.gather(*(d.close() for d in devices))
            for proxy in proxies:
                await proxy.close()

        asyncio.run(body())
