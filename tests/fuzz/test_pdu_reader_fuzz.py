"""Fuzzing PDUReader: hostile bytes only ever raise RemoteProtocolError, and never stall."""

from __future__ import annotations

from itertools import pairwise

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sanstack.errors import RemoteProtocolError
from sanstack.iscsi.codes import BHS_LENGTH, Opcode
from sanstack.iscsi.digest import digest_bytes
from sanstack.iscsi.pdu import DataOut, LoginRequest, NopOut, SCSICommand, SCSIResponse, TextRequest
from sanstack.iscsi.pdu_reader import PDUReader

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def run_reader(stream: bytes, cuts: list[int], reader: PDUReader) -> None:
    """Feed ``stream`` in pieces, draining after each; check every call makes progress."""
    points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    for start, end in pairwise(points):
        reader.feed(stream[start:end])
        # Each PDU or recoverable error consumes at least one BHS, which bounds the loop.
        for _ in range(reader.buffered // BHS_LENGTH + 1):
            before = reader.buffered
            try:
                pdu = reader.next_pdu()
            except RemoteProtocolError as exc:
                if getattr(exc, "fatal", False):
                    try:
                        reader.next_pdu()
                    except RemoteProtocolError as again:
                        assert again is exc
                    else:
                        raise AssertionError("a fatal error must stick") from exc
                    return
                assert reader.buffered <= before - BHS_LENGTH
                continue
            if pdu is None:
                break
            assert reader.buffered <= before - BHS_LENGTH
            assert isinstance(pdu.encode(), bytes)
        else:
            raise AssertionError("the reader consumed more PDUs than the bytes can hold")


reader_settings = st.builds(
    PDUReader,
    max_data_segment_length=st.sampled_from([0, 512, 8192, (1 << 24) - 1]),
    header_digest=st.booleans(),
    data_digest=st.booleans(),
)
cut_points = st.lists(st.integers(0, 1 << 16), max_size=16)


@FUZZ
@given(
    stream=st.binary(min_size=40, max_size=3000),
    ahs_words=st.none() | st.integers(0, 3),
    cuts=cut_points,
    reader=reader_settings,
)
def test_random_bytes(
    stream: bytes, ahs_words: int | None, cuts: list[int], reader: PDUReader
) -> None:
    if ahs_words is not None and len(stream) > 4:
        # A random TotalAHSLength mostly asks for more bytes than there are; keep some small.
        stream = stream[:4] + bytes([ahs_words]) + stream[5:]
    run_reader(stream, cuts, reader)


@st.composite
def random_ahs(draw: st.DrawFn) -> bytes:
    """Zero or more AHS entries of any type, with lengths right or wrong, word-padded."""
    out = b""
    for _ in range(draw(st.integers(0, 3))):
        ahs_type = draw(st.sampled_from([1, 2, 0, 0x3C]) | st.integers(0, 0xFF))
        body = draw(st.binary(max_size=300 if ahs_type == 1 else 8))
        length = draw(st.just(len(body)) | st.integers(0, 0xFFFF))
        entry = length.to_bytes(2, "big") + bytes([ahs_type]) + body
        out += entry + bytes(-len(entry) % 4)
    return out[:1020]


@st.composite
def framed_stream(draw: st.DrawFn) -> tuple[bytes, bool, bool]:
    """Well-framed PDUs (right lengths and digests) whose other header bytes are random."""
    header_digest, data_digest = draw(st.booleans()), draw(st.booleans())
    stream = b""
    for _ in range(draw(st.integers(1, 4))):
        opcode = draw(st.sampled_from(list(Opcode)) | st.integers(0, 0x3F))
        opcode |= draw(st.sampled_from([0, 0x40, 0x80, 0xC0]))
        rest = draw(st.binary(min_size=43, max_size=43))
        ahs = draw(random_ahs())
        data = draw(st.binary(max_size=100))
        head = bytes([opcode]) + rest[:3] + bytes([len(ahs) // 4])
        head += len(data).to_bytes(3, "big") + rest[3:] + ahs
        stream += head + (digest_bytes(head) if header_digest else b"")
        if data:
            padded = data + bytes(-len(data) % 4)
            stream += padded + (digest_bytes(padded) if data_digest else b"")
    return stream, header_digest, data_digest


@FUZZ
@given(case=framed_stream(), cuts=cut_points)
def test_random_header_fields(case: tuple[bytes, bool, bool], cuts: list[int]) -> None:
    stream, header_digest, data_digest = case
    run_reader(stream, cuts, PDUReader(8192, header_digest, data_digest))


valid_pdus = st.one_of(
    st.builds(NopOut, itt=st.integers(0, 0xFFFFFFFF), data=st.binary(max_size=40)),
    st.builds(
        SCSICommand,
        itt=st.integers(0, 0xFFFFFFFF),
        cdb=st.binary(max_size=260),
        bidi_read_expected_length=st.none() | st.integers(0, 0xFFFFFFFF),
        data=st.binary(max_size=40),
    ),
    st.builds(DataOut, itt=st.integers(0, 0xFFFFFFFF), data=st.binary(max_size=300)),
    st.builds(SCSIResponse, itt=st.integers(0, 0xFFFFFFFF), sense=st.binary(max_size=20)),
    st.builds(LoginRequest, isid=st.integers(0, (1 << 48) - 1), data=st.binary(max_size=40)),
    st.builds(TextRequest, itt=st.integers(0, 0xFFFFFFFF), data=st.binary(max_size=40)),
)


@st.composite
def mutated_stream(draw: st.DrawFn) -> tuple[bytes, bool, bool]:
    header_digest, data_digest = draw(st.booleans()), draw(st.booleans())
    pdus = draw(st.lists(valid_pdus, min_size=1, max_size=5))
    stream = bytearray(b"".join(p.encode(header_digest, data_digest) for p in pdus))
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        where = draw(st.integers(0, max(len(stream) - 1, 0)))
        if kind == "flip" and stream:
            stream[where] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and stream:
            stream[where] = draw(st.integers(0, 0xFF))
        elif kind == "insert":
            stream[where:where] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del stream[where : where + draw(st.integers(1, 8))]
        elif kind == "truncate":
            del stream[where:]
    return bytes(stream), header_digest, data_digest


@FUZZ
@given(case=mutated_stream(), cuts=cut_points, limit=st.sampled_from([256, 8192]))
def test_mutated_valid_streams(case: tuple[bytes, bool, bool], cuts: list[int], limit: int) -> None:
    stream, header_digest, data_digest = case
    run_reader(stream, cuts, PDUReader(limit, header_digest, data_digest))
