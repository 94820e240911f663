"""INQUIRY (SPC-4 §6.6): standard data and the vital product data pages sanstack serves.

VPD pages: 00h Supported VPD Pages (SPC-4 §7.8.16), 80h Unit Serial Number (§7.8.18),
83h Device Identification (§7.8.6), B0h Block Limits (SBC-4 §6.6.4), B1h Block Device
Characteristics (SBC-4 §6.6.2) and B2h Logical Block Provisioning (SBC-4 §6.6.6).

The Block Limits page reports ``sanstack.scsi.limits``, the same constants the SBC command
handlers enforce.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING

from sanstack.scsi import limits
from sanstack.scsi.codes import MaintenanceIn, Opcode, PeripheralDeviceType
from sanstack.scsi.command import Command, CommandResult, Nexus
from sanstack.scsi.sense import invalid_field_in_cdb

if TYPE_CHECKING:
    from sanstack.block.device import BlockDevice, DeviceIdentity
    from sanstack.scsi.logical_unit import LogicalUnit, TargetInfo


class VpdPage(IntEnum):
    """VPD page codes sanstack serves, in the ascending order page 00h must list them."""

    SUPPORTED_VPD_PAGES = 0x00
    UNIT_SERIAL_NUMBER = 0x80
    DEVICE_IDENTIFICATION = 0x83
    BLOCK_LIMITS = 0xB0
    BLOCK_DEVICE_CHARACTERISTICS = 0xB1
    LOGICAL_BLOCK_PROVISIONING = 0xB2


class VersionDescriptor(IntEnum):
    """SPC-4 §6.6.2 table 'Version descriptor values' (the 'no version claimed' codes)."""

    SAM_5 = 0x00A0
    SPC_4 = 0x0460
    SBC_3 = 0x04C0
    ISCSI = 0x0960


class Tpgs(IntEnum):
    """SPC-4 §6.6.2 TPGS field: which asymmetric access modes the logical unit supports."""

    NOT_SUPPORTED = 0b00
    IMPLICIT = 0b01
    EXPLICIT = 0b10
    BOTH = 0b11


class ProtocolIdentifier(IntEnum):
    """SPC-4 §7.6.1 table 'PROTOCOL IDENTIFIER values' (all of them: an initiator decodes
    whatever a target's Device Identification page names)."""

    FCP = 0x0
    SPI = 0x1
    SSA = 0x2
    SBP = 0x3
    SRP = 0x4
    ISCSI = 0x5
    SAS = 0x6
    ADT = 0x7
    ATA = 0x8
    UAS = 0x9
    SOP = 0xA
    NONE = 0xF


class CodeSet(IntEnum):
    """SPC-4 §7.8.6.1 table 'CODE SET field'."""

    BINARY = 0x1
    ASCII = 0x2
    UTF8 = 0x3


class Association(IntEnum):
    """SPC-4 §7.8.6.1 table 'ASSOCIATION field'."""

    LOGICAL_UNIT = 0b00
    TARGET_PORT = 0b01
    TARGET_DEVICE = 0b10


class DesignatorType(IntEnum):
    """SPC-4 §7.8.6.1 table 'DESIGNATOR TYPE field'."""

    VENDOR_SPECIFIC = 0x0
    T10_VENDOR_ID = 0x1
    EUI_64 = 0x2
    NAA = 0x3
    RELATIVE_TARGET_PORT = 0x4
    TARGET_PORT_GROUP = 0x5
    LOGICAL_UNIT_GROUP = 0x6
    MD5_LOGICAL_UNIT = 0x7
    SCSI_NAME_STRING = 0x8


class ProvisioningType(IntEnum):
    """SBC-4 §6.6.6 table 'PROVISIONING TYPE field'."""

    FULL = 0b000
    RESOURCE = 0b001
    THIN = 0b010


# Standard INQUIRY bits (SPC-4 §6.6.2 table 'Standard INQUIRY data format').
_HISUP = 0x10
_RESPONSE_DATA_FORMAT = 0x02
_CMDQUE = 0x02
_SPC4_VERSION = 0x06
STANDARD_INQUIRY_LENGTH = 96
_STANDARD = struct.Struct(">8B8s16s4s20x2x8H22x")
VERSION_DESCRIPTORS = (
    VersionDescriptor.SAM_5,
    VersionDescriptor.SPC_4,
    VersionDescriptor.SBC_3,
    VersionDescriptor.ISCSI,
)

# The identity designator's vendor stays fixed whatever TargetInfo.vendor says, so a
# multipath initiator sees the same T10 designator through every configuration.
T10_VENDOR_ID = "SANSTACK"

_INQUIRY_CDB = struct.Struct(">BBBHB")
_CMDDT = 0x02
_EVPD = 0x01
_VPD_HEADER = struct.Struct(">BBH")
_DESIGNATOR_HEADER = struct.Struct(">BBxB")
_PIV = 0x80
_TWO_BYTE_ID = struct.Struct(">2xH")
_MAX_SCSI_NAME_STRING = 256

_BLOCK_LIMITS = struct.Struct(">BBHBBH7IQ5I")
_UGAVALID = 0x80000000
_BLOCK_DEVICE_CHARACTERISTICS = struct.Struct(">BBHHBB56x")
_NON_ROTATING_MEDIUM = 0x0001
_LOGICAL_BLOCK_PROVISIONING = struct.Struct(">BBHBBBB")
_LBPU = 0x80
_LBPWS = 0x40
_LBPWS10 = 0x20
_LBPRZ_ZEROES = 0b001 << 2

# Optimal granularity for both transfers and unmaps: a 4 KiB page, below which a file-backed
# store has to read-modify-write and cannot punch holes.
OPTIMAL_GRANULARITY_BYTES = 4096


@dataclass(frozen=True, slots=True)
class BlockLimits:
    """The Block Limits VPD page (SBC-4 §6.6.4); SBC handlers enforce these same numbers.

    Lengths are in logical blocks; zero means "no limit reported" except where SBC-4 says
    otherwise (the unmap fields are zero when UNMAP is not supported).
    """

    write_same_non_zero: bool
    max_compare_and_write_length: int
    optimal_transfer_length_granularity: int
    max_transfer_length: int
    optimal_transfer_length: int
    max_prefetch_length: int
    max_unmap_lba_count: int
    max_unmap_block_descriptor_count: int
    optimal_unmap_granularity: int
    unmap_granularity_alignment: int | None
    max_write_same_length: int

    def encode(self) -> bytes:
        uga = 0 if self.unmap_granularity_alignment is None else self.unmap_granularity_alignment
        return _BLOCK_LIMITS.pack(
            PeripheralDeviceType.DIRECT_ACCESS_BLOCK,
            VpdPage.BLOCK_LIMITS,
            _BLOCK_LIMITS.size - _VPD_HEADER.size,
            int(self.write_same_non_zero),
            self.max_compare_and_write_length,
            self.optimal_transfer_length_granularity,
            self.max_transfer_length,
            self.optimal_transfer_length,
            self.max_prefetch_length,
            self.max_unmap_lba_count,
            self.max_unmap_block_descriptor_count,
            self.optimal_unmap_granularity,
            uga | (0 if self.unmap_granularity_alignment is None else _UGAVALID),
            self.max_write_same_length,
            0,
            0,
            0,
            0,
            0,
        )

    @classmethod
    def decode(cls, page: bytes) -> BlockLimits:
        """Parse a Block Limits page (an initiator's view, and the tests' round trip)."""
        fields = _BLOCK_LIMITS.unpack_from(page)
        uga = fields[12]
        return cls(
            write_same_non_zero=bool(fields[3] & 0x01),
            max_compare_and_write_length=fields[4],
            optimal_transfer_length_granularity=fields[5],
            max_transfer_length=fields[6],
            optimal_transfer_length=fields[7],
            max_prefetch_length=fields[8],
            max_unmap_lba_count=fields[9],
            max_unmap_block_descriptor_count=fields[10],
            optimal_unmap_granularity=fields[11],
            unmap_granularity_alignment=uga & ~_UGAVALID if uga & _UGAVALID else None,
            max_write_same_length=fields[13],
        )


def block_limits(device: BlockDevice) -> BlockLimits:
    """What sanstack advertises for ``device``: the ``sanstack.scsi.limits`` the SBC handlers
    enforce, with the unmap fields zero unless the device is thin (SBC-4 §6.6.4: LBPU=0).

    OPTIMAL TRANSFER LENGTH and MAXIMUM PREFETCH LENGTH are zero: no preference, no limit.
    """
    granularity = max(1, OPTIMAL_GRANULARITY_BYTES // device.block_size)
    thin = device.thin_provisioned
    return BlockLimits(
        write_same_non_zero=limits.WRITE_SAME_NO_ZERO,
        max_compare_and_write_length=limits.MAX_COMPARE_AND_WRITE_BLOCKS,
        optimal_transfer_length_granularity=granularity,
        max_transfer_length=limits.MAX_TRANSFER_BLOCKS,
        optimal_transfer_length=0,
        max_prefetch_length=0,
        max_unmap_lba_count=limits.MAX_UNMAP_BLOCKS if thin else 0,
        max_unmap_block_descriptor_count=limits.MAX_UNMAP_DESCRIPTORS if thin else 0,
        optimal_unmap_granularity=granularity if thin else 0,
        unmap_granularity_alignment=0 if thin else None,
        max_write_same_length=limits.MAX_WRITE_SAME_BLOCKS,
    )


@dataclass(frozen=True, slots=True)
class InquiryCdb:
    """SPC-4 §6.6.1 INQUIRY CDB: EVPD, PAGE CODE, 16-bit ALLOCATION LENGTH."""

    evpd: bool
    page_code: int
    allocation_length: int

    @classmethod
    def decode(cls, cdb: bytes) -> InquiryCdb:
        """Parse and check: CMDDT is obsolete and a page code needs EVPD (both INVALID FIELD)."""
        _, flags, page_code, allocation_length, _ = _INQUIRY_CDB.unpack_from(cdb)
        if flags & _CMDDT:
            raise invalid_field_in_cdb(1, 1)
        evpd = bool(flags & _EVPD)
        if not evpd and page_code:
            raise invalid_field_in_cdb(2)
        return cls(evpd, page_code, allocation_length)

    def encode(self) -> bytes:
        flags = _EVPD if self.evpd else 0
        return _INQUIRY_CDB.pack(Opcode.INQUIRY, flags, self.page_code, self.allocation_length, 0)


def ascii_field(text: str, width: int) -> bytes:
    """A left-aligned, space-padded ASCII field (SPC-4 §4.4.1), non-printables as '?'."""
    printable = "".join(c if " " <= c <= "~" else "?" for c in text)
    return printable.encode("ascii")[:width].ljust(width, b" ")


def standard_inquiry(target: TargetInfo, *, tpgs: Tpgs) -> bytes:
    """SPC-4 §6.6.2 standard INQUIRY data, 96 bytes (ADDITIONAL LENGTH 91)."""
    return _STANDARD.pack(
        PeripheralDeviceType.DIRECT_ACCESS_BLOCK,
        0,
        _SPC4_VERSION,
        _HISUP | _RESPONSE_DATA_FORMAT,
        STANDARD_INQUIRY_LENGTH - 5,
        tpgs << 4,
        0,
        _CMDQUE,
        ascii_field(target.vendor, 8),
        ascii_field(target.product, 16),
        ascii_field(target.revision, 4),
        *VERSION_DESCRIPTORS,
        *([0] * (8 - len(VERSION_DESCRIPTORS))),
    )


def _vpd(page: VpdPage, body: bytes) -> bytes:
    return _VPD_HEADER.pack(PeripheralDeviceType.DIRECT_ACCESS_BLOCK, page, len(body)) + body


def supported_vpd_pages() -> bytes:
    """SPC-4 §7.8.16 Supported VPD Pages, codes in ascending order."""
    return _vpd(VpdPage.SUPPORTED_VPD_PAGES, bytes(sorted(VpdPage)))


def unit_serial_number(identity: DeviceIdentity) -> bytes:
    """SPC-4 §7.8.18 Unit Serial Number: the device's ASCII serial."""
    return _vpd(VpdPage.UNIT_SERIAL_NUMBER, identity.unit_serial.encode("ascii"))


@dataclass(frozen=True, slots=True)
class Designator:
    """One designation descriptor of the Device Identification page (SPC-4 §7.8.6.1)."""

    code_set: CodeSet
    association: Association
    designator_type: DesignatorType
    designator: bytes
    protocol_identifier: ProtocolIdentifier | None = None

    def encode(self) -> bytes:
        # PIV is only meaningful for target port and target device associations.
        piv = self.protocol_identifier is not None
        byte0 = ((self.protocol_identifier or 0) << 4) | self.code_set
        byte1 = (_PIV if piv else 0) | (self.association << 4) | self.designator_type
        return _DESIGNATOR_HEADER.pack(byte0, byte1, len(self.designator)) + self.designator

    @classmethod
    def decode_all(cls, page: bytes) -> list[Designator]:
        """Every designation descriptor of a Device Identification page."""
        _, _, length = _VPD_HEADER.unpack_from(page)
        offset, end = _VPD_HEADER.size, min(len(page), _VPD_HEADER.size + length)
        found: list[Designator] = []
        while offset + _DESIGNATOR_HEADER.size <= end:
            byte0, byte1, size = _DESIGNATOR_HEADER.unpack_from(page, offset)
            start = offset + _DESIGNATOR_HEADER.size
            found.append(
                cls(
                    code_set=CodeSet(byte0 & 0x0F),
                    association=Association((byte1 >> 4) & 0x03),
                    designator_type=DesignatorType(byte1 & 0x0F),
                    designator=bytes(page[start : start + size]),
                    protocol_identifier=ProtocolIdentifier(byte0 >> 4) if byte1 & _PIV else None,
                )
            )
            offset = start + size
        return found


def scsi_name_string(name: str) -> bytes:
    """SPC-4 §7.8.6.11 SCSI NAME STRING: UTF-8, NUL-terminated, padded to a multiple of 4."""
    raw = name.encode("utf-8") + b"\x00"
    raw += bytes(-len(raw) % 4)
    if len(raw) > _MAX_SCSI_NAME_STRING:
        raise ValueError(f"SCSI name string {name!r} is longer than 255 bytes")
    return raw


def device_identification(identity: DeviceIdentity, nexus: Nexus, port_group: int) -> bytes:
    """SPC-4 §7.8.6 Device Identification: LU designators, then target port, then device.

    The NAA and T10 designators identify the logical unit on every path; the relative port,
    port group and port name tell a multipath initiator which path this one is.
    """
    t10 = ascii_field(T10_VENDOR_ID, 8) + identity.unit_serial.encode("ascii")
    designators = (
        Designator(CodeSet.BINARY, Association.LOGICAL_UNIT, DesignatorType.NAA, identity.naa),
        Designator(CodeSet.ASCII, Association.LOGICAL_UNIT, DesignatorType.T10_VENDOR_ID, t10),
        Designator(
            CodeSet.BINARY,
            Association.TARGET_PORT,
            DesignatorType.RELATIVE_TARGET_PORT,
            _TWO_BYTE_ID.pack(nexus.relative_target_port_id),
            ProtocolIdentifier.ISCSI,
        ),
        Designator(
            CodeSet.BINARY,
            Association.TARGET_PORT,
            DesignatorType.TARGET_PORT_GROUP,
            _TWO_BYTE_ID.pack(port_group),
            ProtocolIdentifier.ISCSI,
        ),
        Designator(
            CodeSet.UTF8,
            Association.TARGET_PORT,
            DesignatorType.SCSI_NAME_STRING,
            scsi_name_string(nexus.target_port),
            ProtocolIdentifier.ISCSI,
        ),
        Designator(
            CodeSet.UTF8,
            Association.TARGET_DEVICE,
            DesignatorType.SCSI_NAME_STRING,
            scsi_name_string(nexus.target_name),
            ProtocolIdentifier.ISCSI,
        ),
    )
    return _vpd(VpdPage.DEVICE_IDENTIFICATION, b"".join(d.encode() for d in designators))


def block_device_characteristics() -> bytes:
    """SBC-4 §6.6.2 Block Device Characteristics: a non-rotating medium, no form factor."""
    return _BLOCK_DEVICE_CHARACTERISTICS.pack(
        PeripheralDeviceType.DIRECT_ACCESS_BLOCK,
        VpdPage.BLOCK_DEVICE_CHARACTERISTICS,
        _BLOCK_DEVICE_CHARACTERISTICS.size - _VPD_HEADER.size,
        _NON_ROTATING_MEDIUM,
        0,
        0,
    )


def logical_block_provisioning(device: BlockDevice) -> bytes:
    """SBC-4 §6.6.6 Logical Block Provisioning (DP=0, so the page is 8 bytes).

    A thin device supports UNMAP and WRITE SAME(10/16) with UNMAP, and unmapped blocks read
    as zeroes (LBPRZ 001b). ANC_SUP is clear: sanstack has no anchored state, so ANCHOR=1 is
    INVALID FIELD IN CDB. Thresholds are not supported, hence THRESHOLD EXPONENT zero.
    """
    flags = 0
    ptype = ProvisioningType.FULL
    if device.thin_provisioned:
        flags = _LBPU | _LBPWS | _LBPWS10 | _LBPRZ_ZEROES
        ptype = ProvisioningType.THIN
    return _LOGICAL_BLOCK_PROVISIONING.pack(
        PeripheralDeviceType.DIRECT_ACCESS_BLOCK,
        VpdPage.LOGICAL_BLOCK_PROVISIONING,
        _LOGICAL_BLOCK_PROVISIONING.size - _VPD_HEADER.size,
        0,
        flags,
        ptype,
        0,
    )


def vpd_page(lu: LogicalUnit, nexus: Nexus, page_code: int) -> bytes:
    """The VPD page ``page_code`` as seen through ``nexus``; INVALID FIELD IN CDB if unknown."""
    device = lu.device
    match page_code:
        case VpdPage.SUPPORTED_VPD_PAGES:
            return supported_vpd_pages()
        case VpdPage.UNIT_SERIAL_NUMBER:
            return unit_serial_number(device.identity)
        case VpdPage.DEVICE_IDENTIFICATION:
            return device_identification(device.identity, nexus, lu.target.port_group_id(nexus))
        case VpdPage.BLOCK_LIMITS:
            return block_limits(device).encode()
        case VpdPage.BLOCK_DEVICE_CHARACTERISTICS:
            return block_device_characteristics()
        case VpdPage.LOGICAL_BLOCK_PROVISIONING:
            return logical_block_provisioning(device)
    raise invalid_field_in_cdb(2)


def claimed_tpgs(lu: LogicalUnit) -> Tpgs:
    """The target port groups' TPGS once REPORT TARGET PORT GROUPS is served, else 00b."""
    rtpg = (Opcode.MAINTENANCE_IN, MaintenanceIn.REPORT_TARGET_PORT_GROUPS)
    return lu.alua.tpgs if rtpg in lu.commands else Tpgs.NOT_SUPPORTED


async def inquiry(lu: LogicalUnit, cmd: Command) -> CommandResult:
    """INQUIRY (SPC-4 §6.6): standard data or one VPD page, cut to ALLOCATION LENGTH."""
    request = InquiryCdb.decode(cmd.cdb)
    if request.evpd:
        data = vpd_page(lu, cmd.nexus, request.page_code)
    else:
        data = standard_inquiry(lu.target, tpgs=claimed_tpgs(lu))
    return CommandResult(data=data[: request.allocation_length])
