"""Serial number arithmetic for CmdSN, StatSN and DataSN (RFC 7143 §4.2.2.1, RFC 1982).

Every sequence number is 32 bits and wraps; "greater" is the RFC 1982 comparison, so a
window that straddles the wrap still orders correctly.
"""

from __future__ import annotations

SERIAL_MASK = 0xFFFFFFFF
_HALF = 0x80000000


def sn_gt(a: int, b: int) -> bool:
    """RFC 1982 ``a > b`` for 32-bit sequence numbers."""
    return a != b and ((a - b) & SERIAL_MASK) < _HALF
