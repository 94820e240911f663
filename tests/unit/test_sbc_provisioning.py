"""SBC-4 WRITE SAME, UNMAP, GET LBA STATUS, READ CAPACITY, SYNCHRONIZE CACHE, PRE-FETCH and
the command table, driven through ``LogicalUnit.execute``."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Awaitable, Iterator
from pathlib import Path

import pytest
from tests.support.sbc_harness import (
    BLOCKS,
    BS,
    INVALID_CDB,
    OOB,
    CountingDevice,
    execute,
    expect,
    field_pointer,
    good,
    open_device,
    pattern,
    read,
    run,
    rw,
    sense_of,
    write,
)

from sanstack.block.device import BlockDevice
from sanstack.block.memory import MemoryDevice
from sanstack.scsi import limits
from sanstack.scsi.cdb import (
    GetLbaStatusCDB,
    PrefetchCDB,
    ReadCapacity10CDB,
    ReadCapacity16CDB,
    SynchronizeCacheCDB,
    UnmapCDB,
    UnmapParameterList,
    WriteSameCDB,
)
from sanstack.scsi.codes import ASC, Opcode, SenseKey, ServiceActionIn16
from sanstack.scsi.command import CommandResult, DataDirection
from sanstack.scsi.logical_unit import LogicalUnit
from sanstack.scsi.sbc import COMMANDS


@pytest.fixture(params=["memory", "file"])
def device(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlockDevice]:
    dev = open_device(request.param, tmp_path)
    yield dev
    asyncio.run(dev.close())


# -- WRITE SAME --------------------------------------------------------------------------


def _ws(op: Opcode, lba: int, count: int, **flags: int | bool) -> bytes:
    return WriteSameCDB(op, lba, count, **flags).encode()  # type: ignore[arg-type]


def _status(lu: LogicalUnit, lba: int) -> Awaitable[CommandResult]:
    return execute(lu, GetLbaStatusCDB(lba, 24).encode())


def _first_extent(result: CommandResult) -> tuple[int, int, int]:
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
        # UNMAP on a thin device deallocates whatever the pattern (LIO's reading of SBC-4;
        # libiscsi's WriteSame10.UnmapUntilEnd sends 0xFF with UNMAP and expects zeroes).
        good(await execute(lu, _ws(op, 0, 16, unmap=True), b"\x11" * BS))
        assert await read(lu, 0, 16) == bytes(16 * BS)
        assert _first_extent(good(await _status(lu, 0)))[2] == 1  # DEALLOCATED

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
        # WSNZ=0: zero blocks means "through the last LBA" (WriteSame*.UnmapUntilEnd).
        pattern_block = b"\xa5" * BS
        good(await execute(lu, _ws(op, BLOCKS - 3, 0), pattern_block))
        assert await read(lu, BLOCKS - 3, 3) == pattern_block * 3
        good(await execute(lu, _ws(op, BLOCKS - 3, 0, unmap=True), block))
        assert await read(lu, BLOCKS - 3, 3) == bytes(3 * BS)
        expect(await execute(lu, _ws(op, BLOCKS + 1, 0), block), *OOB)
        if op == Opcode.WRITE_SAME_16:  # WRITE SAME(10) cannot even express the excess
            result = await execute(lu, _ws(op, 0, limits.MAX_WRITE_SAME_BLOCKS + 1), block)
            expect(result, *INVALID_CDB)
            assert field_pointer(result) == length_byte
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
        assert byte13 == 0  # physical block size = logical block size by default
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
