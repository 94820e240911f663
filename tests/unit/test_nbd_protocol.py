"""NBD codecs with byte-exact vectors both ways, and the handshake of the sans-IO server
connection driven by an in-memory client: every option, its replies and the limits on
haggling. The transmission phase is in test_nbd_transmission.py.

The vectors are built by hand from the layouts in doc/proto.md (NetworkBlockDevice/nbd).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.support.nbd_client import DISK, RO, RW_FLAGS, Client, MiB

from sanstack.nbd import (
    Disconnect,
    ExportChosen,
    NBDCmd,
    NBDCmdFlag,
    NBDDecodeError,
    NBDError,
    NBDInfo,
    NBDOpt,
    NBDRep,
    NBDReplyFlag,
    NBDReplyType,
    NBDTransmissionFlag,
    ProtocolFailure,
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
from sanstack.nbd.server_connection import MAX_OPTION_BYTES, MAX_OPTIONS, OPTIONS_PER_EXPORT

T = NBDTransmissionFlag

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


# -- handshake -------------------------------------------------------------------------------


def infos(replies: list[OptionReply]) -> list[object]:
    return [decode_info(r.data) for r in replies if r.reply_type == NBDRep.NBD_REP_INFO]


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
    client = Client()  # one export
    for _ in range(MAX_OPTIONS + OPTIONS_PER_EXPORT):
        assert client.option(NBDOpt.NBD_OPT_LIST)[-1].reply_type == NBDRep.NBD_REP_ACK
    events = client.send(OptionRequest(NBDOpt.NBD_OPT_LIST).encode())
    assert len(events) == 1
    assert isinstance(events[0], ProtocolFailure)


def test_every_export_of_a_long_list_can_be_asked_about() -> None:
    """nbdinfo --list on one connection: LIST, then INFO and LIST_META_CONTEXT of every
    export; a host exports each map twice, so 600 exports are 1,200 options and more."""
    names = [f"naa.{n:016x}" for n in range(600)]
    client = Client(dict.fromkeys(names, DISK))
    client.option(NBDOpt.NBD_OPT_STRUCTURED_REPLY)
    assert len(client.option(NBDOpt.NBD_OPT_LIST)) == len(names) + 1
    for name in names:
        info = InfoRequestData(name, (NBDInfo.NBD_INFO_BLOCK_SIZE,)).encode()
        assert client.option(NBDOpt.NBD_OPT_INFO, info)[-1].reply_type == NBDRep.NBD_REP_ACK
        query = MetaContextRequestData(name, ()).encode()
        replies = client.option(NBDOpt.NBD_OPT_LIST_META_CONTEXT, query)
        assert replies[-1].reply_type == NBDRep.NBD_REP_ACK
    assert client.go(names[-1], structured=False)[-1].reply_type == NBDRep.NBD_REP_ACK
    assert not [e for e in client.events if isinstance(e, ProtocolFailure)]


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
