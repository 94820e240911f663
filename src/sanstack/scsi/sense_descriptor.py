"""Descriptor-format sense data (SPC-4 §4.5.2), the alternative to fixed format.

REQUEST SENSE with DESC=1 asks for it, and so does the D_SENSE bit of the Control mode page
for every CHECK CONDITION; ``to_descriptor_format`` lets the dispatcher convert the fixed-format
sense a ``CheckCondition`` carries without each raiser knowing which format is in force.
"""

from __future__ import annotations

import struct
from enum import IntEnum

from sanstack.scsi.codes import ASC, SenseKey
from sanstack.scsi.sense import FIXED_SENSE_LENGTH


class SenseResponseCode(IntEnum):
    """SPC-4 §4.5.1 table 'Sense data response codes'."""

    FIXED_CURRENT = 0x70
    FIXED_DEFERRED = 0x71
    DESCRIPTOR_CURRENT = 0x72
    DESCRIPTOR_DEFERRED = 0x73


class SenseDescriptorType(IntEnum):
    """SPC-4 §4.5.2.1 table 'Sense data descriptor types'."""

    INFORMATION = 0x00
    SENSE_KEY_SPECIFIC = 0x02


_HEADER = struct.Struct(">BBBB3xB")
# Information descriptor (§4.5.2.2): type, additional length 0Ah, VALID, reserved, 8 bytes.
_INFORMATION = struct.Struct(">BBBxQ")
# Sense key specific descriptor (§4.5.2.3): type, additional length 06h, 2 reserved, 3 bytes, 1.
_SENSE_KEY_SPECIFIC = struct.Struct(">BB2x3sx")
_VALID = 0x80
_SKSV = 0x80


def descriptor_sense(
    key: SenseKey,
    asc: ASC | int,
    *,
    information: int | None = None,
    sense_key_specific: bytes | None = None,
    deferred: bool = False,
) -> bytes:
    """SPC-4 §4.5.2 descriptor-format sense data (response code 72h, or 73h if deferred)."""
    descriptors = b""
    if information is not None:
        descriptors += _INFORMATION.pack(
            SenseDescriptorType.INFORMATION,
            _INFORMATION.size - 2,
            _VALID,
            information & 0xFFFFFFFFFFFFFFFF,
        )
    if sense_key_specific is not None and sense_key_specific[0] & _SKSV:
        descriptors += _SENSE_KEY_SPECIFIC.pack(
            SenseDescriptorType.SENSE_KEY_SPECIFIC,
            _SENSE_KEY_SPECIFIC.size - 2,
            bytes(sense_key_specific[:3]),
        )
    code = int(asc)
    response = (
        SenseResponseCode.DESCRIPTOR_DEFERRED if deferred else SenseResponseCode.DESCRIPTOR_CURRENT
    )
    header = _HEADER.pack(response, int(key) & 0x0F, code >> 8, code & 0xFF, len(descriptors))
    return header + descriptors


def to_descriptor_format(sense: bytes) -> bytes:
    """Re-encode fixed-format sense (70h/71h) as descriptor format; other data is returned as is.

    The INFORMATION field carries over only when VALID is set, the sense-key-specific bytes
    only when SKSV is set (SPC-4 §4.5.3), so nothing the fixed form did not assert is invented.
    """
    if len(sense) < FIXED_SENSE_LENGTH:
        return sense
    code = sense[0] & 0x7F
    if code not in (SenseResponseCode.FIXED_CURRENT, SenseResponseCode.FIXED_DEFERRED):
        return sense
    information = int.from_bytes(sense[3:7], "big") if sense[0] & _VALID else None
    sks = bytes(sense[15:18]) if sense[15] & _SKSV else None
    return descriptor_sense(
        SenseKey(sense[2] & 0x0F),
        (sense[12] << 8) | sense[13],
        information=information,
        sense_key_specific=sks,
        deferred=code == SenseResponseCode.FIXED_DEFERRED,
    )
