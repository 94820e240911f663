"""Logical unit numbers in the 8-byte LUN field (SAM-5 §4.7).

The one codec for LUN fields, used by the device server (REPORT LUNS), the target (which
LUN a request addresses) and the initiator (which field to send for a LUN). Fields are
handled as 64-bit integers, the form the iSCSI BHS carries them in.
"""

from __future__ import annotations

from enum import IntEnum


class LunAddressMethod(IntEnum):
    """SAM-5 §4.7.7 ADDRESS METHOD (top two bits of the first LUN byte)."""

    PERIPHERAL = 0b00
    FLAT = 0b01


PERIPHERAL_LUN_LIMIT = 256
FLAT_LUN_LIMIT = 16384

# decode_lun marks LUN fields it cannot map with this bit, above any addressable LUN.
UNSUPPORTED_LUN_FLAG = 1 << 64
_SECOND_TO_FOURTH_LEVELS = 0xFFFF_FFFF_FFFF


def encode_lun(n: int) -> int:
    """Return the raw 64-bit LUN field for LUN ``n`` (SAM-5 §4.7).

    LUNs below 256 use peripheral device addressing (bus 0), as Linux does, and LUNs below
    16384 flat space addressing (SAM-5 §4.7.7.4), as tgt does and as sanstack's REPORT LUNS
    reports them. A :func:`decode_lun` result carrying UNSUPPORTED_LUN_FLAG gives back the
    original field. Anything else raises ValueError.
    """
    if 0 <= n < 256:
        return n << 48
    if 256 <= n < 16384:
        return (0x4000 | n) << 48
    if n >> 64 == 1:
        return n ^ UNSUPPORTED_LUN_FLAG
    raise ValueError(f"LUN {n} cannot be encoded with single-level addressing")


def decode_lun(raw: int) -> int:
    """Return the LUN number that names the raw 64-bit LUN field, as an initiator reads it.

    Single-level peripheral device addressing (bus 0) and flat space addressing give LUNs
    0-16383. Any other form (a non-zero bus, multi-level, logical unit or extended
    addressing) gives ``raw | UNSUPPORTED_LUN_FLAG``, which :func:`encode_lun` turns back
    into the same field: an initiator addresses a LUN its target reported in a form of the
    target's own (LIO reports LUN 299 as ``01 2B``) with exactly those bytes. ValueError
    only if ``raw`` does not fit 64 bits.
    """
    if not 0 <= raw < UNSUPPORTED_LUN_FLAG:
        raise ValueError(f"LUN field {raw:#x} does not fit 64 bits")
    first = raw >> 48
    if not raw & _SECOND_TO_FOURTH_LEVELS and (first < 256 or first >> 14 == 1):
        return first & 0x3FFF
    return raw | UNSUPPORTED_LUN_FLAG


def decode_target_lun(raw: int) -> int:
    """Return the LUN of sanstack's target that the raw LUN field of a request addresses.

    SAM-5 §4.7: a single-level LUN with peripheral device addressing (§4.7.7.3) or flat
    space addressing (§4.7.7.4) addresses LUN ``(byte 0 & 0x3F) << 8 | byte 1``, as in
    SCST's ``scst_unpack_lun``. So LUN 299 is ``41 2B`` (flat space, what REPORT LUNS
    reports, and what Linux sends for the LUN it then names 16683) and also ``01 2B``
    (peripheral, bus 1: what Linux's ``int_to_scsilun(299)``, LIO, and a libiscsi or QEMU
    URL ending in ``/299`` send). Both forms cover exactly 0-16383, sanstack's whole LUN
    range, and sanstack has no buses behind its target ports, so neither is ambiguous.
    Anything else gives ``raw | UNSUPPORTED_LUN_FLAG``: no logical unit has that number,
    the lookup fails, and the SCSI layer answers LOGICAL UNIT NOT SUPPORTED; a peer's bad
    LUN field never raises. ValueError only if ``raw`` does not fit 64 bits.
    """
    if not 0 <= raw < UNSUPPORTED_LUN_FLAG:
        raise ValueError(f"LUN field {raw:#x} does not fit 64 bits")
    first = raw >> 48
    if not raw & _SECOND_TO_FOURTH_LEVELS and first >> 15 == 0:
        return first & 0x3FFF
    return raw | UNSUPPORTED_LUN_FLAG


def lun_field_bytes(n: int) -> bytes:
    """The 8 bytes of :func:`encode_lun` ``(n)``, as a LUN list entry carries them."""
    return encode_lun(n).to_bytes(8, "big")
