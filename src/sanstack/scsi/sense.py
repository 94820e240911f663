"""Sense data (SPC-4 §4.5), the CheckCondition exception that carries it, and the
CHECK CONDITION ``CommandResult`` made of it (``check_condition``).

sanstack returns fixed-format sense (response code 70h): every initiator parses it, and
libiscsi's tests compare the sense key and ASC/ASCQ through either format.
"""

from __future__ import annotations

import struct

from sanstack.errors import SanstackError
from sanstack.scsi.codes import ASC, SenseKey, Status
from sanstack.scsi.command import CommandResult

FIXED_SENSE_LENGTH = 18
_FIXED = struct.Struct(">BBBIBIBBB3s")


def fixed_sense(
    key: SenseKey,
    asc: ASC | int,
    *,
    information: int | None = None,
    sense_key_specific: bytes | None = None,
    deferred: bool = False,
) -> bytes:
    """SPC-4 §4.5.3 fixed-format sense data, 18 bytes.

    ``information`` sets VALID and the INFORMATION field (e.g. the first miscompared byte of
    COMPARE AND WRITE); ``sense_key_specific`` is the 3-byte SKSV field (bit 7 of byte 0 set
    by the caller) such as the field pointer of INVALID FIELD IN CDB.
    """
    response_code = 0x71 if deferred else 0x70
    if information is not None:
        response_code |= 0x80
    code = int(asc)
    return _FIXED.pack(
        response_code,
        0,
        int(key) & 0x0F,
        (information or 0) & 0xFFFFFFFF,
        FIXED_SENSE_LENGTH - 8,
        0,
        code >> 8,
        code & 0xFF,
        0,
        sense_key_specific or b"\x00\x00\x00",
    )


def field_pointer(byte: int, bit: int | None = None, *, in_cdb: bool = True) -> bytes:
    """SPC-4 §4.5.2.4.2 FIELD POINTER sense-key-specific bytes: SKSV, C/D, BPV, bit, byte."""
    first = 0x80 | (0x40 if in_cdb else 0)
    if bit is not None:
        first |= 0x08 | (bit & 0x07)
    return bytes([first, (byte >> 8) & 0xFF, byte & 0xFF])


class CheckCondition(SanstackError):
    """A command ends with CHECK CONDITION and this sense; raised anywhere below the target."""

    def __init__(
        self,
        key: SenseKey,
        asc: ASC,
        *,
        information: int | None = None,
        sense_key_specific: bytes | None = None,
    ) -> None:
        super().__init__(f"{key.name} {asc.name}")
        self.key = key
        self.asc = asc
        self.information = information
        self.sense_key_specific = sense_key_specific

    @property
    def sense(self) -> bytes:
        return fixed_sense(
            self.key,
            self.asc,
            information=self.information,
            sense_key_specific=self.sense_key_specific,
        )


def check_condition(
    key: SenseKey,
    asc: ASC,
    *,
    information: int | None = None,
    sense_key_specific: bytes | None = None,
) -> CommandResult:
    """A CHECK CONDITION result with fixed-format sense.

    Handlers raise ``CheckCondition``; this is for the code that returns results itself (the
    device server's checks before a handler runs, a LUN that does not exist, the target's
    last resort when a command fails unexpectedly).
    """
    return CommandResult(
        status=Status.CHECK_CONDITION,
        sense=fixed_sense(key, asc, information=information, sense_key_specific=sense_key_specific),
    )


def invalid_field_in_cdb(byte: int, bit: int | None = None) -> CheckCondition:
    """ILLEGAL REQUEST / INVALID FIELD IN CDB pointing at the offending byte (and bit)."""
    return CheckCondition(
        SenseKey.ILLEGAL_REQUEST,
        ASC.INVALID_FIELD_IN_CDB,
        sense_key_specific=field_pointer(byte, bit),
    )


def invalid_field_in_parameter_list(byte: int, bit: int | None = None) -> CheckCondition:
    return CheckCondition(
        SenseKey.ILLEGAL_REQUEST,
        ASC.INVALID_FIELD_IN_PARAMETER_LIST,
        sense_key_specific=field_pointer(byte, bit, in_cdb=False),
    )


def lba_out_of_range() -> CheckCondition:
    return CheckCondition(SenseKey.ILLEGAL_REQUEST, ASC.LBA_OUT_OF_RANGE)


def parse_sense(sense: bytes) -> tuple[SenseKey, int, int]:
    """(sense key, ASC, ASCQ) of fixed (70h/71h) or descriptor (72h/73h) sense data."""
    if len(sense) < 2:
        raise ValueError("sense data too short")
    code = sense[0] & 0x7F
    if code in (0x70, 0x71):
        if len(sense) < 14:
            raise ValueError("fixed sense data too short")
        return SenseKey(sense[2] & 0x0F), sense[12], sense[13]
    if code in (0x72, 0x73):
        if len(sense) < 4:
            raise ValueError("descriptor sense data too short")
        return SenseKey(sense[1] & 0x0F), sense[2], sense[3]
    raise ValueError(f"unknown sense response code {code:#x}")
