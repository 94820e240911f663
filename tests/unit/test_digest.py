"""CRC32C digests against RFC 3720 Appendix B.4 and a bitwise reference implementation."""

from __future__ import annotations

import pytest

from sanstack.iscsi.digest import (
    DIGEST_LENGTH,
    crc32c,
    crc32c_extend,
    digest_bytes,
    digest_from_wire,
)


def reference_crc32c(data: bytes) -> int:
    """Bit-at-a-time CRC32C (reflected polynomial 0x82f63b78), independent of google_crc32c."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


# RFC 3720 B.4: the iSCSI Read PDU (a SCSI Command BHS) and its CRC wire bytes.
ISCSI_READ_PDU = bytes.fromhex(
    "01c00000"
    "00000000"
    "00000000"
    "00000000"
    "14000000"
    "00000400"
    "00000014"
    "00000018"
    "28000000"
    "00000000"
    "02000000"
    "00000000"
)

B4_VECTORS = [
    pytest.param(bytes(32), "aa 36 91 8a", id="32-zeros"),
    pytest.param(b"\xff" * 32, "43 ab a8 62", id="32-ones"),
    pytest.param(bytes(range(32)), "4e 79 dd 46", id="incrementing"),
    pytest.param(bytes(range(31, -1, -1)), "5c db 3f 11", id="decrementing"),
    pytest.param(ISCSI_READ_PDU, "56 3a 96 d9", id="iscsi-read-pdu"),
]


@pytest.mark.parametrize(("data", "wire"), B4_VECTORS)
def test_rfc3720_b4_vectors(data: bytes, wire: str) -> None:
    expected = bytes.fromhex(wire)
    assert digest_bytes(data) == expected
    assert crc32c(data) == int.from_bytes(expected, "little")
    assert digest_from_wire(expected) == crc32c(data)
    assert reference_crc32c(data) == crc32c(data)


def test_zero_vector_value_and_byte_order() -> None:
    # The wire carries the CRC least significant byte first, as Linux and libiscsi do.
    assert crc32c(bytes(32)) == 0x8A9136AA
    assert digest_bytes(bytes(32)) == b"\xaa\x36\x91\x8a"
    assert DIGEST_LENGTH == 4


def test_empty_input() -> None:
    assert crc32c(b"") == 0
    assert digest_bytes() == bytes(4)
    assert digest_bytes(b"", b"") == bytes(4)


@pytest.mark.parametrize(
    "view",
    [
        memoryview(ISCSI_READ_PDU),
        memoryview(b"xx" + ISCSI_READ_PDU + b"yy")[2:-2],
        memoryview(bytearray(ISCSI_READ_PDU)),
        bytearray(ISCSI_READ_PDU),
        memoryview(ISCSI_READ_PDU).cast("I"),
    ],
    ids=["whole-bytes", "slice", "bytearray-view", "bytearray", "non-byte-format"],
)
def test_buffer_types(view: memoryview | bytearray) -> None:
    assert crc32c(view) == 0xD9963A56
    assert digest_bytes(view) == bytes.fromhex("563a96d9")


def test_chunks_concatenate() -> None:
    data = bytes(range(256)) * 3
    for cut in (0, 1, 17, 400, len(data)):
        head, tail = data[:cut], data[cut:]
        assert digest_bytes(head, memoryview(tail)) == digest_bytes(data)
        assert crc32c_extend(crc32c(head), tail) == crc32c(data)
    assert digest_bytes(b"a", b"b", b"c") == digest_bytes(b"abc")


def test_reference_agrees_on_odd_lengths() -> None:
    for n in range(1, 40):
        data = bytes((i * 37 + 11) & 0xFF for i in range(n))
        assert crc32c(data) == reference_crc32c(data)
