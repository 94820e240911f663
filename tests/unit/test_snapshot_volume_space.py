"""The space policy of ``SnapshotVolume`` over a RAM device (issue 5): refuse new
snapshots above the warning threshold, delete by weight then age (never "keep"), delete
for a writer that finds the reserve full and hand it that space at once, delete no more
than needed, fail writes when told to, and never leave an invalid snapshot.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest
from tests.support.snapshot_probe import CHUNK, PER_CHUNK, MiB, data, new_volume, run
from tests.support.waits import until

from sanstack.block.device import BlockDevice, SpaceExhausted
from sanstack.snapshot import volume as volume_module
from sanstack.snapshot.model import OnFull, SnapshotRefused, SpacePolicy
from sanstack.snapshot.volume import SnapshotVolume


class Tracker:
    """The expected content of the volume and of each snapshot, chunk by chunk."""

    def __init__(self, volume: SnapshotVolume) -> None:
        self.volume = volume
        self.live: dict[int, bytes] = {}  # absent: zeroes
        self.snaps: dict[str, dict[int, bytes]] = {}
        self.touched = 0

    async def start(self) -> None:
        """Unmap everything, so a first write keeps no old version for anyone."""
        await self.volume.unmap(0, self.volume.num_blocks)

    async def write(self, v: int, tag: int) -> None:
        self.touched = max(self.touched, v + 1)
        await self.volume.write(v * PER_CHUNK, data(tag))
        self.live[v] = data(tag)

    async def snapshot(self, name: str, **kw: Any) -> None:
        await self.volume.create_snapshot(name, **kw)
        self.snaps[name] = dict(self.live)

    async def owned(self, name: str, chunks: range, tag: int, **kw: Any) -> None:
        """Write ``chunks`` (unmapped), snapshot, overwrite them: ``name`` alone sees them."""
        for v in chunks:
            await self.write(v, tag + v)
        await self.snapshot(name, **kw)
        for v in chunks:
            await self.write(v, tag + v + 100_000)

    def names(self) -> list[str]:
        return [s.name for s in self.volume.snapshots()]

    async def verify(self) -> None:
        """The volume reads its model; every listed snapshot reads its point in time."""
        count = self.touched * PER_CHUNK
        zero = bytes(CHUNK)
        views: list[tuple[BlockDevice, dict[int, bytes]]] = [(self.volume, self.live)]
        devices = []
        for name in self.names():
            device = self.volume.open_snapshot(name)
            devices.append(device)
            views.append((device, self.snaps[name]))
        for device, model in views:
            whole = bytes(await device.read(0, count))
            for v in range(self.touched):
                assert whole[v * CHUNK : (v + 1) * CHUNK] == model.get(v, zero), (device, v)
        for device in devices:
            await device.close()


def test_warning_threshold_refuses_new_snapshots() -> None:
    async def main() -> None:
        _, volume = await new_volume(4 * MiB, reserve_percent=20)
        await volume.set_policy(SpacePolicy(warn_percent=30, delete_percent=100))
        t = Tracker(volume)
        await t.start()
        reserve = volume.geometry.reserve_chunks
        await t.owned("a", range(reserve * 30 // 100 + 1), 0)
        assert volume.info().snapshot_used_percent >= 30
        with pytest.raises(SnapshotRefused, match="warning threshold"):
            await volume.create_snapshot("b")
        assert t.names() == ["a"]
        await t.verify()
        await volume.delete_snapshot("a")
        await volume.wait_background(10)
        assert volume.info().snapshot_used_bytes == 0
        await volume.create_snapshot("b")  # the space came back
        await volume.close()

    run(main())


def test_auto_delete_by_weight_then_age_never_keep(caplog: pytest.LogCaptureFixture) -> None:
    """Five snapshots each owning 20 chunks; lowering delete_percent deletes the lowest
    weight first, the oldest among equals, and never the "keep" one."""

    async def main() -> None:
        _, volume = await new_volume(4 * MiB, reserve_percent=20)
        await volume.set_policy(SpacePolicy(warn_percent=100, delete_percent=100))
        t = Tracker(volume)
        await t.start()
        spec = [("a", 5, False), ("b", 1, True), ("c", 1, False), ("d", 1, False), ("e", 3, False)]
        for i, (name, weight, keep) in enumerate(spec):
            await t.owned(name, range(20 * i, 20 * i + 20), i * 1000, weight=weight, keep=keep)
        reserve = volume.geometry.reserve_chunks
        assert volume.state.snapshot_used == 100
        assert [s.used_bytes for s in volume.snapshots()] == [20 * CHUNK] * 5
        # Down below 65 chunks of the reserve: c then d (weight 1, oldest first; b is keep).
        target = 65 * 100 // reserve
        with caplog.at_level(logging.WARNING, logger="sanstack.snapshot.volume"):
            await volume.set_policy(SpacePolicy(warn_percent=100, delete_percent=target))
            await until(
                lambda: t.names() == ["a", "b", "e"],
                30,
                "the policy deleted the lowest-weight snapshots",
            )
            await volume.wait_background(10)
            assert volume.state.snapshot_used == 60
            await t.verify()
            # Then everything but the keep one: e (weight 3) before a (weight 5).
            await volume.set_policy(SpacePolicy(warn_percent=100, delete_percent=1))
            await until(
                lambda: t.names() == ["b"], 30, "the policy deleted down to the keep snapshot"
            )
            await volume.wait_background(10)
            await asyncio.sleep(0.05)
        assert t.names() == ["b"]
        assert volume.state.snapshot_used == 20
        messages = [r.getMessage() for r in caplog.records]
        deleted = [m.rsplit(" ", 1)[-1] for m in messages if "deleting" in m]
        assert deleted == ["'c'", "'d'", "'e'", "'a'"]
        await t.verify()
        await volume.close()

    run(main())


def test_full_reserve_deletes_for_the_writer_then_fails_with_only_keep_left(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """on_full=delete: a write that finds the reserve full deletes the lowest weight, oldest
    snapshot and goes on; once only "keep" snapshots are left it fails, and they stay whole."""
    monkeypatch.setattr(volume_module, "SPACE_WAIT", 3.0)  # fail fast, not after 30 s

    async def main() -> None:
        _, volume = await new_volume(4 * MiB, reserve_percent=20)
        await volume.set_policy(SpacePolicy(warn_percent=100, delete_percent=100))
        t = Tracker(volume)
        await t.start()
        reserve = volume.geometry.reserve_chunks
        half = reserve // 4
        await t.owned("keep", range(half), 0, keep=True)
        await t.owned("old", range(half, 2 * half), 10_000, weight=2)
        rest = range(2 * half, reserve + 1)  # unmapped until now: writing keeps nothing
        for v in rest:
            await t.write(v, 20_000 + v)
        await t.snapshot("light", weight=0)
        for v in rest[:-1]:
            await t.write(v, 30_000 + v)
        assert volume.state.reserve_full()
        assert t.names() == ["keep", "old", "light"]
        await t.write(rest[-1], 1)  # needs space: "light" (weight 0) goes first
        assert t.names() == ["keep", "old"]
        await t.verify()
        await t.snapshot("keep2", keep=True)
        # Overwrite everything keep2 sees: "old" is deleted when needed, then writes fail.
        failed = 0
        for v in range(reserve + 1):
            try:
                await t.write(v, 40_000 + v)
            except SpaceExhausted:
                failed += 1
        assert failed > 0
        assert t.names() == ["keep", "keep2"]
        assert volume.state.reserve_full()
        with pytest.raises(SpaceExhausted, match="keep"):
            await volume.write(reserve * PER_CHUNK, data(99))
        await t.verify()
        await volume.close()

    run(main())


def test_write_waiting_for_space_gets_the_space_of_the_snapshot_deleted_for_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The reserve is full; a write that needs space deletes the lowest-weight snapshot and
    goes on with its space at once, and no other snapshot is deleted.

    (Regression: the waiting writer held an I/O generation older than the chunks the delete
    freed, so they stayed in grace until the wait timed out: the write failed, and the
    policy, counting chunks in grace as used, deleted the next snapshot too.)"""
    monkeypatch.setattr(volume_module, "SPACE_WAIT", 3.0)

    async def main() -> None:
        _, volume = await new_volume(4 * MiB, reserve_percent=20)
        await volume.set_policy(SpacePolicy(warn_percent=100, delete_percent=100))
        t = Tracker(volume)
        await t.start()
        reserve = volume.geometry.reserve_chunks
        await t.owned("heavy", range(2), 0, weight=9)
        fill = range(2, reserve + 1)
        for v in fill:
            await t.write(v, 1000 + v)
        await t.snapshot("light", weight=0)
        for v in fill[:-1]:
            await t.write(v, 2000 + v)
        assert volume.state.reserve_full()
        started = time.monotonic()
        await t.write(fill[-1], 3000)
        assert time.monotonic() - started < 1.0
        assert t.names() == ["heavy"]
        await volume.wait_background(10)
        assert volume.state.snapshot_used == 2
        await t.verify()
        await volume.close()

    run(main())


def test_auto_delete_deletes_no_more_than_needed_while_io_is_in_flight() -> None:
    """Auto-delete stops as soon as enough is deleted, even while a slow read is in flight.

    (Regression: the policy checked the space again right after reclaiming a victim, while
    its chunks still counted as used, held in grace by the read: it deleted every snapshot.)"""

    async def main() -> None:
        base, volume = await new_volume(4 * MiB, reserve_percent=20)
        await volume.set_policy(SpacePolicy(warn_percent=100, delete_percent=100))
        t = Tracker(volume)
        await t.start()
        for i, name in enumerate(["c", "d", "e"]):
            await t.owned(name, range(20 * i, 20 * i + 20), 1000 * i, weight=1 + (i == 2))
        reserve = volume.geometry.reserve_chunks
        assert volume.state.snapshot_used == 60
        base.read_gate = asyncio.Event()
        reader = asyncio.create_task(volume.read(0, PER_CHUNK))  # a mapped chunk
        await until(lambda: base.reads_held == 1, 30, "a read is held in the base device")
        # 60 chunks used; deleting "c" alone brings it to 40, below the threshold.
        threshold = (50 * 100 + reserve - 1) // reserve
        await volume.set_policy(SpacePolicy(warn_percent=100, delete_percent=threshold))
        await until(lambda: "c" not in t.names(), 30, "the delete is done")
        await asyncio.sleep(0.2)  # a slow read: a disk under load, a stalled path
        base.read_gate.set()
        await reader
        await volume.wait_background(10)
        await asyncio.sleep(0.05)
        assert t.names() == ["d", "e"]
        assert volume.state.snapshot_used == 40
        await t.verify()
        await volume.close()

    run(main())


def test_fail_writes_policy_keeps_every_snapshot() -> None:
    async def main() -> None:
        _, volume = await new_volume(4 * MiB, reserve_percent=20)
        await volume.set_policy(
            SpacePolicy(warn_percent=100, delete_percent=100, on_full=OnFull.FAIL_WRITES)
        )
        t = Tracker(volume)
        n = volume.geometry.volume_chunks
        reserve = volume.geometry.reserve_chunks
        for v in range(n):
            await t.write(v, v)
        await t.snapshot("a")
        await t.snapshot("b")
        for v in range(reserve):
            await t.write(v, v + 10_000)
        assert volume.state.reserve_full()
        with pytest.raises(SpaceExhausted):
            await t.write(reserve, 1)
        with pytest.raises(SpaceExhausted):
            await volume.unmap(reserve * PER_CHUNK, PER_CHUNK)
        await t.write(0, 5)  # in place: needs no snapshot space
        assert t.names() == ["a", "b"]
        info = volume.info()
        assert info.snapshot_used_bytes == info.reserve_bytes
        assert info.snapshot_used_percent == 100.0
        await t.verify()
        await volume.delete_snapshot("a")
        await volume.wait_background(10)
        assert volume.state.reserve_full()  # "b" sees the same versions: nothing freed
        await volume.delete_snapshot("b")
        await volume.wait_background(10)
        assert volume.info().snapshot_used_bytes == 0
        await t.write(reserve, 2)
        await t.verify()
        await volume.close()

    run(main())
