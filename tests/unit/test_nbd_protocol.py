"""NBD codecs with byte-exact vectors both ways, and the sans-IO server connection driven by
an in-memory client: every handshake variant, requests, replies and validation.

The vectors are built by hand from the layouts in doc/proto.md (NetworkBlockDevice/nbd).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sanstack.errors import LocalProtocolError
from sanstack.nbd import (
    Disconnect,
    Event,
    ExportChosen,
    ExportInfo,
    NBDCmd,
    NBDCmdFlag,
    NBDDecodeError,
    NBDError,
    NBDInfo,
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
    ExportNameReply,
    InfoBlockSize,
    InfoDescription,
    InfoExport,
    InfoName,
    InfoRequestData,
    InfoUnknown,
    MetaContextReplyData,
    MetaContextRequestData,
    OffsetData,
    OffsetHole,
    OptionHeader,
    OptionReply,
    OptionRequest,
    RequestHeader,
    ServerGreeting,
    ServerReplyData,
    SimpleReplyHeader,
    StructuredReplyHeader,
    decode_info,
)
from sanstack.nbd.server_connection import MAX_OPTION_BYTES, MAX_OPTIONS

MiB = 1 << 20
T = NBDTransmissionFlag
RW_FLAGS = (
    T.NBD_FLAG_HAS_FLAGS
    | T.NBD_FLAG_SEND_FLUSH
    | T.NBD_FLAG_SEND_FUA
    | T.NBD_FLAG_SEND_TRIM
    | T.NBD_FLAG_SEND_WRITE_ZEROES
)

# -- vectors ---------------------------------------------------------------------------------

Decoder = Callable[[bytes], object]

VECTORS: list[tuple[str, object, str, Decoder]] = [
    (
        "greeting",
        ServerGreeting(),
        "4e42444d41474943 49484156454f5054 0003",
        ServerGreeting.decode,
    ),
    ("client flags", ClientFlags(3), "00000003", ClientFlags.decode),
    (
        "option header",
        OptionHeader(NBDOpt.NBD_OPT_GO, 10),
        "49484156454f5054 00000007 0000000a",
        OptionHeader.decode,
    ),
    (
        "option request",
        OptionRequest(NBDOpt.NBD_OPT_EXPORT_NAME, b"disk"),
        "49484156454f5054 00000001 00000004 6469736b",
        OptionRequest.decode,
    ),
    (
        "option reply ack",
        OptionReply(NBDOpt.NBD_OPT_STRUCTURED_REPLY, NBDRep.NBD_REP_ACK),
        "0003e889045565a9 00000008 00000001 00000000",
        OptionReply.decode,
    ),
    (
        "option reply error",
        OptionReply(NBDOpt.NBD_OPT_STARTTLS, NBDRep.NBD_REP_ERR_UNSUP, b"no"),
        "0003e889045565a9 00000005 80000001 00000002 6e6f",
        OptionReply.decode,
    ),
    (
        "export name reply, zeroes",
        ExportNameReply(1 * MiB, RW_FLAGS, zeroes=True),
        "0000000000100000 006d" + "00" * 124,
        ExportNameReply.decode,
    ),
    (
        "export name reply, no zeroes",
        ExportNameReply(1 * MiB, RW_FLAGS | T.NBD_FLAG_READ_ONLY, zeroes=False),
        "0000000000100000 006f",
        ExportNameReply.decode,
    ),
    (
        "info/go data",
        InfoRequestData("disk", (NBDInfo.NBD_INFO_BLOCK_SIZE, NBDInfo.NBD_INFO_NAME)),
        "00000004 6469736b 0002 0003 0001",
        InfoRequestData.decode,
    ),
    ("info/go data, default export", InfoRequestData(""), "00000000 0000", InfoRequestData.decode),
    (
        "meta context data",
        MetaContextRequestData("d", ("base:allocation",)),
        "00000001 64 00000001 0000000f" + b"base:allocation".hex(),
        MetaContextRequestData.decode,
    ),
    (
        "rep server",
        ServerReplyData("disk", "a disk"),
        "00000004 6469736b 61206469736b",
        ServerReplyData.decode,
    ),
    (
        "info export",
        InfoExport(0x1_0000_0000, RW_FLAGS),
        "0000 0000000100000000 006d",
        decode_info,
    ),
    ("info name", InfoName("disk"), "0001 6469736b", decode_info),
    ("info description", InfoDescription("hi"), "0002 6869", decode_info),
    (
        "info block size",
        InfoBlockSize(512, 4096, 32 * MiB),
        "0003 00000200 00001000 02000000",
        decode_info,
    ),
    ("info unknown", InfoUnknown(9, b"\x01"), "0009 01", decode_info),
    (
        "rep meta context",
        MetaContextReplyData(1, "base:allocation"),
        "00000001" + b"base:allocation".hex(),
        MetaContextReplyData.decode,
    ),
    (
        "request header",
        RequestHeader(
            NBDCmdFlag.NBD_CMD_FLAG_FUA, NBDCmd.NBD_CMD_WRITE, 0x0102030405060708, 4096, 512
        ),
        "25609513 0001 0001 0102030405060708 0000000000001000 00000200",
        RequestHeader.decode,
    ),
    (
        "simple reply",
        SimpleReplyHeader(NBDError.NBD_EIO, 7),
        "67446698 00000005 0000000000000007",
        SimpleReplyHeader.decode,
    ),
    (
        "structured reply header",
        StructuredReplyHeader(
            NBDReplyFlag.NBD_REPLY_FLAG_DONE, NBDReplyType.NBD_REPLY_TYPE_OFFSET_DATA, 9, 520
        ),
        "668e33ef 0001 0001 0000000000000009 00000208",
        StructuredReplyHeader.decode,
    ),
    ("offset data", OffsetData(512, b"ab"), "0000000000000200 6162", OffsetData.decode),
    ("offset hole", OffsetHole(512, 1024), "0000000000000200 00000400", OffsetHole.decode),
    (
        "block status",
        BlockStatusPayload(1, (BlockDescriptor(4096, 3), BlockDescriptor(512, 0))),
        "00000001 00001000 00000003 00000200 00000000",
        BlockStatusPayload.decode,
    ),
    (
        "error",
        ErrorPayload(NBDError.NBD_EINVAL, "bad"),
        "00000016 0003 626164",
        ErrorPayload.decode,
    ),
    ("error, no message", ErrorPayload(NBDError.NBD_EIO), "00000005 0000", ErrorPayload.decode),
    (
        "error offset",
        ErrorOffsetPayload(NBDError.NBD_EIO, "x", 1024),
        "00000005 0001 78 0000000000000400",
        ErrorOffsetPayload.decode,
    ),
]


@pytest.mark.parametrize(
    ("obj", "hex_", "decode"), [v[1:] for v in VECTORS], ids=[v[0] for v in VECTORS]
)
def test_vector_both_ways(obj: Any, hex_: str, decode: Decoder) -> None:
    raw = bytes.fromhex(hex_.replace(" ", ""))
    assert obj.encode() == raw
    assert decode(raw) == obj


BAD: list[tuple[str, Decoder, str]] = [
    ("greeting magic", ServerGreeting.decode, "4e42444d41474944 49484156454f5054 0003"),
    ("short client flags", ClientFlags.decode, "000003"),
    ("option magic", OptionHeader.decode, "49484156454f5055 00000007 00000000"),
    ("option data short", OptionRequest.decode, "49484156454f5054 00000001 00000004 6469"),
    ("reply magic", OptionReply.decode, "0003e889045565aa 00000008 00000001 00000000"),
    ("export reply size", ExportNameReply.decode, "0000000000100000 006d 00"),
    ("go name too long", InfoRequestData.decode, "00000005 6469736b 0000"),
    ("go count", InfoRequestData.decode, "00000000 0002 0001"),
    ("go short", InfoRequestData.decode, "0000"),
    ("go not utf-8", InfoRequestData.decode, "00000001 ff 0000"),
    ("go NUL", InfoRequestData.decode, "00000001 00 0000"),
    ("meta count", MetaContextRequestData.decode, "00000000 00000002 00000000"),
    ("meta trailing", MetaContextRequestData.decode, "00000000 00000000 00"),
    ("meta query length", MetaContextRequestData.decode, "00000000 00000001 00000005 6162"),
    ("rep server", ServerReplyData.decode, "00000009 6469736b"),
    ("info export length", decode_info, "0000 0000000000000000"),
    ("info block size length", decode_info, "0003 00000200"),
    ("info short", decode_info, "00"),
    ("request magic", RequestHeader.decode, "25609514" + "00" * 24),
    ("request short", RequestHeader.decode, "25609513" + "00" * 23),
    ("simple magic", SimpleReplyHeader.decode, "67446699 00000000 0000000000000000"),
    ("structured magic", StructuredReplyHeader.decode, "668e33ee" + "00" * 16),
    ("offset data empty", OffsetData.decode, "0000000000000200"),
    ("hole zero", OffsetHole.decode, "0000000000000200 00000000"),
    ("block status empty", BlockStatusPayload.decode, "00000001"),
    ("block status ragged", BlockStatusPayload.decode, "00000001 00001000 000000"),
    ("block status zero extent", BlockStatusPayload.decode, "00000001 00000000 00000000"),
    ("error zero", ErrorPayload.decode, "00000000 0000"),
    ("error message long", ErrorPayload.decode, "00000005 0005 6162"),
    ("error trailing", ErrorPayload.decode, "00000005 0000 00"),
    ("error offset missing", ErrorOffsetPayload.decode, "00000005 0000 0000"),
]


@pytest.mark.parametrize(("decode", "hex_"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_decode_rejects(decode: Decoder, hex_: str) -> None:
    with pytest.raises(NBDDecodeError):
        decode(bytes.fromhex(hex_.replace(" ", "")))


def test_error_message_is_truncated_to_a_string() -> None:
    payload = ErrorPayload(NBDError.NBD_EIO, "é" * 3000).encode()
    decoded = ErrorPayload.decode(payload)
    assert len(decoded.message.encode()) <= 4096
    assert set(decoded.message) == {"é"}


@settings(max_examples=100, deadline=None)
@given(
    flags=st.integers(0, 0xFFFF),
    command=st.integers(0, 0xFFFF),
    cookie=st.integers(0, 2**64 - 1),
    offset=st.integers(0, 2**64 - 1),
    length=st.integers(0, 2**32 - 1),
)
def test_request_header_roundtrip(
    flags: int, command: int, cookie: int, offset: int, length: int
) -> None:
    header = RequestHeader(flags, command, cookie, offset, length)
    assert RequestHeader.decode(header.encode()) == header


@settings(max_examples=100, deadline=None)
@given(
    name=st.text(
        st.characters(blacklist_characters="\0", blacklist_categories=["Cs"]), max_size=50
    ),
    requests=st.lists(st.integers(0, 0xFFFF), max_size=5),
    queries=st.lists(st.text(max_size=20).map(lambda s: "x:" + s.replace("\0", "")), max_size=4),
)
def test_option_data_roundtrip(name: str, requests: list[int], queries: list[str]) -> None:
    info = InfoRequestData(name, tuple(requests))
    assert InfoRequestData.decode(info.encode()) == info
    meta = MetaContextRequestData(name, tuple(queries))
    assert MetaContextRequestData.decode(meta.encode()) == meta


# -- an in-memory client ---------------------------------------------------------------------

DISK = ExportInfo(size=8 * MiB, block_size=512, description="the disk")
RO = ExportInfo(size=1 * MiB, block_size=4096, read_only=True)


class Client:
    """Speaks the client side against an ``NBDServerConnection``, through bytes only."""

    def __init__(self, exports: dict[str, ExportInfo] | None = None, flags: int | None = 3) -> None:
        self.server = NBDServerConnection(exports if exports is not None else {"disk": DISK})
        self.rx = bytearray()
        self.events: list[Event] = []
        self._collect()
        assert ServerGreeting.decode(self.take(18)) == ServerGreeting()
        if flags is not None:
            self.send(ClientFlags(flags).encode())

    def _collect(self) -> None:
        for part in self.server.data_to_send():
            self.rx += part

    def send(self, data: bytes, *, chunk: int | None = None) -> list[Event]:
        events: list[Event] = []
        pieces = (
            [data] if chunk is None else [data[i : i + chunk] for i in range(0, len(data), chunk)]
        )
        for piece in pieces:
            self.server.receive_data(piece)
            while (event := self.server.next_event()) is not None:
                events.append(event)
        self._collect()
        self.events += events
        return events

    def take(self, n: int) -> bytes:
        assert len(self.rx) >= n, f"wanted {n} bytes, have {len(self.rx)}"
        out = bytes(self.rx[:n])
        del self.rx[:n]
        return out

    def option_replies(self) -> list[OptionReply]:
        """Replies until a final one (ACK or an error)."""
        replies = []
        while True:
            head = self.take(20)
            length = struct.unpack(">I", head[16:])[0]
            reply = OptionReply.decode(head + self.take(length))
            replies.append(reply)
            if reply.reply_type == NBDRep.NBD_REP_ACK or reply.reply_type & (1 << 31):
                return replies

    def option(self, option: int, data: bytes = b"") -> list[OptionReply]:
        self.send(OptionRequest(option, data).encode())
        return self.option_replies()

    def go(
        self, name: str = "disk", *, structured: bool = True, meta: bool = True
    ) -> list[OptionReply]:
        if structured:
            assert self.option(NBDOpt.NBD_OPT_STRUCTURED_REPLY)[-1].reply_type == NBDRep.NBD_REP_ACK
            if meta:
                data = MetaContextRequestData(name, ("base:allocation",)).encode()
                self.option(NBDOpt.NBD_OPT_SET_META_CONTEXT, data)
        data = InfoRequestData(name, (NBDInfo.NBD_INFO_BLOCK_SIZE,)).encode()
        return self.option(NBDOpt.NBD_OPT_GO, data)

    def request(
        self,
        command: int,
        offset: int = 0,
        length: int = 0,
        *,
        flags: int = 0,
        cookie: int = 1,
        data: bytes = b"",
    ) -> list[Event]:
        return self.send(RequestHeader(flags, command, cookie, offset, length).encode() + data)

    def simple_reply(self, data_length: int = 0) -> tuple[SimpleReplyHeader, bytes]:
        header = SimpleReplyHeader.decode(self.take(16))
        return header, self.take(data_length if header.error == 0 else 0)

    def chunk(self) -> tuple[StructuredReplyHeader, bytes]:
        header = StructuredReplyHeader.decode(self.take(20))
        return header, self.take(header.length)


def infos(replies: list[OptionReply]) -> list[object]:
    return [decode_info(r.data) for r in replies if r.reply_type == NBDRep.NBD_REP_INFO]


# -- handshake -------------------------------------------------------------------------------


def test_go_structured_with_base_allocation() -> None:
    client = Client()
    replies = client.go()
    assert replies[-1].reply_type == NBDRep.NBD_REP_ACK
    assert infos(replies) == [
        InfoExport(8 * MiB, RW_FLAGS | T.NBD_FLAG_SEND_DF),
        InfoBlockSize(512, 4096, 32 * MiB),
    ]
    chosen = client.events[-1]
    assert chosen == ExportChosen("disk", DISK, True, ("base:allocation",))
    assert client.rx == b""


def test_go_simple_replies_has_no_df_flag() -> None:
    client = Client()
    replies = client.go(structured=False)
    assert infos(replies)[0] == InfoExport(8 * MiB, RW_FLAGS)
    assert client.events[-1] == ExportChosen("disk", DISK, False, ())


def test_go_default_export_and_name_and_description() -> None:
    client = Client()
    data = InfoRequestData("", (NBDInfo.NBD_INFO_NAME, NBDInfo.NBD_INFO_DESCRIPTION)).encode()
    replies = client.option(NBDOpt.NBD_OPT_GO, data)
    assert InfoName("disk") in infos(replies)
    assert InfoDescription("the disk") in infos(replies)
    assert isinstance(client.events[-1], ExportChosen)
    assert client.events[-1].name == "disk"


def test_default_export_is_ambiguous_with_two_exports() -> None:
    client = Client({"a": DISK, "b": RO})
    replies = client.option(NBDOpt.NBD_OPT_GO, InfoRequestData("").encode())
    assert [r.reply_type for r in replies] == [NBDRep.NBD_REP_ERR_UNKNOWN]
    # Haggling goes on after an error reply.
    assert client.option(NBDOpt.NBD_OPT_GO, InfoRequestData("b").encode())[-1].reply_type == (
        NBDRep.NBD_REP_ACK
    )


def test_go_unknown_export_and_malformed_data() -> None:
    client = Client()
    unknown = client.option(NBDOpt.NBD_OPT_GO, InfoRequestData("nope").encode())
    assert unknown[0].reply_type == NBDRep.NBD_REP_ERR_UNKNOWN
    assert b"nope" in unknown[0].data
    bad = client.option(NBDOpt.NBD_OPT_GO, b"\x00\x00")
    assert bad[0].reply_type == NBDRep.NBD_REP_ERR_INVALID
    assert client.events == []


def test_info_then_go_give_the_same_information() -> None:
    client = Client()
    data = InfoRequestData("disk", (NBDInfo.NBD_INFO_BLOCK_SIZE,)).encode()
    info = client.option(NBDOpt.NBD_OPT_INFO, data)
    assert client.events == []
    go = client.option(NBDOpt.NBD_OPT_GO, data)
    assert infos(info) == infos(go)
    assert isinstance(client.events[-1], ExportChosen)


@pytest.mark.parametrize("no_zeroes", [True, False])
def test_export_name(no_zeroes: bool) -> None:
    client = Client(flags=3 if no_zeroes else 1)
    client.send(OptionRequest(NBDOpt.NBD_OPT_EXPORT_NAME, b"disk").encode())
    size = 10 if no_zeroes else 134
    reply = ExportNameReply.decode(client.take(size))
    assert reply == ExportNameReply(8 * MiB, RW_FLAGS, zeroes=not no_zeroes)
    assert client.rx == b""
    assert client.events == [ExportChosen("disk", DISK, False, ())]


def test_export_name_unknown_ends_the_session() -> None:
    client = Client()
    events = client.send(OptionRequest(NBDOpt.NBD_OPT_EXPORT_NAME, b"nope").encode())
    assert len(events) == 1
    assert isinstance(events[0], ProtocolFailure)
    assert client.rx == b""


def test_list() -> None:
    client = Client({"a": DISK, "b": RO})
    replies = client.option(NBDOpt.NBD_OPT_LIST)
    assert [r.reply_type for r in replies] == [
        NBDRep.NBD_REP_SERVER,
        NBDRep.NBD_REP_SERVER,
        NBDRep.NBD_REP_ACK,
    ]
    assert ServerReplyData.decode(replies[0].data) == ServerReplyData("a", "the disk")
    assert ServerReplyData.decode(replies[1].data) == ServerReplyData("b")
    assert client.option(NBDOpt.NBD_OPT_LIST, b"x")[0].reply_type == NBDRep.NBD_REP_ERR_INVALID


def test_abort() -> None:
    client = Client()
    replies = client.option(NBDOpt.NBD_OPT_ABORT, b"ignored")
    assert [r.reply_type for r in replies] == [NBDRep.NBD_REP_ACK]
    assert client.events == [Disconnect("client sent NBD_OPT_ABORT")]
    assert client.send(b"garbage after abort") == []
    assert client.rx == b""


@pytest.mark.parametrize("option", [NBDOpt.NBD_OPT_STARTTLS, NBDOpt.NBD_OPT_PEEK_EXPORT, 99])
def test_unknown_options_are_unsupported(option: int) -> None:
    client = Client()
    replies = client.option(option, b"abc")
    assert [r.reply_type for r in replies] == [NBDRep.NBD_REP_ERR_UNSUP]
    assert replies[0].option == option


def test_structured_reply_option_errors() -> None:
    client = Client()
    assert client.option(NBDOpt.NBD_OPT_STRUCTURED_REPLY, b"x")[0].reply_type == (
        NBDRep.NBD_REP_ERR_INVALID
    )
    assert client.option(NBDOpt.NBD_OPT_STRUCTURED_REPLY)[0].reply_type == NBDRep.NBD_REP_ACK
    assert client.option(NBDOpt.NBD_OPT_STRUCTURED_REPLY)[0].reply_type == (
        NBDRep.NBD_REP_ERR_INVALID
    )


def test_meta_contexts() -> None:
    client = Client()
    set_ = NBDOpt.NBD_OPT_SET_META_CONTEXT
    list_ = NBDOpt.NBD_OPT_LIST_META_CONTEXT
    query = MetaContextRequestData("disk", ("base:allocation",)).encode()
    # Structured replies first ("This option MUST NOT be requested unless ...").
    assert client.option(set_, query)[0].reply_type == NBDRep.NBD_REP_ERR_INVALID
    client.option(NBDOpt.NBD_OPT_STRUCTURED_REPLY)

    def contexts(option: int, *queries: str, name: str = "disk") -> list[MetaContextReplyData]:
        replies = client.option(option, MetaContextRequestData(name, queries).encode())
        assert replies[-1].reply_type == NBDRep.NBD_REP_ACK, replies
        return [MetaContextReplyData.decode(r.data) for r in replies[:-1]]

    base = "base:allocation"
    assert contexts(list_) == [MetaContextReplyData(0, base)]
    assert contexts(list_, "base:") == [MetaContextReplyData(0, base)]
    assert contexts(list_, "qemu:dirty-bitmap:x") == []
    assert contexts(set_, "base:") == []
    assert contexts(set_, base, "x-other:thing") == [MetaContextReplyData(1, base)]
    bad = client.option(list_, MetaContextRequestData("disk", ("nocolon",)).encode())
    assert bad[0].reply_type == NBDRep.NBD_REP_ERR_INVALID
    unknown = client.option(set_, MetaContextRequestData("nope", (base,)).encode())
    assert unknown[0].reply_type == NBDRep.NBD_REP_ERR_UNKNOWN
    assert client.option(list_, b"\x00")[0].reply_type == NBDRep.NBD_REP_ERR_INVALID


def test_meta_context_for_another_export_is_dropped_at_go() -> None:
    client = Client({"a": DISK, "b": DISK})
    client.option(NBDOpt.NBD_OPT_STRUCTURED_REPLY)
    client.option(
        NBDOpt.NBD_OPT_SET_META_CONTEXT,
        MetaContextRequestData("a", ("base:allocation",)).encode(),
    )
    client.option(NBDOpt.NBD_OPT_GO, InfoRequestData("b").encode())
    assert client.events[-1] == ExportChosen("b", DISK, True, ())
    client.request(NBDCmd.NBD_CMD_BLOCK_STATUS, 0, 4096)
    header, payload = client.chunk()
    assert header.reply_type == NBDReplyType.NBD_REPLY_TYPE_ERROR
    assert ErrorPayload.decode(payload).error == NBDError.NBD_EINVAL


def test_unknown_client_flags_drop_the_connection() -> None:
    client = Client(flags=4)
    assert len(client.events) == 1
    assert isinstance(client.events[0], ProtocolFailure)


def test_bad_option_magic_is_a_failure() -> None:
    client = Client()
    events = client.send(b"NOTMAGIC" + bytes(8))
    assert len(events) == 1
    assert isinstance(events[0], ProtocolFailure)


def test_oversized_option_is_skipped_and_refused() -> None:
    client = Client()
    data = bytes(MAX_OPTION_BYTES + 1)
    client.send(OptionRequest(NBDOpt.NBD_OPT_LIST, data).encode(), chunk=4096)
    assert client.option_replies()[0].reply_type == NBDRep.NBD_REP_ERR_TOO_BIG
    assert client.go()[-1].reply_type == NBDRep.NBD_REP_ACK


def test_oversized_export_name_is_a_failure() -> None:
    client = Client()
    header = OptionHeader(NBDOpt.NBD_OPT_EXPORT_NAME, MAX_OPTION_BYTES + 1).encode()
    assert isinstance(client.send(header)[0], ProtocolFailure)


def test_endless_haggling_is_cut_off() -> None:
    client = Client()
    for _ in range(MAX_OPTIONS):
        assert client.option(NBDOpt.NBD_OPT_LIST)[-1].reply_type == NBDRep.NBD_REP_ACK
    events = client.send(OptionRequest(NBDOpt.NBD_OPT_LIST).encode())
    assert len(events) == 1
    assert isinstance(events[0], ProtocolFailure)


def test_an_option_arriving_byte_by_byte_counts_once() -> None:
    client = Client()
    query = MetaContextRequestData("disk", ("x-long:" + "q" * 4000,)).encode()
    client.option(NBDOpt.NBD_OPT_STRUCTURED_REPLY)
    client.send(OptionRequest(NBDOpt.NBD_OPT_LIST_META_CONTEXT, query).encode(), chunk=1)
    assert client.option_replies()[-1].reply_type == NBDRep.NBD_REP_ACK
    assert client.go(structured=False)[-1].reply_type == NBDRep.NBD_REP_ACK


def test_shutdown_during_haggling() -> None:
    client = Client()
    client.server.shutdown()
    assert client.option(NBDOpt.NBD_OPT_GO, InfoRequestData("disk").encode())[0].reply_type == (
        NBDRep.NBD_REP_ERR_SHUTDOWN
    )
    assert client.option(NBDOpt.NBD_OPT_ABORT)[0].reply_type == NBDRep.NBD_REP_ACK


def test_handshake_byte_by_byte() -> None:
    client = Client(flags=None)
    handshake = (
        ClientFlags(3).encode()
        + OptionRequest(NBDOpt.NBD_OPT_GO, InfoRequestData("disk").encode()).encode()
    )
    client.send(handshake, chunk=1)
    assert isinstance(client.events[-1], ExportChosen)


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
