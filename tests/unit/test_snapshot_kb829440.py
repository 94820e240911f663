"""KB829440, repeated with random timing: a snapshot deleted while the free-space detection
of an opening volume runs (and while backups read snapshots) must neither fail nor
corrupt anything.

The issue's check: 1000 runs of "open the volume, delete a random snapshot at a random
moment of the free-space detection": no error, and the model check passes. The chunk table
here has 16 pages and the scan is slowed to one page per step, so a delete lands before,
inside or after the scan; each run also writes to the volume and reads other snapshots
while the delete happens, and sometimes a backup holds the deleted snapshot.
"""

from __future__ import annotations

import asyncio
import random
import struct
import time

import pytest

from sanstack.block.device import BlockDevice
from sanstack.block.memory import MemoryDevice
from sanstack.snapshot import volume_tasks
from sanstack.snapshot.model import FormatOptions, SnapshotNotFound, SpacePolicy
from sanstack.snapshot.volume import SnapshotVolume, format_volume

MiB = 1 << 20
CHUNK = 4096
BLOCK = 512
PER_CHUNK = CHUNK // BLOCK
RUNS = 1000
FULL_CHECK_EVERY = 50


def content(v: int, version: int) -> bytes:
    """Chunk ``v`` at ``version`` (0: never written, zeroes)."""
    if not version:
        return bytes(CHUNK)
    return struct.pack("<II", v, version) * (CHUNK // 8)


class Model:
    """The version of every chunk, for the live volume and each snapshot."""

    def __init__(self, chunks: int) -> None:
        self.live = [0] * chunks
        self.snaps: dict[str, list[int]] = {}
        self.version = 0

    def next_version(self) -> int:
        self.version += 1
        return self.version


def expected_dead(model: Model, extra: list[list[int]], *, zero_mapped: bool) -> int:
    """Old versions some snapshot (or ``extra``, held ones) still sees: what the chunk table
    must keep, no more (a leak) and no less (a snapshot lost a chunk). Version 0 has a chunk
    of its own only where the volume was never unmapped (``zero_mapped``)."""
    kept: set[tuple[int, int]] = set()
    live = model.live
    for versions in [*model.snaps.values(), *extra]:
        kept.update(
            (v, version)
            for v, version in enumerate(versions)
            if version != live[v] and (version or zero_mapped)
        )
    return len(kept)


async def write(volume: SnapshotVolume, model: Model, v: int) -> None:
    version = model.next_version()
    await volume.write(v * PER_CHUNK, content(v, version))
    model.live[v] = version


async def check(
    device: BlockDevice, versions: list[int], rng: random.Random, sample: int | None
) -> None:
    """The device reads ``versions``: every chunk (``sample`` None) or a random sample."""
    if sample is None:
        whole = bytes(await device.read(0, len(versions) * PER_CHUNK))
        for v, version in enumerate(versions):
            assert whole[v * CHUNK : (v + 1) * CHUNK] == content(v, version), (device, v)
        return
    for v in rng.sample(range(len(versions)), sample):
        got = bytes(await device.read(v * PER_CHUNK, PER_CHUNK))
        assert got == content(v, versions[v]), (device, v, versions[v])


async def build(rng: random.Random, snapshots: int) -> tuple[MemoryDevice, Model]:
    """A 16 MiB volume (16 chunk-table pages) with data and snapshots, each with chunks
    overwritten after it, so old versions are spread over the whole chunk table."""
    base = MemoryDevice(16 * MiB // BLOCK, BLOCK)
    await format_volume(base, FormatOptions(reserve_percent=50, max_snapshots=64))
    volume = await SnapshotVolume.open(base, close_base=False)
    await volume.set_policy(SpacePolicy(warn_percent=99, delete_percent=100))
    await volume.wait_background(30)
    n = volume.geometry.volume_chunks
    assert volume.geometry.table_pages >= 16
    model = Model(n)
    for v in rng.sample(range(n), n // 3):
        await write(volume, model, v)
    for i in range(snapshots):
        await volume.create_snapshot(f"s{i}")
        model.snaps[f"s{i}"] = list(model.live)
        for v in rng.sample(range(n), 60):
            await write(volume, model, v)
    await volume.close()
    return base, model


async def read_once(
    volume: SnapshotVolume, name: str, versions: list[int], rng: random.Random
) -> None:
    device = volume.open_snapshot(name)  # held from now: a delete only marks it
    try:
        await check(device, versions, rng, 3)
    finally:
        await device.close()


async def reader(device: BlockDevice, versions: list[int], seed: int) -> int:
    """A backup of an open snapshot: read chunks in a loop until cancelled, then close it;
    returns the number of reads done."""
    rng = random.Random(seed)
    done = 0
    try:
        while True:
            await check(device, versions, rng, 2)
            done += 1
            await asyncio.sleep(0)
    except asyncio.CancelledError:
        return done
    finally:
        await device.close()


def test_kb829440_delete_at_a_random_moment_of_the_free_space_scan(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(volume_tasks, "SCAN_PAGES_PER_STEP", 1)
    rng = random.Random(829440)

    async def main() -> dict[str, int]:
        base, model = await build(rng, 10)
        n = len(model.live)
        stats = {"during_scan": 0, "after_scan": 0, "held": 0, "backup_reads": 0}
        started = time.monotonic()
        for run in range(RUNS):
            volume = await SnapshotVolume.open(base, close_base=False)
            pages = volume.geometry.table_pages
            names = list(model.snaps)
            victim = rng.choice(names)
            others = [s for s in names if s != victim]
            # Work that runs while the scan does: writes, a read of another snapshot and,
            # one run in five, a backup holding the snapshot about to be deleted.
            written = rng.sample(range(n), 4)
            tasks = [asyncio.create_task(write(volume, model, v)) for v in written]
            other = rng.choice(others)
            tasks.append(asyncio.create_task(read_once(volume, other, model.snaps[other], rng)))
            backup = None
            if run % 5 == 0:
                device = volume.open_snapshot(victim)
                backup = asyncio.create_task(
                    reader(device, model.snaps[victim], rng.randrange(1 << 30))
                )
                stats["held"] += 1
            for _ in range(rng.randrange(pages + 4)):
                await asyncio.sleep(0)
            if volume.state.scan_done:
                stats["after_scan"] += 1
            else:
                stats["during_scan"] += 1
            deletes = [victim]
            if rng.random() < 0.2:  # a second delete at the same time
                deletes.append(rng.choice(others))
            await asyncio.gather(*(volume.delete_snapshot(name) for name in deletes))
            for name in deletes:
                del model.snaps[name]
                with pytest.raises(SnapshotNotFound):
                    volume.open_snapshot(name)
            await asyncio.gather(*tasks[:4])
            if backup is not None:
                for _ in range(rng.randrange(1, 4)):
                    await asyncio.sleep(0.001)
                backup.cancel()
                stats["backup_reads"] += await backup
            await tasks[4]
            # A replacement, so several snapshots always exist, each different.
            while len(model.snaps) < 10:
                name = f"r{run}-{len(model.snaps)}"
                await volume.create_snapshot(name)
                model.snaps[name] = list(model.live)
                for v in rng.sample(range(n), 6):
                    await write(volume, model, v)
            listed = volume.snapshots()
            assert sorted(s.name for s in listed) == sorted(model.snaps)
            assert all(s.state == "ready" for s in listed)
            info = volume.info()
            assert 0 <= info.snapshot_used_bytes <= info.reserve_bytes
            assert info.snapshots == len(model.snaps)
            sample = None if run % FULL_CHECK_EVERY == FULL_CHECK_EVERY - 1 else 4
            if sample is None:
                await volume.wait_background(30)
                assert volume.state.dead_count == expected_dead(model, [], zero_mapped=True)
                assert volume.state.pending_count == 0
            await check(volume, model.live, rng, sample)
            for name, versions in model.snaps.items():
                device = volume.open_snapshot(name)
                await check(device, versions, rng, sample)
                await device.close()
            await volume.close()
        stats["seconds"] = int(time.monotonic() - started)
        return stats

    stats = asyncio.run(main())
    print(stats)
    # The random waits put many deletes inside the scan, and some after it.
    assert stats["during_scan"] >= RUNS // 2, stats
    assert stats["after_scan"] >= RUNS // 20, stats
    assert stats["backup_reads"] > stats["held"], stats


def test_delete_during_a_backup_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """Backups read snapshots in a loop while they and others are deleted, the volume is
    written and reopened: a deleted snapshot's reader keeps reading its exact data until it
    closes, the name is gone at once, and the space comes back when the reader closes."""
    monkeypatch.setattr(volume_tasks, "SCAN_PAGES_PER_STEP", 1)
    rng = random.Random(5)

    async def main() -> None:
        base = MemoryDevice(16 * MiB // BLOCK, BLOCK)
        await format_volume(base, FormatOptions(reserve_percent=50))
        volume = await SnapshotVolume.open(base, close_base=False)
        await volume.wait_background(10)
        n = volume.geometry.volume_chunks
        model = Model(n)
        await volume.unmap(0, volume.num_blocks)  # so each snapshot owns what it alone saw
        own = 40
        for i in range(6):
            for v in range(i * own, (i + 1) * own):
                await write(volume, model, v)
            await volume.create_snapshot(f"b{i}")
            model.snaps[f"b{i}"] = list(model.live)
            for v in range(i * own, (i + 1) * own):
                await write(volume, model, v)
        await volume.close()
        for round_ in range(6):
            volume = await SnapshotVolume.open(base, close_base=False)
            names = sorted(model.snaps)
            held = rng.sample(names, 2)
            backups = {
                name: asyncio.create_task(
                    reader(volume.open_snapshot(name), model.snaps[name], round_)
                )
                for name in held
            }
            for _ in range(rng.randrange(12)):
                await asyncio.sleep(0)
            scan_was_running = not volume.state.scan_done
            held_versions = [model.snaps[name] for name in held]
            for name in [*held, rng.choice([s for s in names if s not in held])]:
                await volume.delete_snapshot(name)
                del model.snaps[name]
                assert name not in [s.name for s in volume.snapshots() if s.state == "ready"]
                with pytest.raises(SnapshotNotFound):
                    volume.open_snapshot(name)
            # The volume goes on: overwrites that want freed chunks, while backups read.
            for v in rng.sample(range(n), 30):
                await write(volume, model, v)
            await volume.wait_background(10)
            deleting = {s.name for s in volume.snapshots() if s.state == "deleting"}
            assert deleting == set(held), (deleting, scan_was_running)
            # Only the unheld snapshot's space came back so far.
            assert volume.state.dead_count == expected_dead(model, held_versions, zero_mapped=False)
            for name, task in backups.items():
                await asyncio.sleep(0.002)
                task.cancel()
                assert await task > 0, name
            await volume.wait_background(10)
            assert volume.state.dead_count == expected_dead(model, [], zero_mapped=False)
            assert {s.name for s in volume.snapshots()} == set(model.snaps)
            await check(volume, model.live, rng, None)
            for name, versions in model.snaps.items():
                device = volume.open_snapshot(name)
                await check(device, versions, rng, None)
                await device.close()
            # New snapshots, each owning its own chunks, for the next round.
            for k in range(3):
                lo = rng.randrange(0, 6 * own - own, own)
                for v in range(lo, lo + own):
                    await write(volume, model, v)
                name = f"n{round_}-{k}"
                await volume.create_snapshot(name)
                model.snaps[name] = list(model.live)
                for v in range(lo, lo + own):
                    await write(volume, model, v)
            await volume.close()

    asyncio.run(main())
