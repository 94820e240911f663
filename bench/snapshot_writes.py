"""Benchmark 4 KiB random writes on a SnapshotVolume as snapshots accumulate (issue 5).

Not a test: run it by hand (docs/benchmarks.md, "Snapshot volume writes", has the command
and the figures). Everything runs in this one process (uvloop if installed), on files in a
temp dir, at queue depth ``--qd`` (asyncio writers):

1. **Volume.** ``format_volume`` on a ``FileDevice`` sized so the whole run fits the
   snapshot reserve (bench/snapshot_report.py ``plan_run``), open, wait for the scan, and
   write every chunk once (prefill). Then for each snapshot count N (0, 1, 16, 64, 256):
   take snapshots one at a time until there are N, each followed by **one scattered
   overwrite pass** (a random ``--pass-percent`` of the chunks, 4 KiB each, so every
   snapshot owns that much preserved data); at N = 0 one pass without a snapshot. Then
   ``--rounds`` times:

   - *raw*: the peer, a raw ``FileDevice`` the size of the volume (fully written, no
     snapshot layer): 4 KiB random overwrites for ``--seconds`` to a random set of blocks
     as large as a pass (drawn anew at each count), i.e. the same working set as (a);
   - (a) *steady state*: 4 KiB random writes for ``--seconds`` to the chunks of the last
     pass, i.e. chunks already rewritten since the newest snapshot: in place;
   - (b) *first write after a snapshot*: one 4 KiB write to each of
     ``--first-writes / --rounds`` distinct chunks not written since the newest snapshot:
     each a redirect to a fresh chunk plus its share of a journal page write. At N = 0
     there is no snapshot, so (b) is a control (in place, measured the way (b) is).

   The volume is flushed (journal sealed, ``fdatasync``) before each timed run, so none
   starts with dirty pages of an earlier one. Running the raw peer next to (a) at every
   count keeps the ratio (a)/raw honest on a machine whose load drifts. ``--cpu N`` pins
   the process (event loop and file I/O threads) to one CPU: on a small VM the figures
   then measure the CPU cost of a write on one core, without the cost of waking threads
   on another (idle) core, which varies with what else runs.
2. **Peer, for reference** (once, before the volume): 4 KiB random overwrites over the
   whole raw file for ``--seconds`` (a working set 100 times larger: the cost of cache
   and TLB misses), and one 4 KiB write to each of ``--first-writes`` blocks of a fresh
   sparse file (what the file system charges for a block never written, which every
   redirect pays here: ``format`` leaves the pool sparse).

Figures per count: medians over the rounds of (a), (b) and raw in IOPS; (a)/(a at 0)
(flatness: the issue asks that a write's cost not grow with the number of snapshots);
the first-write cost (a)/(b) (the issue asks for at most 2); (a)/raw. CPU per write is
this process's (event loop + file I/O threads); "other CPU" is the rest of the machine
during the run (other jobs disturb a 2-core machine: check it before trusting a row).

Exit status: 0 if the run completed, 1 if anything failed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import importlib.metadata
import itertools
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.snapshot_report import (
    CHUNK,
    MIB,
    Level,
    Measure,
    RunPlan,
    SizingError,
    format_report,
    median_iops,
    plan_run,
    summarise,
)
from bench.target_vs_tgt import machine_info
from bench.targets import log, machine_busy_seconds
from sanstack.block.device import BlockDevice
from sanstack.block.file import FileDevice
from sanstack.snapshot.model import FormatOptions
from sanstack.snapshot.volume import SnapshotVolume, format_volume

BLOCK = 512
PER_CHUNK = CHUNK // BLOCK
DEFAULT_COUNTS = (0, 1, 16, 64, 256)


# -- timed write loops -----------------------------------------------------------------


class _Clock:
    """Wall time, this process's CPU time and the machine's busy time, from one start."""

    def __init__(self) -> None:
        self.wall = time.perf_counter()
        self.times = os.times()
        self.busy = machine_busy_seconds()

    def measure(self, writes: int) -> Measure:
        seconds = time.perf_counter() - self.wall
        times = os.times()
        user = times.user - self.times.user
        system = times.system - self.times.system
        other = max(0.0, machine_busy_seconds() - self.busy - user - system)
        return Measure(writes, seconds, user + system, other, system)


async def _drive(device: BlockDevice, chunks: Iterator[int], qd: int, deadline: float) -> int:
    """``qd`` writers take chunk numbers from one iterator until it ends or time is up."""
    data = os.urandom(CHUNK)
    done = 0

    async def writer() -> None:
        nonlocal done
        for v in chunks:
            await device.write(v * PER_CHUNK, data)
            done += 1
            if time.perf_counter() >= deadline:
                return

    await asyncio.gather(*(writer() for _ in range(qd)))
    return done


async def write_each(device: BlockDevice, chunks: Iterable[int], qd: int) -> Measure:
    """One 4 KiB write to each chunk, ``qd`` at a time."""
    clock = _Clock()
    done = await _drive(device, iter(chunks), qd, float("inf"))
    return clock.measure(done)


async def write_for(
    device: BlockDevice, chunks: Sequence[int], seconds: float, qd: int, rnd: random.Random
) -> Measure:
    """4 KiB writes to chunks drawn at random from ``chunks`` for ``seconds``."""
    stream = (chunks[int(rnd.random() * len(chunks))] for _ in itertools.count())
    clock = _Clock()
    done = await _drive(device, stream, qd, time.perf_counter() + seconds)
    return clock.measure(done)


# -- the peer --------------------------------------------------------------------------


def write_file(path: Path, size: int) -> None:
    """A fully written (not sparse) file, on disk, written 4 KiB at a time.

    4 KiB writes, as the volume's chunks are written: a file written in large writes gets
    large page-cache folios on Linux 6.x ext4, and a 4 KiB overwrite of one of those costs
    about twice as much CPU (measured here: 35-40 µs against 18-22 µs per write).
    """
    block = os.urandom(CHUNK)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        for offset in range(0, size, CHUNK):
            os.pwrite(fd, block, offset)
        os.fsync(fd)
    finally:
        os.close(fd)


class Peer:
    """The raw ``FileDevice`` (no snapshot layer) the volume's figures are compared with."""

    def __init__(self, path: Path, chunks: int, args: argparse.Namespace) -> None:
        self.device = FileDevice(path, BLOCK)
        self.chunks = chunks
        self.args = args
        self.rnd = random.Random(args.seed + 1)

    def scattered(self, count: int) -> list[int]:
        """A random set of blocks, the size of the volume's working set in (a)."""
        return self.rnd.sample(range(self.chunks), count)

    async def overwrite(self, blocks: Sequence[int]) -> Measure:
        """4 KiB overwrites of blocks drawn at random from ``blocks`` for ``--seconds``."""
        await self.device.flush()
        a = self.args
        return await write_for(self.device, blocks, a.seconds, a.qd, self.rnd)

    async def holes(self, path: Path) -> Measure:
        """One 4 KiB write to each of ``--first-writes`` blocks of a fresh sparse file."""
        device = FileDevice(path, BLOCK, self.chunks * CHUNK, create=True)
        try:
            order = self.rnd.sample(range(self.chunks), self.args.first_writes)
            return await write_each(device, order, self.args.qd)
        finally:
            await device.close()
            os.unlink(path)

    async def close(self) -> None:
        await self.device.close()


# -- the volume ------------------------------------------------------------------------


class Profiles:
    """cProfile of the event-loop thread during the (a) runs and the (b) runs (--profile)."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self.steady = cProfile.Profile()
        self.first = cProfile.Profile()

    @contextlib.contextmanager
    def around(self, profile: cProfile.Profile) -> Iterator[None]:
        if self.directory is None:
            yield
            return
        profile.enable()
        try:
            yield
        finally:
            profile.disable()

    def save(self) -> None:
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
            self.steady.dump_stats(self.directory / "steady.pstats")
            self.first.dump_stats(self.directory / "first.pstats")
            log(f"profiles in {self.directory}/steady.pstats and first.pstats")


async def volume_part(
    path: Path, plan: RunPlan, peer: Peer, args: argparse.Namespace, problems: list[str]
) -> tuple[list[Level], dict[str, Any]]:
    base = FileDevice(path, BLOCK, plan.device_bytes, create=True)
    began = time.perf_counter()
    await format_volume(base, FormatOptions(reserve_percent=plan.reserve_percent))
    formatted = time.perf_counter() - began
    volume = await SnapshotVolume.open(base)
    extra: dict[str, Any] = {"format_s": round(formatted, 2)}
    try:
        await volume.wait_scan()
        g = volume.geometry
        extra["geometry"] = {
            "volume_chunks": g.volume_chunks,
            "pool_chunks": g.pool_chunks,
            "reserve_chunks": g.reserve_chunks,
            "journal_pages": g.journal_pages,
            "metadata_mib": round(g.data / MIB, 2),
        }
        log(
            f"formatted {plan.device_bytes // MIB} MiB in {formatted:.1f}s: "
            f"{g.volume_chunks} chunks"
        )
        extra["prefill"] = (await write_each(volume, range(g.volume_chunks), args.qd)).to_dict()
        log(f"prefill: {extra['prefill']['iops']:,.0f} IOPS")
        levels, creates = await _levels(volume, plan, peer, args, problems)
        info = volume.info()
        extra.update(
            snapshots=info.snapshots,
            snapshot_used_percent=info.snapshot_used_percent,
            journal_page_writes=volume.journal.pages_written,
            checkpoints=volume.journal.checkpoints,
            create_ms_median=round(1e3 * statistics.median(creates), 2) if creates else 0.0,
            create_ms_max=round(1e3 * max(creates), 2) if creates else 0.0,
        )
        if info.snapshots != max(args.counts):
            problems.append(f"{info.snapshots} snapshots at the end, not {max(args.counts)}")
    finally:
        began = time.perf_counter()
        await volume.close()
        extra["close_s"] = round(time.perf_counter() - began, 3)
    return levels, extra


async def _levels(
    volume: SnapshotVolume,
    plan: RunPlan,
    peer: Peer,
    args: argparse.Namespace,
    problems: list[str],
) -> tuple[list[Level], list[float]]:
    rnd = random.Random(args.seed)
    n = volume.geometry.volume_chunks
    levels: list[Level] = []
    creates: list[float] = []
    profiles = Profiles(args.profile)
    taken = 0
    last_pass: list[int] = []
    for count in args.counts:
        pass_iops: list[float] = []
        if count == 0:
            last_pass = rnd.sample(range(n), plan.pass_chunks)
            await write_each(volume, last_pass, args.qd)
        while taken < count:
            taken += 1
            began = time.perf_counter()
            await volume.create_snapshot(f"snap-{taken:04d}")
            creates.append(time.perf_counter() - began)
            last_pass = rnd.sample(range(n), plan.pass_chunks)
            await volume.flush()
            pass_iops.append((await write_each(volume, last_pass, args.qd)).iops)
        # Chunks not written since the newest snapshot, one (b) run's worth per round.
        written = set(last_pass)
        fresh: list[int] = []
        while len(fresh) < plan.first_writes:
            v = rnd.randrange(n)
            if v not in written:
                written.add(v)
                fresh.append(v)
        share = -(-plan.first_writes // args.rounds)
        raw_set = peer.scattered(plan.pass_chunks)
        level = Level(count, [], [], [], pass_iops, 0.0, 0, 0)
        for r in range(args.rounds):
            level.raw.append(await peer.overwrite(raw_set))
            await volume.flush()
            with profiles.around(profiles.steady):
                level.steady.append(await write_for(volume, last_pass, args.seconds, args.qd, rnd))
            await volume.flush()
            pages, checkpoints = volume.journal.pages_written, volume.journal.checkpoints
            with profiles.around(profiles.first if count else profiles.steady):
                level.first.append(
                    await write_each(volume, fresh[r * share : (r + 1) * share], args.qd)
                )
            level.journal_pages += volume.journal.pages_written - pages
            level.checkpoints += volume.journal.checkpoints - checkpoints
        level.used_percent = volume.state.used_percent()
        levels.append(level)
        log(
            f"{count:4d} snapshots: (a) {median_iops(level.steady):,.0f} IOPS, "
            f"(b) {median_iops(level.first):,.0f} IOPS, raw {median_iops(level.raw):,.0f} "
            f"IOPS, reserve {level.used_percent:.0f} % used"
        )
        if level.used_percent >= volume.state.policy.warn_percent:
            problems.append(f"reserve {level.used_percent:.0f} % used at {count} snapshots")
    profiles.save()
    return levels, creates


# -- main ------------------------------------------------------------------------------


def parse_counts(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(c) for c in text.split(",") if c.strip())
    except ValueError:
        raise argparse.ArgumentTypeError("counts are comma-separated integers") from None
    if not counts or list(counts) != sorted(set(counts)) or counts[0] < 0:
        raise argparse.ArgumentTypeError("counts must be increasing, distinct and >= 0")
    return counts


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--volume-mib", type=int, default=None, help="volume size in MiB (1024; quick 64)")
    add("--counts", type=parse_counts, default=DEFAULT_COUNTS, help="snapshot counts")
    add("--pass-percent", type=float, default=1.0, help="chunks per overwrite pass (1 %%)")
    add("--seconds", type=float, default=None, help="per (a) and raw run (4; quick 0.5)")
    add("--rounds", type=int, default=None, help="(a), (b), raw runs per count (3; quick 1)")
    add("--first-writes", type=int, default=None, help="chunks per first-write run (16384)")
    add("--qd", type=int, default=32, help="concurrent writers (32)")
    add("--seed", type=int, default=1, help="random seed (1)")
    add("--no-uvloop", action="store_true", help="the default asyncio loop")
    add("--cpu", type=int, default=None, help="pin the process (loop and I/O threads) to a CPU")
    add("--profile", type=Path, default=None, help="cProfile (a) and (b) into DIR/*.pstats")
    add("--quick", action="store_true", help="a short smoke run (64 MiB, ~15 s)")
    add("--dir", type=Path, default=None, help="parent of the temp dir (the system's temp)")
    add("--keep", action="store_true", help="keep the temp dir and the volume file")
    add("--json", action="store_true", help="print JSON instead of tables")
    return parser


def resolve(args: argparse.Namespace) -> None:
    """Fill the defaults that --quick shortens."""
    quick = {"volume_mib": 64, "seconds": 0.5, "first_writes": 2048, "rounds": 1}
    full = {"volume_mib": 1024, "seconds": 4.0, "first_writes": 16384, "rounds": 3}
    for name, value in (quick if args.quick else full).items():
        if getattr(args, name) is None:
            setattr(args, name, value)


async def run_async(workdir: Path, args: argparse.Namespace, plan: RunPlan) -> dict[str, Any]:
    problems: list[str] = []
    raw_path = workdir / "raw.img"
    began = time.perf_counter()
    write_file(raw_path, plan.volume_chunks * CHUNK)
    log(f"raw peer file written and synced in {time.perf_counter() - began:.1f}s")
    peer = Peer(raw_path, plan.volume_chunks, args)
    try:
        span = await peer.overwrite(range(plan.volume_chunks))
        holes = await peer.holes(workdir / "holes.img")
        log(f"raw: {span.iops:,.0f} IOPS over the whole file, {holes.iops:,.0f} into holes")
        levels, extra = await volume_part(workdir / "volume.img", plan, peer, args, problems)
    finally:
        await peer.close()
    return {
        "summary": summarise(levels),
        "levels": [lv.to_dict() for lv in levels],
        "raw_span": span.to_dict(),
        "raw_holes": holes.to_dict(),
        "volume": extra,
        "problems": problems,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    resolve(args)
    numbers = (args.volume_mib, args.seconds, args.first_writes, args.qd, args.pass_percent)
    if min(*numbers, args.rounds) <= 0:
        parser.error("--volume-mib, --seconds, --first-writes, --qd, --pass-percent, --rounds > 0")
    if args.first_writes < args.rounds:
        parser.error("--first-writes must be at least --rounds")
    try:
        plan = plan_run(args.volume_mib * MIB, args.counts, args.pass_percent, args.first_writes)
    except SizingError as exc:
        parser.error(str(exc))
    if args.cpu is not None:
        try:
            os.sched_setaffinity(0, {args.cpu})
        except (OSError, ValueError) as exc:
            parser.error(f"--cpu {args.cpu}: {exc}")
    info = machine_info()
    workdir = Path(tempfile.mkdtemp(prefix="sanstack-snapbench-", dir=args.dir))
    report: dict[str, Any] = {"problems": []}
    failed = False
    try:
        if args.no_uvloop:
            runner, loop_name = asyncio.Runner(), "asyncio"
        else:
            try:
                import uvloop

                runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
                loop_name = f"uvloop {importlib.metadata.version('uvloop')}"
            except ImportError:
                runner, loop_name = asyncio.Runner(), "asyncio"
        with runner:
            report = runner.run(run_async(workdir, args, plan))
        report["event_loop"] = loop_name
    except Exception as exc:  # sanstack errors included: report them
        failed = True
        report["problems"].append(f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}")
    finally:
        if args.keep or failed:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    report.update(
        date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        machine=info,
        command=" ".join(["bench/snapshot_writes.py", *(argv or sys.argv[1:])]),
        qd=args.qd,
        seconds=args.seconds,
        rounds=args.rounds,
        cpus=sorted(os.sched_getaffinity(0)),
        counts=list(args.counts),
        plan={
            "volume_chunks": plan.volume_chunks,
            "volume_mib": plan.volume_chunks * CHUNK / MIB,
            "pass_chunks": plan.pass_chunks,
            "pass_percent": args.pass_percent,
            "first_writes": plan.first_writes,
            "preserved_chunks": plan.preserved_chunks,
            "reserve_percent": plan.reserve_percent,
            "reserve_mib": plan.reserve_chunks * CHUNK / MIB,
            "device_mib": plan.device_bytes / MIB,
        },
        filesystem=_filesystem(workdir.parent),
    )
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    elif "summary" in report:
        print(format_report(report))
    else:
        print("\n".join(f"PROBLEM: {p}" for p in report["problems"]))
    return 1 if failed or report["problems"] else 0


def _filesystem(path: Path) -> str:
    """The file system type and device under ``path``, from /proc/mounts."""
    best = ("", "?", "?")
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return "?"
    resolved = str(path.resolve())
    for line in mounts:
        fields = line.split()
        if (
            len(fields) >= 3
            and (resolved == fields[1] or resolved.startswith(fields[1].rstrip("/") + "/"))
            and len(fields[1]) >= len(best[0])
        ):
            best = (fields[1], fields[2], fields[0])
    return f"{best[1]} on {best[2]} ({best[0]})"


if __name__ == "__main__":
    sys.exit(main())
