"""The sans-IO NBD server connection's transmission phase, driven by an in-memory client:
requests and their simple or structured replies, request validation, disconnects and
bounds; and random bytes or random requests in any phase only ever give events.

The expected bytes follow doc/proto.md (NetworkBlockDevice/nbd).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.support.nbd_client import DISK, RO, Client, MiB

from sanstack.errors import LocalProtocolError
from sanstack.nbd import (
    Disconnect,
    Event,
    ExportInfo,
    NBDCmd,
    NBDCmdFlag,
    NBDError,
    NBDOpt,
    NBDRep,
    NBDReplyFlag,
    NBDReplyType,
    NBDServerConnection,
    NBDState,
    NBDTransmissionFlag,
    ProtocolFailure,
    Request,
    RequestRejected,
)
from sanstack.nbd.protocol import (
    BlockDescriptor,
    BlockStatusPayload,
    ClientFlags,
    ErrorOffsetPayload,
    ErrorPayload,
    InfoRequestData,
    MetaContextRequestData,
    OffsetData,
    OptionRequest,
    RequestHeader,
    SimpleReplyHeader,
    StructuredReplyHeader,
)

T = NBDTransmissionFlag

# -- transmission ----------------------------------------------------------------------------


def ready(structured: bool = True, exports: dict[str, ExportInfo] | None = None) -> Client:
    client = Client(exports)
    name = next(iter(exports)) if exports else "disk"
    assert client.go(name, structured=structured)[-1].reply_type == NBDRep.NBD_REP_ACK
    client.events.clear()
    return client


def only_request(events: list[Event]) -> Request:
    assert len(events) == 1, events
    assert isinstance(events[0], Request)
    return events[0]


def test_read_simple_reply() -> None:
    client = ready(structured=False)
    request = only_request(client.request(NBDCmd.NBD_CMD_READ, 512, 1024, cookie=5))
    assert request == Request(5, NBDCmd.NBD_CMD_READ, 512, 1024, NBDCmdFlag(0))
    client.server.reply_read(5, b"x" * 1024)
    client._collect()
    header, data = client.simple_reply(1024)
    assert header == SimpleReplyHeader(0, 5)
    assert data == b"x" * 1024


def test_read_structured_reply_is_one_offset_data_chunk() -> None:
    client = ready()
    client.request(NBDCmd.NBD_CMD_READ, 4096, 512, cookie=6, flags=NBDCmdFlag.NBD_CMD_FLAG_DF)
    client.server.reply_read(6, memoryview(bytearray(b"y" * 512)))
    client._collect()
    header, payload = client.chunk()
    assert header == StructuredReplyHeader(
        NBDReplyFlag.NBD_REPLY_FLAG_DONE, NBDReplyType.NBD_REPLY_TYPE_OFFSET_DATA, 6, 520
    )
    assert OffsetData.decode(payload) == OffsetData(4096, b"y" * 512)


def test_read_parts_go_out_unjoined_in_one_chunk() -> None:
    """A read in pieces (one per iSCSI Data-In PDU) is answered with those very objects
    after one header: never joined into a copy."""
    first, second = b"a" * 1024, memoryview(bytearray(b"b" * 3072))
    client = ready()
    client.request(NBDCmd.NBD_CMD_READ, 8192, 4096, cookie=7)
    client.server.reply_read_parts(7, [first, second])
    head, *parts = client.server.data_to_send()
    assert parts[0] is first and parts[1] is second
    header, payload = StructuredReplyHeader.decode(head[:20]), head[20:]
    assert header == StructuredReplyHeader(
        NBDReplyFlag.NBD_REPLY_FLAG_DONE, NBDReplyType.NBD_REPLY_TYPE_OFFSET_DATA, 7, 8 + 4096
    )
    assert payload == (8192).to_bytes(8, "big")

    simple = ready(structured=False)
    simple.request(NBDCmd.NBD_CMD_READ, 0, 4096, cookie=8)
    simple.server.reply_read_parts(8, (first, second))
    simple._collect()
    assert simple.simple_reply(4096) == (SimpleReplyHeader(0, 8), b"a" * 1024 + b"b" * 3072)


def test_read_parts_must_add_up_to_the_request() -> None:
    client = ready()
    client.request(NBDCmd.NBD_CMD_READ, 0, 4096, cookie=9)
    with pytest.raises(LocalProtocolError, match="with 4095 bytes"):
        client.server.reply_read_parts(9, [b"a" * 2048, b"b" * 2047])


def test_errors_simple_and_structured() -> None:
    simple = ready(structured=False)
    simple.request(NBDCmd.NBD_CMD_READ, 0, 512, cookie=1)
    simple.server.reply_error(1, NBDError.NBD_EIO, "medium error")
    simple._collect()
    assert simple.simple_reply() == (SimpleReplyHeader(NBDError.NBD_EIO, 1), b"")

    structured = ready()
    structured.request(NBDCmd.NBD_CMD_READ, 0, 1024, cookie=1)
    structured.request(NBDCmd.NBD_CMD_WRITE, 0, 512, cookie=2, data=bytes(512))
    structured.server.reply_error(1, NBDError.NBD_EIO, "medium error", offset=512)
    structured.server.reply_error(2, NBDError.NBD_ENOSPC, "full")
    structured._collect()
    header, payload = structured.chunk()
    assert header.reply_type == NBDReplyType.NBD_REPLY_TYPE_ERROR_OFFSET
    assert header.flags == NBDReplyFlag.NBD_REPLY_FLAG_DONE
    assert ErrorOffsetPayload.decode(payload) == ErrorOffsetPayload(
        NBDError.NBD_EIO, "medium error", 512
    )
    header, payload = structured.chunk()
    assert (header.reply_type, header.cookie) == (NBDReplyType.NBD_REPLY_TYPE_ERROR, 2)
    assert ErrorPayload.decode(payload) == ErrorPayload(NBDError.NBD_ENOSPC, "full")


def test_write_flush_trim_write_zeroes() -> None:
    client = ready()
    fua = NBDCmdFlag.NBD_CMD_FLAG_FUA
    write = only_request(
        client.request(NBDCmd.NBD_CMD_WRITE, 1024, 512, cookie=1, flags=fua, data=b"w" * 512)
    )
    assert write.data == b"w" * 512
    assert write.fua
    flush = only_request(client.request(NBDCmd.NBD_CMD_FLUSH, cookie=2))
    trim = only_request(client.request(NBDCmd.NBD_CMD_TRIM, 0, 1 * MiB, cookie=3))
    no_hole = NBDCmdFlag.NBD_CMD_FLAG_NO_HOLE
    zeroes = only_request(
        client.request(NBDCmd.NBD_CMD_WRITE_ZEROES, 0, 8 * MiB, cookie=4, flags=no_hole)
    )
    assert (flush.command, trim.length, zeroes.flags) == (NBDCmd.NBD_CMD_FLUSH, MiB, no_hole)
    assert client.server.in_flight == 4
    for cookie in (4, 3, 2, 1):
        client.server.reply_ok(cookie)
    client._collect()
    assert [client.simple_reply()[0] for _ in range(4)] == [
        SimpleReplyHeader(0, c) for c in (4, 3, 2, 1)
    ]
    assert client.server.in_flight == 0


def test_pipelined_requests_split_anywhere() -> None:
    client = ready()
    stream = b"".join(
        RequestHeader(0, NBDCmd.NBD_CMD_WRITE, c, c * 512, 512).encode() + bytes([c]) * 512
        for c in range(1, 6)
    )
    client.send(stream, chunk=77)
    requests = [e for e in client.events if isinstance(e, Request)]
    assert [(r.cookie, r.offset, r.data[:1]) for r in requests] == [
        (c, c * 512, bytes([c])) for c in range(1, 6)
    ]


REJECTIONS = [
    ("misaligned offset", NBDCmd.NBD_CMD_READ, 100, 512, 0, NBDError.NBD_EINVAL),
    ("misaligned length", NBDCmd.NBD_CMD_READ, 0, 100, 0, NBDError.NBD_EINVAL),
    ("read past end", NBDCmd.NBD_CMD_READ, 8 * MiB - 512, 1024, 0, NBDError.NBD_EINVAL),
    ("offset overflow", NBDCmd.NBD_CMD_TRIM, 2**64 - 512, 1024, 0, NBDError.NBD_EINVAL),
    ("zeroes past end", NBDCmd.NBD_CMD_WRITE_ZEROES, 8 * MiB, 512, 0, NBDError.NBD_ENOSPC),
    ("status past end", NBDCmd.NBD_CMD_BLOCK_STATUS, 8 * MiB, 512, 0, NBDError.NBD_EINVAL),
    ("status zero length", NBDCmd.NBD_CMD_BLOCK_STATUS, 0, 0, 0, NBDError.NBD_EINVAL),
    ("read too long", NBDCmd.NBD_CMD_READ, 0, 32 * MiB + 512, 0, NBDError.NBD_EINVAL),
    ("flush with range", NBDCmd.NBD_CMD_FLUSH, 0, 512, 0, NBDError.NBD_EINVAL),
    ("cache", NBDCmd.NBD_CMD_CACHE, 0, 512, 0, NBDError.NBD_EINVAL),
    ("unknown command", 42, 0, 512, 0, NBDError.NBD_EINVAL),
    ("unknown flag", NBDCmd.NBD_CMD_READ, 0, 512, 0x80, NBDError.NBD_EINVAL),
    ("no hole on read", NBDCmd.NBD_CMD_READ, 0, 512, 2, NBDError.NBD_EINVAL),
    ("fast zero", NBDCmd.NBD_CMD_WRITE_ZEROES, 0, 512, 0x10, NBDError.NBD_EINVAL),
    ("req one on trim", NBDCmd.NBD_CMD_TRIM, 0, 512, 8, NBDError.NBD_EINVAL),
]


@pytest.mark.parametrize(
    ("command", "offset", "length", "flags", "error"),
    [r[1:] for r in REJECTIONS],
    ids=[r[0] for r in REJECTIONS],
)
def test_request_validation(
    command: int, offset: int, length: int, flags: int, error: NBDError
) -> None:
    for structured in (False, True):
        client = ready(structured=structured)
        events = client.request(command, offset, length, flags=flags, cookie=9)
        assert len(events) == 1
        assert isinstance(events[0], RequestRejected)
        assert events[0].error == error
        if structured:
            header, payload = client.chunk()
            assert header.cookie == 9
            assert header.flags == NBDReplyFlag.NBD_REPLY_FLAG_DONE
            assert ErrorPayload.decode(payload).error == error
        else:
            assert client.simple_reply()[0] == SimpleReplyHeader(error, 9)
        assert client.server.in_flight == 0


def test_write_past_end_is_enospc_and_payload_is_consumed() -> None:
    client = ready(structured=False)
    events = client.request(NBDCmd.NBD_CMD_WRITE, 8 * MiB, 512, cookie=1, data=bytes(512))
    assert isinstance(events[0], RequestRejected)
    assert client.simple_reply()[0] == SimpleReplyHeader(NBDError.NBD_ENOSPC, 1)
    only_request(client.request(NBDCmd.NBD_CMD_FLUSH, cookie=2))


def test_df_needs_structured_replies() -> None:
    client = ready(structured=False)
    events = client.request(NBDCmd.NBD_CMD_READ, 0, 512, flags=NBDCmdFlag.NBD_CMD_FLAG_DF)
    assert isinstance(events[0], RequestRejected)


def test_read_only_export_refuses_writes() -> None:
    client = ready(exports={"ro": RO})
    go_flags = client.server.export
    assert go_flags is not None
    flags = go_flags.transmission_flags(True)
    assert flags & T.NBD_FLAG_READ_ONLY
    assert not flags & (T.NBD_FLAG_SEND_TRIM | T.NBD_FLAG_SEND_WRITE_ZEROES)
    for command, data in (
        (NBDCmd.NBD_CMD_WRITE, bytes(4096)),
        (NBDCmd.NBD_CMD_TRIM, b""),
        (NBDCmd.NBD_CMD_WRITE_ZEROES, b""),
    ):
        events = client.request(command, 0, 4096, data=data)
        assert isinstance(events[0], RequestRejected)
        assert events[0].error == NBDError.NBD_EPERM
        _, payload = client.chunk()
        assert ErrorPayload.decode(payload).error == NBDError.NBD_EPERM
    only_request(client.request(NBDCmd.NBD_CMD_READ, 0, 4096))


def test_oversize_write_drops_the_connection() -> None:
    client = ready()
    header = RequestHeader(0, NBDCmd.NBD_CMD_WRITE, 1, 0, 32 * MiB + 512).encode()
    events = client.send(header)
    assert len(events) == 1
    assert isinstance(events[0], ProtocolFailure)
    assert client.send(b"more") == []


def test_zero_length_requests_are_answered_at_once() -> None:
    client = ready()
    assert client.request(NBDCmd.NBD_CMD_READ, 0, 0, cookie=1) == []
    header, _ = client.chunk()
    assert (header.reply_type, header.flags) == (NBDReplyType.NBD_REPLY_TYPE_NONE, 1)
    assert client.request(NBDCmd.NBD_CMD_WRITE, 0, 0, cookie=2) == []
    assert client.simple_reply()[0] == SimpleReplyHeader(0, 2)


def test_block_status_reply_is_merged_and_cut() -> None:
    client = ready()
    state = NBDState.NBD_STATE_HOLE | NBDState.NBD_STATE_ZERO
    client.request(NBDCmd.NBD_CMD_BLOCK_STATUS, 0, 8192, cookie=1)
    client.server.reply_block_status(1, [(4096, 0), (2048, 0), (0, 3), (4096, state), (512, 0)])
    client._collect()
    header, payload = client.chunk()
    assert header.reply_type == NBDReplyType.NBD_REPLY_TYPE_BLOCK_STATUS
    assert header.flags == NBDReplyFlag.NBD_REPLY_FLAG_DONE
    assert BlockStatusPayload.decode(payload) == BlockStatusPayload(
        1, (BlockDescriptor(6144, 0), BlockDescriptor(2048, state))
    )
    req_one = NBDCmdFlag.NBD_CMD_FLAG_REQ_ONE
    client.request(NBDCmd.NBD_CMD_BLOCK_STATUS, 0, 1024, cookie=2, flags=req_one)
    client.server.reply_block_status(2, [(4096, 0), (4096, state)])
    client._collect()
    _, payload = client.chunk()
    assert BlockStatusPayload.decode(payload).descriptors == (BlockDescriptor(1024, 0),)
    client.request(NBDCmd.NBD_CMD_BLOCK_STATUS, 0, 1024, cookie=3)
    with pytest.raises(LocalProtocolError):
        client.server.reply_block_status(3, [])


def test_block_status_without_structured_replies_is_einval() -> None:
    client = ready(structured=False)
    events = client.request(NBDCmd.NBD_CMD_BLOCK_STATUS, 0, 512)
    assert isinstance(events[0], RequestRejected)


def test_reply_misuse_is_a_local_error() -> None:
    client = ready()
    with pytest.raises(LocalProtocolError):
        client.server.reply_ok(77)
    client.request(NBDCmd.NBD_CMD_READ, 0, 512, cookie=1)
    with pytest.raises(LocalProtocolError):
        client.server.reply_read(1, b"short")
    client.request(NBDCmd.NBD_CMD_READ, 0, 512, cookie=2)
    with pytest.raises(LocalProtocolError):
        client.server.reply_ok(2)


def test_disconnect_still_sends_replies_in_flight() -> None:
    client = ready()
    client.request(NBDCmd.NBD_CMD_WRITE, 0, 512, cookie=1, data=bytes(512))
    events = client.request(NBDCmd.NBD_CMD_DISC, cookie=2)
    assert events == [Disconnect("client sent NBD_CMD_DISC")]
    assert client.server.closed
    client.server.reply_ok(1)
    client._collect()
    assert client.simple_reply()[0] == SimpleReplyHeader(0, 1)
    assert client.send(RequestHeader(0, 0, 3, 0, 512).encode()) == []


def test_end_of_stream_is_a_disconnect() -> None:
    client = ready()
    client.server.receive_data(b"\x25\x60")
    client.server.receive_data(b"")
    event = client.server.next_event()
    assert isinstance(event, Disconnect)
    assert "mid-message" in event.reason


def test_bad_request_magic_fails_and_later_replies_are_dropped() -> None:
    client = ready()
    client.request(NBDCmd.NBD_CMD_READ, 0, 512, cookie=1)
    events = client.send(b"\xff" * 28)
    assert len(events) == 1
    assert isinstance(events[0], ProtocolFailure)
    client.server.reply_read(1, bytes(512))
    assert client.server.data_to_send() == []


def test_shutdown_refuses_new_requests() -> None:
    client = ready()
    client.server.shutdown()
    events = client.request(NBDCmd.NBD_CMD_READ, 0, 512, cookie=3)
    assert isinstance(events[0], RequestRejected)
    assert events[0].error == NBDError.NBD_ESHUTDOWN


def test_receive_buffer_is_bounded() -> None:
    server = NBDServerConnection({"disk": DISK})
    server.receive_data(bytes(40 * MiB))
    event = server.next_event()
    assert isinstance(event, ProtocolFailure)
    assert "buffer" in event.reason


@pytest.mark.parametrize(
    "kwargs",
    [
        {"size": 1000, "block_size": 512},
        {"size": 4096, "block_size": 3},
        {"size": 4096, "block_size": 1 << 17},
        {"size": 4096, "preferred_block_size": 256},
        {"size": 4096, "max_payload": 1000},
    ],
)
def test_export_info_is_checked(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        ExportInfo(**kwargs)


# -- random bytes never raise ----------------------------------------------------------------


def _drive(server: NBDServerConnection, chunks: list[bytes]) -> list[Event]:
    """Feed chunks, answering every request the way an edge would; any exception fails."""
    events: list[Event] = []
    for chunk in chunks:
        server.receive_data(chunk)
        while (event := server.next_event()) is not None:
            events.append(event)
            if isinstance(event, Request):
                if event.command == NBDCmd.NBD_CMD_READ:
                    server.reply_read(event.cookie, bytes(event.length))
                elif event.command == NBDCmd.NBD_CMD_BLOCK_STATUS:
                    server.reply_block_status(event.cookie, [(event.length, 0)])
                else:
                    server.reply_ok(event.cookie)
        server.data_to_send()
    return events


PREFIXES = {
    "greeting": b"",
    "options": ClientFlags(3).encode(),
    "transmission": ClientFlags(3).encode()
    + OptionRequest(NBDOpt.NBD_OPT_STRUCTURED_REPLY).encode()
    + OptionRequest(
        NBDOpt.NBD_OPT_SET_META_CONTEXT,
        MetaContextRequestData("disk", ("base:allocation",)).encode(),
    ).encode()
    + OptionRequest(NBDOpt.NBD_OPT_GO, InfoRequestData("disk").encode()).encode(),
}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    phase=st.sampled_from(sorted(PREFIXES)),
    chunks=st.lists(st.binary(min_size=1, max_size=64), min_size=1, max_size=8),
)
def test_random_bytes_only_give_events(phase: str, chunks: list[bytes]) -> None:
    server = NBDServerConnection({"disk": DISK})
    events = _drive(server, [PREFIXES[phase], *chunks])
    failures = [e for e in events if isinstance(e, ProtocolFailure)]
    assert len(failures) <= 1
    if failures:
        assert events[-1] is failures[0]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    headers=st.lists(
        st.tuples(
            st.integers(0, 0x3F),
            st.integers(0, 9),
            st.integers(0, 2**64 - 1),
            st.one_of(st.integers(0, 2**64 - 1), st.sampled_from([0, 512, 8 * MiB - 512])),
            st.one_of(st.integers(0, 2**32 - 1), st.sampled_from([0, 512, 4096])),
        ),
        max_size=6,
    )
)
def test_random_requests_are_answered_or_refused(
    headers: list[tuple[int, int, int, int, int]],
) -> None:
    """Well-framed requests with random fields: each gets exactly one answer, or the
    connection fails (an oversize WRITE)."""
    server = NBDServerConnection({"disk": DISK})
    stream = bytearray(PREFIXES["transmission"])
    for flags, command, cookie, offset, length in headers:
        stream += RequestHeader(flags, command, cookie, offset, length).encode()
        if command == NBDCmd.NBD_CMD_WRITE and length <= 32 * MiB:
            stream += bytes(min(length, 4096))
            if length > 4096:
                break  # a WRITE of random length would need its whole payload
    events = _drive(server, [bytes(stream)])
    assert server.in_flight == 0
    assert sum(isinstance(e, ProtocolFailure) for e in events) <= 1
