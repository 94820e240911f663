"""LUN numbers above 255 (SAM-5 §4.7): what the target reports and which LUN fields it serves.

REPORT LUNS gives LUN N > 255 in flat space addressing (SAM-5 §4.7.7.4, ``0x4000 | N``, as
tgt does). A command reaches LUN N through that form and also through peripheral device
addressing with the bus in the top byte (SAM-5 §4.7.7.3, ``N >> 8, N & 0xFF``), which is what
Linux's ``int_to_scsilun(N)``, LIO's REPORT LUNS, SCST's default and a libiscsi or QEMU URL
ending in ``/N`` put on the wire (SCST's ``scst_unpack_lun`` accepts both the same way).
"""

from __future__ import annotations

import pytest
from tests.support.pair import Pair, make_pair

from sanstack.iscsi import pdu as p
from sanstack.iscsi.codes import (
    TaskManagementFunction,
    TaskManagementResponseCode,
)
from sanstack.iscsi.negotiation import NegotiationPreferences
from sanstack.scsi.codes import Opcode
from sanstack.scsi.lun import UNSUPPORTED_LUN_FLAG, decode_lun, decode_target_lun, encode_lun
from sanstack.scsi.spc import report_luns_data


def field(hex_bytes: str) -> int:
    """The 64-bit LUN field of the PDU whose eight LUN bytes are ``hex_bytes``."""
    return int.from_bytes(bytes.fromhex(hex_bytes), "big")


# (the eight LUN bytes, the LUN they address, who sends that form)
SERVED = [
    ("0000000000000000", 0, "peripheral, bus 0: every initiator"),
    ("00ff000000000000", 255, "peripheral, bus 0"),
    ("4005000000000000", 5, "flat space for a small LUN (tgt and SCST accept it too)"),
    ("0100000000000000", 256, "int_to_scsilun(256); libiscsi URL /256"),
    ("012b000000000000", 299, "int_to_scsilun(299), LIO's REPORT LUNS; libiscsi URL /299"),
    ("412b000000000000", 299, "flat space: our REPORT LUNS; Linux names it 16683"),
    ("43ff000000000000", 1023, "flat space"),
    ("03ff000000000000", 1023, "int_to_scsilun(1023)"),
    ("3fff000000000000", 16383, "int_to_scsilun(16383), the last one"),
    ("7fff000000000000", 16383, "flat space, the last one"),
]

REFUSED = [
    ("812b000000000000", "logical unit addressing (SAM-5 §4.7.7.5)"),
    ("c101000000000000", "extended addressing: the REPORT LUNS well-known LU"),
    ("d200012b00000000", "extended flat space addressing (SAM-5 §4.7.8.3)"),
    ("012b000100000000", "a second level below LUN 299"),
    ("0000000000000005", "a stray byte in the fourth level"),
]


@pytest.mark.parametrize(("raw", "lun", "who"), SERVED)
def test_the_target_serves_both_single_level_forms(raw: str, lun: int, who: str) -> None:
    assert decode_target_lun(field(raw)) == lun, who


@pytest.mark.parametrize(("raw", "why"), REFUSED)
def test_any_other_form_addresses_no_lun(raw: str, why: str) -> None:
    lun = decode_target_lun(field(raw))
    assert lun == field(raw) | UNSUPPORTED_LUN_FLAG, why
    assert encode_lun(lun) == field(raw)


def test_a_field_wider_than_64_bits_is_a_caller_error() -> None:
    for bad in (-1, 1 << 64):
        with pytest.raises(ValueError, match="64 bits"):
            decode_target_lun(bad)


@pytest.mark.parametrize(
    ("lun", "raw"),
    [
        (0, "0000000000000000"),
        (255, "00ff000000000000"),
        (256, "4100000000000000"),
        (299, "412b000000000000"),
        (16383, "7fff000000000000"),
    ],
)
def test_report_luns_and_encode_lun_give_flat_space_above_255(lun: int, raw: str) -> None:
    data = report_luns_data([lun])
    assert data == bytes.fromhex("0000000800000000") + bytes.fromhex(raw)
    assert encode_lun(lun) == field(raw)
    assert decode_lun(field(raw)) == lun
    assert decode_target_lun(field(raw)) == lun


def test_an_initiator_gives_back_the_form_its_target_reported() -> None:
    # LIO reports LUN 299 as 01 2B and reads 41 2B as LUN 16683: our initiator must send
    # the bytes it was given, so decode_lun keeps the peripheral-with-bus form whole.
    lio_299 = field("012b000000000000")
    assert decode_lun(lio_299) >= UNSUPPORTED_LUN_FLAG
    assert encode_lun(decode_lun(lio_299)) == lio_299
    tgt_299 = field("412b000000000000")
    assert encode_lun(decode_lun(tgt_299)) == tgt_299


# -- through the target connection core ----------------------------------------------------


def inquiry(itt: int, cmd_sn: int, lun_field: int) -> p.SCSICommand:
    cdb = bytes([Opcode.INQUIRY, 1, 0x80, 0, 255, 0])
    return p.SCSICommand(
        itt=itt,
        lun=lun_field,
        cdb=cdb.ljust(16, b"\0"),
        expected_data_transfer_length=255,
        cmd_sn=cmd_sn,
        read=True,
    )


def logged_in_with_300_luns(**prefs: bool) -> Pair:
    pair = make_pair(blocks=8, luns=300)
    pair.login(NegotiationPreferences(**prefs) if prefs else None)  # type: ignore[arg-type]
    assert pair.conn.outcome is not None and pair.closed is None
    return pair


def test_both_forms_reach_lun_299_and_others_reach_none() -> None:
    pair = logged_in_with_300_luns()
    pair.hold_commands = True
    # LUN 43's own field is there to show 01 2B is not read as LUN 43 (tgt reads it so).
    forms = ["012b000000000000", "412b000000000000", "002b000000000000", "812b000000000000"]
    for cmd_sn, raw in enumerate(forms):
        pair.send(inquiry(cmd_sn + 1, cmd_sn, field(raw)))
    unsupported = field("812b000000000000") | UNSUPPORTED_LUN_FLAG
    assert [event.command.lun for event in pair.held] == [299, 299, 43, unsupported]
    pair.held = pair.held[:3]
    pair.release_held()
    serials = {x.itt: bytes(x.data) for x in pair.take() if isinstance(x, p.DataIn)}
    assert len(serials) == 3
    assert serials[1] == serials[2] != serials[3]
    assert pair.target.luns[299].device.identity.unit_serial.encode() in serials[1]


def test_a_lun_reset_in_one_form_drops_writes_sent_in_the_other() -> None:
    pair = logged_in_with_300_luns(initial_r2t=True, immediate_data=False)
    write = bytes([Opcode.WRITE_10, 0, 0, 0, 0, 0, 0, 0, 2, 0]).ljust(16, b"\0")
    pair.send(
        p.SCSICommand(
            itt=5,
            lun=field("012b000000000000"),
            cdb=write,
            expected_data_transfer_length=1024,
            write=True,
        )
    )
    (r2t,) = pair.take()
    assert isinstance(r2t, p.R2T) and r2t.lun == field("012b000000000000")  # echoed as sent
    reset = TaskManagementFunction.LOGICAL_UNIT_RESET
    pair.send(p.TaskManagementRequest(function=reset, itt=6, lun=field("412a000000000000")))
    assert pair.conn.outstanding_commands == 1  # LUN 298's reset leaves LUN 299 alone
    pair.send(p.TaskManagementRequest(function=reset, itt=7, lun=field("412b000000000000")))
    responses = [x for x in pair.take() if isinstance(x, p.TaskManagementResponse)]
    assert [r.response for r in responses] == [TaskManagementResponseCode.FUNCTION_COMPLETE] * 2
    assert pair.conn.outstanding_commands == 0
