"""INQUIRY: standard data and every VPD page, byte for byte (SPC-4 §6.6, §7.8; SBC-4 §6.6)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from sanstack.block.device import DeviceIdentity
from sanstack.block.memory import MemoryDevice
from sanstack.scsi import limits
from sanstack.scsi.codes import ASC, MaintenanceIn, Opcode, SenseKey, Status
from sanstack.scsi.command import Command, CommandResult, Nexus
from sanstack.scsi.inquiry import (
    Association,
    BlockLimits,
    CodeSet,
    Designator,
    DesignatorType,
    InquiryCdb,
    ProtocolIdentifier,
    ascii_field,
    block_limits,
    scsi_name_string,
)
from sanstack.scsi.logical_unit import LogicalUnit, TargetInfo
from sanstack.scsi.sense import CheckCondition, parse_sense

TARGET = "iqn.2024-01.org.sanstack:disk"
NEXUS = Nexus("iqn.2024-01.org.example:host", 0x23D000000001, TARGET, 1)
IDENTITY = DeviceIdentity(naa=bytes.fromhex("3123456789abcdef"), unit_serial="SN0001")


def make_lu(
    *,
    block_size: int = 512,
    thin: bool = True,
    port_group: int | None = None,
    target: TargetInfo | None = None,
) -> LogicalUnit:
    device = MemoryDevice(1000, block_size, identity=IDENTITY)
    device.thin_provisioned = thin
    info = target or TargetInfo(TARGET, lambda: [0], lambda: [NEXUS])
    if port_group is not None:
        info.port_group_id = lambda nexus: port_group
    return LogicalUnit(0, device, info)


def run(lu: LogicalUnit, cdb: Sequence[int] | bytes, nexus: Nexus = NEXUS) -> CommandResult:
    return asyncio.run(lu.execute(Command(nexus, 0, bytes(cdb), data_in_length=0xFFFF)))


def inquiry(lu: LogicalUnit, page: int | None, length: int = 0xFFFF) -> bytes:
    evpd = 0 if page is None else 1
    result = run(lu, [Opcode.INQUIRY, evpd, page or 0, length >> 8, length & 0xFF, 0])
    assert result.status == Status.GOOD, result.sense.hex()
    return bytes(result.data)


def assert_invalid_field_in_cdb(result: CommandResult, pointer: str) -> None:
    assert result.status == Status.CHECK_CONDITION
    assert parse_sense(result.sense) == (SenseKey.ILLEGAL_REQUEST, 0x24, 0x00)
    assert result.sense[15:18].hex() == pointer


# -- standard INQUIRY data -------------------------------------------------------------------

STANDARD = bytes.fromhex(
    "00 00 06 12 5b 30 00 02"  # SBC device, SPC-4, HiSup + format 2, 91 more, TPGS 11b, CmdQue
    + b"SANSTACK".hex()
    + b"VIRTUAL-DISK    ".hex()
    + b"0001".hex()
    + "00" * 22  # vendor specific, byte 56, reserved
    + "00a0 0460 04c0 0960"  # SAM-5, SPC-4, SBC-3, iSCSI
    + "00" * 8
    + "00" * 22
)


def test_standard_inquiry_vector() -> None:
    data = inquiry(make_lu(), None)
    assert len(STANDARD) == 96
    assert data == STANDARD


def test_standard_inquiry_uses_target_strings_padded_and_cut() -> None:
    info = TargetInfo(
        TARGET, lambda: [0], lambda: [NEXUS], vendor="ACME", product="X" * 20, revision="7"
    )
    data = inquiry(make_lu(target=info), None)
    assert data[8:16] == b"ACME    "
    assert data[16:32] == b"X" * 16
    assert data[32:36] == b"7   "


def test_ascii_field_replaces_non_printables() -> None:
    assert ascii_field("a\tb\u00e9", 6) == b"a?b?  "


def test_tpgs_is_claimed_only_when_rtpg_is_served() -> None:
    lu = make_lu()
    assert inquiry(lu, None)[5] == 0x30  # TPGS 11b: implicit and explicit ALUA
    del lu.commands[(Opcode.MAINTENANCE_IN, MaintenanceIn.REPORT_TARGET_PORT_GROUPS)]
    assert inquiry(lu, None)[5] == 0x00


@pytest.mark.parametrize("length", [0, 1, 5, 36, 95])
def test_allocation_length_truncates(length: int) -> None:
    assert inquiry(make_lu(), None, length) == STANDARD[:length]


def test_sixteen_bit_allocation_length_511_and_512_agree() -> None:
    lu = make_lu()
    assert inquiry(lu, None, 511) == inquiry(lu, None, 512) == STANDARD


# -- the CDB -----------------------------------------------------------------------------------


def test_inquiry_cdb_both_ways() -> None:
    raw = bytes.fromhex("12 01 83 10 00 00")
    request = InquiryCdb.decode(raw)
    assert request == InquiryCdb(evpd=True, page_code=0x83, allocation_length=0x1000)
    assert request.encode() == raw
    assert InquiryCdb(False, 0, 36).encode() == bytes.fromhex("12 00 00 00 24 00")


def test_cmddt_is_invalid_field_in_cdb() -> None:
    assert_invalid_field_in_cdb(run(make_lu(), [0x12, 0x02, 0, 0, 0xFF, 0]), "c90001")
    with pytest.raises(CheckCondition):
        InquiryCdb.decode(bytes.fromhex("12 02 00 00 ff 00"))


def test_page_code_without_evpd_is_invalid_field_in_cdb() -> None:
    # libiscsi Inquiry.EVPD
    assert_invalid_field_in_cdb(run(make_lu(), [0x12, 0, 1, 1, 0, 0]), "c00002")


def test_unknown_vpd_page_is_invalid_field_in_cdb() -> None:
    assert_invalid_field_in_cdb(run(make_lu(), [0x12, 1, 0x99, 0, 0xFF, 0]), "c00002")


# -- VPD pages -------------------------------------------------------------------------------


def test_supported_vpd_pages_vector_sorted_and_all_readable() -> None:
    lu = make_lu()
    data = inquiry(lu, 0x00)
    assert data == bytes.fromhex("00 00 00 06 00 80 83 b0 b1 b2")
    pages = list(data[4:])
    assert pages == sorted(pages)
    for page in pages:
        vpd = inquiry(lu, page)
        assert vpd[1] == page
        assert len(vpd) == int.from_bytes(vpd[2:4], "big") + 4


def test_unit_serial_number_vector() -> None:
    assert inquiry(make_lu(), 0x80) == bytes.fromhex("00 80 00 06") + b"SN0001"


NAME_PORT = b"iqn.2024-01.org.sanstack:disk,t,0x0001\x00\x00"  # 38 + NUL, padded to 40
NAME_DEVICE = b"iqn.2024-01.org.sanstack:disk\x00\x00\x00"  # 29 + NUL, padded to 32
DEVICE_IDENTIFICATION = (
    bytes.fromhex("00 83 00 7e")
    + bytes.fromhex("01 03 00 08 31 23 45 67 89 ab cd ef")  # NAA, binary, LU
    + bytes.fromhex("02 01 00 0e")  # T10 vendor ID, ASCII, LU
    + b"SANSTACKSN0001"
    + bytes.fromhex("51 94 00 04 00 00 00 01")  # iSCSI, PIV, target port, relative port 1
    + bytes.fromhex("51 95 00 04 00 00 00 01")  # iSCSI, PIV, target port, port group 1
    + bytes.fromhex("53 98 00 28")  # iSCSI, UTF-8, PIV, target port, SCSI name string
    + NAME_PORT
    + bytes.fromhex("53 a8 00 20")  # iSCSI, UTF-8, PIV, target device, SCSI name string
    + NAME_DEVICE
)


def test_scsi_name_strings_are_nul_terminated_and_padded_to_four() -> None:
    assert scsi_name_string(TARGET + ",t,0x0001") == NAME_PORT
    assert scsi_name_string(TARGET) == NAME_DEVICE
    assert scsi_name_string("abc") == b"abc\x00"
    assert scsi_name_string("abcd") == b"abcd\x00\x00\x00\x00"
    with pytest.raises(ValueError, match="longer"):
        scsi_name_string("x" * 256)


def test_device_identification_vector() -> None:
    assert inquiry(make_lu(), 0x83) == DEVICE_IDENTIFICATION


def test_device_identification_follows_the_nexus_port() -> None:
    nexus = Nexus("iqn.2024-01.org.example:host", 1, TARGET, 0x12, relative_target_port_id=3)
    lu = make_lu(port_group=7)
    result = run(lu, [0x12, 1, 0x83, 1, 0, 0], nexus)
    designators = Designator.decode_all(bytes(result.data))
    by_type = {(d.association, d.designator_type): d.designator for d in designators}
    assert by_type[(Association.TARGET_PORT, DesignatorType.RELATIVE_TARGET_PORT)] == bytes(
        [0, 0, 0, 3]
    )
    assert by_type[(Association.TARGET_PORT, DesignatorType.TARGET_PORT_GROUP)] == bytes(
        [0, 0, 0, 7]
    )
    name = by_type[(Association.TARGET_PORT, DesignatorType.SCSI_NAME_STRING)]
    assert name.rstrip(b"\x00") == (TARGET + ",t,0x0012").encode()


def test_designators_decode_and_reencode() -> None:
    designators = Designator.decode_all(DEVICE_IDENTIFICATION)
    assert designators[0] == Designator(
        CodeSet.BINARY, Association.LOGICAL_UNIT, DesignatorType.NAA, IDENTITY.naa
    )
    assert designators[1].designator == b"SANSTACKSN0001"
    assert designators[1].protocol_identifier is None
    assert [d.protocol_identifier for d in designators[2:]] == [ProtocolIdentifier.ISCSI] * 4
    assert designators[5].association == Association.TARGET_DEVICE
    assert b"".join(d.encode() for d in designators) == DEVICE_IDENTIFICATION[4:]


BLOCK_LIMITS_THIN_512 = bytes.fromhex(
    "00 b0 00 3c"
    "00"  # WSNZ clear: WRITE SAME of zero blocks runs to the last LBA
    "ff"  # MAXIMUM COMPARE AND WRITE LENGTH
    "00 08"  # OPTIMAL TRANSFER LENGTH GRANULARITY: 4 KiB
    "00 01 00 00"  # MAXIMUM TRANSFER LENGTH
    "00 00 00 00"  # OPTIMAL TRANSFER LENGTH
    "00 00 00 00"  # MAXIMUM PREFETCH LENGTH
    "00 01 00 00"  # MAXIMUM UNMAP LBA COUNT
    "00 00 01 00"  # MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT
    "00 00 00 08"  # OPTIMAL UNMAP GRANULARITY
    "80 00 00 00"  # UGAVALID, UNMAP GRANULARITY ALIGNMENT 0
    "00 00 00 00 00 01 00 00"  # MAXIMUM WRITE SAME LENGTH
    + "00"
    * 20  # atomic writes: not supported
)

BLOCK_LIMITS_THICK_4096 = bytes.fromhex(
    "00 b0 00 3c 00 ff 00 01"
    "00 01 00 00 00 00 00 00 00 00 00 00"
    "00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00"
    "00 00 00 00 00 01 00 00" + "00" * 20
)


def test_block_limits_vectors() -> None:
    assert inquiry(make_lu(), 0xB0) == BLOCK_LIMITS_THIN_512
    assert inquiry(make_lu(block_size=4096, thin=False), 0xB0) == BLOCK_LIMITS_THICK_4096
    assert len(BLOCK_LIMITS_THIN_512) == 64


def test_block_limits_report_the_sbc_limits_and_decode_back() -> None:
    device = MemoryDevice(1000, 512)
    bl = block_limits(device)
    assert bl.max_transfer_length == limits.MAX_TRANSFER_BLOCKS
    assert bl.max_compare_and_write_length == limits.MAX_COMPARE_AND_WRITE_BLOCKS
    assert bl.max_write_same_length == limits.MAX_WRITE_SAME_BLOCKS
    assert bl.max_unmap_lba_count == limits.MAX_UNMAP_BLOCKS
    assert bl.max_unmap_block_descriptor_count == limits.MAX_UNMAP_DESCRIPTORS
    assert bl.write_same_non_zero is limits.WRITE_SAME_NO_ZERO
    assert BlockLimits.decode(bl.encode()) == bl
    assert BlockLimits.decode(BLOCK_LIMITS_THICK_4096).unmap_granularity_alignment is None
    # libiscsi Inquiry.BlockLimits: with LBPU, a non-zero and sane (<= 1M) unmap limit.
    assert 0 < bl.max_unmap_lba_count <= 1024 * 1024
    assert 0 < bl.max_unmap_block_descriptor_count <= 1024 * 1024


def test_block_device_characteristics_vector() -> None:
    expected = bytes.fromhex("00 b1 00 3c 00 01 00 00") + bytes(56)
    assert inquiry(make_lu(), 0xB1) == expected


def test_logical_block_provisioning_vectors() -> None:
    # LBPU, LBPWS, LBPWS10, LBPRZ 001b; ANC_SUP and DP clear; provisioning type thin.
    assert inquiry(make_lu(), 0xB2) == bytes.fromhex("00 b2 00 04 00 e4 02 00")
    assert inquiry(make_lu(thin=False), 0xB2) == bytes.fromhex("00 b2 00 04 00 00 00 00")


def test_vpd_allocation_length_truncates() -> None:
    assert inquiry(make_lu(), 0x83, 4) == DEVICE_IDENTIFICATION[:4]


def test_inquiry_passes_a_pending_unit_attention_without_clearing_it() -> None:
    lu = make_lu()
    lu.establish_unit_attention(ASC.POWER_ON_OCCURRED)
    assert inquiry(lu, None) == STANDARD
    assert lu.has_unit_attention(NEXUS)
