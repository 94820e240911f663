"""Format 1 volumes under the format 2 code (issue 14).

tests/support/format1_volume.log.zlib is a log-writes recording of a workload on a
format 1 volume, made by the code before format 2 (bench/volume_crash.py, seed 101): its
initial image, every write and FLUSH, and the marks of the host operations.

* Its last image, a format 1 volume closed cleanly with snapshots, opens under the new
  code: upgraded in place to format 2, every block and every snapshot as the host left
  them, and it stays format 2.
* The upgrade is crash-safe: recorded through a log-writes device itself, every crash
  state of it opens (as format 1, upgraded again, or as format 2) with the same content.
* The crash-consistency checker, run on the recorded format 1 log, finds the gap format 1
  documented (a block reading data that was never written there): the checker can fail.
"""

from __future__ import annotations

import asyncio
import zlib
from pathlib import Path

from bench.volume_crash import REGION, Oracle, Recording, check_image, check_recording

from sanstack.block.log_writes import LogWritesDevice, Replayer, WriteLog
from sanstack.block.memory import MemoryDevice
from sanstack.snapshot.layout import PAGE, newest_superblock
from sanstack.snapshot.volume import SnapshotVolume

FIXTURE = Path(__file__).resolve().parents[1] / "support" / "format1_volume.log.zlib"
SEED = 101


def recorded() -> WriteLog:
    return WriteLog.decode(zlib.decompress(FIXTURE.read_bytes()))


def version_of(image: dict[int, bytes]) -> int:
    head: list[bytes | memoryview] = [
        b"".join(image.get(s, bytes(512)) for s in range(n * 8, n * 8 + 8)) for n in (0, 1)
    ]
    return newest_superblock(head).version


def test_a_format1_volume_opens_upgraded_with_its_snapshots() -> None:
    log = recorded()
    end = len(log.entries)
    image = Replayer(log).image_at(end)
    assert version_of(image) == 1
    oracle = Oracle.from_log(log, SEED)
    assert len(oracle.snapshots) >= 3

    async def go() -> None:
        device = MemoryDevice.from_blocks(log.sectors, 512, dict(image))
        assert await check_image(oracle, dict(image), end, log.sectors) == []
        volume = await SnapshotVolume.open(device, close_base=False)
        try:
            assert volume.info().format_version == 2
            names = {s.name for s in volume.snapshots()}
            live = {n for n, s in oracle.snapshots.items() if s.delete_begin > end}
            assert names == live
            for name in names:
                snap = volume.open_snapshot(name)
                try:
                    got = bytes(await snap.read(0, REGION))
                finally:
                    await snap.close()
                assert got == b"".join(oracle.snapshots[name].content), name
        finally:
            await volume.close()
        assert version_of(device.blocks()) == 2

    asyncio.run(go())


def test_every_crash_state_of_the_upgrade_opens_with_the_same_content() -> None:
    log = recorded()
    end = len(log.entries)
    image = Replayer(log).image_at(end)
    oracle = Oracle.from_log(log, SEED)

    async def go() -> int:
        inner = MemoryDevice.from_blocks(log.sectors, 512, dict(image))
        device = LogWritesDevice(inner, dict(image))
        volume = await SnapshotVolume.open(device, close_base=False)
        await volume.close()
        upgrade = Replayer(device.log)
        versions = set()
        states = 0
        for point in range(len(device.log.entries) + 1):
            for state in upgrade.crash_states(point, limit=6, seed=point):
                crashed = upgrade.build(state)
                versions.add(version_of(crashed))
                # Every host operation of the recording was acknowledged and the volume
                # closed: each state must read as the recording's end.
                problems = await check_image(oracle, crashed, end, log.sectors)
                assert not problems, f"{state.describe()}: {problems}"
                states += 1
        assert versions == {1, 2}
        return states

    assert asyncio.run(go()) > 50


def test_the_checker_finds_the_format1_gap_in_the_recording() -> None:
    log = recorded()
    result = asyncio.run(check_recording(Recording(SEED, log, 0), budget=3000))
    assert result.failures, f"no failure in {result.states} crash states of format 1"
    assert "reads" in result.failures[0] or "open failed" in result.failures[0]
    print(f"format 1: first failing crash state after {result.states}: {result.failures[0]}")


def test_the_fixture_is_a_format1_volume() -> None:
    log = recorded()
    assert version_of(log.initial) == 1
    assert PAGE == 4096
