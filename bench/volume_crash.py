"""Crash consistency of snapshot volumes under power loss, checked state by state.

A random workload runs on a ``SnapshotVolume`` whose base device is a ``LogWritesDevice``
over a RAM device: writes (alone and in concurrent batches), unmaps, FLUSHes, snapshot
creates, deletes and restores (the merge runs to its end), a schedule that takes one
snapshot, and backups that read a snapshot. Each host operation is framed by two marks in
the device log, ``begin <json>`` before it is issued and ``ack <id>`` once it returned, so
the log alone says what the host was promised; a block's data names the operation and the
address that wrote it (``payload``), so a read can tell which write it comes from.

Then the log is replayed to many crash states (``Replayer.crash_states``: every write a
completed FLUSH made durable, plus any subset of the others, whole or torn at 512-byte
boundaries), each opened as a volume and checked against the oracle (``Oracle``):

* open succeeds;
* each block of the volume reads a value it may hold: the last write (or unmap, or
  restore) acknowledged before the last completed FLUSH was issued, or one issued after
  it; never data never written at that address, nor an older value;
* the snapshots listed are those whose create was acknowledged (and no delete issued),
  plus perhaps those created or deleted without a FLUSH since; each reads exactly its
  point in time.

``check_recording`` is what the CI test runs (tests/property/test_snapshot_power_loss.py);
``main`` runs seeds one after another for as long as asked and reports crash states
checked per second (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import platform
import random
import struct
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sanstack.block.log_writes import CrashState, EntryKind, LogWritesDevice, Replayer, WriteLog
from sanstack.block.memory import MemoryDevice
from sanstack.snapshot.model import FormatOptions, Schedule, SpacePolicy
from sanstack.snapshot.volume import SnapshotVolume, format_volume

BLOCK = 512
CHUNK = 4096
PER = CHUNK // BLOCK
DEVICE_BYTES = 2 << 20
OPTIONS = FormatOptions(reserve_percent=50, block_size=BLOCK, chunk_size=CHUNK, max_snapshots=16)
REGION_CHUNKS = 10
REGION = REGION_CHUNKS * PER  # blocks the workload touches
MAX_SNAPSHOTS = 5
WAIT_STEPS = 200_000  # loop turns a background step may take (bounded, never a sleep)


def payload(op: int, lba: int, seed: int) -> bytes:
    """The 512 bytes operation ``op`` writes at ``lba``: unique per write and address."""
    return struct.pack("<IIQ", op + 1, lba, seed) * (BLOCK // 16)


ZERO = bytes(BLOCK)


@dataclass(slots=True)
class Recording:
    seed: int
    log: WriteLog
    start: int  # log entries before this one were the open of the volume


async def _spin(condition: Callable[[], bool], what: str) -> None:
    for _ in range(WAIT_STEPS):
        if condition():
            return
        await asyncio.sleep(0)
    raise RuntimeError(f"workload: {what} did not happen")


async def record(seed: int, ops: int = 60) -> Recording:
    """Format a RAM device, then run ``ops`` random operations through a log-writes device."""
    rng = random.Random(seed)
    plain = MemoryDevice(DEVICE_BYTES // BLOCK, BLOCK)
    await format_volume(plain, OPTIONS)
    initial = plain.blocks()
    device = LogWritesDevice(MemoryDevice.from_blocks(plain.num_blocks, BLOCK, dict(initial)))
    device.log.initial = initial
    volume = await SnapshotVolume.open(device, close_base=False)
    await volume.set_policy(SpacePolicy(warn_percent=100, delete_percent=100))
    start = len(device.log.entries)
    counter = 0
    snaps: list[str] = []

    def begin(op: dict[str, Any]) -> int:
        nonlocal counter
        counter += 1
        op["id"] = counter
        device.mark("begin " + json.dumps(op))
        return counter

    def ack(op_id: int, extra: str = "") -> None:
        device.mark(f"ack {op_id}{extra}")

    async def write(lba: int, count: int) -> None:
        op_id = begin({"op": "write", "lba": lba, "count": count})
        data = b"".join(payload(op_id, lba + i, seed) for i in range(count))
        await volume.write(lba, data)
        ack(op_id)

    async def idle() -> None:
        await _spin(lambda: not volume.state.restore_snapshot_id, "the restore merge")

    try:
        await volume.wait_scan()
        for _ in range(ops):
            roll = rng.random()
            if roll < 0.38:
                lba = rng.randrange(REGION - 1)
                await write(lba, rng.randint(1, min(2 * PER, REGION - lba)))
            elif roll < 0.46:  # concurrent writes to distinct chunks: group commit
                chunks = rng.sample(range(REGION_CHUNKS), rng.randint(2, 4))
                await asyncio.gather(*(write(c * PER + rng.randrange(PER), 1) for c in chunks))
            elif roll < 0.52:
                lba = rng.randrange(REGION - 1)
                count = rng.choice([PER, 2 * PER, rng.randint(1, PER)])
                count = min(count, REGION - lba)
                op_id = begin({"op": "unmap", "lba": lba, "count": count})
                await volume.unmap(lba, count)
                ack(op_id)
            elif roll < 0.66:
                op_id = begin({"op": "flush"})
                await volume.flush()
                ack(op_id)
            elif roll < 0.76 and len(snaps) < MAX_SNAPSHOTS:
                await idle()
                name = f"s{counter + 1}"
                op_id = begin({"op": "create", "name": name})
                await volume.create_snapshot(name)
                ack(op_id)
                snaps.append(name)
            elif roll < 0.79 and len(snaps) < MAX_SNAPSHOTS:
                await idle()
                prefix = f"auto{counter + 1}"
                op_id = begin({"op": "schedule", "prefix": prefix})
                await volume.set_schedule(Schedule(interval=3600, keep=4, prefix=prefix))

                def taken(p: str = prefix) -> bool:
                    return any(s.name.startswith(p) for s in volume.snapshots())

                await _spin(taken, "the scheduled snapshot")
                name = next(s.name for s in volume.snapshots() if s.name.startswith(prefix))
                await volume.set_schedule(None)
                ack(op_id, " " + name)
                snaps.append(name)
            elif roll < 0.86 and snaps:
                name = snaps.pop(rng.randrange(len(snaps)))
                await idle()
                op_id = begin({"op": "delete", "name": name})
                await volume.delete_snapshot(name)
                ack(op_id)
            elif roll < 0.92 and snaps:
                await idle()
                name = rng.choice(snaps)
                op_id = begin({"op": "restore", "name": name})
                await volume.restore(name)
                ack(op_id)
                await idle()
            elif snaps:  # a backup reads a snapshot
                device_ = volume.open_snapshot(rng.choice(snaps))
                try:
                    await device_.read(0, REGION)
                finally:
                    await device_.close()
    finally:
        await volume.close()
    return Recording(seed, device.log, start)


# -- the oracle -----------------------------------------------------------------------


@dataclass(slots=True)
class _Op:
    op: dict[str, Any]
    begin: int
    ack: int | None = None
    name: str | None = None  # a schedule's snapshot


@dataclass(slots=True)
class _Version:
    value: bytes
    begin: int  # log index of the op's begin mark (-1: before the log)
    ack: int  # log index of its ack mark (large: never acknowledged)


NEVER = 1 << 62


@dataclass(slots=True)
class _Snapshot:
    content: list[bytes]
    begin: int
    ack: int = NEVER
    delete_begin: int = NEVER
    delete_ack: int = NEVER


@dataclass(slots=True)
class Oracle:
    """What the host was promised, rebuilt from the marks of a log."""

    seed: int
    versions: list[list[_Version]] = field(default_factory=list)
    flushes: list[tuple[int, int]] = field(default_factory=list)  # (begin, ack)
    snapshots: dict[str, _Snapshot] = field(default_factory=dict)

    @classmethod
    def from_log(cls, log: WriteLog, seed: int) -> Oracle:
        oracle = cls(seed, [[_Version(ZERO, -1, -1)] for _ in range(REGION)])
        ops: dict[int, _Op] = {}
        for index, label in log.marks():
            word, _, rest = label.partition(" ")
            if word == "begin":
                op = json.loads(rest)
                ops[op["id"]] = _Op(op, index)
                oracle._begin(ops[op["id"]])
            else:
                op_id, _, name = rest.partition(" ")
                entry = ops[int(op_id)]
                entry.ack = index
                oracle._ack(entry, name or None)
        return oracle

    def _latest(self) -> list[bytes]:
        return [v[-1].value for v in self.versions]

    def _begin(self, entry: _Op) -> None:
        op = entry.op
        kind = op["op"]
        if kind in ("write", "unmap"):
            for lba in range(op["lba"], op["lba"] + op["count"]):
                value = payload(op["id"], lba, self.seed) if kind == "write" else ZERO
                self.versions[lba].append(_Version(value, entry.begin, NEVER))
        elif kind == "restore":
            content = self.snapshots[op["name"]].content
            for lba in range(REGION):
                self.versions[lba].append(_Version(content[lba], entry.begin, NEVER))
        elif kind == "create":
            self.snapshots[op["name"]] = _Snapshot(self._latest(), entry.begin)
        elif kind == "delete":
            self.snapshots[op["name"]].delete_begin = entry.begin

    def _ack(self, entry: _Op, name: str | None) -> None:
        op = entry.op
        kind = op["op"]
        assert entry.ack is not None
        if kind in ("write", "unmap", "restore"):
            lbas = range(REGION) if kind == "restore" else range(op["lba"], op["lba"] + op["count"])
            for lba in lbas:
                for version in reversed(self.versions[lba]):
                    if version.begin == entry.begin:
                        version.ack = entry.ack
                        break
        elif kind == "flush":
            self.flushes.append((entry.begin, entry.ack))
        elif kind == "create":
            self.snapshots[op["name"]].ack = entry.ack
        elif kind == "schedule":
            assert name is not None  # taken between the marks, with no write in between
            self.snapshots[name] = _Snapshot(self._latest(), entry.begin, entry.ack)
        elif kind == "delete":
            self.snapshots[op["name"]].delete_ack = entry.ack

    def flushed_before(self, point: int) -> int:
        """The begin mark of the last FLUSH completed before ``point`` (-1 if none)."""
        best = -1
        for begin, ack in self.flushes:
            if ack < point:
                best = max(best, begin)
        return best

    def allowed(self, lba: int, point: int, flushed: int) -> list[bytes]:
        """The values block ``lba`` may read after a crash at ``point``."""
        history = [v for v in self.versions[lba] if v.begin < point]
        durable = max(i for i, v in enumerate(history) if v.ack < flushed or v.begin < 0)
        return [v.value for v in history[durable:]]

    def snapshot_bounds(self, point: int, flushed: int) -> tuple[set[str], set[str]]:
        """The snapshots that must be listed at ``point``, and those that may be."""
        must = {n for n, s in self.snapshots.items() if s.ack < point and s.delete_begin >= point}
        may = {
            n for n, s in self.snapshots.items() if s.begin < point and not s.delete_ack < flushed
        }
        return must, may


def describe(value: bytes, seed: int) -> str:
    if value == ZERO:
        return "zeroes"
    op, lba, s = struct.unpack_from("<IIQ", value)
    if value == struct.pack("<IIQ", op, lba, s) * (BLOCK // 16) and s == seed:
        return f"op {op - 1}'s data for block {lba}"
    return f"foreign data {value[:16].hex()}…"


async def check_image(
    oracle: Oracle, image: dict[int, bytes], point: int, num_blocks: int
) -> list[str]:
    """Open the device a crash left and check it; the problems found (empty: none)."""
    base = MemoryDevice.from_blocks(num_blocks, BLOCK, image)
    try:
        volume = await SnapshotVolume.open(base, close_base=False)
    except Exception as exc:
        return [f"open failed: {type(exc).__name__}: {exc}"]
    problems: list[str] = []
    try:
        flushed = oracle.flushed_before(point)
        data = await volume.read(0, REGION)
        for lba in range(REGION):
            got = bytes(data[lba * BLOCK : (lba + 1) * BLOCK])
            allowed = oracle.allowed(lba, point, flushed)
            if got not in allowed:
                problems.append(
                    f"block {lba} reads {describe(got, oracle.seed)}; allowed: "
                    + ", ".join(describe(v, oracle.seed) for v in allowed)
                )
                break
        must, may = oracle.snapshot_bounds(point, flushed)
        listed = {s.name for s in volume.snapshots() if s.state == "ready"}
        if must - listed:
            problems.append(f"snapshots {sorted(must - listed)} are missing")
        if listed - may:
            problems.append(f"snapshots {sorted(listed - may)} should be gone")
        for name in sorted(listed & may):
            snap = volume.open_snapshot(name)
            try:
                got_all = bytes(await snap.read(0, REGION))
            finally:
                await snap.close()
            want = b"".join(oracle.snapshots[name].content)
            if got_all != want:
                bad = next(
                    i
                    for i in range(REGION)
                    if got_all[i * BLOCK : (i + 1) * BLOCK] != want[i * BLOCK : (i + 1) * BLOCK]
                )
                problems.append(
                    f"snapshot {name} block {bad} reads "
                    f"{describe(got_all[bad * BLOCK : (bad + 1) * BLOCK], oracle.seed)}, not "
                    f"{describe(oracle.snapshots[name].content[bad], oracle.seed)}"
                )
    finally:
        await volume.close()
    return problems


@dataclass(slots=True)
class Result:
    seed: int
    states: int = 0
    points: int = 0
    failures: list[str] = field(default_factory=list)


def crash_points(recording: Recording, rng: random.Random) -> list[int]:
    """Every point of the log from the volume's open on: the completed FLUSHes first
    (generic/482's points), then the others in a seeded order."""
    log = recording.log
    flushes = [i + 1 for i, e in enumerate(log.entries) if e.kind == EntryKind.FLUSH]
    others = [p for p in range(len(log.entries) + 1) if p not in set(flushes)]
    rng.shuffle(others)
    return flushes + others


async def check_recording(
    recording: Recording,
    *,
    budget: int,
    per_point: int = 6,
    stop_at_first: bool = True,
    recovery_every: int = 16,
) -> Result:
    """Check up to ``budget`` crash states of a recording.

    Every ``recovery_every``-th state is also crashed while it recovers: its open (journal
    replay, the log cut short, the MARK written) and close are recorded in turn, and a few
    crash states of that recording are opened and checked against the same oracle.
    """
    result = Result(recording.seed)
    oracle = Oracle.from_log(recording.log, recording.seed)
    replayer = Replayer(recording.log)
    rng = random.Random(recording.seed)
    sectors = recording.log.sectors
    for point in crash_points(recording, rng):
        if result.states >= budget:
            break
        result.points += 1
        states = replayer.crash_states(point, limit=per_point, seed=recording.seed)
        for state in states[: budget - result.states]:
            result.states += 1
            image = replayer.build(state)
            problems = await check_image(oracle, dict(image), point, sectors)
            if not problems and recovery_every and result.states % recovery_every == 0:
                problems = await _check_recovery(oracle, image, point, sectors, result)
            if problems:
                result.failures.append(_failure(recording, state, problems))
                if stop_at_first:
                    return result
    return result


async def _check_recovery(
    oracle: Oracle, image: dict[int, bytes], point: int, sectors: int, result: Result
) -> list[str]:
    """Crash the recovery of ``image`` too: every crash state of its open must check."""
    device = LogWritesDevice(MemoryDevice.from_blocks(sectors, BLOCK, dict(image)), image)
    volume = await SnapshotVolume.open(device, close_base=False)
    await volume.close()
    again = Replayer(device.log)
    for inner in range(len(device.log.entries) + 1):
        for state in again.crash_states(inner, limit=2, seed=inner):
            result.states += 1
            problems = await check_image(oracle, again.build(state), point, sectors)
            if problems:
                return [f"after a crash in recovery at {state.describe()}: " + "; ".join(problems)]
    return []


def _failure(recording: Recording, state: CrashState, problems: list[str]) -> str:
    marks = [label for i, label in recording.log.marks() if i < state.point]
    last = marks[-1] if marks else "(none)"
    return f"seed {recording.seed}, {state.describe()} (after mark {last!r}): " + "; ".join(
        problems
    )


# -- the long run ---------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--seconds", type=float, default=60.0, help="run seeds until this much time passed")
    add("--seed", type=int, default=1, help="the first seed (then +1 per workload)")
    add("--ops", type=int, default=60, help="operations per workload")
    add("--states", type=int, default=3000, help="crash states checked per workload")
    add("--per-point", type=int, default=8, help="crash states per crash point")
    return parser


async def run(args: argparse.Namespace) -> int:
    # Replay cut short is expected in crash states; the warnings would drown the report.
    logging.getLogger("sanstack").setLevel(logging.ERROR)
    started = time.monotonic()
    seed = args.seed
    states = points = workloads = 0
    failures: list[str] = []
    while time.monotonic() - started < args.seconds:
        recording = await record(seed, args.ops)
        result = await check_recording(
            recording, budget=args.states, per_point=args.per_point, stop_at_first=False
        )
        states += result.states
        points += result.points
        workloads += 1
        failures.extend(result.failures)
        for failure in result.failures[:3]:
            print("FAIL", failure, flush=True)
        elapsed = time.monotonic() - started
        print(
            f"seed {seed}: {result.states} states at {result.points} points, "
            f"{len(result.failures)} failing; total {states} states, "
            f"{states / elapsed:.0f} states/s",
            flush=True,
        )
        seed += 1
    elapsed = time.monotonic() - started
    print(
        json.dumps(
            {
                "workloads": workloads,
                "crash_states": states,
                "crash_points": points,
                "failing_states": len(failures),
                "seconds": round(elapsed, 1),
                "states_per_second": round(states / elapsed, 1),
                "cpu": _cpu_model(),
                "python": platform.python_version(),
            }
        )
    )
    return 1 if failures else 0


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    return asyncio.run(run(build_parser().parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
