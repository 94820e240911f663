"""Benchmark sanstack's multipath device: I/O stalls under path faults, throughput vs one path.

Not a test: run it by hand (docs/benchmarks.md has the exact command and the figures).

One run starts a sanstack target with two portals on 127.0.0.1 (free ports) and one LUN on
a fully written backing file (page cache warmed), then, in this one asyncio process:

1. **Stalls under faults.** A ``FaultProxy`` sits in front of each portal; the LUN is
   reached as the host reaches it: one shared session per portal (a ``SessionPool`` with
   the default ``SessionOptions``: NOP interval/timeout) and a ``MultipathDevice`` over
   them (default ``MultipathOptions``: service-time, checker interval) reads through
   both. A steady load (``--readers`` concurrent 4 KiB random reads) runs throughout and
   every I/O's latency is recorded. Each fault kind is
   injected ``--repeat`` times on the path that carried the most I/O in the clean load
   just before, with ``--clean`` seconds of clean load between injections:
   ``reset`` (RST on every connection), ``blackhole`` (10 s, silent), ``down`` (5 s,
   connections reset and connects refused) and ``delay`` (0.5 s each way for 5 s).
   Per injection: the longest I/O latency among the I/Os in flight during the fault
   window, the p99 of those I/Os, the longest time with no I/O completing, whether the
   path was failed and how long it took to be active again, and failed I/Os (must be 0).
2. **Throughput vs one path.** Without proxies and without faults: 4 KiB random read IOPS
   at queue depth 32 and 1 MiB sequential read MiB/s at queue depth 8 through the
   multipath device (service-time and round-robin, both shared sessions) and through one
   ``ISCSIDevice`` on one ``ISCSISession`` to one portal; the ratios multipath/single.

Everything (initiator, multipath layer, proxies, load generator) runs in this one Python
process and the target in another, on the same machine's cores over loopback TCP.

Exit status: 0 all I/O succeeded and the target stopped cleanly, 1 otherwise.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import importlib.metadata
import json
import logging
import math
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.multipath_report import (
    FAULTS,
    FaultKind,
    busiest_path,
    format_report,
    longest_gap,
    overlapping,
    percentile,
    summarise_faults,
)
from bench.target_vs_tgt import machine_info
from bench.targets import (
    MIB,
    SANSTACK_IQN,
    BenchError,
    SanstackTarget,
    free_port,
    log,
    machine_busy_seconds,
    process_cpu_seconds,
    tail,
    wait_listening,
    warm_page_cache,
    write_backing_file,
)
from sanstack.block.device import BlockDevice
from sanstack.host.isids import IsidStore
from sanstack.host.sessions import SessionOptions, SessionPool
from sanstack.initiator.lun_device import ISCSIDevice
from sanstack.initiator.session import ISCSISession
from sanstack.mpio.device import MultipathDevice
from sanstack.mpio.path_slot import (
    MultipathOptions,
    PathAddress,
)
from sanstack.tools.fault_proxy import FaultProxy

INITIATOR = "iqn.2026-01.org.sanstack.bench:multipath-initiator"
HOST = "127.0.0.1"
SMALL = 4096
LARGE = MIB
OPEN_TIMEOUT = 60.0
DRAIN_TIMEOUT = 120.0
MONITOR_INTERVAL = 0.02
SESSION_OPTIONS = SessionOptions()  # the host's defaults: NOP every 1 s, 2 s to answer
now = time.monotonic  # not loop.time(): uvloop's has a 1 ms resolution


# ---------------------------------------------------------------- the target


class TwoPortalTarget(SanstackTarget):
    """bench.targets.SanstackTarget with a second portal (its own portal group)."""

    def __init__(self, python: str, workdir: Path, backing: Path, size: int) -> None:
        super().__init__(python, workdir, backing, size)
        self.port2 = free_port()
        at = self.args.index("--portal") + 2
        self.args[at:at] = ["--portal", f"{HOST}:{self.port2}"]

    @property
    def ports(self) -> list[int]:
        return [self.port, self.port2]

    def start(self, timeout: float = 60.0) -> None:
        super().start(timeout)
        assert self.process is not None
        wait_listening(self.process, self.port2, 10.0)


# ---------------------------------------------------------------- load with latencies


class Recorder:
    """Start and end of every completed I/O, failures, and what each reader has in flight."""

    def __init__(self, readers: int) -> None:
        self.starts = array.array("d")
        self.ends = array.array("d")
        self.failures: list[tuple[float, str]] = []
        self.in_flight: list[float | None] = [None] * readers

    def clear(self) -> None:
        self.starts = array.array("d")
        self.ends = array.array("d")


async def latency_reader(
    index: int, device: BlockDevice, recorder: Recorder, stop: asyncio.Event
) -> None:
    rng = random.Random(index)
    count = SMALL // device.block_size
    slots = device.num_blocks // count
    while not stop.is_set():
        lba = rng.randrange(slots) * count
        started = now()
        recorder.in_flight[index] = started
        try:
            data = await device.read(lba, count)
            if len(data) != SMALL:
                recorder.failures.append((now(), f"short read {len(data)} at {lba}"))
        except Exception as exc:  # every failure is a finding: record it, keep going
            recorder.failures.append((now(), f"{type(exc).__name__}: {exc}"))
            await asyncio.sleep(0.01)
        ended = now()
        recorder.in_flight[index] = None
        recorder.starts.append(started)
        recorder.ends.append(ended)


@dataclass
class Injection:
    kind: str
    number: int
    path: str
    max_latency_s: float
    p99_s: float
    p50_s: float
    ios: int
    window_iops: float
    failed: int  # I/O errors from the clean load before it to the end of its window
    longest_gap_s: float
    path_failed: bool
    back_after_s: float | None  # fault end -> path active again (None: never failed/back)
    clean_p99_s: float
    clean_iops: float


def path_states(device: MultipathDevice) -> list[str]:
    return [str(p["state"]) for p in device.status()["paths"]]


def completed(device: MultipathDevice) -> list[int]:
    return [int(p["completed"]) for p in device.status()["paths"]]


async def wait_until(check: Callable[[], bool], limit: float) -> float | None:
    """Poll ``check``; seconds it took, or None on timeout."""
    began = now()
    while not check():
        if now() - began > limit:
            return None
        await asyncio.sleep(MONITOR_INTERVAL)
    return now() - began


def set_fault(kind: str, proxy: FaultProxy, *, on: bool) -> None:
    """Start (``on``) or end fault ``kind`` on ``proxy``; ending is idempotent."""
    if kind == "blackhole":
        proxy.blackhole() if on else proxy.restore()
    elif kind == "down":
        proxy.down() if on else proxy.up()
    elif kind == "delay":
        proxy.delay(0.5 if on else None)
    elif on:
        proxy.reset()


@dataclass
class FaultRun:
    device: MultipathDevice
    proxies: Sequence[FaultProxy]
    recorder: Recorder
    clean: float
    problems: list[str]


async def inject(run: FaultRun, kind: FaultKind, number: int) -> Injection:
    device, recorder, clean, problems = run.device, run.recorder, run.clean, run.problems
    if await wait_until(lambda: set(path_states(device)) == {"active"}, 30) is None:
        problems.append(
            f"{kind.name} #{number}: not every path active before it: {device.status()}"
        )
    recorder.clear()
    failures_before = len(recorder.failures)
    before = completed(device)
    clean_began = now()
    await asyncio.sleep(clean)
    after = completed(device)
    target = busiest_path(before, after, path_states(device))
    proxy = run.proxies[target]
    failed_at: float | None = None
    back_at: float | None = None
    failures = device.status()["paths"][target]["failures"]

    def watch() -> bool:
        """Polls the path; its failure counter catches a fail + reinstate between polls."""
        nonlocal failed_at, back_at
        path = device.status()["paths"][target]
        active = path["state"] == "active"
        if failed_at is None and (not active or path["failures"] != failures):
            failed_at = now()
        if active and failed_at is not None and back_at is None:
            back_at = now()
        return False

    began = ended = now()
    set_fault(kind.name, proxy, on=True)
    monitor = asyncio.create_task(wait_until(watch, 3600))
    try:
        await asyncio.sleep(kind.holds)
        set_fault(kind.name, proxy, on=False)
        ended = now()
        await asyncio.sleep(max(0.0, began + kind.window - now()))
        if await wait_until(lambda: failed_at is None or back_at is not None, 30) is None:
            problems.append(f"{kind.name} #{number}: path {target + 1} not active again in 30s")
    finally:
        monitor.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await monitor
        set_fault(kind.name, proxy, on=False)  # again: an error above must not leave it
    window_end = began + kind.window
    path_failed = failed_at is not None
    back_after = None if back_at is None else back_at - ended

    def drained() -> bool:
        return all(s is None or s >= window_end for s in recorder.in_flight)

    if await wait_until(drained, DRAIN_TIMEOUT) is None:
        problems.append(f"{kind.name} #{number}: I/O still in flight {DRAIN_TIMEOUT:.0f}s later")
    starts, ends = recorder.starts, recorder.ends
    lat = overlapping(starts, ends, began, window_end)
    clean_lat = [e - s for s, e in zip(starts, ends, strict=True) if clean_began <= s and e < began]
    return Injection(
        kind=kind.name,
        number=number,
        path=f"{target + 1} ({proxy.listen_port})",
        max_latency_s=max(lat, default=0.0),
        p99_s=percentile(lat, 99),
        p50_s=percentile(lat, 50),
        ios=len(lat),
        window_iops=sum(began <= e < window_end for e in ends) / kind.window,
        failed=len(recorder.failures) - failures_before,
        longest_gap_s=longest_gap(ends, began, window_end),
        path_failed=path_failed,
        back_after_s=back_after,
        clean_p99_s=percentile(clean_lat, 99),
        clean_iops=len(clean_lat) / clean,
    )


async def fault_phase(
    ports: Sequence[int], kinds: Sequence[FaultKind], args: argparse.Namespace, problems: list[str]
) -> tuple[list[Injection], dict[str, Any], list[str]]:
    proxies: list[FaultProxy] = []
    device: MultipathDevice | None = None
    recorder = Recorder(args.readers)
    stop = asyncio.Event()
    readers: list[asyncio.Task[None]] = []
    injections: list[Injection] = []
    options = MultipathOptions()
    close_map: Callable[[], Awaitable[None]] | None = None
    try:
        for port in ports:
            proxies.append(await FaultProxy(HOST, port).start())
        device, close_map = await open_map([p.listen_port for p in proxies], options)
        readers = [
            asyncio.create_task(latency_reader(i, device, recorder, stop))
            for i in range(args.readers)
        ]
        run = FaultRun(device, proxies, recorder, args.clean, problems)
        for kind in kinds:
            for number in range(1, args.repeat + 1):
                one = await inject(run, kind, number)
                injections.append(one)
                log(
                    f"{kind.name:9} #{number} path {one.path}: "
                    f"max {one.max_latency_s * 1000:8.1f} ms"
                    f"  p99 {one.p99_s * 1000:7.1f} ms  gap {one.longest_gap_s * 1000:7.1f} ms"
                    f"  failed-over {'yes' if one.path_failed else 'no '}"
                    f"  back after {_seconds(one.back_after_s)}  I/O errors {one.failed}"
                )
    finally:
        stop.set()
        if readers:
            _done, pending = await asyncio.wait(readers, timeout=DRAIN_TIMEOUT)
            for task in pending:
                task.cancel()
                problems.append("a reader did not finish its last I/O in 120s after the run")
        status = device.status() if device is not None else {}
        if close_map is not None:
            await asyncio.wait_for(close_map(), 30)
        for proxy in proxies:
            await proxy.close()
    errors = [f"{t:.3f} {m}" for t, m in recorder.failures]
    extra = {"options": options_dict(options, SESSION_OPTIONS), "final_status": status}
    return injections, extra, errors


async def open_map(
    ports: Sequence[int], options: MultipathOptions
) -> tuple[MultipathDevice, Callable[[], Awaitable[None]]]:
    """LUN 0 as the host reaches it: one shared session per portal (``SessionPool``, the
    host's ISIDs kept in memory) and a ``MultipathDevice`` over them; the closer closes the
    map, then the sessions. Raises ``BenchError`` when a portal does not log in in time."""
    pool = SessionPool(INITIATOR, IsidStore(None), SESSION_OPTIONS)
    try:
        shared = [pool.session(SANSTACK_IQN, PathAddress(HOST, port)) for port in ports]
        for session in shared:
            if not await session.wait_up(OPEN_TIMEOUT):
                raise BenchError(f"{session.name}: not logged in within {OPEN_TIMEOUT:.0f}s")
        device = await MultipathDevice.over(
            [(s, 0) for s in shared], options, target_name=SANSTACK_IQN, lun=0
        )
    except BaseException:
        await pool.close()
        raise

    async def close() -> None:
        await device.close()
        await pool.close()

    return device, close


def options_dict(options: MultipathOptions, sessions: SessionOptions) -> dict[str, Any]:
    return {
        "selector": options.selector,
        "nop_interval_s": sessions.nop_interval,
        "nop_timeout_s": sessions.nop_timeout,
        "checker_interval_s": options.checker_interval,
        "no_path_retry": f"{options.no_path_retry.policy.value} {options.no_path_retry.seconds}s",
    }


def _seconds(value: float | None) -> str:
    return "   -   " if value is None else f"{value:5.2f} s"


# ---------------------------------------------------------------- throughput


@dataclass(frozen=True)
class Workload:
    key: str
    title: str
    size: int
    depth: int
    random: bool
    unit: str


@dataclass
class ThroughputRun:
    config: str
    workload: str
    round: int
    value: float
    ios: int
    seconds: float
    bench_cpu_pct: float
    target_cpu_pct: float
    other_cpu_pct: float  # the machine's busy CPU beyond the two processes


CONFIGS = ("multipath service-time", "multipath round-robin", "single path")


async def throughput(
    device: BlockDevice, workload: Workload, seconds: float
) -> tuple[int, float, list[str]]:
    """(I/Os completed in the measured window, its length, errors); 0.5 s warm-up first."""
    count = workload.size // device.block_size
    slots = device.num_blocks // count
    state = {"done": 0, "next": 0, "measuring": False}
    errors: list[str] = []
    stop = asyncio.Event()

    async def worker(index: int) -> None:
        rng = random.Random(1000 + index)
        while not stop.is_set():
            if workload.random:
                slot = rng.randrange(slots)
            else:
                slot = state["next"]
                state["next"] = (slot + 1) % slots
            try:
                data = await device.read(slot * count, count)
                if len(data) != workload.size:
                    errors.append(f"short read {len(data)}")
            except Exception as exc:  # recorded and reported, never hidden
                errors.append(f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(0.01)
            if state["measuring"]:
                state["done"] += 1

    tasks = [asyncio.create_task(worker(i)) for i in range(workload.depth)]
    try:
        await asyncio.sleep(0.5)
        state["measuring"], began = True, now()
        await asyncio.sleep(seconds)
        state["measuring"], took = False, now() - began
    finally:
        stop.set()
        _done, pending = await asyncio.wait(tasks, timeout=DRAIN_TIMEOUT)
        for task in pending:
            task.cancel()
            errors.append("an I/O did not finish within 120 s of the end of the run")
    return int(state["done"]), took, errors


async def open_config(
    config: str, ports: Sequence[int]
) -> tuple[BlockDevice, Callable[[], Awaitable[None]]]:
    if config == "single path":
        session = await ISCSISession.connect(HOST, ports[0], SANSTACK_IQN, initiator_name=INITIATOR)
        single = await ISCSIDevice.open(session, 0)

        async def close_single() -> None:
            await single.close()
            await session.logout()

        return single, close_single
    selector = config.removeprefix("multipath ")
    options = MultipathOptions(selector=selector)
    multi, close_multi = await open_map(ports, options)
    if len([s for s in path_states(multi) if s == "active"]) != len(ports):
        await close_multi()
        raise BenchError(f"{config}: not every path is active: {multi.status()}")
    return multi, close_multi


async def throughput_phase(
    target: TwoPortalTarget, workloads: Sequence[Workload], args: argparse.Namespace
) -> tuple[list[ThroughputRun], list[str]]:
    runs: list[ThroughputRun] = []
    errors: list[str] = []
    for round_no in range(1, args.rounds + 1):
        shift = (round_no - 1) % len(CONFIGS)
        for config in CONFIGS[shift:] + CONFIGS[:shift]:
            device, close = await asyncio.wait_for(open_config(config, target.ports), OPEN_TIMEOUT)
            try:
                for workload in workloads:
                    cpu_self = process_cpu_seconds(os.getpid())
                    cpu_target = process_cpu_seconds(target.pid)
                    busy = machine_busy_seconds()
                    ios, took, failed = await throughput(device, workload, args.seconds)
                    wall = took + 0.5  # the CPU samples include the warm-up
                    bench = 100 * (process_cpu_seconds(os.getpid()) - cpu_self) / wall
                    tgt = 100 * (process_cpu_seconds(target.pid) - cpu_target) / wall
                    other = 100 * (machine_busy_seconds() - busy) / wall - bench - tgt
                    value = ios / took * (1 if workload.random else workload.size / MIB)
                    one = ThroughputRun(
                        config, workload.key, round_no, value, ios, took, bench, tgt, other
                    )
                    runs.append(one)
                    errors += [f"{config} {workload.key}: {e}" for e in failed]
                    log(
                        f"round {round_no} {workload.key:6} {config:24} {value:10,.1f} "
                        f"{workload.unit:5} CPU bench {bench:3.0f}% target {tgt:3.0f}% "
                        f"other {other:3.0f}%  errors {len(failed)}"
                    )
            finally:
                await asyncio.wait_for(close(), 30)
    return runs, errors


def summarise_throughput(
    workloads: Sequence[Workload], runs: Sequence[ThroughputRun]
) -> list[dict[str, Any]]:
    out = []
    for w in workloads:
        mine = {c: [r for r in runs if r.workload == w.key and r.config == c] for c in CONFIGS}
        median = {c: statistics.median(r.value for r in rs) for c, rs in mine.items() if rs}
        single = median.get("single path") or math.nan
        out.append(
            {
                "workload": asdict(w),
                "median": median,
                "ratio_over_single_path": {c: v / single for c, v in median.items()},
                "median_cpu_pct": {
                    c: {
                        "bench": statistics.median(r.bench_cpu_pct for r in rs),
                        "target": statistics.median(r.target_cpu_pct for r in rs),
                        "other": statistics.median(r.other_cpu_pct for r in rs),
                    }
                    for c, rs in mine.items()
                    if rs
                },
                "runs": {c: [r.value for r in rs] for c, rs in mine.items()},
            }
        )
    return out


# ---------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--seconds", type=float, default=None, help="per throughput run (10; quick 2)")
    add("--repeat", type=int, default=None, help="injections per fault kind (5; quick 1)")
    add("--rounds", type=int, default=None, help="throughput rounds, median (3; quick 1)")
    add("--clean", type=float, default=None, help="clean load before each injection (3 s)")
    add("--readers", type=int, default=16, help="concurrent 4 KiB readers (16)")
    add("--faults", default=",".join(f.name for f in FAULTS), help="comma-separated kinds")
    add("--size-mib", type=int, default=None, help="LUN size in MiB (1024; quick 256)")
    add("--no-throughput", action="store_true", help="the fault part only")
    add("--quick", action="store_true", help="a short smoke run")
    add("--python", default=sys.executable, help="runs sanstack's target")
    add("--dir", type=Path, default=None, help="parent of the temp dir")
    add("--keep", action="store_true", help="keep the temp dir and the target's log")
    add("--json", action="store_true", help="print JSON instead of tables")
    return parser


def resolve(args: argparse.Namespace) -> None:
    """Fill the defaults that --quick shortens."""
    quick = {"seconds": 2.0, "repeat": 1, "rounds": 1, "clean": 1.0, "size_mib": 256}
    full = {"seconds": 10.0, "repeat": 5, "rounds": 3, "clean": 3.0, "size_mib": 1024}
    for name, value in (quick if args.quick else full).items():
        if getattr(args, name) is None:
            setattr(args, name, value)


async def run_async(
    target: TwoPortalTarget, args: argparse.Namespace, kinds: Sequence[FaultKind]
) -> dict[str, Any]:
    problems: list[str] = []
    cpu = [time.monotonic(), machine_busy_seconds(), process_cpu_seconds(os.getpid())]
    cpu.append(process_cpu_seconds(target.pid))
    injections, extra, io_errors = await fault_phase(target.ports, kinds, args, problems)
    wall = time.monotonic() - cpu[0]
    bench = process_cpu_seconds(os.getpid()) - cpu[2]
    busy = machine_busy_seconds() - cpu[1]
    fault_cpu = {
        "bench": 100 * bench / wall,
        "target": 100 * (process_cpu_seconds(target.pid) - cpu[3]) / wall,
        "other": 100 * (busy - bench - process_cpu_seconds(target.pid) + cpu[3]) / wall,
    }
    workloads = [
        Workload("rand4k", "4 KiB random read, QD 32", SMALL, 32, True, "IOPS"),
        Workload("seq1m", "1 MiB sequential read, QD 8", LARGE, 8, False, "MiB/s"),
    ]
    runs: list[ThroughputRun] = []
    if not args.no_throughput:
        if not target.alive():
            raise BenchError("the target is not running after the fault part")
        runs, errors = await throughput_phase(target, workloads, args)
        io_errors += errors
    return {
        "multipath_options": extra["options"],
        "final_multipath_status": extra["final_status"],
        "faults": summarise_faults(injections),
        "fault_part_cpu_pct": fault_cpu,
        "throughput": summarise_throughput(workloads, runs) if runs else [],
        "injections": [asdict(i) for i in injections],
        "throughput_runs": [asdict(r) for r in runs],
        "io_errors": io_errors,
        "problems": problems,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    resolve(args)
    by_name = {f.name: f for f in FAULTS}
    wanted = [w for w in args.faults.split(",") if w]
    if any(w not in by_name for w in wanted):
        parser.error(f"--faults: choose among {', '.join(by_name)}")
    if min(args.seconds, args.repeat, args.rounds, args.readers, args.size_mib, args.clean) <= 0:
        parser.error("--seconds, --repeat, --rounds, --readers, --size-mib, --clean must be > 0")
    logging.basicConfig(stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    size = args.size_mib * MIB
    workdir = Path(tempfile.mkdtemp(prefix="sanstack-mpbench-", dir=args.dir))
    target: TwoPortalTarget | None = None
    report: dict[str, Any] = {"problems": [], "io_errors": []}
    failures: list[str] = []
    info = machine_info()
    try:
        backing = workdir / "lun0.img"
        began = time.monotonic()
        write_backing_file(backing, size)
        log(f"wrote {backing} ({args.size_mib} MiB) in {time.monotonic() - began:.1f}s")
        log(f"page cache warmed: read it once in {warm_page_cache(backing):.2f}s")
        target = TwoPortalTarget(args.python, workdir, backing, size)
        target.start()
        log(f"target pid {target.pid}, portals {HOST}:{target.port} and {HOST}:{target.port2}")
        try:
            import uvloop

            runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
            loop_name = f"uvloop {importlib.metadata.version('uvloop')}"
        except ImportError:
            runner, loop_name = asyncio.Runner(), "asyncio"
        with runner:
            report = runner.run(run_async(target, args, [by_name[w] for w in wanted]))
        report["event_loop"] = loop_name
    except Exception as exc:  # sanstack errors included: report them, stop the target
        failures.append(f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}")
    finally:
        if target is not None:
            target.stop()
            failures += [f"sanstack target {p}" for p in target.problems()]
            if failures or report["problems"]:
                failures.append(f"sanstack target stderr (tail):\n{tail(target.log_path)}")
        if args.keep or failures:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    report["problems"] += failures
    report.update(
        date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        machine=info,
        readers=args.readers,
        repeat=args.repeat,
        clean_s=args.clean,
        rounds=args.rounds,
        seconds=args.seconds,
        size_mib=args.size_mib,
        target_exit_code=target.exit_code if target is not None else None,
    )
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    elif "faults" in report:
        print(format_report(report))
    else:
        print("\n".join(f"PROBLEM: {p}" for p in report["problems"]))
    return 1 if report["problems"] or report["io_errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
