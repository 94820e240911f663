"""SBC-4 logical block provisioning commands: WRITE SAME(10/16), UNMAP, GET LBA STATUS.

sanstack reports LBPME=1 and LBPRZ=1 for a thin device (READ CAPACITY(16)): a deallocated
block reads as zeroes. WRITE SAME with the UNMAP bit deallocates instead of writing, whatever
the block it was given (as LIO does; QEMU writes non-zero patterns instead, which libiscsi's
WriteSame10.UnmapUntilEnd does not accept). Without the UNMAP bit the pattern is always
written, zeroes included, so the blocks stay mapped. Anchored state is not supported
(ANC_SUP=0), so ANCHOR is always an INVALID FIELD IN CDB.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Final

from sanstack.block.device import LBAExtent
from sanstack.scsi.cdb import (
    LENGTH_FIELD_BYTE,
    UNMAP_DESCRIPTOR_LENGTH,
    UNMAP_HEADER_LENGTH,
    GetLbaStatusCDB,
    UnmapCDB,
    UnmapParameterList,
    WriteSameCDB,
)
from sanstack.scsi.codes import ASC, Opcode, SenseKey, Status
from sanstack.scsi.command import Command, CommandResult
from sanstack.scsi.limits import (
    MAX_UNMAP_BLOCKS,
    MAX_UNMAP_DESCRIPTORS,
    MAX_WRITE_SAME_BLOCKS,
    WRITE_SAME_NO_ZERO,
)
from sanstack.scsi.sbc_common import (
    check_lba_range,
    check_protect,
    data_out_mismatch,
    flush_if_needed,
)
from sanstack.scsi.sense import (
    CheckCondition,
    fixed_sense,
    invalid_field_in_cdb,
    invalid_field_in_parameter_list,
    lba_out_of_range,
)
from sanstack.scsi.spc import check_ready, check_writable

if TYPE_CHECKING:
    from sanstack.scsi.logical_unit import LogicalUnit

# WRITE SAME writes its pattern a slice of this many bytes at a time, so a 64 Ki-block
# command never builds the whole range in memory.
WRITE_SAME_CHUNK_BYTES: Final = 1 << 20

ANCHOR_BIT: Final = 4  # byte 1 bit of ANCHOR in WRITE SAME
UNMAP_ANCHOR_BIT: Final = 0  # byte 1 bit of ANCHOR in UNMAP
_UNMAP_DESCRIPTOR_LENGTH_BYTE: Final = 2  # UNMAP BLOCK DESCRIPTOR DATA LENGTH in the header
_UNMAP_COUNT_OFFSET: Final = 8  # NUMBER OF LOGICAL BLOCKS within an UNMAP block descriptor

# GET LBA STATUS parameter data (SBC-4 §5.8.2): PARAMETER DATA LENGTH, 4 reserved bytes,
# then 16-byte LBA status descriptors.
_LBA_STATUS_HEADER: Final = struct.Struct(">I4x")
_LBA_STATUS_DESCRIPTOR: Final = struct.Struct(">QIB3x")
_LBA_STATUS_HEADER_AFTER_LENGTH: Final = 4
_REPORT_TYPE_BYTE: Final = 14
_MAX_EXTENT_BLOCKS: Final = 0xFFFF_FFFF
# Descriptors per GET LBA STATUS: enough for any sensible allocation length, and a bound on
# the device calls one command makes.
MAX_LBA_STATUS_DESCRIPTORS: Final = 64


# -- WRITE SAME --------------------------------------------------------------------------


async def write_same(lu: LogicalUnit, cmd: Command) -> CommandResult:
    """WRITE SAME(10/16), SBC-4 §5.48-5.49.

    WSNZ=0: NUMBER OF LOGICAL BLOCKS zero means "through the last LBA", within the MAXIMUM
    WRITE SAME LENGTH like any other count.
    NDOB (16 only) supplies an all-zero block without a Data-Out transfer.
    """
    c = WriteSameCDB.decode(cmd.cdb)
    cdb_length = 10 if c.opcode == Opcode.WRITE_SAME_10 else 16
    check_protect(c.protect)
    if c.anchor:
        raise invalid_field_in_cdb(1, ANCHOR_BIT)
    count = c.number_of_blocks
    if count == 0 and not WRITE_SAME_NO_ZERO:
        # WSNZ=0: zero blocks means "through the last LBA" (SBC-4 §5.49).
        check_lba_range(lu, c.lba, 0)
        count = lu.device.num_blocks - c.lba
    if (WRITE_SAME_NO_ZERO and count == 0) or count > MAX_WRITE_SAME_BLOCKS:
        raise invalid_field_in_cdb(LENGTH_FIELD_BYTE[cdb_length])
    check_ready(lu)
    check_lba_range(lu, c.lba, count)
    check_writable(lu)
    device = lu.device
    block_size = device.block_size
    if c.ndob:
        need = 0
        block = bytes(block_size)
    else:
        need = block_size
        if len(cmd.data_out) != need:
            return data_out_mismatch(need)
        block = bytes(cmd.data_out)
    if c.unmap and device.thin_provisioned:
        # UNMAP=1 says the caller does not need the pattern kept: deallocate whatever it is
        # (LBPRZ=1, so the blocks then read as zeroes), as LIO does and libiscsi's
        # WriteSame10.UnmapUntilEnd (a 0xFF block with UNMAP set) expects.
        async with lu.lock_range(c.lba, count):
            await device.unmap(c.lba, count)
        return CommandResult(data_out_used=need)
    step = max(1, min(count, WRITE_SAME_CHUNK_BYTES // block_size))
    pattern = memoryview(block * step)
    async with lu.lock_range(c.lba, count):
        for done in range(0, count, step):
            n = min(step, count - done)
            await device.write(c.lba + done, pattern[: n * block_size])
    await flush_if_needed(lu, False)
    return CommandResult(data_out_used=need)


# -- UNMAP -------------------------------------------------------------------------------


def _parameter_list_length_error(used: int) -> CommandResult:
    return CommandResult(
        status=Status.CHECK_CONDITION,
        sense=fixed_sense(SenseKey.ILLEGAL_REQUEST, ASC.PARAMETER_LIST_LENGTH_ERROR),
        data_out_used=used,
    )


async def unmap(lu: LogicalUnit, cmd: Command) -> CommandResult:
    """UNMAP, SBC-4 §5.32.

    Every descriptor is validated before any block is touched, so a rejected list changes
    nothing. A PARAMETER LIST LENGTH of zero is no error; 1-7 is PARAMETER LIST LENGTH ERROR;
    more descriptors than MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT or more blocks in total than
    MAXIMUM UNMAP LBA COUNT is INVALID FIELD IN PARAMETER LIST; a range past the last LBA is
    LBA OUT OF RANGE. A device that is not thin provisioned does not serve UNMAP at all.
    """
    c = UnmapCDB.decode(cmd.cdb)
    if not lu.device.thin_provisioned:
        raise CheckCondition(SenseKey.ILLEGAL_REQUEST, ASC.INVALID_COMMAND_OPERATION_CODE)
    if c.anchor:
        raise invalid_field_in_cdb(1, UNMAP_ANCHOR_BIT)
    check_ready(lu)
    check_writable(lu)
    length = c.parameter_list_length
    if length == 0:
        return CommandResult(data_out_used=0)
    data = memoryview(cmd.data_out)[:length]
    if len(data) < UNMAP_HEADER_LENGTH:
        return _parameter_list_length_error(length)
    descriptors = UnmapParameterList.decode(data).descriptors
    if len(descriptors) > MAX_UNMAP_DESCRIPTORS:
        raise invalid_field_in_parameter_list(_UNMAP_DESCRIPTOR_LENGTH_BYTE)
    total = 0
    for index, d in enumerate(descriptors):
        total += d.count
        if total > MAX_UNMAP_BLOCKS:
            # Point at this descriptor's NUMBER OF LOGICAL BLOCKS field.
            raise invalid_field_in_parameter_list(
                UNMAP_HEADER_LENGTH + index * UNMAP_DESCRIPTOR_LENGTH + _UNMAP_COUNT_OFFSET
            )
        if d.lba + d.count > lu.device.num_blocks:
            raise lba_out_of_range()
    for d in descriptors:
        if d.count:
            async with lu.lock_range(d.lba, d.count):
                await lu.device.unmap(d.lba, d.count)
    return CommandResult(data_out_used=length)


# -- GET LBA STATUS ----------------------------------------------------------------------


def _merge(extents: list[LBAExtent], new: LBAExtent) -> None:
    """Append ``new``, folding it into the last extent when they continue one another."""
    if extents:
        last = extents[-1]
        if (
            last.status == new.status
            and last.lba + last.count == new.lba
            and last.count + new.count <= _MAX_EXTENT_BLOCKS
        ):
            extents[-1] = LBAExtent(last.lba, last.count + new.count, last.status)
            return
    extents.append(new)


async def get_lba_status(lu: LogicalUnit, cmd: Command) -> CommandResult:
    """GET LBA STATUS(16), SBC-4 §5.8.

    Descriptors start at the requested LBA and run contiguously; as many are gathered as
    the ALLOCATION LENGTH holds (at most MAX_LBA_STATUS_DESCRIPTORS), and the data is cut
    to the allocation length as SPC-4 §4.2.5.6 requires. Only REPORT TYPE 0 (all LBAs) is
    served.
    """
    c = GetLbaStatusCDB.decode(cmd.cdb)
    if c.report_type:
        raise invalid_field_in_cdb(_REPORT_TYPE_BYTE, 1)
    check_ready(lu)
    device = lu.device
    if c.lba >= device.num_blocks:
        raise lba_out_of_range()
    if c.allocation_length == 0:
        return CommandResult()
    room = (c.allocation_length - _LBA_STATUS_HEADER.size) // _LBA_STATUS_DESCRIPTOR.size
    wanted = min(max(1, room), MAX_LBA_STATUS_DESCRIPTORS)
    extents: list[LBAExtent] = []
    lba = c.lba
    while len(extents) < wanted and lba < device.num_blocks:
        found = await device.get_lba_status(lba, min(device.num_blocks - lba, _MAX_EXTENT_BLOCKS))
        progressed = False
        for extent in found:
            if extent.lba != lba or extent.count <= 0:
                break  # a device must report contiguous runs from ``lba``; stop at a gap
            _merge(extents, extent)
            lba += extent.count
            progressed = True
        if not progressed:
            break
    body = b"".join(_LBA_STATUS_DESCRIPTOR.pack(e.lba, e.count, e.status) for e in extents)
    header = _LBA_STATUS_HEADER.pack(_LBA_STATUS_HEADER_AFTER_LENGTH + len(body))
    return CommandResult(data=(header + body)[: c.allocation_length])
