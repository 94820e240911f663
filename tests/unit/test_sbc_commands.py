"""SBC-4 READ/WRITE, WRITE AND VERIFY, VERIFY, ORWRITE and COMPARE AND WRITE driven through
``LogicalUnit.execute`` on a MemoryDevice and a FileDevice."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.sbc_harness import (
    BLOCKS,
    BS,
    INVALID_CDB,
    INVALID_IU,
    MISCOMPARE,
    OOB,
    READS,
    TARGET,
    WRITE_PROTECTED,
    WRITES,
    CountingDevice,
    execute,
    expect,
    field_pointer,
    good,
    information,
    make_lu,
    open_device,
    pattern,
    read,
    run,
    rw,
    write,
)

from sanstack.block.device import BlockDevice
from sanstack.block.file import FileDevice
from sanstack.block.memory import MemoryDevice
from sanstack.scsi import limits
from sanstack.scsi.cdb import (
    CompareAndWriteCDB,
    GetLbaStatusCDB,
    ReadCapacity10CDB,
    ReadCapacity16CDB,
    SynchronizeCacheCDB,
    UnmapCDB,
    UnmapParameterList,
    WriteSameCDB,
)
from sanstack.scsi.codes import ASC, Opcode, SenseKey, Status
from sanstack.scsi.command import Nexus
from sanstack.scsi.logical_unit import LogicalUnit


@pytest.fixture(params=["memory", "file"])
def device(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlockDevice]:
    dev = open_device(request.param, tmp_path)
    yield dev
    asyncio.run(dev.close())


# -- READ / WRITE ------------------------------------------------------------------------


@pytest.mark.parametrize(("read_op", "write_op"), list(zip(READS, WRITES, strict=True)))
def test_read_write_round_trip_every_size(
    device: BlockDevice, read_op: tuple[Opcode, int], write_op: tuple[Opcode, int]
) -> None:
    async def body(lu: LogicalUnit) -> None:
        data = pattern(5, seed=read_op[1])
        result = good(await execute(lu, rw(write_op[0], 100, 5), data))
        assert result.data_out_used == 5 * BS
        got = good(await execute(lu, rw(read_op[0], 100, 5)))
        assert bytes(got.data) == data
        assert got.data_out_used is None

    run(device, body)


def test_six_byte_transfer_length_zero_means_256_blocks(device: BlockDevice) -> None:
    async def body(lu: LogicalUnit) -> None:
        data = pattern(256, seed=9)
        zero_length = bytes.fromhex("0a 00 00 10 00 00")  # WRITE(6) LBA 16, length 0
        assert good(await execute(lu, zero_length, data)).data_out_used == 256 * BS
        got = good(await execute(lu, bytes.fromhex("08 00 00 10 00 00")))
        assert bytes(got.data) == data

    run(device, body)


@pytest.mark.parametrize("op", [Opcode.READ_10, Opcode.WRITE_10, Opcode.READ_16, Opcode.WRITE_16])
def test_transfer_length_zero_is_no_error(device: BlockDevice, op: Opcode) -> None:
    async def body(lu: LogicalUnit) -> None:
        result = good(await execute(lu, rw(op, 0, 0)))
        assert bytes(result.data) == b""
        good(await execute(lu, rw(op, BLOCKS, 0)))  # LBA == capacity, nothing touched
        expect(await execute(lu, rw(op, BLOCKS + 1, 0)), *OOB)

    run(device, body)


@pytest.mark.parametrize("op", [Opcode.READ_10, Opcode.WRITE_10, Opcode.READ_12, Opcode.WRITE_16])
def test_lba_out_of_range(device: BlockDevice, op: Opcode) -> None:
    async def body(lu: LogicalUnit) -> None:
        data = pattern(2)
        out = data if op in (Opcode.WRITE_10, Opcode.WRITE_16) else b""
        expect(await execute(lu, rw(op, BLOCKS - 1, 2), out), *OOB)
        expect(await execute(lu, rw(op, 0xFFFFFFFF, 2), out), *OOB)
        if op == Opcode.WRITE_16:
            expect(await execute(lu, rw(op, (1 << 64) - 1, 2), out), *OOB)
            expect(await execute(lu, rw(op, 1 << 63, 2), out), *OOB)
        good(await execute(lu, rw(op, BLOCKS - 2, 2), out))

    run(device, body)


def test_last_block_and_read6_out_of_range(device: BlockDevice) -> None:
    async def body(lu: LogicalUnit) -> None:
        await write(lu, BLOCKS - 1, pattern(1, seed=3))
        assert await read(lu, BLOCKS - 1, 1) == pattern(1, seed=3)
        expect(await execute(lu, bytes.fromhex("08 00 03 ff 02 00")), *OOB)

    run(device, body)


def test_transfer_length_above_maximum(device: BlockDevice) -> None:
    async def body(lu: LogicalUnit) -> None:
        too_many = limits.MAX_TRANSFER_BLOCKS + 1
        result = await execute(lu, rw(Opcode.READ_16, 0, too_many))
        expect(result, *INVALID_CDB)
        assert field_pointer(result) == 10
        result = await execute(lu, rw(Opcode.WRITE_12, 0, too_many))
        expect(result, *INVALID_CDB)
        assert field_pointer(result) == 6

    run(device, body)


@pytest.mark.parametrize("protect", range(1, 8))
def test_rdprotect_and_wrprotect_are_invalid(device: BlockDevice, protect: int) -> None:
    async def body(lu: LogicalUnit) -> None:
        result = await execute(lu, rw(Opcode.READ_10, 0, 1, protect=protect))
        expect(result, *INVALID_CDB)
        assert field_pointer(result) == 1
        assert result.sense[15] & 0x0F == 0x08 | 7  # BPV, bit 7
        result = await execute(lu, rw(Opcode.WRITE_16, 0, 1, protect=protect), pattern(1))
        expect(result, *INVALID_CDB)

    run(device, body)


def test_dpo_fua_accepted(device: BlockDevice) -> None:
    async def body(lu: LogicalUnit) -> None:
        for dpo, fua in [(True, False), (False, True), (True, True)]:
            good(await execute(lu, rw(Opcode.READ_10, 0, 1, dpo=dpo, fua=fua)))
            cdb = rw(Opcode.WRITE_10, 0, 1, dpo=dpo, fua=fua)
            good(await execute(lu, cdb, pattern(1)))
        # FUA_NV (byte 1 bit 1) is obsolete and ignored, as libiscsi's Write10.Flags sends it.
        good(await execute(lu, bytes.fromhex("2a 0a 00 00 00 00 00 00 01 00"), pattern(1)))

    run(device, body)


def test_fua_flushes_only_when_asked_or_write_cache_disabled() -> None:
    dev = CountingDevice()

    async def body(lu: LogicalUnit) -> None:
        good(await execute(lu, rw(Opcode.WRITE_10, 0, 1), pattern(1)))
        assert dev.flushes == 0
        good(await execute(lu, rw(Opcode.WRITE_10, 0, 1, fua=True), pattern(1)))
        assert dev.flushes == 1
        lu.mode.wce = False  # write-through: every write is made durable
        good(await execute(lu, rw(Opcode.WRITE_16, 0, 1), pattern(1)))
        assert dev.flushes == 2
        good(await execute(lu, rw(Opcode.READ_10, 0, 1, fua=True)))
        assert dev.flushes == 2

    run(dev, body)


SOFTWARE_WRITE_PROTECTED = (SenseKey.DATA_PROTECT, ASC.SOFTWARE_WRITE_PROTECTED)


def test_write_protected_device_and_swp(tmp_path: Path) -> None:
    async def body(lu: LogicalUnit, protected: tuple[SenseKey, ASC] = WRITE_PROTECTED) -> None:
        good(await execute(lu, rw(Opcode.READ_10, 0, 1)))
        expect(await execute(lu, rw(Opcode.WRITE_10, 0, 1), pattern(1)), *protected)
        ws = WriteSameCDB(Opcode.WRITE_SAME_16, 0, 1, unmap=True).encode()
        expect(await execute(lu, ws), *protected)  # no Data-Out at all
        caw = CompareAndWriteCDB(0, 1).encode()
        expect(await execute(lu, caw, bytes(2 * BS)), *protected)
        orw = rw(Opcode.ORWRITE_16, 0, 1)
        expect(await execute(lu, orw, pattern(1)), *protected)
        wav = rw(Opcode.WRITE_AND_VERIFY_12, 0, 1, bytchk=1)
        expect(await execute(lu, wav, pattern(1)), *protected)
        plist = UnmapParameterList.of([(0, 1)]).encode()
        expect(await execute(lu, UnmapCDB(len(plist)).encode(), plist), *protected)

    run(MemoryDevice(BLOCKS, BS, read_only=True), body)

    swp_device = MemoryDevice(BLOCKS, BS)

    async def swp(lu: LogicalUnit) -> None:
        lu.mode.swp = True
        # SWP is reported as SOFTWARE WRITE PROTECTED (27/02), the finer code SPC-4 gives it.
        await body(lu, SOFTWARE_WRITE_PROTECTED)
        lu.mode.swp = False
        good(await execute(lu, rw(Opcode.WRITE_10, 0, 1), pattern(1)))

    asyncio.run(swp(make_lu(swp_device)))

    path = tmp_path / "ro.img"
    path.write_bytes(bytes(BLOCKS * BS))
    read_only_file = FileDevice(path, BS, read_only=True)
    run(read_only_file, body)
    asyncio.run(read_only_file.close())


def test_stopped_unit_is_not_ready(device: BlockDevice) -> None:
    async def body(lu: LogicalUnit) -> None:
        lu.stopped = True
        not_ready = (SenseKey.NOT_READY, ASC.LOGICAL_UNIT_NOT_READY_INITIALIZING_COMMAND_REQUIRED)
        expect(await execute(lu, rw(Opcode.READ_10, 0, 1)), *not_ready)
        expect(await execute(lu, rw(Opcode.WRITE_10, 0, 1), pattern(1)), *not_ready)
        expect(await execute(lu, ReadCapacity10CDB().encode()), *not_ready)
        expect(await execute(lu, ReadCapacity16CDB(32).encode()), *not_ready)
        sync = SynchronizeCacheCDB(Opcode.SYNCHRONIZE_CACHE_10, 0, 0).encode()
        expect(await execute(lu, sync), *not_ready)
        expect(await execute(lu, GetLbaStatusCDB(0, 24).encode()), *not_ready)
        lu.stopped = False
        good(await execute(lu, rw(Opcode.READ_10, 0, 1)))

    run(device, body)


# -- Data-Out length and residuals (libiscsi test_write_residuals.c and friends) ---------------


def test_write_data_out_longer_than_needed_writes_only_the_cdb_blocks(
    device: BlockDevice,
) -> None:
    async def body(lu: LogicalUnit) -> None:
        await write(lu, 0, b"a" * 2 * BS)
        result = good(await execute(lu, rw(Opcode.WRITE_10, 0, 1), b"b" * 10000))
        assert result.data_out_used == BS  # the transport reports 10000 - 512 of underflow
        assert await read(lu, 0, 2) == b"b" * BS + b"a" * BS

    run(device, body)


def test_write_data_out_of_fewer_whole_blocks_writes_those_blocks(device: BlockDevice) -> None:
    async def body(lu: LogicalUnit) -> None:
        await write(lu, 0, b"a" * 2 * BS)
        result = good(await execute(lu, rw(Opcode.WRITE_16, 0, 2), b"b" * BS))
        assert result.data_out_used == 2 * BS  # overflow residual of one block
        assert await read(lu, 0, 2) == b"b" * BS + b"a" * BS
        result = good(await execute(lu, rw(Opcode.WRITE_12, 0, 1)))  # EDTL 0
        assert result.data_out_used == BS
        assert await read(lu, 0, 1) == b"b" * BS

    run(device, body)


def test_write_data_out_ending_in_a_partial_block_is_rejected(device: BlockDevice) -> None:
    async def body(lu: LogicalUnit) -> None:
        await write(lu, 0, b"a" * BS)
        result = await execute(lu, rw(Opcode.WRITE_10, 0, 1), b"b" * 200)
        expect(result, *INVALID_IU)
        assert result.data_out_used == BS
        assert await read(lu, 0, 1) == b"a" * BS

    run(device, body)


def test_write_and_verify_residuals(device: BlockDevice) -> None:
    async def body(lu: LogicalUnit) -> None:
        await write(lu, 0, b"a" * 2 * BS)
        wav = rw(Opcode.WRITE_AND_VERIFY_10, 0, 1, bytchk=1)
        assert good(await execute(lu, wav)).data_out_used == BS
        assert good(await execute(lu, wav, b"b" * 2 * BS)).data_out_used == BS
        assert await read(lu, 0, 2) == b"b" * BS + b"a" * BS
        two = rw(Opcode.WRITE_AND_VERIFY_10, 0, 2, bytchk=1)
        assert good(await execute(lu, two, b"c" * BS)).data_out_used == 2 * BS
        assert await read(lu, 0, 2) == b"c" * BS + b"a" * BS

    run(device, body)


# -- WRITE AND VERIFY, VERIFY ------------------------------------------------------------


@pytest.mark.parametrize(
    "op", [Opcode.WRITE_AND_VERIFY_10, Opcode.WRITE_AND_VERIFY_12, Opcode.WRITE_AND_VERIFY_16]
)
def test_write_and_verify(device: BlockDevice, op: Opcode) -> None:
    async def body(lu: LogicalUnit) -> None:
        for bytchk in (0, 1):
            data = pattern(3, seed=bytchk + 40)
            good(await execute(lu, rw(op, 7, 3, bytchk=bytchk, dpo=True), data))
            assert await read(lu, 7, 3) == data
        for bytchk in (2, 3):
            result = await execute(lu, rw(op, 7, 3, bytchk=bytchk), pattern(3))
            expect(result, *INVALID_CDB)
        good(await execute(lu, rw(op, 0, 0)))
        expect(await execute(lu, rw(op, BLOCKS + 1, 0)), *OOB)
        expect(await execute(lu, rw(op, 0, 1, protect=2), pattern(1)), *INVALID_CDB)

    run(device, body)


@pytest.mark.parametrize("op", [Opcode.VERIFY_10, Opcode.VERIFY_12, Opcode.VERIFY_16])
def test_verify_bytchk_0_1_3(device: BlockDevice, op: Opcode) -> None:
    async def body(lu: LogicalUnit) -> None:
        data = pattern(4, seed=17)
        await write(lu, 20, data)
        assert good(await execute(lu, rw(op, 20, 4))).data_out_used == 0
        assert good(await execute(lu, rw(op, 20, 4, bytchk=1), data)).data_out_used == 4 * BS
        changed = bytearray(data)
        changed[1234] ^= 0x58
        result = await execute(lu, rw(op, 20, 4, bytchk=1), bytes(changed))
        expect(result, *MISCOMPARE)
        assert information(result) == 1234
        # BYTCHK=0 does not compare, whatever the initiator sends along.
        good(await execute(lu, rw(op, 20, 4), bytes(changed)))

        block = b"\x5a" * BS
        await write(lu, 40, block * 3)
        result = good(await execute(lu, rw(op, 40, 3, bytchk=3), block))
        assert result.data_out_used == BS
        await write(lu, 42, b"\x5a" * 100 + b"\x00" + b"\x5a" * (BS - 101))
        result = await execute(lu, rw(op, 40, 3, bytchk=3), block)
        expect(result, *MISCOMPARE)
        assert information(result) == 2 * BS + 100

        expect(await execute(lu, rw(op, 20, 4, bytchk=2), data), *INVALID_CDB)
        expect(await execute(lu, rw(op, 20, 1, protect=1, bytchk=1), data[:BS]), *INVALID_CDB)
        expect(await execute(lu, rw(op, BLOCKS + 1, 0, bytchk=1)), *OOB)
        expect(await execute(lu, rw(op, BLOCKS - 1, 2)), *OOB)
        good(await execute(lu, rw(op, BLOCKS, 0, bytchk=1)))

    run(device, body)


def test_verify_spans_several_compare_chunks() -> None:
    dev = MemoryDevice(16384, BS)

    async def body(lu: LogicalUnit) -> None:
        data = pattern(8192, seed=5)
        await write(lu, 0, data)
        changed = bytearray(data)
        offset = 3 * 1024 * 1024 + 77  # in the fourth 1 MiB chunk
        changed[offset] ^= 1
        result = await execute(lu, rw(Opcode.VERIFY_16, 0, 8192, bytchk=1), bytes(changed))
        expect(result, *MISCOMPARE)
        assert information(result) == offset

    run(dev, body)


# -- ORWRITE -----------------------------------------------------------------------------


def test_orwrite(device: BlockDevice) -> None:
    async def body(lu: LogicalUnit) -> None:
        await write(lu, 3, bytes(2 * BS))
        good(await execute(lu, rw(Opcode.ORWRITE_16, 3, 2), b"\xa5" * 2 * BS))
        assert await read(lu, 3, 2) == b"\xa5" * 2 * BS
        result = good(await execute(lu, rw(Opcode.ORWRITE_16, 3, 2, fua=True), b"\x5a" * 2 * BS))
        assert result.data_out_used == 2 * BS
        assert await read(lu, 3, 2) == b"\xff" * 2 * BS
        good(await execute(lu, rw(Opcode.ORWRITE_16, 0, 0)))
        expect(await execute(lu, rw(Opcode.ORWRITE_16, BLOCKS + 1, 0)), *OOB)
        expect(await execute(lu, rw(Opcode.ORWRITE_16, BLOCKS - 1, 2), pattern(2)), *OOB)
        protected = rw(Opcode.ORWRITE_16, 0, 1, protect=4)
        expect(await execute(lu, protected, pattern(1)), *INVALID_CDB)

    run(device, body)


# -- COMPARE AND WRITE -------------------------------------------------------------------


def test_compare_and_write_match_and_miscompare(device: BlockDevice) -> None:
    async def body(lu: LogicalUnit) -> None:
        for n in (1, 2, 255):
            lba = BLOCKS - n
            await write(lu, lba, b"A" * n * BS)
            cdb = CompareAndWriteCDB(lba, n).encode()
            result = good(await execute(lu, cdb, b"A" * n * BS + b"B" * n * BS))
            assert result.data_out_used == 2 * n * BS
            assert await read(lu, lba, n) == b"B" * n * BS
            verify = bytearray(b"B" * n * BS)
            verify[n * BS - 27] = ord("C")
            result = await execute(lu, cdb, bytes(verify) + b"D" * n * BS)
            expect(result, *MISCOMPARE)
            assert information(result) == n * BS - 27
            assert await read(lu, lba, n) == b"B" * n * BS  # nothing written

    run(device, body)


def test_compare_and_write_information_is_first_differing_byte(device: BlockDevice) -> None:
    async def body(lu: LogicalUnit) -> None:
        await write(lu, 0, b"B" * BS)
        for i in (0, 1, 255, BS - 1):
            verify = bytearray(b"B" * BS)
            verify[i] = ord("Z")
            verify[-1] = ord("Y")
            result = await execute(lu, CompareAndWriteCDB(0, 1).encode(), bytes(verify) * 2)
            expect(result, *MISCOMPARE)
            assert information(result) == i

    run(device, body)


def test_compare_and_write_field_and_size_errors(device: BlockDevice) -> None:
    async def body(lu: LogicalUnit) -> None:
        good(await execute(lu, CompareAndWriteCDB(0, 0).encode()))
        expect(await execute(lu, CompareAndWriteCDB(BLOCKS, 1).encode(), bytes(2 * BS)), *OOB)
        protected = CompareAndWriteCDB(0, 1, protect=1).encode()
        expect(await execute(lu, protected, bytes(2 * BS)), *INVALID_CDB)
        for size in (BS, 4 * BS, 2 * BS + 1):  # libiscsi CompareAndWrite.InvalidDataOutSize
            result = await execute(lu, CompareAndWriteCDB(0, 1).encode(), bytes(size))
            expect(result, *INVALID_CDB)
            assert field_pointer(result) == 13
            assert result.data_out_used == 2 * BS
        # libiscsi 1.19 sends 256 blocks: NUMBER OF LOGICAL BLOCKS wraps to 0 but the
        # Data-Out still holds 512 blocks, and INVALID FIELD IN CDB is expected.
        result = await execute(lu, CompareAndWriteCDB(0, 0).encode(), bytes(512 * BS))
        expect(result, *INVALID_CDB)

    run(device, body)


def test_compare_and_write_dpo_fua(device: BlockDevice) -> None:
    async def body(lu: LogicalUnit) -> None:
        current = await read(lu, 0, 1)
        for dpo, fua in [(True, False), (False, True), (True, True)]:
            cdb = CompareAndWriteCDB(0, 1, dpo=dpo, fua=fua).encode()
            good(await execute(lu, cdb, current * 2))

    run(device, body)


class YieldingDevice(MemoryDevice):
    """Yields to the event loop inside every block of a read or write, so interleavings the
    range lock must prevent would happen if it did not."""

    async def read(self, lba: int, count: int) -> bytes:
        parts = []
        for i in range(count):
            await asyncio.sleep(0)
            parts.append(await super().read(lba + i, 1))
        return b"".join(parts)

    async def write(self, lba: int, data: bytes | memoryview) -> None:
        view = memoryview(data)
        for i in range(len(view) // self.block_size):
            await asyncio.sleep(0)
            await super().write(lba + i, view[i * self.block_size : (i + 1) * self.block_size])


def _caw_counter_rounds(device: BlockDevice, sessions: int, rounds: int) -> None:
    nexuses = [Nexus(f"iqn.2026-11.test:s{i}", i + 1, TARGET, 1) for i in range(sessions)]

    def counter(value: int) -> bytes:
        return value.to_bytes(8, "big") * (BS // 8)

    async def one(lu: LogicalUnit, nexus: Nexus) -> Status:
        seen = bytes(good(await execute(lu, rw(Opcode.READ_10, 7, 1), nexus=nexus)).data)
        value = int.from_bytes(seen[:8], "big")
        cdb = CompareAndWriteCDB(7, 1).encode()
        result = await execute(lu, cdb, counter(value) + counter(value + 1), nexus=nexus)
        if result.status != Status.GOOD:
            expect(result, *MISCOMPARE)
        return result.status

    async def body(lu: LogicalUnit) -> None:
        await write(lu, 7, counter(0))
        for _ in range(rounds):
            # Every session reads the same value first, then all race their CAWs.
            values = await asyncio.gather(
                *(execute(lu, rw(Opcode.READ_10, 7, 1), nexus=n) for n in nexuses)
            )
            assert len({bytes(v.data) for v in values}) == 1
            before = int.from_bytes(bytes(values[0].data)[:8], "big")
            cdb = CompareAndWriteCDB(7, 1).encode()
            results = await asyncio.gather(
                *(execute(lu, cdb, counter(before) + counter(before + 1), nexus=n) for n in nexuses)
            )
            assert [r.status for r in results].count(Status.GOOD) == 1
            for r in results:
                if r.status != Status.GOOD:
                    expect(r, *MISCOMPARE)
        final = await read(lu, 7, 1)
        assert int.from_bytes(final[:8], "big") == rounds
        # Free-running: each session reads then CAWs on its own schedule; every success is
        # exactly one increment.
        statuses = await asyncio.gather(*(one(lu, n) for n in nexuses * 3))
        wins = statuses.count(Status.GOOD)
        final = await read(lu, 7, 1)
        assert int.from_bytes(final[:8], "big") == rounds + wins
        assert wins >= 1

    run(device, body)


def test_compare_and_write_atomic_across_sessions_memory() -> None:
    _caw_counter_rounds(YieldingDevice(BLOCKS, BS), sessions=8, rounds=10)


def test_compare_and_write_atomic_across_sessions_file(tmp_path: Path) -> None:
    dev = FileDevice(tmp_path / "caw.img", BS, size_bytes=BLOCKS * BS, create=True, nowait=False)
    try:
        _caw_counter_rounds(dev, sessions=8, rounds=10)
    finally:
        asyncio.run(dev.close())


def test_write_waits_for_compare_and_write_and_vice_versa() -> None:
    dev = YieldingDevice(BLOCKS, BS)

    async def body(lu: LogicalUnit) -> None:
        n = 8
        await write(lu, 0, b"A" * n * BS)
        # A WRITE in progress holds the range: the CAW sees all of it or none of it.
        writing = asyncio.ensure_future(execute(lu, rw(Opcode.WRITE_16, 0, n), b"B" * n * BS))
        for _ in range(3):
            await asyncio.sleep(0)
        caw = CompareAndWriteCDB(0, n).encode()
        good(await execute(lu, caw, b"B" * n * BS + b"C" * n * BS))
        good(await writing)
        assert await read(lu, 0, n) == b"C" * n * BS
        # A CAW in progress holds the range: a WRITE arriving mid-compare lands after it.
        comparing = asyncio.ensure_future(execute(lu, caw, b"C" * n * BS + b"D" * n * BS))
        for _ in range(3):
            await asyncio.sleep(0)
        good(await execute(lu, rw(Opcode.WRITE_10, 0, n), b"E" * n * BS))
        good(await comparing)
        assert await read(lu, 0, n) == b"E" * n * BS

    run(dev, body)
