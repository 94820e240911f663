"""CRC32C header and data digests (RFC 7143 §13.1, test vectors in RFC 3720 Appendix B.4).

The CRC is computed by the C-accelerated ``google_crc32c`` package. On the wire the 32-bit CRC
goes out least significant byte first, as Linux, open-iscsi and libiscsi send it: the RFC 3720
B.4 vector of 32 zero bytes has CRC ``0x8a9136aa`` and wire bytes ``aa 36 91 8a``.
"""

from __future__ import annotations

import struct

import google_crc32c

__all__ = ["DIGEST_LENGTH", "crc32c", "crc32c_extend", "digest_bytes", "digest_from_wire"]

DIGEST_LENGTH = 4

_LE32 = struct.Struct("<I")
_value = google_crc32c.value
_extend = google_crc32c.extend


def _as_bytes(data: bytes | bytearray | memoryview) -> bytes:
    # google_crc32c only takes read-only bytes. A memoryview spanning a whole bytes object
    # (the usual case for block reads) is unwrapped instead of copied.
    if type(data) is bytes:
        return data
    if isinstance(data, memoryview):
        obj = data.obj
        if type(obj) is bytes and data.nbytes == len(obj) and data.c_contiguous:
            return obj
    return bytes(data)


def crc32c(data: bytes | bytearray | memoryview) -> int:
    """Return the CRC32C (Castagnoli) of ``data`` as an unsigned 32-bit integer."""
    return int(_value(_as_bytes(data)))


def crc32c_extend(crc: int, data: bytes | bytearray | memoryview) -> int:
    """Continue the CRC32C ``crc`` over ``data`` (``crc32c(a + b) == extend(crc32c(a), b)``)."""
    return int(_extend(crc, _as_bytes(data)))


def digest_bytes(*chunks: bytes | bytearray | memoryview) -> bytes:
    """Return the 4-byte wire form of the CRC32C over the concatenation of ``chunks``."""
    crc = 0
    for chunk in chunks:
        crc = _extend(crc, _as_bytes(chunk))
    return _LE32.pack(crc)


def digest_from_wire(wire: bytes | bytearray | memoryview) -> int:
    """Return the CRC value carried by a 4-byte wire digest."""
    return int(_LE32.unpack(wire)[0])
