"""SBC-4 commands driven through ``LogicalUnit.execute`` on a MemoryDevice and a FileDevice."""

from __future__ import annotations

import asyncio
import itertools
import struct
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from sanstack.block.device import BlockDevice
from sanstack.block.file import FileDevice
from sanstack.block.memory import MemoryDevice
from sanstack.scsi import limits
from sanstack.scsi.cdb import (
    CompareAndWriteCDB,
    GetLbaStatusCDB,
    PrefetchCDB,
    ReadCapacity10CDB,
    ReadCapacity16CDB,
    ReadWriteCDB,
    SynchronizeCacheCDB,
    UnmapCDB,
    UnmapParameterList,
    WriteSameCDB,
)
from sanstack.scsi.command import DataDirection, Nexus, ScsiCommand, ScsiResult
from sanstack.scsi.constants import ASC, Opcode, SenseKey, ServiceActionIn16, Status
from sanstack.scsi.sbc import COMMANDS
from sanstack.scsi.sense import parse_sense
from sanstack.target.logical_unit import LogicalUnit, TargetInfo

TARGET = "iqn.2026-11.test:t"
NEXUS_A = Nexus("iqn.2026-11.test:a", 0x1, TARGET, 1)
NEXUS_B = Nexus("iqn.2026-11.test:b", 0x2, TARGET, 1)
BS = 512
BLOCKS = 1024
_tags = itertools.count(1)


def make_lu(device: BlockDevice) -> LogicalUnit:
    return LogicalUnit(
        0,
        device,
        TargetInfo(
            target_name=TARGET, lun_numbers=lambda: [0], active_nexuses=lambda: [NEXUS_A, NEXUS_B]
        ),
    )


@pytest.fixture(params=["memory", "file"])
def device(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlockDevice]:
    dev: BlockDevice
    if request.param == "memory":
        dev = MemoryDevice(BLOCKS, BS)
    else:
        dev = FileDevice(tmp_path / "lun.img", BS, size_bytes=BLOCKS * BS, create=True)
    yield dev
    asyncio.run(dev.close())


def run(device: BlockDevice, body: Callable[[LogicalUnit], Awaitable[None]]) -> None:
    async def main() -> None:
        await body(make_lu(device))

    asyncio.run(main())


async def execute(
    lu: LogicalUnit,
    cdb: bytes,
    data_out: bytes = b"",
    *,
    nexus: Nexus = NEXUS_A,
    data_in_length: int = 1 << 24,
) -> ScsiResult:
    cmd = ScsiCommand(
        nexus, 0, cdb, tag=next(_tags), data_out=data_out, data_in_length=data_in_length
    )
    return await lu.execute(cmd)


def sense_of(result: ScsiResult) -> tuple[SenseKey, ASC]:
    assert result.status == Status.CHECK_CONDITION
    key, asc, ascq = parse_sense(result.sense)
    return key, ASC((asc << 8) | ascq)


def information(result: ScsiResult) -> int | None:
    valid = bool(result.sense[0] & 0x80)
    return int.from_bytes(result.sense[3:7], "big") if valid else None


def field_pointer(result: ScsiResult) -> int:
    assert result.sense[15] & 0x80, "SKSV must be set"
    return int.from_bytes(result.sense[16:18], "big")


def expect(result: ScsiResult, key: SenseKey, asc: ASC) -> None:
    assert sense_of(result) == (key, asc)


def good(result: ScsiResult) -> ScsiResult:
    assert result.status == Status.GOOD, result.sense.hex()
    return result


def rw(op: Opcode, lba: int, count: int, **flags: int | bool) -> bytes:
    return ReadWriteCDB(op, lba, count, **flags).encode()  # type: ignore[arg-type]


def pattern(count: int, seed: int = 1) -> bytes:
    return bytes((seed + i) & 0xFF for i in range(count * BS))


async def read(lu: LogicalUnit, lba: int, count: int) -> bytes:
    return bytes(good(await execute(lu, rw(Opcode.READ_16, lba, count))).data)


async def write(lu: LogicalUnit, lba: int, data: bytes) -> None:
    good(await execute(lu, rw(Opcode.WRITE_16, lba, len(data) // BS), data))


OOB = (SenseKey.ILLEGAL_REQUEST, ASC.LBA_OUT_OF_RANGE)
INVALID_CDB = (SenseKey.ILLEGAL_REQUEST, ASC.INVALID_FIELD_IN_CDB)
INVALID_IU = (SenseKey.ILLEGAL_REQUEST, ASC.INVALID_FIELD_IN_COMMAND_INFORMATION_UNIT)
WRITE_PROTECTED = (SenseKey.DATA_PROTECT, ASC.WRITE_PROTECTED)
MISCOMPARE = (SenseKey.MISCOMPARE, ASC.MISCOMPARE_DURING_VERIFY_OPERATION)

READS = [(Opcode.READ_6, 6), (Opcode.READ_10, 10), (Opcode.READ_12, 12), (Opcode.READ_16, 16)]
WRITES = [(Opcode.WRITE_6, 6), (Opcode.WRITE_10, 10), (Opcode.WRITE_12, 12), (Opcode.WRITE_16, 16)]


# -- READ / WRITE ------------------------------------------------------------------------


@pytest.mark.parametrize(("read_op", "write_op"), zip(READS, WRITES, strict=True))
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


class CountingDevice(MemoryDevice):
    """A MemoryDevice that claims a volatile cache and counts flushes."""

    write_cache = True

    def __init__(self, num_blocks: int = BLOCKS) -> None:
        super().__init__(num_blocks, BS)
        self.flushes = 0

    async def flush(self) -> None:
        await super().flush()
        self.flushes += 1


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


def test_write_protected_device_and_swp(tmp_path: Path) -> None:
    async def body(lu: LogicalUnit) -> None:
        good(await execute(lu, rw(Opcode.READ_10, 0, 1)))
        expect(await execute(lu, rw(Opcode.WRITE_10, 0, 1), pattern(1)), *WRITE_PROTECTED)
        ws = WriteSameCDB(Opcode.WRITE_SAME_16, 0, 1, unmap=True).encode()
        expect(await execute(lu, ws), *WRITE_PROTECTED)  # no Data-Out at all
        caw = CompareAndWriteCDB(0, 1).encode()
        expect(await execute(lu, caw, bytes(2 * BS)), *WRITE_PROTECTED)
        orw = rw(Opcode.ORWRITE_16, 0, 1)
        expect(await execute(lu, orw, pattern(1)), *WRITE_PROTECTED)
        wav = rw(Opcode.WRITE_AND_VERIFY_12, 0, 1, bytchk=1)
        expect(await execute(lu, wav, pattern(1)), *WRITE_PROTECTED)
        plist = UnmapParameterList.of([(0, 1)]).encode()
        expect(await execute(lu, UnmapCDB(len(plist)).encode(), plist), *WRITE_PROTECTED)

    run(MemoryDevice(BLOCKS, BS, read_only=True), body)

    swp_device = MemoryDevice(BLOCKS, BS)

    async def swp(lu: LogicalUnit) -> None:
        lu.mode.swp = True
        await body(lu)
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
            expect(result, *INVALID_IU)
            assert result.data_out_used == 2 * BS

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
                *(
                    execute(lu, cdb, counter(before) + counter(before + 1), nexus=n)
                    for n in nexuses
                )
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


# -- WRITE SAME --------------------------------------------------------------------------


def _ws(op: Opcode, lba: int, count: int, **flags: int | bool) -> bytes:
    return WriteSameCDB(op, lba, count, **flags).encode()  # type: ignore[arg-type]


def _status(lu: LogicalUnit, lba: int) -> Awaitable[ScsiResult]:
    return execute(lu, GetLbaStatusCDB(lba, 24).encode())


def _first_extent(result: ScsiResult) -> tuple[int, int, int]:
    lba, count, status = struct.unpack_from(">QIB", bytes(result.data), 8)
    return lba, count, status


@pytest.mark.parametrize("op", [Opcode.WRITE_SAME_10, Opcode.WRITE_SAME_16])
def test_write_same_writes_the_pattern(device: BlockDevice, op: Opcode) -> None:
    async def body(lu: LogicalUnit) -> None:
        for count in (1, 7, 256):
            block = bytes([count & 0xFF]) * BS
            result = good(await execute(lu, _ws(op, BLOCKS - count, count), block))
            assert result.data_out_used == BS
            assert await read(lu, BLOCKS - count, count) == block * count
        # UNMAP with a non-zero pattern must still write the pattern.
        good(await execute(lu, _ws(op, 0, 16, unmap=True), b"\x11" * BS))
        assert await read(lu, 0, 16) == b"\x11" * 16 * BS
        assert _first_extent(good(await _status(lu, 0)))[2] == 0  # MAPPED

    run(device, body)


@pytest.mark.parametrize("op", [Opcode.WRITE_SAME_10, Opcode.WRITE_SAME_16])
def test_write_same_unmap_deallocates(device: BlockDevice, op: Opcode) -> None:
    async def body(lu: LogicalUnit) -> None:
        await write(lu, 0, b"\xff" * 64 * BS)
        good(await execute(lu, _ws(op, 16, 16, unmap=True), bytes(BS)))
        assert await read(lu, 0, 64) == b"\xff" * 16 * BS + bytes(16 * BS) + b"\xff" * 32 * BS
        assert _first_extent(good(await _status(lu, 16))) == (16, 16, 1)  # DEALLOCATED
        assert _first_extent(good(await _status(lu, 32)))[:3:2] == (32, 0)
        # Without UNMAP a zero block is written (the blocks stay mapped).
        good(await execute(lu, _ws(op, 16, 8), bytes(BS)))
        assert _first_extent(good(await _status(lu, 16))) == (16, 8, 0)

    run(device, body)


def test_write_same_16_ndob(device: BlockDevice) -> None:
    async def body(lu: LogicalUnit) -> None:
        await write(lu, 0, b"\xff" * 32 * BS)
        result = good(await execute(lu, _ws(Opcode.WRITE_SAME_16, 0, 8, ndob=True)))
        assert result.data_out_used == 0
        assert await read(lu, 0, 8) == bytes(8 * BS)
        assert _first_extent(good(await _status(lu, 0)))[2] == 0
        good(await execute(lu, _ws(Opcode.WRITE_SAME_16, 8, 8, ndob=True, unmap=True)))
        assert _first_extent(good(await _status(lu, 8))) == (8, 8, 1)
        assert await read(lu, 8, 8) == bytes(8 * BS)

    run(device, body)


@pytest.mark.parametrize("op", [Opcode.WRITE_SAME_10, Opcode.WRITE_SAME_16])
def test_write_same_field_errors(device: BlockDevice, op: Opcode) -> None:
    async def body(lu: LogicalUnit) -> None:
        block = bytes(BS)
        length_byte = 7 if op == Opcode.WRITE_SAME_10 else 10
        # WSNZ=1: zero blocks never means "to the end of the medium".
        result = await execute(lu, _ws(op, 0, 0), block)
        expect(result, *INVALID_CDB)
        assert field_pointer(result) == length_byte
        result = await execute(lu, _ws(op, 0, 0, unmap=True), block)
        expect(result, *INVALID_CDB)
        expect(await execute(lu, _ws(op, 0, 1, anchor=True), block), *INVALID_CDB)
        expect(await execute(lu, _ws(op, 0, 1, anchor=True, unmap=True), block), *INVALID_CDB)
        expect(await execute(lu, _ws(op, 0, 1, protect=1), block), *INVALID_CDB)
        expect(await execute(lu, _ws(op, BLOCKS, 1), block), *OOB)
        expect(await execute(lu, _ws(op, BLOCKS - 1, 2), block), *OOB)
        for size in (BS // 2, 2 * BS, 0):  # WriteSame*.InvalidDataOutSize
            result = await execute(lu, _ws(op, 0, 1, unmap=True), bytes(size))
            assert sense_of(result)[0] == SenseKey.ILLEGAL_REQUEST

    run(device, body)


def test_write_same_maximum_length() -> None:
    blocks = limits.MAX_WRITE_SAME_BLOCKS + 8
    dev = MemoryDevice(blocks, BS)

    async def body(lu: LogicalUnit) -> None:
        block = b"\x01" * BS
        over = limits.MAX_WRITE_SAME_BLOCKS + 1
        expect(await execute(lu, _ws(Opcode.WRITE_SAME_16, 0, over), block), *INVALID_CDB)
        good(await execute(lu, _ws(Opcode.WRITE_SAME_16, 8, limits.MAX_WRITE_SAME_BLOCKS), block))
        assert await read(lu, blocks - 2, 2) == block * 2
        good(await execute(lu, _ws(Opcode.WRITE_SAME_16, 0, 0x10000, unmap=True), bytes(BS)))
        assert await read(lu, 0, 8) == bytes(8 * BS)

    run(dev, body)


# -- UNMAP -------------------------------------------------------------------------------


def _unmap(ranges: list[tuple[int, int]], *, anchor: bool = False) -> tuple[bytes, bytes]:
    plist = UnmapParameterList.of(ranges).encode()
    return UnmapCDB(len(plist), anchor=anchor).encode(), plist


def test_unmap_then_get_lba_status(device: BlockDevice) -> None:
    async def body(lu: LogicalUnit) -> None:
        await write(lu, 0, pattern(64))
        cdb, plist = _unmap([(16, 16), (48, 8)])
        result = good(await execute(lu, cdb, plist))
        assert result.data_out_used == len(plist)
        assert await read(lu, 16, 16) == bytes(16 * BS)
        assert await read(lu, 0, 16) == pattern(64)[: 16 * BS]
        assert _first_extent(good(await _status(lu, 0))) == (0, 16, 0)
        assert _first_extent(good(await _status(lu, 16))) == (16, 16, 1)
        assert _first_extent(good(await _status(lu, 20))) == (20, 12, 1)
        assert _first_extent(good(await _status(lu, 32))) == (32, 16, 0)
        assert _first_extent(good(await _status(lu, 48))) == (48, 8, 1)
        assert _first_extent(good(await _status(lu, 56))) == (56, 8, 0)
        assert _first_extent(good(await _status(lu, 64))) == (64, BLOCKS - 64, 1)

    run(device, body)


def test_unmap_empty_lists_and_zero_blocks(device: BlockDevice) -> None:
    async def body(lu: LogicalUnit) -> None:
        good(await execute(lu, UnmapCDB(0).encode()))  # PARAMETER LIST LENGTH 0
        good(await execute(lu, *_unmap([])))
        good(await execute(lu, *_unmap([(BLOCKS, 0)])))
        good(await execute(lu, *_unmap([(i // 2, 0) for i in range(256)])))

    run(device, body)


def test_unmap_parameter_list_errors(device: BlockDevice) -> None:
    async def body(lu: LogicalUnit) -> None:
        await write(lu, 0, pattern(8))
        short = await execute(lu, UnmapCDB(4).encode(), bytes(4))
        expect(short, SenseKey.ILLEGAL_REQUEST, ASC.PARAMETER_LIST_LENGTH_ERROR)
        truncated = await execute(lu, UnmapCDB(24).encode(), bytes(6))
        expect(truncated, SenseKey.ILLEGAL_REQUEST, ASC.PARAMETER_LIST_LENGTH_ERROR)
        too_many = [(i, 1) for i in range(limits.MAX_UNMAP_DESCRIPTORS + 1)]
        expect(
            await execute(lu, *_unmap(too_many)),
            SenseKey.ILLEGAL_REQUEST,
            ASC.INVALID_FIELD_IN_PARAMETER_LIST,
        )
        too_long = [(0, 8), (8, limits.MAX_UNMAP_BLOCKS)]
        result = await execute(lu, *_unmap(too_long))
        expect(result, SenseKey.ILLEGAL_REQUEST, ASC.INVALID_FIELD_IN_PARAMETER_LIST)
        assert field_pointer(result) == 8 + 16 + 8
        assert not result.sense[15] & 0x40  # C/D: the error is in the parameter list
        # A bad descriptor rejects the whole list: the valid first one is not applied.
        expect(await execute(lu, *_unmap([(0, 8), (BLOCKS - 1, 2)])), *OOB)
        expect(await execute(lu, *_unmap([(1 << 63, 1)])), *OOB)
        assert await read(lu, 0, 8) == pattern(8)
        expect(await execute(lu, *_unmap([(0, 1)], anchor=True)), *INVALID_CDB)

    run(device, body)


def test_unmap_needs_a_thin_device() -> None:
    class ThickDevice(MemoryDevice):
        thin_provisioned = False

    async def body(lu: LogicalUnit) -> None:
        result = await execute(lu, *_unmap([(0, 1)]))
        expect(result, SenseKey.ILLEGAL_REQUEST, ASC.INVALID_COMMAND_OPERATION_CODE)
        # WRITE SAME with UNMAP on a thick device writes the zeroes instead.
        good(await execute(lu, _ws(Opcode.WRITE_SAME_16, 0, 4, unmap=True), bytes(BS)))
        rc16 = good(await execute(lu, ReadCapacity16CDB(32).encode()))
        assert rc16.data[14] & 0xC0 == 0

    run(ThickDevice(BLOCKS, BS), body)


# -- GET LBA STATUS ----------------------------------------------------------------------


def test_get_lba_status_descriptors_and_allocation_length(device: BlockDevice) -> None:
    async def body(lu: LogicalUnit) -> None:
        await write(lu, 8, pattern(8))
        await write(lu, 24, pattern(8))
        result = good(await execute(lu, GetLbaStatusCDB(0, 1024).encode()))
        data = bytes(result.data)
        (length,) = struct.unpack_from(">I", data)
        extents = [struct.unpack_from(">QIB", data, 8 + 16 * i) for i in range((length - 4) // 16)]
        assert extents == [
            (0, 8, 1),
            (8, 8, 0),
            (16, 8, 1),
            (24, 8, 0),
            (32, BLOCKS - 32, 1),
        ]
        assert len(data) == 8 + 16 * len(extents)
        one = bytes(good(await execute(lu, GetLbaStatusCDB(8, 24).encode())).data)
        assert one == struct.pack(">I4xQIB3x", 20, 8, 8, 0)
        assert bytes(good(await execute(lu, GetLbaStatusCDB(8, 10).encode())).data) == one[:10]
        assert bytes(good(await execute(lu, GetLbaStatusCDB(8, 0).encode())).data) == b""
        last = bytes(good(await execute(lu, GetLbaStatusCDB(BLOCKS - 1, 24).encode())).data)
        assert struct.unpack_from(">QIB", last, 8) == (BLOCKS - 1, 1, 1)

    run(device, body)


def test_get_lba_status_beyond_end_and_report_type(device: BlockDevice) -> None:
    async def body(lu: LogicalUnit) -> None:
        for lba in (BLOCKS, BLOCKS + 1, 1 << 63, (1 << 64) - 1):
            expect(await execute(lu, GetLbaStatusCDB(lba, 24).encode()), *OOB)
        result = await execute(lu, GetLbaStatusCDB(0, 24, report_type=1).encode())
        expect(result, *INVALID_CDB)
        assert field_pointer(result) == 14

    run(device, body)


# -- READ CAPACITY -----------------------------------------------------------------------


def test_read_capacity_10_and_16(device: BlockDevice) -> None:
    async def body(lu: LogicalUnit) -> None:
        rc10 = good(await execute(lu, ReadCapacity10CDB().encode()))
        assert bytes(rc10.data) == struct.pack(">II", BLOCKS - 1, BS)
        rc16 = bytes(good(await execute(lu, ReadCapacity16CDB(32).encode())).data)
        assert len(rc16) == 32
        last, block_size, byte12, byte13, byte14 = struct.unpack_from(">QIBBB", rc16)
        assert (last, block_size) == (BLOCKS - 1, BS)
        assert byte12 & 0x0F == 0  # no protection information
        assert byte13 == 0  # one logical block per physical block
        assert byte14 & 0xC0 == 0xC0  # LBPME and LBPRZ: thin, unmapped reads zeroes
        assert rc16[16:] == bytes(16)
        for alloc in range(16):  # ReadCapacity16.Alloclen
            result = good(await execute(lu, ReadCapacity16CDB(alloc).encode()))
            assert bytes(result.data) == rc16[:alloc]
        good(await execute(lu, ReadCapacity10CDB(5, pmi=True).encode()))
        expect(await execute(lu, ReadCapacity10CDB(5).encode()), *INVALID_CDB)
        expect(await execute(lu, ReadCapacity16CDB(32, lba=5).encode()), *INVALID_CDB)

    run(device, body)


def test_read_capacity_beyond_two_to_the_32_blocks() -> None:
    blocks = (1 << 33) + 5
    dev = MemoryDevice(blocks, 4096)

    async def body(lu: LogicalUnit) -> None:
        rc10 = good(await execute(lu, ReadCapacity10CDB().encode()))
        assert bytes(rc10.data) == struct.pack(">II", 0xFFFFFFFF, 4096)
        rc16 = bytes(good(await execute(lu, ReadCapacity16CDB(32).encode())).data)
        assert struct.unpack_from(">QI", rc16) == (blocks - 1, 4096)
        # The last blocks are reachable with 16-byte CDBs only.
        data = b"\x77" * 4096
        good(await execute(lu, rw(Opcode.WRITE_16, blocks - 1, 1), data))
        assert bytes(good(await execute(lu, rw(Opcode.READ_16, blocks - 1, 1))).data) == data
        expect(await execute(lu, rw(Opcode.READ_16, blocks, 1)), *OOB)

    run(dev, body)


def test_read_capacity_10_at_exactly_two_to_the_32_blocks() -> None:
    async def body(lu: LogicalUnit) -> None:
        rc10 = good(await execute(lu, ReadCapacity10CDB().encode()))
        assert bytes(rc10.data)[:4] == b"\xff\xff\xff\xff"

    run(MemoryDevice(1 << 32, 512), body)

    async def one_less(lu: LogicalUnit) -> None:
        rc10 = good(await execute(lu, ReadCapacity10CDB().encode()))
        assert bytes(rc10.data)[:4] == b"\xff\xff\xff\xfe"

    run(MemoryDevice((1 << 32) - 1, 512), one_less)


# -- SYNCHRONIZE CACHE, PRE-FETCH --------------------------------------------------------


@pytest.mark.parametrize("op", [Opcode.SYNCHRONIZE_CACHE_10, Opcode.SYNCHRONIZE_CACHE_16])
def test_synchronize_cache(op: Opcode) -> None:
    dev = CountingDevice()

    async def body(lu: LogicalUnit) -> None:
        good(await execute(lu, SynchronizeCacheCDB(op, 0, 0).encode()))
        good(await execute(lu, SynchronizeCacheCDB(op, 0, 1, immed=True).encode()))
        good(await execute(lu, SynchronizeCacheCDB(op, BLOCKS - 1, 1).encode()))
        assert dev.flushes == 3
        expect(await execute(lu, SynchronizeCacheCDB(op, BLOCKS - 1, 2).encode()), *OOB)
        expect(await execute(lu, SynchronizeCacheCDB(op, BLOCKS + 1, 0).encode()), *OOB)
        assert dev.flushes == 3

    run(dev, body)


def test_synchronize_cache_on_file_device(device: BlockDevice) -> None:
    async def body(lu: LogicalUnit) -> None:
        await write(lu, 0, pattern(4))
        sync = SynchronizeCacheCDB(Opcode.SYNCHRONIZE_CACHE_16, 0, 0).encode()
        good(await execute(lu, sync))

    run(device, body)


@pytest.mark.parametrize("op", [Opcode.PRE_FETCH_10, Opcode.PRE_FETCH_16])
def test_pre_fetch(device: BlockDevice, op: Opcode) -> None:
    async def body(lu: LogicalUnit) -> None:
        for immed in (False, True):
            result = await execute(lu, PrefetchCDB(op, 0, 1, immed=immed, group=3).encode())
            assert good(result).data == b""
        good(await execute(lu, PrefetchCDB(op, BLOCKS - 256, 256).encode()))
        good(await execute(lu, PrefetchCDB(op, 0, 0).encode()))
        expect(await execute(lu, PrefetchCDB(op, BLOCKS + 1, 0).encode()), *OOB)
        expect(await execute(lu, PrefetchCDB(op, BLOCKS - 1, 2).encode()), *OOB)
        expect(await execute(lu, PrefetchCDB(op, 0xFFFFFFFF, 1).encode()), *OOB)

    run(device, body)


# -- the command table -------------------------------------------------------------------


def test_command_table_usage_data() -> None:
    by_key = {(spec.opcode, spec.service_action): spec for spec in COMMANDS}
    assert len(by_key) == len(COMMANDS)
    for spec in COMMANDS:
        assert spec.usage_data[0] == spec.opcode
        assert spec.cdb_length in (6, 10, 12, 16)
    sai = Opcode.SERVICE_ACTION_IN_16
    assert by_key[sai, ServiceActionIn16.READ_CAPACITY_16].usage_data[1] == 0x10
    assert by_key[sai, ServiceActionIn16.GET_LBA_STATUS].usage_data[1] == 0x12
    # libiscsi *_dpofua tests: DPO/FUA usage bits set because MODE SENSE reports DPOFUA=1.
    assert limits.SUPPORTS_DPO_FUA
    for op in (
        Opcode.READ_10,
        Opcode.READ_12,
        Opcode.READ_16,
        Opcode.WRITE_10,
        Opcode.WRITE_12,
        Opcode.WRITE_16,
        Opcode.ORWRITE_16,
        Opcode.COMPARE_AND_WRITE,
    ):
        assert by_key[op, None].usage_data[1] & 0x18 == 0x18
    for op in (Opcode.VERIFY_10, Opcode.WRITE_AND_VERIFY_16):
        assert by_key[op, None].usage_data[1] & 0x10


def test_command_table_directions_and_media_access() -> None:
    for spec in COMMANDS:
        if spec.opcode in (Opcode.READ_CAPACITY_10, Opcode.SERVICE_ACTION_IN_16) and (
            spec.service_action != ServiceActionIn16.GET_LBA_STATUS
        ):
            assert not spec.media_access
        else:
            assert spec.media_access, spec.name
        if spec.name.startswith(("READ", "GET")):
            assert spec.direction == DataDirection.IN
        elif spec.name.startswith(("SYNCHRONIZE", "PRE-FETCH")):
            assert spec.direction == DataDirection.NONE
        else:
            assert spec.direction == DataDirection.OUT, spec.name


def test_commands_reach_handlers_through_the_logical_unit(device: BlockDevice) -> None:
    async def body(lu: LogicalUnit) -> None:
        for spec in COMMANDS:
            assert lu.find_command(spec.usage_data) is not None

    run(device, body)
