"""Crash safety of snapshot volumes with a real ``kill -9`` (issue 5).

A child process (tests/support/snapshot_crash_worker.py) opens a volume file and runs
random writes (alone and in concurrent batches), unmaps, snapshot creates and deletes,
restores, backups holding snapshots, flushes and reopens, logging each operation before it
starts and once acknowledged. It is killed with SIGKILL at a random moment, or kills itself
at a chosen write to the file during a create, a delete, a restore (its merge) or a write,
leaving a random number of whole pages of that write on disk.

Then this process opens the volume (recovery: journal replay, free-space scan, resumed
merge) and checks it against the model replayed from the log: every acknowledged write is
there; the operations in flight at the kill show either their old or their new state (a
restore all or nothing); every listed snapshot reads exactly its point-in-time data;
snapshots whose delete was acknowledged are gone. The verified state becomes the model of
the next round; the check ends with a clean close or with an abandon (another crash,
right after recovery).
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.processes import wait_for_line
from tests.support.snapshot_crash_worker import BLOCK, CHUNK, PER, REGION, payload

from sanstack.block.device import BlockDevice
from sanstack.snapshot.files import format_volume_file, open_volume_file
from sanstack.snapshot.model import FormatOptions, SpacePolicy
from sanstack.snapshot.volume import SnapshotVolume

WORKER = Path(__file__).resolve().parents[1] / "support" / "snapshot_crash_worker.py"
ROOT = Path(__file__).resolve().parents[2]
SIZE = 16 << 20
REGION_BYTES = REGION * CHUNK
ROUNDS = {"random": 14, "create": 4, "restore": 5, "delete": 4, "write": 3}
TARGETS = {"create": (1, 2), "restore": (1, 40), "delete": (1, 3), "write": (1, 3)}
START_TIMEOUT = 60.0  # a worker's Python start-up on a loaded 2-core machine


@dataclass
class Model:
    live: bytearray = field(default_factory=lambda: bytearray(REGION_BYTES))
    snaps: dict[str, bytes] = field(default_factory=dict)


@dataclass
class InFlight:
    """Operations begun and not acknowledged when the process died."""

    blocks: dict[int, bytes] = field(default_factory=dict)  # block -> its new content
    create: tuple[str, bytes] | None = None  # name, the volume at that moment
    delete: str | None = None
    restore: str | None = None
    ops: list[str] = field(default_factory=list)


def replay(model: Model, log: Path) -> InFlight:
    """Apply the acknowledged operations of ``log`` to ``model``; return the others."""
    begun: dict[int, dict[str, Any]] = {}
    lines = log.read_text().splitlines() if log.exists() else []
    for line in lines:
        record = json.loads(line)
        if record["phase"] == "begin":
            begun[record["id"]] = record
        elif record["phase"] == "ack":
            apply(model, begun.pop(record["id"]))
    pending = InFlight()
    for record in begun.values():
        op = record["op"]
        pending.ops.append(op)
        if op in ("write", "unmap"):
            lba, blocks = record["lba"], record["blocks"]
            new = payload(record["seed"], blocks) if op == "write" else bytes(blocks * BLOCK)
            for i in range(blocks):
                pending.blocks[lba + i] = new[i * BLOCK : (i + 1) * BLOCK]
        elif op == "create":
            pending.create = (record["name"], bytes(model.live))
        elif op == "delete":
            pending.delete = record["name"]
        else:
            pending.restore = record["name"]
    assert len([op for op in pending.ops if op not in ("write", "unmap")]) <= 1, pending.ops
    return pending


def apply(model: Model, record: dict[str, Any]) -> None:
    op = record["op"]
    if op == "write":
        lba = record["lba"]
        model.live[lba * BLOCK : (lba + record["blocks"]) * BLOCK] = payload(
            record["seed"], record["blocks"]
        )
    elif op == "unmap":
        lba, blocks = record["lba"], record["blocks"]
        model.live[lba * BLOCK : (lba + blocks) * BLOCK] = bytes(blocks * BLOCK)
    elif op == "create":
        model.snaps[record["name"]] = bytes(model.live)
    elif op == "delete":
        del model.snaps[record["name"]]
    else:
        model.live = bytearray(model.snaps[record["name"]])


async def read_image(device: BlockDevice) -> tuple[bytes, bool]:
    """The region's bytes, and whether everything after it reads zeroes."""
    image = bytes(await device.read(0, REGION * PER))
    rest = bytes(await device.read(REGION * PER, device.num_blocks - REGION * PER))
    return image, not any(rest)


async def abandon(volume: SnapshotVolume) -> None:
    """Stop like a crash right after recovery: no checkpoint, no clean superblock."""
    tasks = [*volume._tasks]
    if volume.journal._task is not None:
        tasks.append(volume.journal._task)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await volume.base.close()


async def verify(path: Path, model: Model, pending: InFlight, rng: random.Random) -> str:
    """Check the reopened volume against the model; adopt what was verified."""
    volume = await open_volume_file(path)
    resumed = bool(volume.state.restore_snapshot_id)
    abandoned = False
    try:
        listed = volume.snapshots()
        ready = {s.name for s in listed if s.state == "ready"}
        deleting = {s.name for s in listed if s.state == "deleting"}
        maybe = {name for name in (pending.delete, pending.create and pending.create[0]) if name}
        assert set(model.snaps) - maybe <= ready <= set(model.snaps) | maybe, (
            sorted(ready),
            sorted(model.snaps),
            pending.ops,
        )
        source = volume.state.snapshots.get(volume.state.restore_snapshot_id)
        assert deleting <= ({source.name} if source else set()), deleting
        image, zero_rest = await read_image(volume)
        assert zero_rest, "the volume has data beyond the written region"
        live = bytes(model.live)
        if pending.restore is not None and image != live:
            assert image == model.snaps[pending.restore], "a restore half done"
            outcome = "restore-done"
        else:
            bad = [
                b
                for b in range(REGION * PER)
                if image[b * BLOCK : (b + 1) * BLOCK] != live[b * BLOCK : (b + 1) * BLOCK]
                and image[b * BLOCK : (b + 1) * BLOCK] != pending.blocks.get(b)
            ]
            assert not bad, f"blocks {bad[:8]} are neither old nor new ({pending.ops})"
            outcome = "old/new"
        snaps: dict[str, bytes] = {}
        for name in sorted(ready):
            if name in model.snaps:
                expected = model.snaps[name]
            else:
                assert pending.create is not None and name == pending.create[0]
                expected = pending.create[1]
            device = volume.open_snapshot(name)
            got, zero_rest = await read_image(device)
            await device.close()
            assert got == expected, f"snapshot {name} does not read its point in time"
            assert zero_rest
            snaps[name] = expected
        info = volume.info()
        assert info.snapshots == len(ready)
        assert 0 <= info.snapshot_used_bytes <= info.reserve_bytes
        # The recovered background work (scan, reclaim, a resumed merge) changes nothing
        # anyone can read.
        if rng.random() < 0.5:
            await volume.wait_background(30)
            assert (await read_image(volume))[0] == image
        model.live = bytearray(image)
        model.snaps = snaps
        if resumed:
            outcome += ", merge resumed"
        if rng.random() < 0.5:
            abandoned = True
            await abandon(volume)
            return outcome + ", abandoned"
        return outcome
    finally:
        if not abandoned:
            await volume.close()


def run_worker(
    path: Path, log: Path, mode: str, *, rng: random.Random, out: Path
) -> tuple[int, float]:
    """Start the worker, let it be killed; returns its exit status and lifetime."""
    target = rng.randint(*TARGETS[mode]) if mode in TARGETS else 0
    seed = rng.randrange(1 << 30)
    command = [sys.executable, str(WORKER), str(path), str(log), str(seed), mode, str(target)]
    started = time.monotonic()
    with out.open("wb") as sink:
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=sink)
        try:
            if mode == "random":
                # The random instant counts from the worker's "started" (it then opens the
                # volume and works): a loaded machine can take seconds to start Python.
                wait_for_line(process, b"started", START_TIMEOUT, context=out.read_text)
                time.sleep(rng.uniform(0.0, 0.7))
                process.send_signal(signal.SIGKILL)
            process.wait(timeout=START_TIMEOUT)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            assert process.stdout is not None
            process.stdout.close()
    return process.returncode, time.monotonic() - started


def test_kill_9_at_random_points(tmp_path: Path) -> None:
    path = tmp_path / "volume.img"

    async def setup() -> None:
        await format_volume_file(path, SIZE, FormatOptions(reserve_percent=50, max_snapshots=64))
        volume = await open_volume_file(path)
        await volume.set_policy(SpacePolicy(warn_percent=100, delete_percent=100))
        await volume.close()

    asyncio.run(setup())
    rng = random.Random(0x9)
    model = Model()
    modes = [mode for mode, count in ROUNDS.items() for _ in range(count)]
    rng.shuffle(modes)
    history: list[str] = []
    in_flight: set[str] = set()
    started = time.monotonic()
    for round_, mode in enumerate(modes):
        log = tmp_path / f"ops-{round_}.log"
        out = tmp_path / f"worker-{round_}.out"
        status, lifetime = run_worker(path, log, mode, rng=rng, out=out)
        assert status == -signal.SIGKILL, f"worker {mode} exited {status}:\n{out.read_text()}"
        pending = replay(model, log)
        in_flight.update(pending.ops)
        acked = log.read_text().count('"ack"') if log.exists() else 0
        outcome = asyncio.run(verify(path, model, pending, rng))
        history.append(
            f"{mode:8} {lifetime:4.2f}s acked={acked:4} in-flight={pending.ops} {outcome}"
        )
    elapsed = time.monotonic() - started
    report = "\n".join(history)
    print(report)
    # The kills landed inside creates, deletes and writes, and inside restore merges.
    assert {"create", "delete", "write"} <= in_flight, report
    assert any("merge resumed" in line for line in history), report
    assert sum("acked=   0" not in line for line in history) >= len(modes) // 2, report
    assert elapsed < 90, report
