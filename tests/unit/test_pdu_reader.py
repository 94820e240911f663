"""The PDU reader (``iscsi/pdu_reader.py``): PDUs cut from a byte stream fed in any
pieces, without copying data segments, and each malformed PDU reported as a format or
digest error, fatal or not, that leaves the stream where it should be."""

from __future__ import annotations

import dataclasses

import pytest
from tests.support.pdu_vectors import (
    DATA_OUT,
    DATA_OUT_WIRE,
    NOP_OUT,
    NOP_OUT_WIRE,
    SCSI_COMMAND,
    SCSI_COMMAND_WIRE,
    TEXT_REQUEST,
    TEXT_REQUEST_WIRE,
    VECTORS,
)
from tests.support.wire import hx

from sanstack.errors import RemoteProtocolError
from sanstack.iscsi.codes import RejectReason
from sanstack.iscsi.pdu import (
    PDU,
    DataDigestError,
    DataIn,
    DataOut,
    HeaderDigestError,
    PDUFormatError,
    Reject,
)
from sanstack.iscsi.pdu_reader import GATHER_FROM, PDUReader, decode


def drain(reader: PDUReader) -> list[PDU]:
    out = []
    while (pdu := reader.next_pdu()) is not None:
        out.append(pdu)
    return out


def test_reader_byte_at_a_time() -> None:
    stream = b"".join(wire for _, wire in (p.values for p in VECTORS))  # type: ignore[misc]
    reader = PDUReader(max_data_segment_length=65536)
    got: list[PDU] = []
    for i in range(len(stream)):
        reader.feed(stream[i : i + 1])
        got += drain(reader)
    assert got == [p.values[0] for p in VECTORS]
    assert reader.buffered == 0


def test_reader_accepts_buffer_types_and_keeps_partial_pdus() -> None:
    reader = PDUReader()
    reader.feed(bytearray(DATA_OUT_WIRE[:50]))
    assert reader.next_pdu() is None
    assert reader.buffered == 50
    reader.feed(memoryview(DATA_OUT_WIRE)[50:])
    assert reader.next_pdu() == DATA_OUT
    assert reader.next_pdu() is None
    reader.feed(b"")
    assert reader.buffered == 0


def test_reader_hands_out_exact_fed_segment_without_copy() -> None:
    reader = PDUReader(max_data_segment_length=1 << 20)
    payload = bytes(range(256)) * 16
    pdu = DataOut(itt=1, data=payload)
    header, segment = pdu.encode_parts()
    reader.feed(header)
    reader.feed(segment)
    decoded = reader.next_pdu()
    assert decoded == pdu
    assert isinstance(decoded, DataOut)
    assert decoded.data is segment


@pytest.mark.parametrize("digests", [False, True], ids=["plain", "crc32c"])
def test_a_large_data_in_is_gathered_from_the_fed_buffers_without_a_copy(digests: bool) -> None:
    """A Data-In of GATHER_FROM bytes or more comes in views of the very buffers fed, across
    as many as it spans; a shorter one and every other PDU as bytes, as next_pdu has them."""
    big = bytes(range(256)) * (GATHER_FROM // 128)
    wire = DataIn(itt=7, data_sn=0, data=big, final=True, status_present=True).encode(
        header_digest=digests, data_digest=digests
    )
    small = DataIn(itt=8, data=b"x" * 512).encode(header_digest=digests, data_digest=digests)
    fed = [wire[:1000], wire[1000:70000], wire[70000:] + small + nop_out_wire(digests)]
    reader = PDUReader(1 << 20, header_digest=digests, data_digest=digests)
    for piece in fed:
        reader.feed(piece)
    frame = reader.next_frame_gathered()
    assert frame is not None
    bhs, ahs, pieces = frame
    assert bytes(bhs) == wire[:48] and ahs == b""
    assert isinstance(pieces, tuple) and len(pieces) == 3
    assert all(isinstance(p, memoryview) and p.obj is f for p, f in zip(pieces, fed, strict=True))
    assert b"".join(pieces) == big
    small_frame = reader.next_frame_gathered()
    assert small_frame is not None and small_frame[2] == b"x" * 512
    assert reader.next_frame_gathered() is not None and reader.buffered == 0


def nop_out_wire(digests: bool) -> bytes:
    return NOP_OUT.encode(header_digest=digests, data_digest=digests)


def test_reader_unknown_opcode_is_skipped() -> None:
    bogus = bytearray(NOP_OUT_WIRE)
    bogus[0] = 0x1C  # a vendor-specific initiator opcode
    reader = PDUReader()
    reader.feed(bytes(bogus) + TEXT_REQUEST_WIRE)
    with pytest.raises(PDUFormatError) as info:
        reader.next_pdu()
    assert info.value.reject_reason is RejectReason.COMMAND_NOT_SUPPORTED
    assert info.value.header == bytes(bogus[:48])
    assert not info.value.fatal
    assert isinstance(info.value, RemoteProtocolError)
    assert reader.next_pdu() == TEXT_REQUEST


def test_reader_data_digest_error_consumes_pdu() -> None:
    good = DATA_OUT.encode(header_digest=True, data_digest=True)
    bad = bytearray(good)
    bad[52] ^= 0xFF  # first data byte
    reader = PDUReader(header_digest=True, data_digest=True)
    reader.feed(bytes(bad) + good)
    with pytest.raises(DataDigestError) as info:
        reader.next_pdu()
    assert info.value.header == good[:48]
    assert info.value.pdu == dataclasses.replace(DATA_OUT, data=b"")
    assert info.value.reject_reason is RejectReason.DATA_DIGEST_ERROR
    assert reader.next_pdu() == DATA_OUT
    reject = Reject(reason=info.value.reject_reason, data=info.value.header)
    assert decode(reject.encode()) == reject


def test_reader_header_digest_error_is_fatal() -> None:
    wire = bytearray(NOP_OUT.encode(header_digest=True))
    wire[20] ^= 1
    reader = PDUReader(header_digest=True)
    reader.feed(bytes(wire))
    with pytest.raises(HeaderDigestError) as info:
        reader.next_pdu()
    assert info.value.fatal
    with pytest.raises(HeaderDigestError):
        reader.next_pdu()
    reader.feed(NOP_OUT_WIRE)
    assert reader.buffered == 0


def test_reader_oversized_segment_is_fatal_before_data_arrives() -> None:
    reader = PDUReader(max_data_segment_length=16)
    reader.feed(DataOut(itt=1, data=bytes(17)).encode()[:48])
    with pytest.raises(PDUFormatError) as info:
        reader.next_pdu()
    assert info.value.fatal
    assert info.value.reject_reason is RejectReason.PROTOCOL_ERROR
    with pytest.raises(PDUFormatError):
        reader.next_pdu()


def test_reader_settings_apply_to_buffered_bytes() -> None:
    reader = PDUReader(max_data_segment_length=1)
    reader.feed(NOP_OUT.encode(header_digest=True, data_digest=True))
    reader.set_max_data_segment_length(8192)
    reader.set_digests(header=True, data=True)
    assert reader.next_pdu() == NOP_OUT
    with pytest.raises(ValueError):
        reader.set_max_data_segment_length(1 << 24)


@pytest.mark.parametrize(
    "ahs",
    [
        hx("00 09 01 00 00 00 00 00"),  # AHSLength past TotalAHSLength
        hx("00 01 01 00"),  # Extended CDB AHS without CDB bytes
        hx("00 04 02 00 00 00 00 00"),  # bidirectional AHS of the wrong length
        hx("00 05 02 00 00 00 00 01 00 05 02 00 00 00 00 02"),  # two bidirectional AHS
        hx("00 02 01 00 aa 00 00 00 00 02 01 00 bb 00 00 00"),  # two Extended CDB AHS
        hx("00 f6 01 00") + bytes(248),  # 245 extended CDB bytes: CDB over 260
    ],
    ids=["overrun", "empty-extended-cdb", "bidi-length", "two-bidi", "two-ext-cdb", "cdb-261"],
)
def test_reader_bad_ahs(ahs: bytes) -> None:
    wire = bytearray(SCSI_COMMAND_WIRE)
    wire[4] = len(ahs) // 4
    reader = PDUReader()
    reader.feed(bytes(wire) + ahs + NOP_OUT_WIRE)
    with pytest.raises(PDUFormatError) as info:
        reader.next_pdu()
    assert info.value.reject_reason is RejectReason.INVALID_PDU_FIELD
    assert info.value.header == bytes(wire[:48])
    assert not info.value.fatal
    assert reader.next_pdu() == NOP_OUT


def test_reader_skips_unknown_ahs_type() -> None:
    wire = bytearray(SCSI_COMMAND_WIRE)
    wire[4] = 2
    decoded = decode(bytes(wire) + hx("00 05 3c 00 01 02 03 04"))
    assert decoded == SCSI_COMMAND


def test_decode_rejects_truncated_and_trailing() -> None:
    with pytest.raises(PDUFormatError):
        decode(NOP_OUT_WIRE[:-1])
    with pytest.raises(PDUFormatError):
        decode(NOP_OUT_WIRE[:20])
    with pytest.raises(PDUFormatError):
        decode(NOP_OUT_WIRE + b"\x00")
