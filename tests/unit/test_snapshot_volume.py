"""Focused tests of ``SnapshotVolume`` over a RAM device (issue 5).

* create drains in-flight writes: a write acknowledged before create returns is in the
  snapshot, one issued while create waits is not;
* 1024 snapshots on one volume: created with a write between each, listed, read, deleted;
* schedules: the pure ``next_due``/``to_prune`` and a volume taking snapshots every second;
* teardown with I/O in flight: no hang, no stray exception, later I/O is NOT READY;
* free-space detection reads metadata only (a small part of a 256 MiB volume);
* the cost of a write does not grow with the number of snapshots.

The space policy is in test_snapshot_volume_space.py.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any

import pytest
from tests.support.snapshot_probe import (
    BLOCK,
    CHUNK,
    PER_CHUNK,
    MiB,
    ProbeDevice,
    data,
    new_volume,
    read_chunk,
    run,
)
from tests.support.waits import until

from sanstack.block.device import DeviceNotReady, DeviceReadOnly
from sanstack.snapshot.layout import SnapshotFlag, SnapshotRecord
from sanstack.snapshot.model import (
    OnFull,
    Schedule,
    SnapshotExists,
    SnapshotNotFound,
    SnapshotRefused,
    SpacePolicy,
)
from sanstack.snapshot.schedule import next_due, scheduled_name, to_prune
from sanstack.snapshot.volume import SnapshotVolume

# -- create drains in-flight writes ----------------------------------------------------


@pytest.mark.parametrize("first_write", [False, True], ids=["in-place", "first-after-snapshot"])
def test_create_drains_in_flight_writes(first_write: bool) -> None:
    """W1 is held in the base device when create starts: create waits for it, so W1 is
    acknowledged before create returns and is in the snapshot. W2, issued while create
    waits, is held at the snapshot gate: it completes after create and is not in it."""

    async def main() -> None:
        base, volume = await new_volume(4 * MiB)
        await volume.write(0, data(1) + data(2))  # chunks 0 and 1 now born after format
        if first_write:  # so W1 is a redirect that also waits for the journal
            await volume.create_snapshot("before")
        order: list[str] = []
        base.gate = asyncio.Event()
        w1 = asyncio.create_task(volume.write(0, data(3)))
        w1.add_done_callback(lambda _: order.append("w1"))
        await until(lambda: base.held >= 1, 30, "the write is held in the base device")
        create = asyncio.create_task(volume.create_snapshot("s"))
        create.add_done_callback(lambda _: order.append("create"))
        await asyncio.sleep(0.05)
        assert not create.done(), "create returned with a write in flight"
        w2 = asyncio.create_task(volume.write(PER_CHUNK, data(4)))
        w2.add_done_callback(lambda _: order.append("w2"))
        await asyncio.sleep(0.05)
        assert not w2.done() and not w1.done()
        base.gate.set()
        await asyncio.gather(w1, create, w2)
        assert order == ["w1", "create", "w2"]
        snap = volume.open_snapshot("s")
        assert await read_chunk(snap, 0) == data(3)  # acknowledged before create returned
        assert await read_chunk(snap, 1) == data(2)  # issued after create began
        assert await read_chunk(volume, 1) == data(4)
        await snap.close()
        await volume.close()

    run(main())


# -- 1024 snapshots --------------------------------------------------------------------


def test_1024_snapshots_on_one_volume() -> None:
    """1024 snapshots, a write between each: listed in order, each reads its own point in
    time, the 1025th is refused at max_snapshots, and deleting all gives the space back."""
    count, ring = 1024, 64  # write i goes to chunk i % ring

    def expected(i: int, v: int) -> bytes:
        """Chunk v as snapshot s{i} sees it: the last write j <= i with j % ring == v."""
        last = i - ((i - v) % ring)
        return data(last) if last >= 0 else bytes(CHUNK)

    async def main() -> None:
        started = time.monotonic()
        _, volume = await new_volume(32 * MiB, reserve_percent=30, max_snapshots=count)
        for i in range(count):
            await volume.write((i % ring) * PER_CHUNK, data(i))
            await volume.create_snapshot(f"s{i}")
        with pytest.raises(SnapshotRefused):
            await volume.create_snapshot("one-too-many")
        listed = volume.snapshots()
        assert [s.name for s in listed] == [f"s{i}" for i in range(count)]
        assert [s.epoch for s in listed] == sorted(s.epoch for s in listed)
        assert all(s.state == "ready" and s.size_bytes == volume.capacity_bytes for s in listed)
        info = volume.info()
        assert info.snapshots == count
        assert 0 < info.snapshot_used_bytes <= info.reserve_bytes
        rng = random.Random(1024)
        for i in [0, 1, 63, 64, 511, 1023, *rng.sample(range(count), 6)]:
            snap = volume.open_snapshot(f"s{i}")
            whole = bytes(await snap.read(0, ring * PER_CHUNK))
            for v in range(ring):
                assert whole[v * CHUNK : (v + 1) * CHUNK] == expected(i, v), (i, v)
            await snap.close()
        names = [f"s{i}" for i in range(count)]
        rng.shuffle(names)
        for name in names:
            await volume.delete_snapshot(name)
        await volume.wait_background(30)
        assert volume.snapshots() == []
        info = volume.info()
        assert info.snapshots == 0 and info.snapshot_used_bytes == 0
        for v in range(ring):
            assert await read_chunk(volume, v) == expected(count - 1, v)
        await volume.close()
        assert time.monotonic() - started < 30

    run(main())


# -- schedule --------------------------------------------------------------------------


def record(slot: int, name: str, epoch: int, created: float, flags: int = 0) -> SnapshotRecord:
    return SnapshotRecord(slot, slot + 1, epoch, created, 1, flags, name)


def test_schedule_pure_functions() -> None:
    schedule = Schedule(interval=60, keep=2)
    sched = SnapshotFlag.SCHEDULED
    assert next_due(schedule, [], 1000.0) == 1000.0
    manual = record(0, "manual", 1, 900.0)
    other = record(1, "hourly-x", 2, 950.0, sched)  # another prefix
    assert next_due(schedule, [manual, other], 1000.0) == 1000.0
    a = record(2, "auto-a", 3, 980.0, sched)
    b = record(3, "auto-b", 4, 990.0, sched)
    assert next_due(schedule, [manual, a, b], 1000.0) == 1050.0
    assert next_due(schedule, [manual, a, b], 2000.0) == 2000.0  # overdue: now
    gone = record(4, "auto-c", 5, 995.0, sched | SnapshotFlag.DELETING)
    assert next_due(schedule, [a, b, gone], 1000.0) == 1050.0
    c = record(5, "auto-d", 6, 999.0, sched)
    kept = record(6, "auto-e", 0, 100.0, sched | SnapshotFlag.KEEP)
    snaps = [c, manual, kept, b, a, other]
    assert to_prune(schedule, snaps) == [a]  # oldest by epoch, never keep or manual
    assert to_prune(Schedule(interval=60, keep=1), snaps) == [a, b]
    assert to_prune(Schedule(interval=60, keep=5), snaps) == []
    assert scheduled_name(schedule, 0.0) == "auto-19700101T000000Z"


def test_volume_schedule_takes_and_prunes() -> None:
    async def main() -> None:
        _, volume = await new_volume(4 * MiB)
        await volume.create_snapshot("manual")
        seen: set[str] = set()
        await volume.set_schedule(Schedule(interval=1, keep=1))

        def scheduled() -> list[str]:
            names = [s.name for s in volume.snapshots() if s.scheduled]
            seen.update(names)
            return names

        await until(lambda: len(scheduled()) == 1, 30, "the schedule took a snapshot")
        first = scheduled()[0]
        await volume.set_snapshot(first, keep=True)  # the schedule never prunes it
        deadline = time.monotonic() + 30  # two more at 1 s intervals, on a loaded machine
        while len(seen) < 3 and time.monotonic() < deadline:
            await volume.write(0, data(len(seen)))
            scheduled()
            await asyncio.sleep(0.02)
        assert len(seen) >= 3, seen
        # The schedule prunes right after each snapshot it takes: until it has, the
        # newest's predecessor is still listed.
        await until(lambda: len(scheduled()) <= 2, 30, "the schedule pruned to its keep count")
        names = [s.name for s in volume.snapshots()]
        assert "manual" in names and first in names  # manual and keep: never pruned
        now = scheduled()
        assert len(now) == 2, now  # the keep-marked first and the newest (keep=1)
        assert max(seen) in now and len(seen - set(now)) >= 1  # older ones were pruned
        assert all(n.startswith("auto-") for n in seen)
        await volume.set_schedule(None)
        await volume.close()

    run(main())


# -- teardown with I/O in flight -------------------------------------------------------


def test_close_with_io_in_flight(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        base, volume = await new_volume(8 * MiB)
        for v in range(64):
            await volume.write(v * PER_CHUNK, data(v))
        await volume.create_snapshot("s")
        snap = volume.open_snapshot("s")
        loop = asyncio.get_running_loop()
        unhandled: list[dict[str, Any]] = []
        loop.set_exception_handler(lambda _loop, context: unhandled.append(context))
        base.delay = 0.0005
        outcomes: list[str] = []
        rng = random.Random(5)

        async def worker(kind: str, seed: int) -> None:
            r = random.Random(seed)
            try:
                while True:
                    v = r.randrange(64)
                    if kind == "write":
                        await volume.write(v * PER_CHUNK + r.randrange(4), data(seed, 2048))
                    elif kind == "unmap":
                        await volume.unmap(v * PER_CHUNK, PER_CHUNK)
                    elif kind == "read":
                        await volume.read(v * PER_CHUNK, PER_CHUNK)
                    else:
                        await snap.read(v * PER_CHUNK, PER_CHUNK)
            except DeviceNotReady:
                outcomes.append("not-ready")

        kinds = ["write", "write", "write", "unmap", "read", "snapshot-read"] * 3
        tasks = [asyncio.create_task(worker(k, rng.randrange(1 << 30))) for k in kinds]
        await asyncio.sleep(0.05)
        async with asyncio.timeout(20):
            await volume.close()
        async with asyncio.timeout(20):
            results = await asyncio.gather(*tasks, return_exceptions=True)
        assert [r for r in results if r is not None] == []
        assert len(outcomes) == len(tasks)
        for call in (
            volume.read(0, 1),
            volume.write(0, bytes(BLOCK)),
            volume.unmap(0, PER_CHUNK),
            volume.flush(),
            snap.read(0, 1),
            volume.create_snapshot("late"),
        ):
            with pytest.raises(DeviceNotReady):
                await call
        with pytest.raises(DeviceReadOnly):
            await snap.write(0, bytes(BLOCK))
        await asyncio.sleep(0.05)
        assert unhandled == []
        # The volume closed cleanly: it opens again and reads what the snapshot held.
        again = await SnapshotVolume.open(base, close_base=False)
        await again.wait_background(10)
        snap2 = again.open_snapshot("s")
        for v in range(64):
            assert await read_chunk(snap2, v) == data(v)
        await snap2.close()
        await again.close()

    with caplog.at_level(logging.ERROR):
        run(main())
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


def test_a_chunk_freed_under_a_read_is_not_reused_until_the_read_ends() -> None:
    """The grace of freed chunks: a read of chunk 0 is in flight when chunk 0 is unmapped;
    with no other free chunk, a write that needs one waits for that read to end rather
    than take (and overwrite) the chunk the read is about to return."""

    async def main() -> None:
        base, volume = await new_volume(4 * MiB, reserve_percent=20)
        await volume.set_policy(
            SpacePolicy(warn_percent=100, delete_percent=100, on_full=OnFull.FAIL_WRITES)
        )
        n, reserve = volume.geometry.volume_chunks, volume.geometry.reserve_chunks
        for v in range(n):
            await volume.write(v * PER_CHUNK, data(v))
        await volume.create_snapshot("s")
        for v in range(reserve - 1):
            await volume.write(v * PER_CHUNK, data(v + 10_000))
        await volume.wait_background(10)
        assert len(volume.state.free) == 1
        base.read_gate = asyncio.Event()
        reader = asyncio.create_task(volume.read(0, PER_CHUNK))
        await until(lambda: base.reads_held == 1, 30, "a read is held in the base device")
        await volume.unmap(0, 2 * PER_CHUNK)  # frees chunks 0 and 1: in grace
        await volume.write(0, data(1))  # takes the last free chunk
        writer = asyncio.create_task(volume.write(PER_CHUNK, data(2)))
        await asyncio.sleep(0.2)
        assert not writer.done(), "a chunk freed under a read in flight was reused"
        base.read_gate.set()
        assert await reader == data(10_000)
        await asyncio.wait_for(writer, 30)
        assert await read_chunk(volume, 0) == data(1)
        assert await read_chunk(volume, 1) == data(2)
        snap = volume.open_snapshot("s")
        whole = bytes(await snap.read(0, n * PER_CHUNK))
        assert all(whole[v * CHUNK : (v + 1) * CHUNK] == data(v) for v in range(n))
        await snap.close()
        await volume.close()

    run(main())


def crash_copy(base: ProbeDevice) -> ProbeDevice:
    """The device as a crash (kill -9, power off) would leave it now."""
    copy = ProbeDevice(base.capacity_bytes)
    copy.inner._blocks = dict(base.inner._blocks)
    return copy


def test_open_after_a_crash_with_many_snapshots_deleted_while_held() -> None:
    """BUG: 40 snapshots are deleted while backups hold them (so only marked deleting),
    then the process dies. Open finishes those deletes in ONE journal group of 40 slot
    records (5.4 KB), more than a journal page: ``ValueError: a record group larger than a
    journal page``, at every open: the volume can no longer be opened."""

    async def main() -> None:
        base, volume = await new_volume(8 * MiB)
        held = []
        for i in range(40):
            await volume.write(0, data(i))
            await volume.create_snapshot(f"s{i}")
            held.append(volume.open_snapshot(f"s{i}"))
        await volume.create_snapshot("kept")
        for i in range(40):
            await volume.delete_snapshot(f"s{i}")
        assert [s.state for s in volume.snapshots()] == ["deleting"] * 40 + ["ready"]
        crashed = crash_copy(base)
        await volume.close()
        volume = await SnapshotVolume.open(crashed, close_base=False)
        assert [s.name for s in volume.snapshots()] == ["kept"]
        await volume.wait_background(10)
        assert volume.info().snapshot_used_bytes == 0
        snap = volume.open_snapshot("kept")
        assert await read_chunk(snap, 0) == data(39)
        await snap.close()
        await volume.close()

    run(main())


def test_close_during_a_restore_is_quiet_and_the_merge_resumes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Closing while a restore merges (and a backup holds a deleted snapshot) stops the
    merge without an error, and the next open resumes it to the end.

    BUG: close marks the volume closed, then closes the snapshot devices; releasing the
    deleted one commits a journal record, so close yields before it cancels the tasks; the
    merge runs meanwhile, gets DeviceNotReady("the volume is closed") and dies with it:
    "volume task volume-restore failed" is logged as an ERROR at every such close."""

    async def main() -> None:
        base, volume = await new_volume(8 * MiB)
        n = 200
        for v in range(n):
            await volume.write(v * PER_CHUNK, data(v))
        await volume.create_snapshot("s")
        for v in range(n):
            await volume.write(v * PER_CHUNK, data(v + 1000))
        await volume.create_snapshot("t")
        backup = volume.open_snapshot("t")
        await volume.delete_snapshot("t")  # held: only marked deleting
        await volume.restore("s")
        for _ in range(3):
            await asyncio.sleep(0)
        assert volume.state.restore_snapshot_id
        await volume.close()
        with pytest.raises(DeviceNotReady):
            await backup.read(0, 1)
        volume = await SnapshotVolume.open(base, close_base=False)
        assert volume.state.restore_snapshot_id  # the merge resumes
        assert [s.name for s in volume.snapshots()] == ["s"]
        whole = bytes(await volume.read(0, n * PER_CHUNK))  # the snapshot's data at once
        assert all(whole[v * CHUNK : (v + 1) * CHUNK] == data(v) for v in range(n))
        await volume.wait_background(10)
        assert not volume.state.restore_snapshot_id
        whole = bytes(await volume.read(0, n * PER_CHUNK))
        assert all(whole[v * CHUNK : (v + 1) * CHUNK] == data(v) for v in range(n))
        await volume.close()

    with caplog.at_level(logging.WARNING, logger="sanstack.snapshot.volume"):
        run(main())
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


# -- costs -----------------------------------------------------------------------------


def test_free_space_detection_reads_only_metadata() -> None:
    async def main() -> None:
        base, volume = await new_volume(256 * MiB)
        size = volume.capacity_bytes
        rng = random.Random(7)
        n = volume.geometry.volume_chunks
        for round_ in range(4):
            for v in rng.sample(range(n), 500):
                await volume.write(v * PER_CHUNK, data(v + round_))
            await volume.create_snapshot(f"s{round_}")
        await volume.close()
        base.reset()
        volume = await SnapshotVolume.open(base, close_base=False)
        await volume.wait_scan()
        scanned = base.read_bytes
        g = volume.geometry
        metadata = g.data
        assert volume.info().free_bytes > 0
        assert scanned <= metadata, (scanned, metadata)
        assert base.read_end * BLOCK <= metadata  # never a data chunk
        assert scanned < size * 2 // 100, f"open and scan read {scanned} bytes of {size}"
        await volume.close()

    run(main())


@pytest.mark.parametrize("snapshots", [0, 1, 16, 64])
def test_write_cost_does_not_depend_on_snapshot_count(snapshots: int) -> None:
    """In place: one base write. First write after a snapshot: one data write and at most
    one journal write, whatever the number of snapshots."""

    async def main() -> None:
        base, volume = await new_volume(16 * MiB)
        data_start = volume.geometry.data // BLOCK
        chunks = range(0, 256, 4)
        for v in chunks:
            await volume.write(v * PER_CHUNK, data(v))
        for i in range(snapshots):
            await volume.create_snapshot(f"s{i}")
            await volume.write(1000 * PER_CHUNK + i * PER_CHUNK, data(i))
        await volume.wait_background(10)

        async def cost(lba: int, payload: bytes) -> tuple[int, int]:
            base.reset()
            await volume.write(lba, payload)
            data_writes = sum(1 for lba in base.write_lbas if lba >= data_start)
            return data_writes, base.writes - data_writes

        for v in chunks:
            first = await cost(v * PER_CHUNK, data(v + 1))
            if snapshots:
                assert first[0] == 1 and first[1] <= 1, first
            else:
                assert first == (1, 0), first
            assert await cost(v * PER_CHUNK, data(v + 2)) == (1, 0)
            assert await cost(v * PER_CHUNK + 3, data(v + 3, 1024)) == (1, 0)
        if snapshots:
            snap = volume.open_snapshot(f"s{snapshots - 1}")
            for v in chunks:
                assert await read_chunk(snap, v) == data(v)
            await snap.close()
        await volume.close()

    run(main())


def test_delete_and_names() -> None:
    """Small API edges: a deleted name is free again, unknown names are refused."""

    async def main() -> None:
        _, volume = await new_volume(4 * MiB)
        await volume.create_snapshot("a")
        with pytest.raises(SnapshotExists):
            await volume.create_snapshot("a")
        await volume.delete_snapshot("a")
        with pytest.raises(SnapshotNotFound):
            await volume.delete_snapshot("a")
        with pytest.raises(SnapshotNotFound):
            volume.open_snapshot("a")
        await volume.create_snapshot("a")
        await volume.close()

    run(main())
