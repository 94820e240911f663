"""MODE SENSE(6/10) and MODE SELECT(6/10) (SPC-4 §6.11-§6.14) over ``ModeParameters``.

Pages served: 08h Caching (SBC-4 §6.5.5), 0Ah Control (SPC-4 §7.5.8) and 1Ch Informational
Exceptions Control (SPC-4 §7.5.12). Nothing can be saved, so PC=11b and SP=1 are refused.

MODE SELECT compares every byte of a page with its current value under the page's changeable
mask, so an initiator may send back exactly what MODE SENSE returned with only changeable bits
altered (that is how libiscsi toggles SWP); any other difference is INVALID FIELD IN PARAMETER
LIST with a field pointer to the first offending bit.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING

from sanstack.scsi import limits
from sanstack.scsi.codes import ASC, Opcode, SenseKey
from sanstack.scsi.command import Command, CommandResult
from sanstack.scsi.mode import ModeParameters
from sanstack.scsi.sense import (
    CheckCondition,
    field_pointer,
    invalid_field_in_cdb,
    invalid_field_in_parameter_list,
)

if TYPE_CHECKING:
    from sanstack.block.device import BlockDevice
    from sanstack.scsi.logical_unit import LogicalUnit


class ModePageCode(IntEnum):
    """SPC-4 Annex D.6 mode page codes served (ALL_PAGES only in MODE SENSE)."""

    CACHING = 0x08
    CONTROL = 0x0A
    INFORMATIONAL_EXCEPTIONS_CONTROL = 0x1C
    ALL_PAGES = 0x3F


class PageControl(IntEnum):
    """SPC-4 §6.11.2 table 'Page control (PC) field'."""

    CURRENT = 0b00
    CHANGEABLE = 0b01
    DEFAULT = 0b10
    SAVED = 0b11


class QErr(IntEnum):
    """SPC-4 §7.5.8 table 'Queue error management (QERR) field'; 10b is reserved."""

    CONTINUE = 0b00
    ABORT_ALL = 0b01
    ABORT_NEXUS = 0b11


_VALID_QERR = frozenset(int(q) for q in QErr)


class Mrie(IntEnum):
    """SPC-4 §7.5.12 method of reporting informational exceptions; 7h-Bh are reserved."""

    NO_REPORTING = 0x0
    FIRST_RESERVED = 0x7
    LAST_RESERVED = 0xB


SUBPAGE_ZERO = 0x00
ALL_SUBPAGES = 0xFF
_PAGE_CODE_MASK = 0x3F
_SPF = 0x40

# SBC-4 §6.5.1 device-specific parameter of the mode parameter header.
DSP_WP = 0x80
DSP_DPOFUA = 0x10

# Caching page (SBC-4 §6.5.5): 20 bytes, everything zero but WCE and RCD.
_CACHING = struct.Struct(">BBB17x")
_WCE = 0x04
_RCD = 0x01
# Control page (SPC-4 §7.5.8): 12 bytes.
_CONTROL = struct.Struct(">6B2xHH")
_TST_SHIFT = 5
_D_SENSE = 0x04
_GLTSD = 0x02
_QAM_SHIFT = 4
_QERR_SHIFT = 1
_QERR_MASK = 0x06
_SWP = 0x08
_TAS = 0x40
# Commands run concurrently, so SIMPLE commands may be reordered (QAM 1h).
_QAM_UNRESTRICTED = 0x1
_BUSY_TIMEOUT_UNLIMITED = 0xFFFF
# Informational Exceptions Control page (SPC-4 §7.5.12): 12 bytes.
_IEC = struct.Struct(">BBBBII")
_DEXCPT = 0x08
_MRIE_MASK = 0x0F

_HEADER_6 = struct.Struct(">BBBB")
_HEADER_10 = struct.Struct(">HBBBxH")
_LONGLBA = 0x01
# Short LBA block descriptor (SBC-4 §6.5.2): blocks, then a reserved byte and a 24-bit length;
# block sizes are far below 2**24, so packing the length as 32 bits leaves the reserved byte 0.
_SHORT_BLOCK_DESCRIPTOR = struct.Struct(">II")
_LONG_BLOCK_DESCRIPTOR = struct.Struct(">Q4xI")
_BLOCK_LENGTH_MASK = 0xFFFFFF
_SHORT_BLOCKS_MAX = 0xFFFFFFFF

_MODE_SENSE_6 = struct.Struct(">BBBBBB")
_MODE_SENSE_10 = struct.Struct(">BBBB3xHB")
_MODE_SELECT_6 = struct.Struct(">BB2xBB")
_MODE_SELECT_10 = struct.Struct(">BB5xHB")
_DBD = 0x08
_LLBAA = 0x10
_PF = 0x10
_SP = 0x01
_PC_SHIFT = 6


def _flag(value: bool, bit: int) -> int:
    return bit if value else 0


def caching_page(m: ModeParameters) -> bytes:
    return _CACHING.pack(
        ModePageCode.CACHING, _CACHING.size - 2, _flag(m.wce, _WCE) | _flag(m.rcd, _RCD)
    )


def control_page(m: ModeParameters) -> bytes:
    return _CONTROL.pack(
        ModePageCode.CONTROL,
        _CONTROL.size - 2,
        (m.tst << _TST_SHIFT) | _flag(m.d_sense, _D_SENSE) | _GLTSD,
        (_QAM_UNRESTRICTED << _QAM_SHIFT) | (m.qerr << _QERR_SHIFT),
        _flag(m.swp, _SWP),
        _flag(m.tas, _TAS),
        _BUSY_TIMEOUT_UNLIMITED,
        0,
    )


def iec_page(m: ModeParameters) -> bytes:
    return _IEC.pack(
        ModePageCode.INFORMATIONAL_EXCEPTIONS_CONTROL,
        _IEC.size - 2,
        _flag(m.dexcpt, _DEXCPT),
        m.mrie & _MRIE_MASK,
        0,
        0,
    )


def _decode_caching(page: bytes, m: ModeParameters, base: int) -> ModeParameters:
    return dataclasses.replace(m, wce=bool(page[2] & _WCE), rcd=bool(page[2] & _RCD))


def _decode_control(page: bytes, m: ModeParameters, base: int) -> ModeParameters:
    qerr = (page[3] & _QERR_MASK) >> _QERR_SHIFT
    if qerr not in _VALID_QERR:
        raise invalid_field_in_parameter_list(base + 3, 2)
    return dataclasses.replace(
        m,
        d_sense=bool(page[2] & _D_SENSE),
        qerr=qerr,
        swp=bool(page[4] & _SWP),
        tas=bool(page[5] & _TAS),
    )


def _decode_iec(page: bytes, m: ModeParameters, base: int) -> ModeParameters:
    mrie = page[3] & _MRIE_MASK
    if Mrie.FIRST_RESERVED <= mrie <= Mrie.LAST_RESERVED:
        raise invalid_field_in_parameter_list(base + 3, 3)
    return dataclasses.replace(m, dexcpt=bool(page[2] & _DEXCPT), mrie=mrie)


@dataclass(frozen=True, slots=True)
class _PageFormat:
    code: ModePageCode
    encode: Callable[[ModeParameters], bytes]
    decode: Callable[[bytes, ModeParameters, int], ModeParameters]
    changeable: bytes


# Ascending page code order, as MODE SENSE returns them (SPC-4 §6.11.1).
PAGES: tuple[_PageFormat, ...] = (
    _PageFormat(
        ModePageCode.CACHING,
        caching_page,
        _decode_caching,
        _CACHING.pack(ModePageCode.CACHING, _CACHING.size - 2, _WCE | _RCD),
    ),
    _PageFormat(
        ModePageCode.CONTROL,
        control_page,
        _decode_control,
        _CONTROL.pack(
            ModePageCode.CONTROL, _CONTROL.size - 2, _D_SENSE, _QERR_MASK, _SWP, _TAS, 0, 0
        ),
    ),
    _PageFormat(
        ModePageCode.INFORMATIONAL_EXCEPTIONS_CONTROL,
        iec_page,
        _decode_iec,
        _IEC.pack(
            ModePageCode.INFORMATIONAL_EXCEPTIONS_CONTROL, _IEC.size - 2, _DEXCPT, _MRIE_MASK, 0, 0
        ),
    ),
)
_BY_CODE: dict[int, _PageFormat] = {page.code: page for page in PAGES}


def default_mode_parameters(device: BlockDevice) -> ModeParameters:
    """The DEFAULT values (PC=10b): what a logical unit starts with."""
    return ModeParameters(wce=device.write_cache)


@dataclass(frozen=True, slots=True)
class ModeSenseCdb:
    """MODE SENSE(6) (SPC-4 §6.11) and MODE SENSE(10) (SPC-4 §6.12) CDBs."""

    ten: bool
    dbd: bool
    page_control: PageControl
    page_code: int
    subpage_code: int
    allocation_length: int
    llbaa: bool = False

    @classmethod
    def decode(cls, cdb: bytes) -> ModeSenseCdb:
        if cdb[0] == Opcode.MODE_SENSE_10:
            _, flags, page, subpage, length, _ = _MODE_SENSE_10.unpack_from(cdb)
            ten, llbaa = True, bool(flags & _LLBAA)
        else:
            _, flags, page, subpage, length, _ = _MODE_SENSE_6.unpack_from(cdb)
            ten, llbaa = False, False
        return cls(
            ten=ten,
            dbd=bool(flags & _DBD),
            page_control=PageControl(page >> _PC_SHIFT),
            page_code=page & _PAGE_CODE_MASK,
            subpage_code=subpage,
            allocation_length=length,
            llbaa=llbaa,
        )

    def encode(self) -> bytes:
        flags = _flag(self.dbd, _DBD) | _flag(self.llbaa, _LLBAA)
        page = (self.page_control << _PC_SHIFT) | self.page_code
        if self.ten:
            return _MODE_SENSE_10.pack(
                Opcode.MODE_SENSE_10, flags, page, self.subpage_code, self.allocation_length, 0
            )
        return _MODE_SENSE_6.pack(
            Opcode.MODE_SENSE_6, flags, page, self.subpage_code, self.allocation_length, 0
        )


@dataclass(frozen=True, slots=True)
class ModeSelectCdb:
    """MODE SELECT(6) (SPC-4 §6.13) and MODE SELECT(10) (SPC-4 §6.14) CDBs."""

    ten: bool
    pf: bool
    sp: bool
    parameter_list_length: int

    @classmethod
    def decode(cls, cdb: bytes) -> ModeSelectCdb:
        """Parse and check: PF=0 (vendor pages) and SP=1 (saving) are INVALID FIELD IN CDB."""
        if cdb[0] == Opcode.MODE_SELECT_10:
            _, flags, length, _ = _MODE_SELECT_10.unpack_from(cdb)
            ten = True
        else:
            _, flags, length, _ = _MODE_SELECT_6.unpack_from(cdb)
            ten = False
        if not flags & _PF:
            raise invalid_field_in_cdb(1, 4)
        if flags & _SP:
            raise invalid_field_in_cdb(1, 0)
        return cls(ten=ten, pf=True, sp=False, parameter_list_length=length)

    def encode(self) -> bytes:
        flags = _flag(self.pf, _PF) | _flag(self.sp, _SP)
        if self.ten:
            return _MODE_SELECT_10.pack(Opcode.MODE_SELECT_10, flags, self.parameter_list_length, 0)
        return _MODE_SELECT_6.pack(Opcode.MODE_SELECT_6, flags, self.parameter_list_length, 0)


def _selected_pages(page_code: int, subpage_code: int) -> tuple[_PageFormat, ...]:
    if subpage_code not in (SUBPAGE_ZERO, ALL_SUBPAGES):
        raise invalid_field_in_cdb(3)
    if page_code == ModePageCode.ALL_PAGES:
        return PAGES
    page = _BY_CODE.get(page_code)
    if page is None:
        raise invalid_field_in_cdb(2, 5)
    return (page,)


def device_specific_parameter(lu: LogicalUnit) -> int:
    """SBC-4 §6.5.1: WP when the device or the SWP bit protects it, DPOFUA as SBC serves it."""
    wp = lu.device.read_only or lu.mode.swp
    return _flag(wp, DSP_WP) | _flag(limits.SUPPORTS_DPO_FUA, DSP_DPOFUA)


def block_descriptor(device: BlockDevice, *, long_lba: bool) -> bytes:
    """SBC-4 §6.5.2 short (8-byte) or long (16-byte) LBA mode parameter block descriptor."""
    if long_lba:
        return _LONG_BLOCK_DESCRIPTOR.pack(device.num_blocks, device.block_size)
    # SBC-4: a capacity too large for 32 bits reads as FFFFFFFFh.
    blocks = min(device.num_blocks, _SHORT_BLOCKS_MAX)
    return _SHORT_BLOCK_DESCRIPTOR.pack(blocks, device.block_size)


def mode_sense_data(lu: LogicalUnit, request: ModeSenseCdb) -> bytes:
    """The whole mode parameter list for ``request`` (before ALLOCATION LENGTH truncation)."""
    pages = _selected_pages(request.page_code, request.subpage_code)
    if request.page_control == PageControl.SAVED:
        raise CheckCondition(
            SenseKey.ILLEGAL_REQUEST,
            ASC.SAVING_PARAMETERS_NOT_SUPPORTED,
            sense_key_specific=field_pointer(2, 7),
        )
    if request.page_control == PageControl.CHANGEABLE:
        body = b"".join(page.changeable for page in pages)
    else:
        values = (
            lu.mode
            if request.page_control == PageControl.CURRENT
            else default_mode_parameters(lu.device)
        )
        body = b"".join(page.encode(values) for page in pages)
    long_lba = request.ten and request.llbaa
    if request.dbd:
        descriptor = b""
    elif request.page_control == PageControl.CHANGEABLE:
        # Neither capacity nor block length can be changed through MODE SELECT.
        descriptor = bytes((_LONG_BLOCK_DESCRIPTOR if long_lba else _SHORT_BLOCK_DESCRIPTOR).size)
    else:
        descriptor = block_descriptor(lu.device, long_lba=long_lba)
    dsp = device_specific_parameter(lu)
    if request.ten:
        length = _HEADER_10.size + len(descriptor) + len(body)
        header = _HEADER_10.pack(
            length - 2, 0, dsp, _flag(long_lba and bool(descriptor), _LONGLBA), len(descriptor)
        )
    else:
        length = _HEADER_6.size + len(descriptor) + len(body)
        header = _HEADER_6.pack(length - 1, 0, dsp, len(descriptor))
    return header + descriptor + body


async def mode_sense(lu: LogicalUnit, cmd: Command) -> CommandResult:
    """MODE SENSE(6) / MODE SENSE(10) (SPC-4 §6.11, §6.12)."""
    request = ModeSenseCdb.decode(cmd.cdb)
    return CommandResult(data=mode_sense_data(lu, request)[: request.allocation_length])


def _parameter_list_length_error() -> CheckCondition:
    return CheckCondition(SenseKey.ILLEGAL_REQUEST, ASC.PARAMETER_LIST_LENGTH_ERROR)


def _check_block_descriptor(data: bytes, offset: int, device: BlockDevice, long_lba: bool) -> None:
    """A block descriptor may restate the current format but not change it (SBC-4 §6.5.2).

    NUMBER OF LOGICAL BLOCKS zero means "keep the capacity".
    """
    if long_lba:
        blocks, length = _LONG_BLOCK_DESCRIPTOR.unpack_from(data, offset)
        current_blocks, length_offset = device.num_blocks, offset + 12
    else:
        blocks, length = _SHORT_BLOCK_DESCRIPTOR.unpack_from(data, offset)
        length &= _BLOCK_LENGTH_MASK
        current_blocks, length_offset = min(device.num_blocks, _SHORT_BLOCKS_MAX), offset + 5
    if blocks not in (0, current_blocks):
        raise invalid_field_in_parameter_list(offset)
    if length != device.block_size:
        raise invalid_field_in_parameter_list(length_offset)


def parse_mode_parameters(
    data: bytes, *, ten: bool, current: ModeParameters, device: BlockDevice
) -> ModeParameters:
    """Decode a MODE SELECT parameter list (SPC-4 §7.5.4-§7.5.6) into new mode values.

    Nothing is applied here: the caller swaps in the result only when every page is valid.
    """
    header = _HEADER_10 if ten else _HEADER_6
    if len(data) < header.size:
        raise _parameter_list_length_error()
    if ten:
        _, medium_type, _, longlba, descriptor_length = _HEADER_10.unpack_from(data)
        medium_offset, length_offset = 2, 6
        long_lba = bool(longlba & _LONGLBA)
    else:
        _, medium_type, _, descriptor_length = _HEADER_6.unpack_from(data)
        medium_offset, length_offset = 1, 3
        long_lba = False
    if medium_type:
        raise invalid_field_in_parameter_list(medium_offset)
    descriptor_size = (_LONG_BLOCK_DESCRIPTOR if long_lba else _SHORT_BLOCK_DESCRIPTOR).size
    if descriptor_length not in (0, descriptor_size):
        raise invalid_field_in_parameter_list(length_offset)
    offset = header.size
    if offset + descriptor_length > len(data):
        raise _parameter_list_length_error()
    if descriptor_length:
        _check_block_descriptor(data, offset, device, long_lba)
        offset += descriptor_length
    values = current
    while offset < len(data):
        if offset + 2 > len(data):
            raise _parameter_list_length_error()
        code = data[offset] & _PAGE_CODE_MASK
        if data[offset] & _SPF:
            raise invalid_field_in_parameter_list(offset, 6)
        fmt = _BY_CODE.get(code)
        if fmt is None:
            raise invalid_field_in_parameter_list(offset, 5)
        if data[offset + 1] != len(fmt.changeable) - 2:
            raise invalid_field_in_parameter_list(offset + 1)
        end = offset + len(fmt.changeable)
        if end > len(data):
            raise _parameter_list_length_error()
        page = data[offset:end]
        before = fmt.encode(values)
        for i in range(2, len(page)):
            fixed = (page[i] ^ before[i]) & ~fmt.changeable[i] & 0xFF
            if fixed:
                raise invalid_field_in_parameter_list(offset + i, fixed.bit_length() - 1)
        values = fmt.decode(page, values, offset)
        offset = end
    return values


async def mode_select(lu: LogicalUnit, cmd: Command) -> CommandResult:
    """MODE SELECT(6) / MODE SELECT(10) (SPC-4 §6.13, §6.14).

    A change establishes MODE PARAMETERS CHANGED for every other I_T nexus (SPC-4 §7.5.1):
    the parameters are shared by all of them.
    """
    request = ModeSelectCdb.decode(cmd.cdb)
    needed = request.parameter_list_length
    if needed == 0:
        return CommandResult(data_out_used=0)
    data = bytes(cmd.data_out[:needed])
    if len(data) < needed:
        raise _parameter_list_length_error()
    new = parse_mode_parameters(data, ten=request.ten, current=lu.mode, device=lu.device)
    if new != lu.mode:
        if lu.mode.wce and not new.wce:
            # Turning the write cache off promises that what was written is now durable.
            await lu.device.flush()
        for f in dataclasses.fields(ModeParameters):
            setattr(lu.mode, f.name, getattr(new, f.name))
        lu.establish_unit_attention(ASC.MODE_PARAMETERS_CHANGED, exclude=cmd.nexus)
    return CommandResult(data_out_used=needed)
