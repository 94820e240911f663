"""Typed decoders and encoders of the SBC-4 CDBs sanstack serves.

Each family is a frozen dataclass with ``decode(cdb) -> Self`` and ``encode() -> bytes``;
``decode`` takes fields as they are (range and capacity checks are the handler's) and
``encode`` rejects values its CDB cannot carry. The ``struct.Struct`` layouts are module
constants so the READ/WRITE fast path in ``sanstack.scsi.sbc_rw`` unpacks with the same
definitions without building a dataclass per command.

Section numbers are SBC-4 (T10/BSR INCITS 506) unless marked otherwise.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Self

from sanstack.scsi.codes import ASC, Opcode, SenseKey, ServiceActionIn16
from sanstack.scsi.sense import CheckCondition

# -- byte 1 bits shared by the READ/WRITE/VERIFY families --------------------------------

PROTECT_SHIFT: Final = 5
PROTECT_MASK: Final = 0xE0
DPO: Final = 0x10
FUA: Final = 0x08
BYTCHK_SHIFT: Final = 1
BYTCHK_MASK: Final = 0x06
LBA6_MSB_MASK: Final = 0x1F
# SBC-4 widened GROUP NUMBER to six bits; the two above it are DLD bits we do not serve.
GROUP_MASK: Final = 0x3F
IMMED: Final = 0x02
WS_ANCHOR: Final = 0x10
WS_UNMAP: Final = 0x08
WS_NDOB: Final = 0x01
UNMAP_ANCHOR: Final = 0x01
PMI: Final = 0x01
SERVICE_ACTION_MASK: Final = 0x1F
REPORT_TYPE_MASK: Final = 0x03

# READ(6)/WRITE(6) carry a one-byte TRANSFER LENGTH where zero means 256 blocks (§5.14).
SIX_BYTE_MAX_BLOCKS: Final = 256
SIX_BYTE_MAX_LBA: Final = 0x1FFFFF

CDB6: Final = struct.Struct(">BBHBB")  # opcode, LBA msb, LBA, length, control
CDB10: Final = struct.Struct(">BBIBHB")  # opcode, flags, LBA, group, length, control
CDB12: Final = struct.Struct(">BBIIBB")  # opcode, flags, LBA, length, group, control
CDB16: Final = struct.Struct(">BBQIBB")  # opcode, flags, LBA, length, group, control
CAW16: Final = struct.Struct(">BBQ3xBBB")  # opcode, flags, LBA, blocks, group, control
RC10: Final = struct.Struct(">BBI2xBB")  # opcode, reserved, LBA, PMI, control
UNMAP10: Final = struct.Struct(">BB4xBHB")  # opcode, anchor, group, length, control
UNMAP_HEADER: Final = struct.Struct(">HH4x")  # data length, descriptor data length
UNMAP_DESCRIPTOR: Final = struct.Struct(">QI4x")  # LBA, number of logical blocks
# Module constants, not ClassVars of the dataclasses: compiled (mypyc), a dataclass's
# ClassVar becomes a field (mypyc/mypyc#1122).
UNMAP_HEADER_LENGTH: Final = UNMAP_HEADER.size  # §5.32.2: 8
UNMAP_DESCRIPTOR_LENGTH: Final = UNMAP_DESCRIPTOR.size  # 16
COMPARE_AND_WRITE_NUMBER_OF_BLOCKS_BYTE: Final = 13

_U16: Final = 0xFFFF
_U32: Final = 0xFFFF_FFFF
_U64: Final = 0xFFFF_FFFF_FFFF_FFFF


def _need(cdb: bytes | memoryview, length: int, what: str) -> None:
    if len(cdb) < length:
        raise ValueError(f"{what} CDB needs {length} bytes, got {len(cdb)}")


def _check(value: int, limit: int, name: str) -> None:
    if not 0 <= value <= limit:
        raise ValueError(f"{name} {value} does not fit its field (max {limit:#x})")


class _Flags:
    """Which byte-1 bits a READ/WRITE-family opcode defines."""

    NONE: Final = 0  # the 6-byte CDBs
    DPO_FUA: Final = 1  # READ, WRITE, ORWRITE
    DPO_BYTCHK: Final = 2  # VERIFY, WRITE AND VERIFY


# opcode -> (CDB length, byte-1 flag layout). §5.14-5.17 READ, §5.41-5.44 WRITE,
# §5.45-5.47 WRITE AND VERIFY, §5.37-5.39 VERIFY, §5.11 ORWRITE(16).
_RW_LAYOUT: Final[dict[int, tuple[int, int]]] = {
    Opcode.READ_6: (6, _Flags.NONE),
    Opcode.WRITE_6: (6, _Flags.NONE),
    Opcode.READ_10: (10, _Flags.DPO_FUA),
    Opcode.WRITE_10: (10, _Flags.DPO_FUA),
    Opcode.READ_12: (12, _Flags.DPO_FUA),
    Opcode.WRITE_12: (12, _Flags.DPO_FUA),
    Opcode.READ_16: (16, _Flags.DPO_FUA),
    Opcode.WRITE_16: (16, _Flags.DPO_FUA),
    Opcode.ORWRITE_16: (16, _Flags.DPO_FUA),
    Opcode.WRITE_AND_VERIFY_10: (10, _Flags.DPO_BYTCHK),
    Opcode.WRITE_AND_VERIFY_12: (12, _Flags.DPO_BYTCHK),
    Opcode.WRITE_AND_VERIFY_16: (16, _Flags.DPO_BYTCHK),
    Opcode.VERIFY_10: (10, _Flags.DPO_BYTCHK),
    Opcode.VERIFY_12: (12, _Flags.DPO_BYTCHK),
    Opcode.VERIFY_16: (16, _Flags.DPO_BYTCHK),
}

# Byte offset of the TRANSFER LENGTH / NUMBER OF LOGICAL BLOCKS field per CDB length: the
# field pointer of INVALID FIELD IN CDB sense names it.
LENGTH_FIELD_BYTE: Final[dict[int, int]] = {6: 4, 10: 7, 12: 6, 16: 10}


@dataclass(frozen=True, slots=True)
class ReadWriteCDB:
    """READ/WRITE(6/10/12/16), WRITE AND VERIFY(10/12/16), VERIFY(10/12/16), ORWRITE(16).

    ``transfer_length`` is in logical blocks (the VERIFICATION LENGTH of VERIFY); for the
    6-byte CDBs a wire value of zero decodes as 256 (§5.14). ``protect`` is RDPROTECT,
    WRPROTECT, VRPROTECT or ORPROTECT; ``bytchk`` exists only for (WRITE AND) VERIFY and
    ``fua`` only for READ, WRITE and ORWRITE.
    """

    opcode: Opcode
    lba: int
    transfer_length: int
    protect: int = 0
    dpo: bool = False
    fua: bool = False
    bytchk: int = 0
    group: int = 0
    control: int = 0

    @property
    def cdb_length(self) -> int:
        return _RW_LAYOUT[self.opcode][0]

    @classmethod
    def decode(cls, cdb: bytes | memoryview) -> Self:
        if not cdb or cdb[0] not in _RW_LAYOUT:
            raise ValueError("not a READ/WRITE/VERIFY family CDB")
        length, flags_kind = _RW_LAYOUT[cdb[0]]
        _need(cdb, length, Opcode(cdb[0]).name)
        if length == 6:
            op, msb, low, count, control = CDB6.unpack_from(cdb)
            return cls(
                Opcode(op),
                ((msb & LBA6_MSB_MASK) << 16) | low,
                count or SIX_BYTE_MAX_BLOCKS,
                control=control,
            )
        if length == 10:
            op, flags, lba, group, count, control = CDB10.unpack_from(cdb)
        elif length == 12:
            op, flags, lba, count, group, control = CDB12.unpack_from(cdb)
        else:
            op, flags, lba, count, group, control = CDB16.unpack_from(cdb)
        return cls(
            Opcode(op),
            lba,
            count,
            protect=flags >> PROTECT_SHIFT,
            dpo=bool(flags & DPO),
            fua=flags_kind == _Flags.DPO_FUA and bool(flags & FUA),
            bytchk=(flags & BYTCHK_MASK) >> BYTCHK_SHIFT if flags_kind == _Flags.DPO_BYTCHK else 0,
            group=group & GROUP_MASK,
            control=control,
        )

    def encode(self) -> bytes:
        length, flags_kind = _RW_LAYOUT[self.opcode]
        _check(self.control, 0xFF, "CONTROL")
        if length == 6:
            _check(self.lba, SIX_BYTE_MAX_LBA, "LOGICAL BLOCK ADDRESS")
            if not 1 <= self.transfer_length <= SIX_BYTE_MAX_BLOCKS:
                raise ValueError("a 6-byte CDB moves 1..256 blocks")
            if self.protect or self.dpo or self.fua or self.bytchk or self.group:
                raise ValueError("6-byte CDBs have no flags or group number")
            return CDB6.pack(
                self.opcode,
                self.lba >> 16,
                self.lba & _U16,
                self.transfer_length % SIX_BYTE_MAX_BLOCKS,
                self.control,
            )
        _check(self.protect, 7, "PROTECT")
        _check(self.group, GROUP_MASK, "GROUP NUMBER")
        if self.fua and flags_kind != _Flags.DPO_FUA:
            raise ValueError(f"{self.opcode.name} has no FUA bit")
        if self.bytchk and flags_kind != _Flags.DPO_BYTCHK:
            raise ValueError(f"{self.opcode.name} has no BYTCHK field")
        _check(self.bytchk, 3, "BYTCHK")
        flags = (
            self.protect << PROTECT_SHIFT
            | (DPO if self.dpo else 0)
            | (FUA if self.fua else 0)
            | self.bytchk << BYTCHK_SHIFT
        )
        if length == 10:
            _check(self.lba, _U32, "LOGICAL BLOCK ADDRESS")
            _check(self.transfer_length, _U16, "TRANSFER LENGTH")
            return CDB10.pack(
                self.opcode, flags, self.lba, self.group, self.transfer_length, self.control
            )
        _check(self.transfer_length, _U32, "TRANSFER LENGTH")
        if length == 12:
            _check(self.lba, _U32, "LOGICAL BLOCK ADDRESS")
            return CDB12.pack(
                self.opcode, flags, self.lba, self.transfer_length, self.group, self.control
            )
        _check(self.lba, _U64, "LOGICAL BLOCK ADDRESS")
        return CDB16.pack(
            self.opcode, flags, self.lba, self.transfer_length, self.group, self.control
        )


@dataclass(frozen=True, slots=True)
class WriteSameCDB:
    """WRITE SAME(10) §5.48 and WRITE SAME(16) §5.49 (NDOB exists only in the 16-byte CDB)."""

    opcode: Opcode
    lba: int
    number_of_blocks: int
    protect: int = 0
    anchor: bool = False
    unmap: bool = False
    ndob: bool = False
    group: int = 0
    control: int = 0

    @classmethod
    def decode(cls, cdb: bytes | memoryview) -> Self:
        if not cdb or cdb[0] not in (Opcode.WRITE_SAME_10, Opcode.WRITE_SAME_16):
            raise ValueError("not a WRITE SAME CDB")
        if cdb[0] == Opcode.WRITE_SAME_10:
            _need(cdb, 10, "WRITE SAME(10)")
            op, flags, lba, group, count, control = CDB10.unpack_from(cdb)
            ndob = False
        else:
            _need(cdb, 16, "WRITE SAME(16)")
            op, flags, lba, count, group, control = CDB16.unpack_from(cdb)
            ndob = bool(flags & WS_NDOB)
        return cls(
            Opcode(op),
            lba,
            count,
            protect=flags >> PROTECT_SHIFT,
            anchor=bool(flags & WS_ANCHOR),
            unmap=bool(flags & WS_UNMAP),
            ndob=ndob,
            group=group & GROUP_MASK,
            control=control,
        )

    def encode(self) -> bytes:
        _check(self.protect, 7, "WRPROTECT")
        _check(self.group, GROUP_MASK, "GROUP NUMBER")
        _check(self.control, 0xFF, "CONTROL")
        flags = (
            self.protect << PROTECT_SHIFT
            | (WS_ANCHOR if self.anchor else 0)
            | (WS_UNMAP if self.unmap else 0)
            | (WS_NDOB if self.ndob else 0)
        )
        if self.opcode == Opcode.WRITE_SAME_10:
            if self.ndob:
                raise ValueError("WRITE SAME(10) has no NDOB bit")
            _check(self.lba, _U32, "LOGICAL BLOCK ADDRESS")
            _check(self.number_of_blocks, _U16, "NUMBER OF LOGICAL BLOCKS")
            return CDB10.pack(
                self.opcode, flags, self.lba, self.group, self.number_of_blocks, self.control
            )
        if self.opcode != Opcode.WRITE_SAME_16:
            raise ValueError(f"{self.opcode.name} is not WRITE SAME")
        _check(self.lba, _U64, "LOGICAL BLOCK ADDRESS")
        _check(self.number_of_blocks, _U32, "NUMBER OF LOGICAL BLOCKS")
        return CDB16.pack(
            self.opcode, flags, self.lba, self.number_of_blocks, self.group, self.control
        )


@dataclass(frozen=True, slots=True)
class CompareAndWriteCDB:
    """COMPARE AND WRITE §5.3: the Data-Out buffer is the verify data then the write data."""

    lba: int
    number_of_blocks: int
    protect: int = 0
    dpo: bool = False
    fua: bool = False
    group: int = 0
    control: int = 0

    @classmethod
    def decode(cls, cdb: bytes | memoryview) -> Self:
        if not cdb or cdb[0] != Opcode.COMPARE_AND_WRITE:
            raise ValueError("not a COMPARE AND WRITE CDB")
        _need(cdb, 16, "COMPARE AND WRITE")
        _, flags, lba, count, group, control = CAW16.unpack_from(cdb)
        return cls(
            lba,
            count,
            protect=flags >> PROTECT_SHIFT,
            dpo=bool(flags & DPO),
            fua=bool(flags & FUA),
            group=group & GROUP_MASK,
            control=control,
        )

    def encode(self) -> bytes:
        _check(self.lba, _U64, "LOGICAL BLOCK ADDRESS")
        _check(self.number_of_blocks, 0xFF, "NUMBER OF LOGICAL BLOCKS")
        _check(self.protect, 7, "WRPROTECT")
        _check(self.group, GROUP_MASK, "GROUP NUMBER")
        _check(self.control, 0xFF, "CONTROL")
        flags = self.protect << PROTECT_SHIFT | (DPO if self.dpo else 0) | (FUA if self.fua else 0)
        return CAW16.pack(
            Opcode.COMPARE_AND_WRITE,
            flags,
            self.lba,
            self.number_of_blocks,
            self.group,
            self.control,
        )


@dataclass(frozen=True, slots=True)
class GetLbaStatusCDB:
    """GET LBA STATUS(16) §5.8: SERVICE ACTION IN(16) with service action 12h."""

    lba: int
    allocation_length: int
    report_type: int = 0
    control: int = 0

    @classmethod
    def decode(cls, cdb: bytes | memoryview) -> Self:
        _need(cdb, 16, "GET LBA STATUS")
        op, sa, lba, alloc, report, control = CDB16.unpack_from(cdb)
        if op != Opcode.SERVICE_ACTION_IN_16 or sa & SERVICE_ACTION_MASK != (
            ServiceActionIn16.GET_LBA_STATUS
        ):
            raise ValueError("not a GET LBA STATUS CDB")
        return cls(lba, alloc, report & REPORT_TYPE_MASK, control)

    def encode(self) -> bytes:
        _check(self.lba, _U64, "STARTING LOGICAL BLOCK ADDRESS")
        _check(self.allocation_length, _U32, "ALLOCATION LENGTH")
        _check(self.report_type, REPORT_TYPE_MASK, "REPORT TYPE")
        _check(self.control, 0xFF, "CONTROL")
        return CDB16.pack(
            Opcode.SERVICE_ACTION_IN_16,
            ServiceActionIn16.GET_LBA_STATUS,
            self.lba,
            self.allocation_length,
            self.report_type,
            self.control,
        )


@dataclass(frozen=True, slots=True)
class ReadCapacity10CDB:
    """READ CAPACITY(10) §5.20; LBA and PMI are obsolete but still checked (§5.20.1)."""

    lba: int = 0
    pmi: bool = False
    control: int = 0

    @classmethod
    def decode(cls, cdb: bytes | memoryview) -> Self:
        if not cdb or cdb[0] != Opcode.READ_CAPACITY_10:
            raise ValueError("not a READ CAPACITY(10) CDB")
        _need(cdb, 10, "READ CAPACITY(10)")
        _, _, lba, pmi, control = RC10.unpack_from(cdb)
        return cls(lba, bool(pmi & PMI), control)

    def encode(self) -> bytes:
        _check(self.lba, _U32, "LOGICAL BLOCK ADDRESS")
        _check(self.control, 0xFF, "CONTROL")
        return RC10.pack(Opcode.READ_CAPACITY_10, 0, self.lba, PMI if self.pmi else 0, self.control)


@dataclass(frozen=True, slots=True)
class ReadCapacity16CDB:
    """READ CAPACITY(16) §5.21: SERVICE ACTION IN(16) with service action 10h."""

    allocation_length: int
    lba: int = 0
    pmi: bool = False
    control: int = 0

    @classmethod
    def decode(cls, cdb: bytes | memoryview) -> Self:
        _need(cdb, 16, "READ CAPACITY(16)")
        op, sa, lba, alloc, pmi, control = CDB16.unpack_from(cdb)
        if op != Opcode.SERVICE_ACTION_IN_16 or sa & SERVICE_ACTION_MASK != (
            ServiceActionIn16.READ_CAPACITY_16
        ):
            raise ValueError("not a READ CAPACITY(16) CDB")
        return cls(alloc, lba, bool(pmi & PMI), control)

    def encode(self) -> bytes:
        _check(self.lba, _U64, "LOGICAL BLOCK ADDRESS")
        _check(self.allocation_length, _U32, "ALLOCATION LENGTH")
        _check(self.control, 0xFF, "CONTROL")
        return CDB16.pack(
            Opcode.SERVICE_ACTION_IN_16,
            ServiceActionIn16.READ_CAPACITY_16,
            self.lba,
            self.allocation_length,
            PMI if self.pmi else 0,
            self.control,
        )


@dataclass(frozen=True, slots=True)
class _RangeCDB:
    """A 10/16-byte CDB of byte-1 IMMED, an LBA, a block count and a group number."""

    opcode: Opcode
    lba: int
    number_of_blocks: int
    immed: bool = False
    group: int = 0
    control: int = 0

    # A classmethod, not a ClassVar: compiled (mypyc), a dataclass's ClassVar becomes a
    # field (mypyc/mypyc#1122).
    @classmethod
    def opcodes(cls) -> tuple[Opcode, Opcode]:
        """The command's 10-byte and 16-byte opcodes."""
        raise NotImplementedError

    @classmethod
    def decode(cls, cdb: bytes | memoryview) -> Self:
        opcodes = cls.opcodes()
        if not cdb or cdb[0] not in opcodes:
            raise ValueError(f"not a {cls.__name__} CDB")
        if cdb[0] == opcodes[0]:
            _need(cdb, 10, cls.__name__)
            op, flags, lba, group, count, control = CDB10.unpack_from(cdb)
        else:
            _need(cdb, 16, cls.__name__)
            op, flags, lba, count, group, control = CDB16.unpack_from(cdb)
        return cls(Opcode(op), lba, count, bool(flags & IMMED), group & GROUP_MASK, control)

    def encode(self) -> bytes:
        _check(self.group, GROUP_MASK, "GROUP NUMBER")
        _check(self.control, 0xFF, "CONTROL")
        flags = IMMED if self.immed else 0
        opcodes = self.opcodes()
        if self.opcode == opcodes[0]:
            _check(self.lba, _U32, "LOGICAL BLOCK ADDRESS")
            _check(self.number_of_blocks, _U16, "NUMBER OF LOGICAL BLOCKS")
            return CDB10.pack(
                self.opcode, flags, self.lba, self.group, self.number_of_blocks, self.control
            )
        if self.opcode != opcodes[1]:
            raise ValueError(f"{self.opcode.name} is not a {type(self).__name__}")
        _check(self.lba, _U64, "LOGICAL BLOCK ADDRESS")
        _check(self.number_of_blocks, _U32, "NUMBER OF LOGICAL BLOCKS")
        return CDB16.pack(
            self.opcode, flags, self.lba, self.number_of_blocks, self.group, self.control
        )


@dataclass(frozen=True, slots=True)
class SynchronizeCacheCDB(_RangeCDB):
    """SYNCHRONIZE CACHE(10) §5.25 / (16) §5.26; zero blocks means "to the last LBA"."""

    @classmethod
    def opcodes(cls) -> tuple[Opcode, Opcode]:
        return Opcode.SYNCHRONIZE_CACHE_10, Opcode.SYNCHRONIZE_CACHE_16


@dataclass(frozen=True, slots=True)
class PrefetchCDB(_RangeCDB):
    """PRE-FETCH(10) §5.12 / (16) §5.13 (the count is the PREFETCH LENGTH)."""

    @classmethod
    def opcodes(cls) -> tuple[Opcode, Opcode]:
        return Opcode.PRE_FETCH_10, Opcode.PRE_FETCH_16


@dataclass(frozen=True, slots=True)
class UnmapCDB:
    """UNMAP §5.32: the descriptors come in a parameter list of ``parameter_list_length``."""

    parameter_list_length: int
    anchor: bool = False
    group: int = 0
    control: int = 0

    @classmethod
    def decode(cls, cdb: bytes | memoryview) -> Self:
        if not cdb or cdb[0] != Opcode.UNMAP:
            raise ValueError("not an UNMAP CDB")
        _need(cdb, 10, "UNMAP")
        _, flags, group, length, control = UNMAP10.unpack_from(cdb)
        return cls(length, bool(flags & UNMAP_ANCHOR), group & GROUP_MASK, control)

    def encode(self) -> bytes:
        _check(self.parameter_list_length, _U16, "PARAMETER LIST LENGTH")
        _check(self.group, GROUP_MASK, "GROUP NUMBER")
        _check(self.control, 0xFF, "CONTROL")
        return UNMAP10.pack(
            Opcode.UNMAP,
            UNMAP_ANCHOR if self.anchor else 0,
            self.group,
            self.parameter_list_length,
            self.control,
        )


@dataclass(frozen=True, slots=True)
class UnmapDescriptor:
    """One UNMAP block descriptor (§5.32.2 table 'UNMAP block descriptor')."""

    lba: int
    count: int


@dataclass(frozen=True, slots=True)
class UnmapParameterList:
    """The UNMAP parameter list (§5.32.2): an 8-byte header, then 16-byte descriptors."""

    descriptors: tuple[UnmapDescriptor, ...]

    @classmethod
    def decode(cls, data: bytes | memoryview) -> Self:
        """Parse a parameter list the initiator sent (already cut to PARAMETER LIST LENGTH).

        A list shorter than its header is PARAMETER LIST LENGTH ERROR (§5.32.1). The
        descriptor count comes from UNMAP BLOCK DESCRIPTOR DATA LENGTH, cut to the bytes
        present; a trailing partial descriptor is ignored as §5.32.2 requires. UNMAP DATA
        LENGTH is redundant with the transfer length and not checked: initiators disagree
        on it and nothing depends on it.
        """
        if len(data) < UNMAP_HEADER_LENGTH:
            raise CheckCondition(SenseKey.ILLEGAL_REQUEST, ASC.PARAMETER_LIST_LENGTH_ERROR)
        _, descriptor_bytes = UNMAP_HEADER.unpack_from(data)
        descriptor_bytes = min(descriptor_bytes, len(data) - UNMAP_HEADER_LENGTH)
        count = descriptor_bytes // UNMAP_DESCRIPTOR_LENGTH
        unpack = UNMAP_DESCRIPTOR.unpack_from
        return cls(
            tuple(
                UnmapDescriptor(*unpack(data, UNMAP_HEADER_LENGTH + i * UNMAP_DESCRIPTOR_LENGTH))
                for i in range(count)
            )
        )

    @classmethod
    def of(cls, ranges: Sequence[tuple[int, int]]) -> Self:
        return cls(tuple(UnmapDescriptor(lba, count) for lba, count in ranges))

    def encode(self) -> bytes:
        body = b"".join(UNMAP_DESCRIPTOR.pack(d.lba, d.count) for d in self.descriptors)
        if len(body) + UNMAP_HEADER_LENGTH - 2 > _U16:
            raise ValueError("too many UNMAP descriptors for one parameter list")
        return UNMAP_HEADER.pack(len(body) + UNMAP_HEADER_LENGTH - 2, len(body)) + body
