"""SBC-4 block commands: READ CAPACITY, SYNCHRONIZE CACHE, PRE-FETCH and the command table.

The data transfer handlers live in ``sanstack.scsi.sbc_rw`` and the provisioning ones in
``sanstack.scsi.sbc_provisioning``; ``COMMANDS`` lists them all for the device server.
Each ``usage_data`` is the CDB USAGE DATA of REPORT SUPPORTED OPERATION CODES (SPC-4
§6.35.3): the opcode, the service action where there is one, then a mask of the bits this
device server evaluates in each CDB byte. GROUP NUMBER and CONTROL bits are not evaluated.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Final

from sanstack.scsi.cdb import (
    BYTCHK_MASK,
    DPO,
    FUA,
    IMMED,
    LBA6_MSB_MASK,
    PMI,
    PROTECT_MASK,
    REPORT_TYPE_MASK,
    UNMAP_ANCHOR,
    WS_ANCHOR,
    WS_NDOB,
    WS_UNMAP,
    PrefetchCDB,
    ReadCapacity10CDB,
    ReadCapacity16CDB,
    SynchronizeCacheCDB,
)
from sanstack.scsi.codes import Opcode, ServiceActionIn16
from sanstack.scsi.command import (
    Command,
    CommandResult,
    CommandSpec,
    DataDirection,
    Handler,
)
from sanstack.scsi.sbc_common import check_lba_range
from sanstack.scsi.sbc_provisioning import get_lba_status, unmap, write_same
from sanstack.scsi.sbc_rw import (
    compare_and_write,
    orwrite_16,
    read_6,
    read_10,
    read_12,
    read_16,
    verify,
    write_6,
    write_10,
    write_12,
    write_16,
    write_and_verify,
)
from sanstack.scsi.sense import invalid_field_in_cdb
from sanstack.scsi.spc import check_ready

if TYPE_CHECKING:
    from sanstack.scsi.logical_unit import LogicalUnit

__all__ = ["COMMANDS"]

# -- READ CAPACITY -----------------------------------------------------------------------

_RC10_DATA: Final = struct.Struct(">II")
# RETURNED LOGICAL BLOCK ADDRESS, LOGICAL BLOCK LENGTH, byte 12 (RC BASIS, P_TYPE, PROT_EN),
# byte 13 (P_I_EXPONENT, LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT), LBPME/LBPRZ/LOWEST
# ALIGNED LBA; 16 reserved bytes (SBC-4 §5.21.2 table 'READ CAPACITY (16) parameter data').
_RC16_DATA: Final = struct.Struct(">QIBBH16x")
RC10_MAX_LBA: Final = 0xFFFF_FFFF
RC_BASIS_LAST_LBA: Final = 0x01 << 4  # RETURNED LOGICAL BLOCK ADDRESS is the last LBA
LBPME: Final = 0x8000
LBPRZ: Final = 0x4000
_RC_LBA_BYTE: Final = 2  # INVALID FIELD IN CDB points at the LOGICAL BLOCK ADDRESS field


async def read_capacity_10(lu: LogicalUnit, cmd: Command) -> CommandResult:
    """READ CAPACITY(10), SBC-4 §5.20.

    A capacity past 2^32 blocks reports FFFFFFFFh so the initiator moves to READ
    CAPACITY(16). The obsolete LBA field must be zero unless PMI is set (§5.20.1).
    """
    c = ReadCapacity10CDB.decode(cmd.cdb)
    if not c.pmi and c.lba:
        raise invalid_field_in_cdb(_RC_LBA_BYTE)
    check_ready(lu)
    device = lu.device
    last = min(device.num_blocks - 1, RC10_MAX_LBA)
    return CommandResult(data=_RC10_DATA.pack(last, device.block_size))


async def read_capacity_16(lu: LogicalUnit, cmd: Command) -> CommandResult:
    """READ CAPACITY(16), SBC-4 §5.21: LBPME and LBPRZ set for a thin device; no protection
    information; LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT from the device's physical block
    size; data cut to the ALLOCATION LENGTH.
    """
    c = ReadCapacity16CDB.decode(cmd.cdb)
    if not c.pmi and c.lba:
        raise invalid_field_in_cdb(_RC_LBA_BYTE)
    check_ready(lu)
    device = lu.device
    provisioning = LBPME | LBPRZ if device.thin_provisioned else 0
    per_physical = (device.physical_block_size // device.block_size).bit_length() - 1
    data = _RC16_DATA.pack(
        device.num_blocks - 1, device.block_size, RC_BASIS_LAST_LBA, per_physical, provisioning
    )
    return CommandResult(data=data[: c.allocation_length])


# -- SYNCHRONIZE CACHE, PRE-FETCH --------------------------------------------------------


async def synchronize_cache(lu: LogicalUnit, cmd: Command) -> CommandResult:
    """SYNCHRONIZE CACHE(10/16), SBC-4 §5.25-5.26.

    The whole device cache is flushed whatever the range (a superset is allowed). IMMED
    lets the device server answer before the flush ends; answering after it is also
    correct and keeps errors reportable.
    """
    c = SynchronizeCacheCDB.decode(cmd.cdb)
    check_ready(lu)
    check_lba_range(lu, c.lba, c.number_of_blocks)
    await lu.device.flush()
    return CommandResult()


async def pre_fetch(lu: LogicalUnit, cmd: Command) -> CommandResult:
    """PRE-FETCH(10/16), SBC-4 §5.12-5.13.

    Backstores have no cache the device server controls, so no block is transferred to a
    cache and the command ends with GOOD (the "cache cannot hold them" outcome), never
    CONDITION MET; tgt does the same and libiscsi's PreFetch tests expect GOOD.
    """
    c = PrefetchCDB.decode(cmd.cdb)
    check_ready(lu)
    check_lba_range(lu, c.lba, c.number_of_blocks)
    return CommandResult()


# -- the command table -------------------------------------------------------------------

_RW_FLAGS: Final = PROTECT_MASK | DPO | FUA
_VERIFY_FLAGS: Final = PROTECT_MASK | DPO | BYTCHK_MASK
_NONE: Final = 0x00  # a byte whose bits the device server does not evaluate (GROUP, CONTROL)
_ALL: Final = 0xFF


def _cdb10(opcode: int, flags: int) -> bytes:
    """Usage data of a 10-byte CDB: opcode, flags, 4-byte LBA, group, 2-byte count, control."""
    return bytes([opcode, flags, _ALL, _ALL, _ALL, _ALL, _NONE, _ALL, _ALL, _NONE])


def _cdb12(opcode: int, flags: int) -> bytes:
    """Usage data of a 12-byte CDB: opcode, flags, 4-byte LBA, 4-byte count, group, control."""
    return bytes([opcode, flags, *[_ALL] * 8, _NONE, _NONE])


def _cdb16(opcode: int, flags: int, byte14: int = _NONE) -> bytes:
    """Usage data of a 16-byte CDB: opcode, flags, 8-byte LBA, 4-byte count, byte 14, control."""
    return bytes([opcode, flags, *[_ALL] * 12, byte14, _NONE])


def _cdb6(opcode: int) -> bytes:
    return bytes([opcode, LBA6_MSB_MASK, _ALL, _ALL, _ALL, _NONE])


def _spec(
    opcode: Opcode,
    name: str,
    handler: Handler,
    usage: bytes,
    direction: DataDirection,
    *,
    service_action: int | None = None,
    media_access: bool = True,
) -> CommandSpec:
    if usage[0] != opcode:
        raise ValueError(f"{name}: usage data must start with the opcode")
    return CommandSpec(
        opcode=opcode,
        name=name,
        handler=handler,
        usage_data=usage,
        direction=direction,
        service_action=service_action,
        media_access=media_access,
    )


_IN = DataDirection.IN
_OUT = DataDirection.OUT
_NO_DATA = DataDirection.NONE

COMMANDS: list[CommandSpec] = [
    _spec(Opcode.READ_6, "READ(6)", read_6, _cdb6(Opcode.READ_6), _IN),
    _spec(Opcode.READ_10, "READ(10)", read_10, _cdb10(Opcode.READ_10, _RW_FLAGS), _IN),
    _spec(Opcode.READ_12, "READ(12)", read_12, _cdb12(Opcode.READ_12, _RW_FLAGS), _IN),
    _spec(Opcode.READ_16, "READ(16)", read_16, _cdb16(Opcode.READ_16, _RW_FLAGS), _IN),
    _spec(Opcode.WRITE_6, "WRITE(6)", write_6, _cdb6(Opcode.WRITE_6), _OUT),
    _spec(Opcode.WRITE_10, "WRITE(10)", write_10, _cdb10(Opcode.WRITE_10, _RW_FLAGS), _OUT),
    _spec(Opcode.WRITE_12, "WRITE(12)", write_12, _cdb12(Opcode.WRITE_12, _RW_FLAGS), _OUT),
    _spec(Opcode.WRITE_16, "WRITE(16)", write_16, _cdb16(Opcode.WRITE_16, _RW_FLAGS), _OUT),
    _spec(
        Opcode.WRITE_AND_VERIFY_10,
        "WRITE AND VERIFY(10)",
        write_and_verify,
        _cdb10(Opcode.WRITE_AND_VERIFY_10, _VERIFY_FLAGS),
        _OUT,
    ),
    _spec(
        Opcode.WRITE_AND_VERIFY_12,
        "WRITE AND VERIFY(12)",
        write_and_verify,
        _cdb12(Opcode.WRITE_AND_VERIFY_12, _VERIFY_FLAGS),
        _OUT,
    ),
    _spec(
        Opcode.WRITE_AND_VERIFY_16,
        "WRITE AND VERIFY(16)",
        write_and_verify,
        _cdb16(Opcode.WRITE_AND_VERIFY_16, _VERIFY_FLAGS),
        _OUT,
    ),
    _spec(Opcode.VERIFY_10, "VERIFY(10)", verify, _cdb10(Opcode.VERIFY_10, _VERIFY_FLAGS), _OUT),
    _spec(Opcode.VERIFY_12, "VERIFY(12)", verify, _cdb12(Opcode.VERIFY_12, _VERIFY_FLAGS), _OUT),
    _spec(Opcode.VERIFY_16, "VERIFY(16)", verify, _cdb16(Opcode.VERIFY_16, _VERIFY_FLAGS), _OUT),
    _spec(Opcode.ORWRITE_16, "ORWRITE(16)", orwrite_16, _cdb16(Opcode.ORWRITE_16, _RW_FLAGS), _OUT),
    _spec(
        Opcode.COMPARE_AND_WRITE,
        "COMPARE AND WRITE",
        compare_and_write,
        bytes([Opcode.COMPARE_AND_WRITE, _RW_FLAGS, *[_ALL] * 8, 0, 0, 0, _ALL, _NONE, _NONE]),
        _OUT,
    ),
    _spec(
        Opcode.WRITE_SAME_10,
        "WRITE SAME(10)",
        write_same,
        _cdb10(Opcode.WRITE_SAME_10, PROTECT_MASK | WS_ANCHOR | WS_UNMAP),
        _OUT,
    ),
    _spec(
        Opcode.WRITE_SAME_16,
        "WRITE SAME(16)",
        write_same,
        _cdb16(Opcode.WRITE_SAME_16, PROTECT_MASK | WS_ANCHOR | WS_UNMAP | WS_NDOB),
        _OUT,
    ),
    _spec(
        Opcode.UNMAP,
        "UNMAP",
        unmap,
        bytes([Opcode.UNMAP, UNMAP_ANCHOR, 0, 0, 0, 0, _NONE, _ALL, _ALL, _NONE]),
        _OUT,
    ),
    _spec(
        Opcode.SERVICE_ACTION_IN_16,
        "GET LBA STATUS",
        get_lba_status,
        _cdb16(Opcode.SERVICE_ACTION_IN_16, ServiceActionIn16.GET_LBA_STATUS, REPORT_TYPE_MASK),
        _IN,
        service_action=ServiceActionIn16.GET_LBA_STATUS,
    ),
    # READ CAPACITY is not a media access: ALUA standby and unavailable ports still answer
    # it so that an initiator can size the LUN on every path (LIO does the same).
    _spec(
        Opcode.READ_CAPACITY_10,
        "READ CAPACITY(10)",
        read_capacity_10,
        bytes([Opcode.READ_CAPACITY_10, 0, _ALL, _ALL, _ALL, _ALL, 0, 0, PMI, _NONE]),
        _IN,
        media_access=False,
    ),
    _spec(
        Opcode.SERVICE_ACTION_IN_16,
        "READ CAPACITY(16)",
        read_capacity_16,
        _cdb16(Opcode.SERVICE_ACTION_IN_16, ServiceActionIn16.READ_CAPACITY_16, PMI),
        _IN,
        service_action=ServiceActionIn16.READ_CAPACITY_16,
        media_access=False,
    ),
    _spec(
        Opcode.SYNCHRONIZE_CACHE_10,
        "SYNCHRONIZE CACHE(10)",
        synchronize_cache,
        _cdb10(Opcode.SYNCHRONIZE_CACHE_10, IMMED),
        _NO_DATA,
    ),
    _spec(
        Opcode.SYNCHRONIZE_CACHE_16,
        "SYNCHRONIZE CACHE(16)",
        synchronize_cache,
        _cdb16(Opcode.SYNCHRONIZE_CACHE_16, IMMED),
        _NO_DATA,
    ),
    _spec(
        Opcode.PRE_FETCH_10,
        "PRE-FETCH(10)",
        pre_fetch,
        _cdb10(Opcode.PRE_FETCH_10, IMMED),
        _NO_DATA,
    ),
    _spec(
        Opcode.PRE_FETCH_16,
        "PRE-FETCH(16)",
        pre_fetch,
        _cdb16(Opcode.PRE_FETCH_16, IMMED),
        _NO_DATA,
    ),
]
