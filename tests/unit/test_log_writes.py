"""The log-writes device and its replayer (src/sanstack/block/log_writes.py).

Byte-exact: a recorded log replayed to each point rebuilds the device exactly as it was
then; the crash states at a point are the durable writes plus the subsets (whole or torn)
of the others, nothing more and nothing less.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

from sanstack.block.log_writes import (
    WHOLE,
    CrashState,
    EntryKind,
    LogWritesDevice,
    Replayer,
    WriteLog,
)
from sanstack.block.memory import MemoryDevice

BS = 512
T = TypeVar("T")


def sector(tag: int) -> bytes:
    return bytes([tag]) * BS


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def test_replaying_each_prefix_rebuilds_the_device_as_it_was() -> None:
    async def go() -> None:
        rng = random.Random(7)
        inner = MemoryDevice(64, BS)
        await inner.write(5, sector(0xEE))
        device = LogWritesDevice(inner, inner.blocks())
        seen: list[dict[int, bytes]] = [inner.blocks()]
        for step in range(120):
            op = rng.random()
            if op < 0.6:
                lba = rng.randrange(60)
                count = rng.randint(1, 4)
                await device.write(lba, rng.randbytes(count * BS), fua=rng.random() < 0.1)
            elif op < 0.75:
                await device.unmap(rng.randrange(60), rng.randint(1, 4))
            elif op < 0.9:
                await device.flush()
            else:
                device.mark(f"step {step}")
            seen.append(inner.blocks())
        replayer = Replayer(device.log)
        # One log entry per step, plus a FUA_DONE after each FUA write: walk the log.
        step = 0
        for point in range(len(device.log.entries) + 1):
            if point and device.log.entries[point - 1].kind == EntryKind.FUA_DONE:
                continue
            assert replayer.image_at(point) == seen[step], f"prefix {point}"
            step += 1
        assert step == len(seen)
        # Backwards too (the prefix cache resets).
        assert replayer.image_at(0) == seen[0]

    run(go())


def test_a_flush_makes_every_write_completed_before_it_durable() -> None:
    log = WriteLog(BS, 16)
    for tag in (1, 2):
        log.end_io(log.begin_write(tag, sector(tag)))
    issued = log.flush_issued()
    late = log.begin_write(3, sector(3))  # issued while the flush runs: not covered
    log.end_io(late)
    log.flush_done(issued)
    log.end_io(log.begin_write(4, sector(4)))
    replayer = Replayer(log)
    point = len(log.entries)
    assert replayer.durable_image(point) == {1: sector(1), 2: sector(2)}
    assert replayer.split(point)[3] == [2, 4]
    states = replayer.crash_states(point, tear=False)
    base = {1: sector(1), 2: sector(2)}
    assert [replayer.build(s) for s in states] == [
        base,
        base | {3: sector(3)},
        base | {4: sector(4)},
        base | {3: sector(3), 4: sector(4)},
    ]
    # Before the flush completed, nothing is durable.
    assert replayer.durable_image(3) == {}


def test_a_write_in_flight_at_the_flush_is_not_covered() -> None:
    log = WriteLog(BS, 16)
    slow = log.begin_write(1, sector(1))
    log.end_io(log.begin_write(2, sector(2)))
    issued = log.flush_issued()
    log.end_io(slow)
    log.flush_done(issued)
    replayer = Replayer(log)
    point = len(log.entries)
    assert replayer.durable_image(point) == {2: sector(2)}
    assert replayer.split(point)[3] == [slow]
    assert replayer.build(CrashState(point, ((slow, WHOLE),))) == {1: sector(1), 2: sector(2)}


def test_a_fua_write_is_durable_once_it_completed_and_alone() -> None:
    log = WriteLog(BS, 16)
    log.end_io(log.begin_write(1, sector(1)))
    fua = log.begin_write(2, sector(2), fua=True)
    assert Replayer(log).durable_image(len(log.entries)) == {}  # not complete yet
    log.end_io(fua)
    replayer = Replayer(log)
    assert replayer.durable_image(len(log.entries)) == {2: sector(2)}
    assert replayer.flush_points() == [len(log.entries)]


def test_a_later_durable_write_wins_over_an_earlier_lost_one() -> None:
    log = WriteLog(BS, 16)
    old = log.begin_write(1, sector(1))
    log.end_io(old)
    log.end_io(log.begin_write(1, sector(9), fua=True))
    replayer = Replayer(log)
    point = len(log.entries)
    assert replayer.build(CrashState(point, ((old, WHOLE),))) == {1: sector(9)}


def test_torn_writes_keep_exactly_the_sectors_of_their_mask() -> None:
    log = WriteLog(BS, 16)
    log.end_io(log.begin_write(0, b"".join(sector(t) for t in (1, 2, 3, 4))))
    replayer = Replayer(log)
    point = len(log.entries)
    assert replayer.build(CrashState(point, ((0, 0b0101),))) == {0: sector(1), 2: sector(3)}
    states = replayer.crash_states(point)
    images = [replayer.build(s) for s in states]
    # None, whole, and each cut at a 512-byte boundary (a prefix persisted).
    assert images == [
        {},
        {0: sector(1), 1: sector(2), 2: sector(3), 3: sector(4)},
        {0: sector(1)},
        {0: sector(1), 1: sector(2)},
        {0: sector(1), 1: sector(2), 2: sector(3)},
    ]


def test_a_lost_discard_leaves_the_old_data_and_a_kept_one_zeroes() -> None:
    log = WriteLog(BS, 16, {3: sector(3)})
    log.end_io(log.begin_discard(2, 2))
    replayer = Replayer(log)
    images = [replayer.build(s) for s in replayer.crash_states(len(log.entries), tear=False)]
    assert images == [{3: sector(3)}, {}]


def test_small_windows_are_enumerated_whole_and_large_ones_sampled_by_seed() -> None:
    log = WriteLog(BS, 64)
    for i in range(4):
        log.end_io(log.begin_write(i, sector(i + 1)))
    replayer = Replayer(log)
    states = replayer.crash_states(len(log.entries), tear=False)
    assert len(states) == 16 and len({s.kept for s in states}) == 16
    for i in range(4, 30):
        log.end_io(log.begin_write(i, sector(i + 1) * 2))
    replayer = Replayer(log)
    point = len(log.entries)
    sampled = replayer.crash_states(point, limit=50, seed=3)
    assert len(sampled) == 50 and len({s.kept for s in sampled}) == 50
    assert sampled == replayer.crash_states(point, limit=50, seed=3)
    assert sampled != replayer.crash_states(point, limit=50, seed=4)
    assert sampled[0].kept == () and len(sampled[1].kept) == 30
    assert any(m != WHOLE for s in sampled for _, m in s.kept)  # some are torn
    for state in sampled:  # every image is the durable one plus a choice of sectors
        image = replayer.build(state)
        for lba, data in image.items():
            assert data in (sector(lba + 1), sector(lba + 1) * 2) or lba >= 4


def test_the_log_round_trips_through_its_file_format() -> None:
    async def go() -> WriteLog:
        inner = MemoryDevice(32, BS)
        await inner.write(1, sector(7))
        device = LogWritesDevice(inner, inner.blocks())
        await device.write(0, sector(1) + sector(2), fua=True)
        device.mark("after fua")
        await device.unmap(4, 2)
        await device.flush()
        return device.log

    log = run(go())
    again = WriteLog.decode(log.encode())
    assert again.entries == log.entries and again.initial == log.initial
    assert [e.kind for e in again.entries] == [
        EntryKind.WRITE,
        EntryKind.FUA_DONE,
        EntryKind.MARK,
        EntryKind.DISCARD,
        EntryKind.FLUSH,
    ]
    assert again.marks() == [(2, "after fua")]
    with pytest.raises(ValueError, match="not a sanstack write log"):
        WriteLog.decode(b"x" * 64)


def test_the_device_presents_a_volatile_cache_and_passes_io_down() -> None:
    async def go() -> None:
        inner = MemoryDevice(8, BS)
        device = LogWritesDevice(inner)
        assert device.write_cache and device.num_blocks == 8
        await device.write(2, sector(5))
        assert bytes(await device.read(2, 1)) == sector(5)
        assert inner.blocks() == {2: sector(5)}
        await device.close()
        assert device.health() is not None

    run(go())
