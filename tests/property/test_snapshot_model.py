"""A Hypothesis state machine drives a ``SnapshotVolume`` on a 4 MiB RAM device against a
model: the live volume's bytes, and the frozen bytes of every snapshot.

Rules interleave writes (partial chunks, several chunks), unmaps, snapshot create and
delete, online restores (left running, or waited for), reads of snapshot devices, backups
that hold a snapshot open across steps (and get it deleted under them), clean reopens,
crashes (the device is copied as it is between two operations and the copy reopened,
without the close's checkpoint: the journal is replayed), and KB829440's case: reopen and
delete a snapshot after a random number of steps of the free-space scan (one chunk-table
page per step here).

After every step: the volume reads exactly the model; every snapshot device reads its
point-in-time bytes (one snapshot in full, a rotating sample of the others); the list
names exactly the model's snapshots (plus those deleted while held, shown "deleting");
the space figures are consistent; and with no snapshot left the reserve is empty again.

Writes stay in 48 chunks (the first and last 24) and at most 7 snapshots exist, so the
snapshot reserve (531 chunks) never reaches the warning threshold: no refusals and no
automatic deletes to model here (tests/unit/test_snapshot_volume_space.py covers the policy).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from sanstack.block.device import BlockDevice
from sanstack.block.memory import MemoryDevice
from sanstack.snapshot import volume_tasks
from sanstack.snapshot.layout import UNMAPPED, Geometry
from sanstack.snapshot.model import FormatOptions, SpacePolicy, VolumeBusy
from sanstack.snapshot.state import Chunk
from sanstack.snapshot.volume import SnapshotVolume, format_volume

T = TypeVar("T")
DEVICE_BYTES = 4 << 20
BLOCK = 512
CHUNK = 4096
PER = CHUNK // BLOCK
OPTIONS = FormatOptions(reserve_percent=60, block_size=BLOCK, chunk_size=CHUNK, max_snapshots=16)
GEOMETRY = Geometry.plan(DEVICE_BYTES, OPTIONS)
N = GEOMETRY.volume_chunks
REGION = 24  # writable chunks at each end of the volume
REGION_BLOCKS = REGION * PER
MAX_SNAPSHOTS = 7  # including deleting ones: 7 * 48 chunks stay below 80 % of the reserve
BACKGROUND = 30.0

starts = st.sampled_from([0, (N - REGION) * PER])  # the first block of a region


def payload(seed: int, blocks: int) -> bytes:
    return random.Random(seed).randbytes(blocks * BLOCK)


def clone(device: MemoryDevice) -> MemoryDevice:
    """The device as a crash would leave it now (a RAM device has no volatile cache)."""
    copy = MemoryDevice(device.num_blocks, device.block_size)
    copy._blocks = dict(device._blocks)
    return copy


class SnapshotMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.base = MemoryDevice(DEVICE_BYTES // BLOCK, BLOCK)
        self.run(format_volume(self.base, OPTIONS))
        self.volume = self.run(SnapshotVolume.open(self.base, close_base=False))
        self.run(self.volume.set_policy(SpacePolicy(warn_percent=100, delete_percent=100)))
        assert self.volume.geometry == GEOMETRY
        self.live = bytearray(N * CHUNK)
        self.snaps: dict[str, bytes] = {}
        self.held: list[tuple[str, BlockDevice, bytes]] = []  # open snapshot devices
        self.counter = 0
        self.steps = 0

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        try:
            self.run(self.volume.close())
        finally:
            self.loop.close()

    # -- helpers ----------------------------------------------------------------------

    def new_name(self) -> str:
        self.counter += 1
        return f"s{self.counter}"

    async def put(self, lba: int, data: bytes) -> None:
        """Write, and once acknowledged, record it in the model."""
        await self.volume.write(lba, data)
        self.live[lba * BLOCK : lba * BLOCK + len(data)] = data

    def restoring(self) -> bool:
        return bool(self.volume.state.restore_snapshot_id)

    def forget_held(self) -> None:
        """The volume was closed (or crashed): its snapshot devices are gone."""
        self.held = []

    async def check_volume(self) -> None:
        got = bytes(await self.volume.read(0, N * PER))
        if got != self.live:
            bad = next(v for v in range(N) if got[v * CHUNK : (v + 1) * CHUNK] != self.chunk(v))
            raise AssertionError(f"the volume differs from the model at chunk {bad}")

    def chunk(self, v: int, image: bytes | bytearray | None = None) -> bytes:
        image = self.live if image is None else image
        return bytes(image[v * CHUNK : (v + 1) * CHUNK])

    async def check_device(self, device: BlockDevice, image: bytes, chunks: list[int]) -> None:
        for v in chunks:
            got = bytes(await device.read(v * PER, PER))
            assert got == self.chunk(v, image), f"{device} chunk {v}"

    # -- rules ------------------------------------------------------------------------

    @initialize(snapshots=st.integers(0, 4), seed=st.integers(0, 2**32 - 1))
    def populate(self, snapshots: int, seed: int) -> None:
        """Both regions written, then ``snapshots`` snapshots with overwrites between."""
        rng = random.Random(seed)

        async def go() -> None:
            for start in (0, (N - REGION) * PER):
                await self.put(start, payload(rng.randrange(1 << 32), REGION_BLOCKS))
            for _ in range(snapshots):
                name = self.new_name()
                await self.volume.create_snapshot(name)
                self.snaps[name] = bytes(self.live)
                for _ in range(rng.randrange(1, 6)):
                    start = rng.choice((0, (N - REGION) * PER))
                    lba = start + rng.randrange(REGION_BLOCKS - 2 * PER)
                    await self.put(lba, payload(rng.randrange(1 << 32), rng.randrange(1, 2 * PER)))

        self.run(go())

    @rule(
        start=starts,
        offset=st.integers(0, REGION_BLOCKS - 1),
        blocks=st.integers(1, 3 * PER),
        seed=st.integers(0, 2**32 - 1),
    )
    def write(self, start: int, offset: int, blocks: int, seed: int) -> None:
        blocks = min(blocks, REGION_BLOCKS - offset)
        self.run(self.put(start + offset, payload(seed, blocks)))

    @rule(start=starts, offset=st.integers(0, REGION_BLOCKS - 1), blocks=st.integers(1, 3 * PER))
    def unmap(self, start: int, offset: int, blocks: int) -> None:
        blocks = min(blocks, REGION_BLOCKS - offset)
        lba = start + offset
        self.run(self.volume.unmap(lba, blocks))
        # Whole chunks are deallocated, the rest written with zeroes: all read zeroes.
        self.live[lba * BLOCK : (lba + blocks) * BLOCK] = bytes(blocks * BLOCK)

    @precondition(lambda self: len(self.volume.state.snapshots) < MAX_SNAPSHOTS)
    @rule()
    def create(self) -> None:
        name = self.new_name()
        was_restoring = self.restoring()
        try:
            info = self.run(self.volume.create_snapshot(name))
        except VolumeBusy:
            assert was_restoring, "VolumeBusy without a restore running"
            return
        assert info.name == name and info.state == "ready"
        self.snaps[name] = bytes(self.live)

    @precondition(lambda self: self.snaps)
    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(sorted(self.snaps)))
        self.run(self.volume.delete_snapshot(name))
        del self.snaps[name]

    @precondition(lambda self: self.snaps)
    @rule(
        data=st.data(),
        wait=st.booleans(),
        write_during=st.none() | st.tuples(starts, st.integers(0, REGION_BLOCKS - 1)),
        seed=st.integers(0, 2**32 - 1),
    )
    def restore(
        self,
        data: st.DataObject,
        wait: bool,
        write_during: tuple[int, int] | None,
        seed: int,
    ) -> None:
        name = data.draw(st.sampled_from(sorted(self.snaps)))
        was_restoring = self.restoring()

        async def go() -> None:
            try:
                await self.volume.restore(name)
            except VolumeBusy:
                assert was_restoring, "VolumeBusy without a restore running"
                return
            self.live = bytearray(self.snaps[name])
            await self.check_volume()  # online: the snapshot's data at once
            if write_during is not None:
                start, offset = write_during
                blocks = min(PER + 3, REGION_BLOCKS - offset)
                await self.put(start + offset, payload(seed, blocks))
            if wait:
                await self.volume.wait_background(BACKGROUND)
                assert not self.restoring()

        self.run(go())

    @precondition(lambda self: self.snaps)
    @rule(data=st.data(), start=starts, offset=st.integers(0, REGION_BLOCKS - 1))
    def read_snapshot(self, data: st.DataObject, start: int, offset: int) -> None:
        name = data.draw(st.sampled_from(sorted(self.snaps)))
        blocks = data.draw(st.integers(1, 4 * PER))
        lba = min(start + offset, N * PER - blocks)
        image = self.snaps[name]

        async def go() -> None:
            device = self.volume.open_snapshot(name)
            try:
                got = bytes(await device.read(lba, blocks))
                assert got == image[lba * BLOCK : (lba + blocks) * BLOCK]
            finally:
                await device.close()

        self.run(go())

    @precondition(lambda self: self.snaps)
    @rule(data=st.data())
    def hold(self, data: st.DataObject) -> None:
        """A backup opens a snapshot and keeps it open across steps."""
        name = data.draw(st.sampled_from(sorted(self.snaps)))
        self.held.append((name, self.volume.open_snapshot(name), self.snaps[name]))

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        index = data.draw(st.integers(0, len(self.held) - 1))
        _name, device, image = self.held.pop(index)

        async def go() -> None:
            await self.check_device(device, image, list(range(REGION)))
            await device.close()

        self.run(go())

    @rule()
    def reopen(self) -> None:
        async def go() -> None:
            await self.volume.close()
            self.forget_held()
            self.volume = await SnapshotVolume.open(self.base, close_base=False)
            await self.check_volume()  # before the scan: reads need only the map

        self.run(go())

    @rule()
    def crash(self) -> None:
        """Power off between two operations: reopen a copy of the device as it is now."""
        copy = clone(self.base)

        async def go() -> None:
            await self.volume.close()
            self.forget_held()
            self.base = copy
            self.volume = await SnapshotVolume.open(self.base, close_base=False)
            await self.check_volume()

        self.run(go())

    @rule(
        data=st.data(),
        steps=st.integers(0, GEOMETRY.table_pages + 2),
        crash=st.booleans(),
        write_seed=st.none() | st.integers(0, 2**32 - 1),
        create_too=st.booleans(),
    )
    def reopen_and_delete_during_scan(
        self,
        data: st.DataObject,
        steps: int,
        crash: bool,
        write_seed: int | None,
        create_too: bool,
    ) -> None:
        """KB829440: open, let the free-space scan run ``steps`` pages, delete a snapshot
        (while a write and a read of another snapshot run too), maybe take a new one."""
        victim = data.draw(st.sampled_from(sorted(self.snaps))) if self.snaps else None
        others = sorted(set(self.snaps) - {victim})
        other = data.draw(st.sampled_from(others)) if others else None

        async def go() -> None:
            if crash:
                copy = clone(self.base)
                await self.volume.close()
                self.base = copy
            else:
                await self.volume.close()
            self.forget_held()
            self.volume = volume = await SnapshotVolume.open(self.base, close_base=False)
            tasks = []
            if write_seed is not None:
                lba = write_seed % REGION_BLOCKS
                tasks.append(asyncio.create_task(self.put(lba, payload(write_seed, PER))))
            devices = []
            if other is not None:
                devices.append(volume.open_snapshot(other))
                tasks.append(
                    asyncio.create_task(
                        self.check_device(devices[0], self.snaps[other], [0, REGION, N - 1])
                    )
                )
            for _ in range(steps):
                await asyncio.sleep(0)
            if victim is not None:
                await volume.delete_snapshot(victim)
                del self.snaps[victim]
            await asyncio.gather(*tasks)
            for device in devices:
                await device.close()
            if create_too and len(volume.state.snapshots) < MAX_SNAPSHOTS and not self.restoring():
                name = self.new_name()
                await volume.create_snapshot(name)  # the scan may still be running
                self.snaps[name] = bytes(self.live)

        self.run(go())

    # -- invariants -------------------------------------------------------------------

    @invariant()
    def volume_reads_the_model(self) -> None:
        self.run(self.check_volume())

    @invariant()
    def snapshots_read_their_point_in_time(self) -> None:
        self.steps += 1
        names = sorted(self.snaps)
        if not names:
            return
        full = names[self.steps % len(names)]
        sample = [(self.steps * 7 + k * 5) % REGION for k in range(3)]
        sample += [N - 1 - v for v in sample]

        async def go() -> None:
            for name in names:
                device = self.volume.open_snapshot(name)
                chunks = list(range(N)) if name == full else sample
                await self.check_device(device, self.snaps[name], chunks)
                await device.close()
            for _name, device, image in self.held:
                await self.check_device(device, image, sample)

        self.run(go())

    @invariant()
    def listing_and_space(self) -> None:
        volume = self.volume
        listed = volume.snapshots()
        ready = sorted(s.name for s in listed if s.state == "ready")
        assert ready == sorted(self.snaps)
        deleting = {s.name for s in listed if s.state == "deleting"}
        held_deleted = {name for name, _, _ in self.held if name not in self.snaps}
        restore_source = volume.state.snapshots.get(volume.state.restore_snapshot_id)
        allowed = held_deleted | ({restore_source.name} if restore_source else set())
        assert held_deleted <= deleting <= allowed, (deleting, held_deleted)
        info = volume.info()
        assert info.snapshots == len(self.snaps)
        assert 0 <= info.snapshot_used_bytes <= info.reserve_bytes
        assert info.size_bytes == N * CHUNK

    @invariant()
    def chunk_accounting(self) -> None:
        """Every pool chunk is counted once; with no snapshot left, the reserve is empty."""
        volume, state = self.volume, self.volume.state
        if not state.scan_done:
            return
        chunk = state.chunk
        mapped = N - state.map_p.count(UNMAPPED)
        assert chunk.count(Chunk.UNKNOWN) == 0
        assert chunk.count(Chunk.LIVE) == state.live_count == mapped
        assert chunk.count(Chunk.DEAD) == state.dead_count
        assert chunk.count(Chunk.PENDING) == state.pending_count
        free = chunk.count(Chunk.FREE)
        assert sorted(state.free) == sorted(p for p in range(len(chunk)) if chunk[p] == Chunk.FREE)
        assert volume.info().free_bytes == free * CHUNK
        if not state.snapshots and not self.restoring():
            self.run(volume.wait_background(BACKGROUND))
            assert state.dead_count == 0 and state.pending_count == 0
            assert volume.info().snapshot_used_bytes == 0


def test_snapshot_volume_against_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(volume_tasks, "SCAN_PAGES_PER_STEP", 1)  # 4 steps of scan
    monkeypatch.setattr(volume_tasks, "RESTORE_CHUNKS_PER_STEP", 32)  # merges outlive a step
    run_state_machine_as_test(
        SnapshotMachine,
        settings=settings(settings(), stateful_step_count=50, deadline=None),
    )
