"""sanstack's initiator against real targets: a sanstack daemon and tgt.

Discovery, an ``ISCSIDevice`` doing 8 MiB of random I/O at queue depth 16 with
verification, flush and unmap; then path failures: a portal group taken down (or tgtd
killed) must fail every in-flight command with PathFailed at once, and a frozen target
(SIGSTOP: TCP stays up, nothing answers) must be noticed by the NOP-Out keep-alive.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from bench.targets import TGT_IQN, BenchError, TgtTarget
from tests.support.processes import Daemon, free_port, require_tool, running_target
from tests.support.waits import until

from sanstack.initiator.lun_device import ISCSIDevice
from sanstack.initiator.session import CommandResponse, ISCSISession, PathFailed, discover
from sanstack.iscsi.initiator_events import PathFailureKind
from sanstack.iscsi.negotiation import Digest, NegotiationPreferences
from sanstack.scsi.cdb import ReadWriteCDB
from sanstack.scsi.codes import Opcode

pytestmark = pytest.mark.interop

IQN = "iqn.2026-11.org.sanstack:initiator-interop"
INITIATOR = "iqn.2026-11.org.sanstack:interop-initiator"
MIB = 1 << 20
DEVICE_BYTES = 64 * MIB
QUEUE_DEPTH = 16


async def random_io(device: ISCSIDevice, *, seed: int, total: int = 8 * MIB) -> None:
    """Write ``total`` bytes of random data in random-sized extents at random offsets with
    QUEUE_DEPTH commands in flight, then read every extent back and compare."""
    rng = random.Random(seed)
    bs = device.block_size
    extents: list[tuple[int, bytes]] = []
    slot_blocks = 512 * 1024 // bs  # extents never overlap: one per 512 KiB slot
    slots = rng.sample(range(device.num_blocks // slot_blocks), k=device.num_blocks // slot_blocks)
    written = 0
    for slot in slots:
        if written >= total:
            break
        blocks = rng.randint(1, slot_blocks)
        start = slot * slot_blocks + rng.randint(0, slot_blocks - blocks)
        data = rng.randbytes(blocks * bs)
        extents.append((start, data))
        written += len(data)
    assert written >= total
    gate = asyncio.Semaphore(QUEUE_DEPTH)

    async def put(lba: int, data: bytes) -> None:
        async with gate:
            await device.write(lba, data)

    async def check(lba: int, data: bytes) -> None:
        async with gate:
            got = await device.read(lba, len(data) // bs)
        assert bytes(got) == data, f"mismatch at LBA {lba}"

    async with asyncio.TaskGroup() as group:
        for lba, data in extents:
            group.create_task(put(lba, data))
    await device.flush()
    async with asyncio.TaskGroup() as group:
        for lba, data in extents:
            group.create_task(check(lba, data))


async def exercise(
    port: int,
    target: str,
    lun: int,
    *,
    unmap: bool,
    isid: int,
    preferences: NegotiationPreferences | None = None,
) -> None:
    found = await discover("127.0.0.1", port, initiator_name=INITIATOR)
    names = dict(found)
    assert target in names, found
    assert any(a.startswith(f"127.0.0.1:{port},") for a in names[target]), found
    session = await ISCSISession.connect(
        "127.0.0.1", port, target, initiator_name=INITIATOR, isid=isid, preferences=preferences
    )
    if preferences is not None:
        assert session.parameters is not None
        wanted = preferences.header_digest[0] is Digest.CRC32C
        assert session.parameters.header_digest is wanted
        assert session.parameters.data_digest is wanted
    try:
        device = await ISCSIDevice.open(session, lun)
        assert device.block_size == 512
        assert device.num_blocks * device.block_size == DEVICE_BYTES
        assert device.identity.naa[0] >> 4 == 0x3
        again = await ISCSIDevice.open(session, lun)
        assert again.identity == device.identity  # stable: what multipath groups paths by
        if target == IQN:
            assert device.relative_target_port_id == 1  # sanstack: the portal group tag
        await random_io(device, seed=isid)
        if unmap:
            assert device.unmap_supported
            await device.write(100, b"\xa5" * 8 * 512)
            await device.unmap(100, 8)
            assert bytes(await device.read(100, 8)) == bytes(8 * 512)
    finally:
        await session.logout()
    assert session.closed and session.failure is None


async def in_flight_fail_promptly(
    session: ISCSISession, lun: int, cut: object, *, within: float
) -> None:
    """Keep QUEUE_DEPTH reads in flight, run ``cut()`` (in a thread), and require every
    worker to end with PathFailed within ``within`` seconds of the cut."""
    cdb = ReadWriteCDB(Opcode.READ_16, 0, 64).encode()
    started = asyncio.Event()
    failures: list[tuple[BaseException, float]] = []

    async def worker() -> None:
        while True:
            try:
                await session.command(lun, cdb, read_length=64 * 512)
            except PathFailed as exc:
                failures.append((exc, time.monotonic()))
                return
            started.set()

    async with asyncio.timeout(60), asyncio.TaskGroup() as group:
        for _ in range(QUEUE_DEPTH):
            group.create_task(worker())
        await started.wait()
        await until(lambda: session.core.in_flight > 0, 10, "commands in flight")
        cut_at = time.monotonic()
        assert callable(cut)
        await asyncio.to_thread(cut)
    assert len(failures) == QUEUE_DEPTH
    assert max(t for _, t in failures) - cut_at < within
    assert session.closed
    with pytest.raises(PathFailed):
        await session.command(lun, cdb, read_length=64 * 512)


# -- sanstack ----------------------------------------------------------------------------------


def sanstack_cli(daemon: Daemon, *args: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sanstack.cli.main", "target", *args,
         "--control", str(daemon.control)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("digests", [False, True], ids=["plain", "crc32c"])
def test_sanstack_target_io_flush_unmap(tmp_path: Path, digests: bool) -> None:
    crc = (Digest.CRC32C,)
    preferences = NegotiationPreferences(header_digest=crc, data_digest=crc) if digests else None
    port = free_port()
    with running_target(tmp_path, IQN, [port], [f"{tmp_path / 'lun0.img'}:64M"]):
        asyncio.run(
            exercise(port, IQN, 0, unmap=True, isid=0x80_0000_1001, preferences=preferences)
        )


def test_sanstack_portal_down_fails_in_flight_commands(tmp_path: Path) -> None:
    port = free_port()
    with running_target(tmp_path, IQN, [port], ["memory:64M"]) as daemon:

        async def run() -> None:
            session = await ISCSISession.connect(
                "127.0.0.1", port, IQN, initiator_name=INITIATOR, isid=0x80_0000_1002
            )
            await in_flight_fail_promptly(
                session,
                0,
                lambda: sanstack_cli(daemon, "portal-group", IQN, "1", "down"),
                within=5.0,
            )
            assert session.failure is not None
            assert session.failure.kind is PathFailureKind.CONNECTION_LOST

        asyncio.run(run())
        sanstack_cli(daemon, "portal-group", IQN, "1", "up")
        # A new session is cheap: the multipath layer logs in again the same way.
        asyncio.run(exercise_login_again(port))


async def exercise_login_again(port: int) -> None:
    session = await ISCSISession.connect(
        "127.0.0.1", port, IQN, initiator_name=INITIATOR, isid=0x80_0000_1003
    )
    device = await ISCSIDevice.open(session, 0)
    assert len(await device.read(0, 8)) == 8 * 512
    await session.logout()
    assert session.closed


def test_frozen_target_is_detected_by_nop_timeout(tmp_path: Path) -> None:
    port = free_port()
    with running_target(tmp_path, IQN, [port], ["memory:64M"]) as daemon:

        async def run() -> None:
            session = await ISCSISession.connect(
                "127.0.0.1",
                port,
                IQN,
                initiator_name=INITIATOR,
                isid=0x80_0000_1004,
                nop_interval=0.5,
                nop_timeout=1.0,
            )
            try:
                await in_flight_fail_promptly(
                    session, 0, lambda: daemon.process.send_signal(signal.SIGSTOP), within=4.0
                )
                assert session.failure is not None
                assert session.failure.kind is PathFailureKind.NOP_TIMEOUT
            finally:
                daemon.process.send_signal(signal.SIGCONT)

        asyncio.run(run())


def test_command_timeout_aborts_the_task_and_keeps_the_session(tmp_path: Path) -> None:
    port = free_port()
    with running_target(tmp_path, IQN, [port], ["memory:64M"]) as daemon:

        async def run() -> None:
            session = await ISCSISession.connect(
                "127.0.0.1", port, IQN, initiator_name=INITIATOR, isid=0x80_0000_1005,
                nop_interval=None,
            )  # fmt: skip
            device = await ISCSIDevice.open(session, 0)
            cdb = ReadWriteCDB(Opcode.READ_16, 0, 8).encode()
            daemon.process.send_signal(signal.SIGSTOP)
            try:
                # A command with the session's 60 s first: the shorter deadline after it
                # still fires on time, and only that command times out.
                patient = asyncio.ensure_future(session.command(0, cdb, read_length=8 * 512))
                await until(lambda: session.core.in_flight == 1, 10, "the first command sent")
                started = time.monotonic()
                with pytest.raises(PathFailed) as timed_out:
                    await session.command(0, cdb, read_length=8 * 512, timeout=0.5)
                assert timed_out.value.kind is PathFailureKind.COMMAND_TIMEOUT
                assert time.monotonic() - started < 2.0
                assert session.failure is None  # a slow command is not a dead path
                assert not patient.done()
            finally:
                daemon.process.send_signal(signal.SIGCONT)
            assert len((await patient).data) == 8 * 512
            # The late answer of the aborted command is dropped; the session carries on.
            assert len(await device.read(0, 8)) == 8 * 512
            await session.logout()
            assert session.closed

        asyncio.run(run())


def test_commands_beyond_max_outstanding_wait_for_a_slot_in_order(tmp_path: Path) -> None:
    """Two slots: the third and fourth command wait; one that times out or is cancelled
    while waiting gives nothing up, and every slot is free again at the end."""
    port = free_port()
    with running_target(tmp_path, IQN, [port], ["memory:64M"]) as daemon:

        async def run() -> None:
            session = await ISCSISession.connect(
                "127.0.0.1", port, IQN, initiator_name=INITIATOR, isid=0x80_0000_1006,
                nop_interval=None, max_outstanding=2,
            )  # fmt: skip
            cdb = ReadWriteCDB(Opcode.READ_16, 0, 8).encode()

            def read(timeout: float | None = None) -> asyncio.Future[CommandResponse]:
                return asyncio.ensure_future(
                    session.command(0, cdb, read_length=8 * 512, timeout=timeout)
                )

            daemon.process.send_signal(signal.SIGSTOP)
            try:
                held = [read(), read()]
                await until(lambda: session.core.in_flight == 2, 10, "two commands sent")
                impatient, cancelled, last = read(timeout=0.5), read(), read()
                with pytest.raises(PathFailed) as timed_out:
                    await impatient
                assert timed_out.value.kind is PathFailureKind.COMMAND_TIMEOUT
                cancelled.cancel()
                assert session.core.in_flight == 2 and not last.done()
            finally:
                daemon.process.send_signal(signal.SIGCONT)
            for answer in [*held, last]:
                assert len((await answer).data) == 8 * 512
            assert cancelled.cancelled()
            daemon.process.send_signal(signal.SIGSTOP)
            try:
                again = [read(), read()]  # both slots are free again: neither waits
                await until(lambda: session.core.in_flight == 2, 10, "two commands sent again")
            finally:
                daemon.process.send_signal(signal.SIGCONT)
            for answer in again:
                assert len((await answer).data) == 8 * 512
            await session.logout()

        asyncio.run(run())


# -- tgt -------------------------------------------------------------------------------------------


@contextmanager
def running_tgt(tmp_path: Path, *, digests: bool = False) -> Iterator[TgtTarget]:
    tgtd, tgtadm = require_tool("tgtd"), require_tool("tgtadm")
    backing = tmp_path / "tgt-lun1.img"
    with backing.open("wb") as f:
        f.truncate(DEVICE_BYTES)
    target = TgtTarget(tgtd, tgtadm, tmp_path, backing)
    try:
        target.start()
    except BenchError as exc:
        target.stop()
        pytest.skip(f"tgtd cannot run here: {exc}")
    try:
        if digests:
            # tgt offers no digests by default (and answers None even to a CRC32C-only offer).
            for key in ("HeaderDigest", "DataDigest"):
                target.adm("--mode", "target", "--op", "update", "--tid", "1",
                           "--name", key, "--value", "CRC32C,None")  # fmt: skip
        yield target
    finally:
        target.stop()


@pytest.mark.parametrize("digests", [False, True], ids=["plain", "crc32c"])
def test_tgt_io_and_flush(tmp_path: Path, digests: bool) -> None:
    crc = (Digest.CRC32C,)
    preferences = NegotiationPreferences(header_digest=crc, data_digest=crc) if digests else None
    with running_tgt(tmp_path, digests=digests) as tgt:
        asyncio.run(
            exercise(
                tgt.port, TGT_IQN, 1, unmap=False, isid=0x80_0000_2001, preferences=preferences
            )
        )


def test_tgt_killed_fails_in_flight_commands(tmp_path: Path) -> None:
    with running_tgt(tmp_path) as tgt:
        process = tgt.process
        assert process is not None

        def kill() -> None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(10)

        async def run() -> None:
            session = await ISCSISession.connect(
                "127.0.0.1", tgt.port, TGT_IQN, initiator_name=INITIATOR, isid=0x80_0000_2002
            )
            await in_flight_fail_promptly(session, 1, kill, within=5.0)

        asyncio.run(run())
