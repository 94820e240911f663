"""64 LUNs over a host's two shared sessions (one per portal), random I/O on every map while
the paths are cut and restored at random.

Every read must return the data last acknowledged; no unhandled exception may be logged;
tasks and memory must come back to their starting level once the devices are closed.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import random
import tracemalloc
from pathlib import Path

import pytest
from tests.support.processes import free_port, running_target
from tests.support.shared_maps import map_over, shared_sessions
from tests.support.waits import until

from sanstack.mpio.device import MultipathDevice
from sanstack.mpio.no_path import NoPathRetry
from sanstack.mpio.path_slot import (
    MultipathOptions,
    PathAddress,
)
from sanstack.tools.fault_proxy import FaultProxy

pytestmark = pytest.mark.interop
IQN = "iqn.2026-11.org.sanstack:stress"
HOST = "iqn.2026-11.org.sanstack:stress-host"
LUNS = 64
SECONDS = float(os.environ.get("SANSTACK_STRESS_SECONDS", "60"))
BS = 512


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def _worker(
    device: MultipathDevice, rng: random.Random, stop: asyncio.Event, progress: list[int]
) -> int:
    model: dict[int, bytes] = {}
    done = 0
    while not stop.is_set():
        lba = rng.randrange(0, 64) * 8
        if rng.random() < 0.5 or lba not in model:
            data = rng.randbytes(8 * BS)
            await device.write(lba, data)
            model[lba] = data
        else:
            got = bytes(await device.read(lba, 8))
            assert got == model[lba], f"LUN {device.lun} LBA {lba}: stale or torn data"
        done += 1
        progress[0] += 1
    for lba, data in model.items():
        assert bytes(await device.read(lba, 8)) == data
    return done


async def _chaos(
    proxies: list[FaultProxy], rng: random.Random, stop: asyncio.Event, cuts: list[int]
) -> None:
    """Cut a random path now and then: the random pauses are the chaos, not waits."""
    while not stop.is_set():
        await asyncio.sleep(rng.uniform(0.3, 1.5))
        victim = rng.choice(proxies)
        kind = rng.choice(["reset", "down", "blackhole"])
        cuts[0] += 1
        if kind == "reset":
            victim.reset()
            continue
        victim.down() if kind == "down" else victim.blackhole()
        await asyncio.sleep(rng.uniform(0.2, 2.0))
        victim.up() if kind == "down" else victim.restore()
    for proxy in proxies:
        proxy.up()
        proxy.restore()


@pytest.mark.timeout(600)
def test_sixty_four_luns_survive_random_path_cuts(tmp_path: Path) -> None:
    ports = [free_port(), free_port()]
    errors = _Errors()
    logger = logging.getLogger("sanstack")
    logger.addHandler(errors)
    # Thousands of expected path-failure warnings: keep them out of pytest's capture, whose
    # stored records would hold their arguments alive and muddy the memory check.
    logger.propagate = False
    luns = [f"memory:{1}M" for _ in range(LUNS)]
    try:
        with running_target(tmp_path, IQN, ports, luns, extra=["--nop-interval", "5"]):

            async def body() -> None:
                loop = asyncio.get_running_loop()
                unhandled: list[dict[str, object]] = []
                loop.set_exception_handler(lambda _l, context: unhandled.append(context))
                gc.collect()
                tracemalloc.start(8)
                baseline = tracemalloc.take_snapshot()
                tasks_before = len(asyncio.all_tasks())
                memory_before = tracemalloc.get_traced_memory()[0]
                proxies = [await FaultProxy("127.0.0.1", port).start() for port in ports]
                portals = [PathAddress("127.0.0.1", p.listen_port) for p in proxies]
                options = MultipathOptions(
                    no_path_retry=NoPathRetry.parse("60"),
                    checker_interval=0.3,
                )
                async with shared_sessions(HOST, IQN, portals) as shared:
                    devices = await asyncio.gather(
                        *(map_over(shared, n, options) for n in range(LUNS))
                    )
                    stop = asyncio.Event()
                    rng = random.Random(4096)
                    progress, cuts = [0], [0]
                    workers = [
                        asyncio.create_task(_worker(d, random.Random(rng.random()), stop, progress))
                        for d in devices
                    ]
                    chaos = asyncio.create_task(_chaos(proxies, random.Random(7), stop, cuts))
                    await asyncio.sleep(SECONDS)  # the soak's length, not a wait for anything
                    # However slow the machine, the soak covers this many cuts and I/Os.
                    await until(
                        lambda: cuts[0] >= SECONDS / 3 and progress[0] > LUNS * 20,
                        SECONDS,
                        "enough path cuts and I/O",
                    )
                    stop.set()
                    await asyncio.wait_for(chaos, 30)
                    done = await asyncio.wait_for(asyncio.gather(*workers), 120)
                    assert sum(done) > LUNS * 20
                    assert any(p["failures"] for d in devices for p in d.status()["paths"]), (
                        "no path ever failed: the chaos did nothing"
                    )
                    await asyncio.gather(*(d.close() for d in devices))
                for proxy in proxies:
                    await proxy.close()
                del devices, workers
                await until(lambda: len(asyncio.all_tasks()) <= tasks_before, 10, "tasks ended")
                gc.collect()
                growth = tracemalloc.get_traced_memory()[0] - memory_before
                top = tracemalloc.take_snapshot().compare_to(baseline, "lineno")[:8]
                tracemalloc.stop()
                assert growth < 8 << 20, f"{growth} bytes still held after close: " + "\n".join(
                    str(stat) for stat in top
                )
                assert not unhandled, unhandled[:3]

            asyncio.run(body())
    finally:
        logger.removeHandler(errors)
        logger.propagate = True
    assert not errors.records, [r.getMessage() for r in errors.records[:5]]
