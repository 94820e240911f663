"""A snapshot volume on a base device of 4 KiB blocks, under power loss (format 2).

The journal's 512-byte units are written a whole 4 KiB block at a time there (a batch is
padded to the block), and the ring starts on a block boundary. Crash states of a recorded
workload (whole 4 KiB writes kept or lost, in any subset) each open, hold every write a
completed FLUSH covered, and keep the snapshot's point in time.
"""

from __future__ import annotations

import asyncio

from sanstack.block.log_writes import LogWritesDevice, Replayer
from sanstack.block.memory import MemoryDevice
from sanstack.snapshot.model import FormatOptions
from sanstack.snapshot.volume import SnapshotVolume, format_volume

BS = 4096
DEVICE_BYTES = 4 << 20
CHUNKS = 12


def block(op: int, v: int) -> bytes:
    return (op.to_bytes(4, "little") + v.to_bytes(4, "little")) * (BS // 8)


def test_crash_states_on_a_4k_base_open_and_keep_what_was_flushed() -> None:
    async def go() -> int:
        plain = MemoryDevice(DEVICE_BYTES // BS, BS)
        await format_volume(plain, FormatOptions(block_size=BS, chunk_size=BS, reserve_percent=50))
        initial = plain.blocks()
        device = LogWritesDevice(MemoryDevice.from_blocks(plain.num_blocks, BS, dict(initial)))
        device.log.initial = initial
        volume = await SnapshotVolume.open(device, close_base=False)
        await volume.wait_scan()
        flushed: list[tuple[int, dict[int, bytes]]] = []  # (log point, volume then)
        live: dict[int, bytes] = {}
        snapshot: dict[int, bytes] = {}
        for op in range(1, 40):
            v = (op * 7) % CHUNKS
            await volume.write(v, block(op, v))
            live[v] = block(op, v)
            if op % 5 == 0:
                await volume.flush()
                flushed.append((len(device.log.entries), dict(live)))
            if op == 12:
                await volume.create_snapshot("s")
                snapshot = dict(live)
                flushed.append((len(device.log.entries), dict(live)))
        await volume.close()
        replayer = Replayer(device.log)
        states = 0
        for point in range(len(device.log.entries) + 1):
            promised = max((p for p in flushed if p[0] <= point), default=(0, {}))[1]
            for state in replayer.crash_states(point, limit=4, seed=point):
                states += 1
                base = MemoryDevice.from_blocks(plain.num_blocks, BS, replayer.build(state))
                crashed = await SnapshotVolume.open(base, close_base=False)
                try:
                    for v in range(CHUNKS):
                        got = bytes(await crashed.read(v, 1))
                        if v in promised:
                            newer = {block(op, v) for op in range(1, 40)}
                            assert got == promised[v] or got in newer, (state.describe(), v)
                    if snapshot and any(s.name == "s" for s in crashed.snapshots()):
                        snap = crashed.open_snapshot("s")
                        try:
                            for v, data in snapshot.items():
                                assert bytes(await snap.read(v, 1)) == data
                        finally:
                            await snap.close()
                finally:
                    await crashed.close()
        return states

    assert asyncio.run(go()) > 200


def test_the_ring_wraps_on_a_4k_base_and_reopens_after_a_power_cut() -> None:
    async def go() -> None:
        plain = MemoryDevice(DEVICE_BYTES // BS, BS)
        await format_volume(plain, FormatOptions(block_size=BS, chunk_size=BS, reserve_percent=50))
        initial = plain.blocks()
        device = LogWritesDevice(MemoryDevice.from_blocks(plain.num_blocks, BS, dict(initial)))
        device.log.initial = initial
        volume = await SnapshotVolume.open(device, close_base=False)
        await volume.wait_scan()
        live: dict[int, bytes] = {}
        for op in range(1, 700):  # first writes after a snapshot: a unit block each
            v = op % CHUNKS
            await volume.write(v, block(op, v))
            live[v] = block(op, v)
            if op % 30 == 0:
                await volume.create_snapshot(f"s{op}")
                if op > 30:
                    await volume.delete_snapshot(f"s{op - 30}")
        assert volume.journal.checkpoints >= 3  # the ring went round
        await volume.flush()
        point = len(device.log.entries)
        replayer = Replayer(device.log)
        for state in replayer.crash_states(point, limit=8, seed=1):
            base = MemoryDevice.from_blocks(plain.num_blocks, BS, replayer.build(state))
            crashed = await SnapshotVolume.open(base, close_base=False)
            try:
                for v, data in live.items():
                    assert bytes(await crashed.read(v, 1)) == data, (state.describe(), v)
            finally:
                await crashed.close()
        await volume.close()

    asyncio.run(go())
