"""MODE SENSE / MODE SELECT byte for byte (SPC-4 §6.11-§6.14, §7.5; SBC-4 §6.5)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from sanstack.block.memory import MemoryDevice
from sanstack.scsi.codes import ASC, Opcode, SenseKey, Status
from sanstack.scsi.command import Command, CommandResult, Nexus
from sanstack.scsi.logical_unit import LogicalUnit, TargetInfo
from sanstack.scsi.mode import ModeParameters
from sanstack.scsi.mode_pages import (
    ModeSelectCdb,
    ModeSenseCdb,
    PageControl,
    caching_page,
    control_page,
    iec_page,
    parse_mode_parameters,
)
from sanstack.scsi.sense import CheckCondition, parse_sense
from sanstack.scsi.spc import check_writable

TARGET = "iqn.2024-01.org.sanstack:disk"
A = Nexus("iqn.2024-01.org.example:a", 1, TARGET, 1)
B = Nexus("iqn.2024-01.org.example:b", 2, TARGET, 1)


class CountingDevice(MemoryDevice):
    """A MemoryDevice that counts flushes."""

    def __init__(self, num_blocks: int, block_size: int = 512) -> None:
        super().__init__(num_blocks, block_size)
        self.flushes = 0

    async def flush(self) -> None:
        self.flushes += 1
        await super().flush()


def make_lu(
    *, write_cache: bool = False, read_only: bool = False, blocks: int = 1000
) -> LogicalUnit:
    device = CountingDevice(blocks)
    device.write_cache = write_cache
    device.read_only = read_only
    return LogicalUnit(0, device, TargetInfo(TARGET, lambda: [0], lambda: [A, B]))


def run(
    lu: LogicalUnit, cdb: Sequence[int] | bytes, nexus: Nexus = A, data_out: bytes = b""
) -> CommandResult:
    cmd = Command(nexus, 0, bytes(cdb), data_out=data_out, data_in_length=0xFFFF)
    return asyncio.run(lu.execute(cmd))


def sense6(
    lu: LogicalUnit, page: int, *, dbd: bool = False, pc: int = 0, alloc: int = 255
) -> bytes:
    result = run(lu, [Opcode.MODE_SENSE_6, 0x08 if dbd else 0, (pc << 6) | page, 0, alloc, 0])
    assert result.status == Status.GOOD, result.sense.hex()
    return bytes(result.data)


def select6(lu: LogicalUnit, params: bytes, nexus: Nexus = A) -> CommandResult:
    return run(lu, [Opcode.MODE_SELECT_6, 0x10, 0, 0, len(params), 0], nexus, params)


def assert_check(
    result: CommandResult, key: SenseKey, asc: ASC, pointer: str | None = None
) -> None:
    assert result.status == Status.CHECK_CONDITION
    assert parse_sense(result.sense) == (key, asc.asc, asc.ascq)
    if pointer is not None:
        assert result.sense[15:18].hex() == pointer


def assert_bad_parameter(result: CommandResult, pointer: str) -> None:
    assert_check(result, SenseKey.ILLEGAL_REQUEST, ASC.INVALID_FIELD_IN_PARAMETER_LIST, pointer)


# Pages with all-default values (write cache off): SBC-4 §6.5.5, SPC-4 §7.5.8, §7.5.12.
CACHING = bytes.fromhex("08 12 00 00") + bytes(16)
CONTROL = bytes.fromhex("0a 0a 02 10 00 00 00 00 ff ff 00 00")  # GLTSD, QAM 1, busy FFFFh
IEC = bytes.fromhex("1c 0a 08 00 00 00 00 00 00 00 00 00")  # DEXCPT
PAGES = CACHING + CONTROL + IEC
SHORT_DESCRIPTOR = bytes.fromhex("00 00 03 e8 00 00 02 00")  # 1000 blocks of 512 bytes
LONG_DESCRIPTOR = bytes.fromhex("00 00 00 00 00 00 03 e8 00 00 00 00 00 00 02 00")


# -- MODE SENSE ------------------------------------------------------------------------------


def test_mode_sense6_all_pages_vector() -> None:
    data = sense6(make_lu(), 0x3F)
    assert data == bytes.fromhex("37 00 10 08") + SHORT_DESCRIPTOR + PAGES


def test_mode_sense6_dbd_vector() -> None:
    assert sense6(make_lu(), 0x3F, dbd=True) == bytes.fromhex("2f 00 10 00") + PAGES


def test_mode_sense6_one_page_each() -> None:
    lu = make_lu()
    assert sense6(lu, 0x08, dbd=True) == bytes.fromhex("17 00 10 00") + CACHING
    assert sense6(lu, 0x0A, dbd=True) == bytes.fromhex("0f 00 10 00") + CONTROL
    assert sense6(lu, 0x1C, dbd=True) == bytes.fromhex("0f 00 10 00") + IEC


def test_mode_sense10_vectors() -> None:
    lu = make_lu()
    short = run(lu, [0x5A, 0x00, 0x3F, 0, 0, 0, 0, 0x01, 0x00, 0])
    assert bytes(short.data) == (
        bytes.fromhex("00 3a 00 10 00 00 00 08") + SHORT_DESCRIPTOR + PAGES
    )
    long = run(lu, [0x5A, 0x10, 0x3F, 0, 0, 0, 0, 0x01, 0x00, 0])
    assert bytes(long.data) == bytes.fromhex("00 42 00 10 01 00 00 10") + LONG_DESCRIPTOR + PAGES
    none = run(lu, [0x5A, 0x18, 0x0A, 0, 0, 0, 0, 0x01, 0x00, 0])
    assert bytes(none.data) == bytes.fromhex("00 12 00 10 00 00 00 00") + CONTROL


def test_short_descriptor_saturates_for_huge_devices() -> None:
    data = sense6(make_lu(blocks=1 << 33), 0x1C)
    assert data[4:12] == bytes.fromhex("ff ff ff ff 00 00 02 00")


def test_changeable_values_vector() -> None:
    data = sense6(make_lu(), 0x3F, pc=PageControl.CHANGEABLE)
    assert data == (
        bytes.fromhex("37 00 10 08")
        + bytes(8)  # neither capacity nor block length is changeable
        + bytes.fromhex("08 12 05 00")  # WCE, RCD
        + bytes(16)
        + bytes.fromhex("0a 0a 04 06 08 40 00 00 00 00 00 00")  # D_SENSE, QERR, SWP, TAS
        + bytes.fromhex("1c 0a 08 0f 00 00 00 00 00 00 00 00")  # DEXCPT, MRIE
    )


def test_default_values_ignore_current_changes() -> None:
    lu = make_lu(write_cache=True)
    lu.mode.swp = True
    lu.mode.wce = False
    data = sense6(lu, 0x08, dbd=True, pc=PageControl.DEFAULT)
    assert data == bytes.fromhex("17 00 90 00 08 12 04 00") + bytes(16)


def test_saved_values_are_not_supported() -> None:
    result = run(make_lu(), [0x1A, 0, 0xFF, 0, 255, 0])
    assert_check(result, SenseKey.ILLEGAL_REQUEST, ASC.SAVING_PARAMETERS_NOT_SUPPORTED, "cf0002")


def test_unknown_page_and_subpage_are_invalid_field_in_cdb() -> None:
    lu = make_lu()
    bad_page = run(lu, [0x1A, 0, 0x19, 0, 255, 0])
    assert_check(bad_page, SenseKey.ILLEGAL_REQUEST, ASC.INVALID_FIELD_IN_CDB, "cd0002")
    bad_subpage = run(lu, [0x1A, 0, 0x0A, 0x01, 255, 0])
    assert_check(bad_subpage, SenseKey.ILLEGAL_REQUEST, ASC.INVALID_FIELD_IN_CDB, "c00003")


def test_all_subpages_is_the_same_as_subpage_zero() -> None:
    lu = make_lu()
    result = run(lu, [0x1A, 0, 0x3F, 0xFF, 255, 0])
    assert bytes(result.data) == sense6(lu, 0x3F)


def test_residual_sized_allocation_length() -> None:
    # libiscsi ModeSense6.Residuals: 4 bytes asked, at most 4 bytes sent.
    assert sense6(make_lu(), 0x3F, alloc=4) == bytes.fromhex("37 00 10 08")
    assert sense6(make_lu(), 0x3F, alloc=0) == b""


def test_write_protect_bit_for_read_only_device_and_swp() -> None:
    assert sense6(make_lu(read_only=True), 0x3F)[2] == 0x90
    lu = make_lu()
    lu.mode.swp = True
    assert sense6(lu, 0x3F)[2] == 0x90


def test_page_encoders_follow_mode_parameters() -> None:
    m = ModeParameters(wce=True, rcd=True, d_sense=True, tas=True, qerr=1, swp=True, mrie=6)
    assert caching_page(m)[2] == 0x05
    assert control_page(m)[2:6] == bytes.fromhex("06 12 08 40")
    assert iec_page(m)[2:4] == bytes.fromhex("08 06")


# -- the CDBs ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "decoded"),
    [
        ("1a 08 4a 00 ff 00", ModeSenseCdb(False, True, PageControl.CHANGEABLE, 0x0A, 0, 255)),
        ("1a 00 ff 00 04 00", ModeSenseCdb(False, False, PageControl.SAVED, 0x3F, 0, 4)),
        (
            "5a 18 3f ff 00 00 00 10 00 00",
            ModeSenseCdb(True, True, PageControl.CURRENT, 0x3F, 0xFF, 0x1000, llbaa=True),
        ),
    ],
)
def test_mode_sense_cdb_both_ways(raw: str, decoded: ModeSenseCdb) -> None:
    assert ModeSenseCdb.decode(bytes.fromhex(raw)) == decoded
    assert decoded.encode() == bytes.fromhex(raw)


@pytest.mark.parametrize(
    ("raw", "decoded"),
    [
        ("15 10 00 00 10 00", ModeSelectCdb(False, True, False, 0x10)),
        ("55 10 00 00 00 00 00 01 00 00", ModeSelectCdb(True, True, False, 0x100)),
    ],
)
def test_mode_select_cdb_both_ways(raw: str, decoded: ModeSelectCdb) -> None:
    assert ModeSelectCdb.decode(bytes.fromhex(raw)) == decoded
    assert decoded.encode() == bytes.fromhex(raw)


def test_mode_select_needs_pf_and_refuses_sp() -> None:
    lu = make_lu()
    params = bytes(4) + CONTROL
    no_pf = run(lu, [0x15, 0x00, 0, 0, len(params), 0], A, params)
    assert_check(no_pf, SenseKey.ILLEGAL_REQUEST, ASC.INVALID_FIELD_IN_CDB, "cc0001")
    sp = run(lu, [0x15, 0x11, 0, 0, len(params), 0], A, params)
    assert_check(sp, SenseKey.ILLEGAL_REQUEST, ASC.INVALID_FIELD_IN_CDB, "c80001")
    with pytest.raises(CheckCondition):
        ModeSelectCdb.decode(bytes.fromhex("15 11 00 00 10 00"))


# -- MODE SELECT -----------------------------------------------------------------------------


def test_libiscsi_style_swp_round_trip() -> None:
    """What libiscsi's set_swp/clear_swp do: read CONTROL, flip SWP, write it back."""
    lu = make_lu()
    changeable = sense6(lu, 0x0A, dbd=True, pc=PageControl.CHANGEABLE)
    assert changeable[4 + 4] & 0x08  # SWP is changeable
    page = bytearray(sense6(lu, 0x0A, dbd=True)[4:])
    page[4] |= 0x08
    assert select6(lu, bytes(4) + bytes(page)).status == Status.GOOD
    assert lu.mode == ModeParameters(wce=False, swp=True)
    assert sense6(lu, 0x0A, dbd=True) == bytes.fromhex("0f 00 90 00") + bytes(page)
    with pytest.raises(CheckCondition) as raised:
        check_writable(lu)
    assert raised.value.key == SenseKey.DATA_PROTECT
    assert raised.value.asc == ASC.SOFTWARE_WRITE_PROTECTED
    page[4] &= ~0x08
    assert select6(lu, bytes(4) + bytes(page)).status == Status.GOOD
    assert lu.mode == ModeParameters(wce=False)
    check_writable(lu)


def test_mode_select_vector_sets_every_changeable_field() -> None:
    lu = make_lu()
    params = (
        bytes.fromhex("00 00 00 00")
        + bytes.fromhex("08 12 05 00")
        + bytes(16)
        + bytes.fromhex("0a 0a 06 16 08 40 00 00 ff ff 00 00")
        + bytes.fromhex("1c 0a 00 04 00 00 00 00 00 00 00 00")
    )
    result = select6(lu, params)
    assert result.status == Status.GOOD
    assert result.data_out_used == len(params)
    assert lu.mode == ModeParameters(
        wce=True, rcd=True, d_sense=True, tas=True, qerr=3, swp=True, dexcpt=False, mrie=4
    )


def test_mode_select_establishes_mode_parameters_changed_for_other_nexuses() -> None:
    lu = make_lu()
    assert select6(lu, bytes(4) + bytes.fromhex("08 12 04 00") + bytes(16)).status == 0
    assert not lu.has_unit_attention(A)
    tur = run(lu, [0, 0, 0, 0, 0, 0], B)
    assert_check(tur, SenseKey.UNIT_ATTENTION, ASC.MODE_PARAMETERS_CHANGED)
    assert run(lu, [0, 0, 0, 0, 0, 0], B).status == Status.GOOD


def test_mode_select_without_change_establishes_nothing() -> None:
    lu = make_lu()
    assert select6(lu, bytes(4) + CONTROL).status == Status.GOOD
    assert not lu.has_unit_attention(B)


def test_mode_select_zero_length_is_a_no_op() -> None:
    lu = make_lu()
    result = run(lu, [0x15, 0x10, 0, 0, 0, 0])
    assert result.status == Status.GOOD
    assert lu.mode == ModeParameters(wce=False)


def test_turning_the_write_cache_off_flushes() -> None:
    lu = make_lu(write_cache=True)
    device = lu.device
    assert isinstance(device, CountingDevice)
    assert select6(lu, bytes(4) + CACHING).status == Status.GOOD
    assert not lu.mode.wce
    assert device.flushes == 1


@pytest.mark.parametrize(
    ("page", "pointer"),
    [
        (bytes.fromhex("0a 0a 00 10 00 00 00 00 ff ff 00 00"), "890006"),  # GLTSD cleared
        (bytes.fromhex("0a 0a 02 10 00 00 00 00 00 ff 00 00"), "8f000c"),  # busy timeout
        (bytes.fromhex("0a 0a 22 10 00 00 00 00 ff ff 00 00"), "8d0006"),  # TST
        (bytes.fromhex("0a 0a 02 14 00 00 00 00 ff ff 00 00"), "8a0007"),  # QERR 10b reserved
        (bytes.fromhex("1c 0a 08 07 00 00 00 00 00 00 00 00"), "8b0007"),  # MRIE 7h reserved
        (bytes.fromhex("1c 0a 88 00 00 00 00 00 00 00 00 00"), "8f0006"),  # PERF
        (bytes.fromhex("0a 09 02 10 00 00 00 00 ff ff 00"), "800005"),  # page length
        (bytes.fromhex("19 06 00 00 00 00 00 00"), "8d0004"),  # unknown page
        (bytes.fromhex("4a 00 00 0a") + CONTROL[2:], "8e0004"),  # subpage format
    ],
)
def test_mode_select_refuses_what_cannot_change(page: bytes, pointer: str) -> None:
    lu = make_lu()
    assert_bad_parameter(select6(lu, bytes(4) + page), pointer)
    assert lu.mode == ModeParameters(wce=False)
    assert not lu.has_unit_attention(B)


def test_mode_select_is_all_or_nothing() -> None:
    lu = make_lu()
    good = bytes.fromhex("08 12 04 00") + bytes(16)
    bad = bytes.fromhex("0a 0a 00 10 00 00 00 00 ff ff 00 00")
    assert_bad_parameter(select6(lu, bytes(4) + good + bad), "89001a")
    assert not lu.mode.wce


@pytest.mark.parametrize(
    "params",
    [
        bytes.fromhex("00 00"),  # shorter than the header
        bytes.fromhex("00 00 00 08 00 00 03 e8"),  # block descriptor cut short
        bytes(4) + CONTROL[:8],  # page cut short
        bytes(4) + CONTROL + bytes.fromhex("08"),  # a lone byte after the last page
    ],
)
def test_mode_select_parameter_list_length_error(params: bytes) -> None:
    assert_check(
        select6(make_lu(), params), SenseKey.ILLEGAL_REQUEST, ASC.PARAMETER_LIST_LENGTH_ERROR
    )


def test_data_out_shorter_than_parameter_list_length() -> None:
    result = run(make_lu(), [0x15, 0x10, 0, 0, 16, 0], A, bytes(4) + CONTROL[:4])
    assert_check(result, SenseKey.ILLEGAL_REQUEST, ASC.PARAMETER_LIST_LENGTH_ERROR)


def test_block_descriptor_may_restate_but_not_change_the_format() -> None:
    lu = make_lu()
    wce = bytes.fromhex("08 12 04 00") + bytes(16)
    assert select6(lu, bytes.fromhex("00 00 00 08") + SHORT_DESCRIPTOR + wce).status == 0
    assert lu.mode.wce
    keep = bytes.fromhex("00 00 00 00 00 00 02 00")  # zero blocks: keep the capacity
    assert select6(lu, bytes.fromhex("00 00 00 08") + keep).status == Status.GOOD
    resize = bytes.fromhex("00 00 07 d0 00 00 02 00")
    assert_bad_parameter(select6(lu, bytes.fromhex("00 00 00 08") + resize), "800004")
    reformat = bytes.fromhex("00 00 03 e8 00 00 10 00")
    assert_bad_parameter(select6(lu, bytes.fromhex("00 00 00 08") + reformat), "800009")
    assert_bad_parameter(select6(lu, bytes.fromhex("00 00 00 04") + bytes(4)), "800003")
    assert_bad_parameter(select6(lu, bytes.fromhex("00 05 00 00")), "800001")


def test_mode_select10_with_long_lba_descriptor() -> None:
    lu = make_lu()
    params = (
        bytes.fromhex("00 00 00 00 01 00 00 10")
        + LONG_DESCRIPTOR
        + bytes.fromhex("1c 0a 00 00 00 00 00 00 00 00 00 00")
    )
    cdb = [0x55, 0x10, 0, 0, 0, 0, 0, 0, len(params), 0]
    assert run(lu, cdb, A, params).status == Status.GOOD
    assert not lu.mode.dexcpt
    assert_bad_parameter(run(lu, cdb, A, params[:6] + b"\x00\x08" + params[8:]), "800006")


def test_parse_mode_parameters_directly() -> None:
    device = MemoryDevice(1000)
    current = ModeParameters()
    params = bytes(4) + bytes.fromhex("0a 0a 06 12 08 40 00 00 ff ff 00 00")
    parsed = parse_mode_parameters(params, ten=False, current=current, device=device)
    assert parsed == ModeParameters(d_sense=True, qerr=1, swp=True, tas=True)
    assert current == ModeParameters()  # nothing applied in place


def test_mode_sense_conflicts_under_another_nexus_reservation() -> None:
    # libiscsi Reserve6.2Initiators: MODE SENSE from the other initiator conflicts.
    lu = make_lu()
    assert run(lu, [Opcode.RESERVE_6, 0, 0, 0, 0, 0], A).status == Status.GOOD
    assert run(lu, [0x1A, 0, 0x3F, 0, 255, 0], A).status == Status.GOOD
    assert run(lu, [0x1A, 0, 0x3F, 0, 255, 0], B).status == Status.RESERVATION_CONFLICT
