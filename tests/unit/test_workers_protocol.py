"""The coordinator-worker codec (``target/workers_protocol.py``): byte vectors both ways,
framing, and every malformed frame a ``WorkerProtocolError``."""

from __future__ import annotations

import contextlib
import json
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sanstack.scsi.command import Nexus
from sanstack.target.workers_protocol import (
    MAX_FRAME,
    AbortSets,
    Ack,
    AluaGroupState,
    ConnectionEnded,
    DropConnections,
    Forward,
    FrameReader,
    Handoff,
    Hello,
    ListSessions,
    LunState,
    Message,
    PortalAddress,
    Ready,
    Reinstate,
    Reply,
    Reset,
    ResetUnits,
    SessionDown,
    Sessions,
    SessionUp,
    Stop,
    Sync,
    UnitAttentionFor,
    WorkerProtocolError,
    decode,
    encode,
    encode_body,
)

NEXUS = Nexus("iqn.i", 0x23D000001, "iqn.t", 1, 1)
NEXUS_JSON = '["iqn.i",9613344769,"iqn.t",1,1]'


def frame(body: str) -> bytes:
    return struct.pack(">I", len(body)) + body.encode()


VECTORS: list[tuple[Message, str]] = [
    (Ack(7), '{"seq":7,"type":"ack"}'),
    (ConnectionEnded(3), '{"connection":3,"type":"connection-ended"}'),
    (Ready(1, 4242), '{"index":1,"pid":4242,"type":"ready"}'),
    (Stop(5.0), '{"grace":5.0,"type":"stop"}'),
    (ListSessions(9), '{"request":9,"type":"list-sessions"}'),
    (
        Handoff(12, "127.0.0.1", 3260),
        '{"connection":12,"host":"127.0.0.1","port":3260,"type":"handoff"}',
    ),
    (Reinstate(NEXUS), f'{{"nexus":{NEXUS_JSON},"type":"reinstate"}}'),
    (SessionUp(4, NEXUS), f'{{"connection":4,"nexus":{NEXUS_JSON},"type":"session-up"}}'),
    (SessionDown(4, NEXUS), f'{{"connection":4,"nexus":{NEXUS_JSON},"type":"session-down"}}'),
    (
        Forward(2, "iqn.t", 0, NEXUS, 0x10, bytes.fromhex("5f01"), b"\x00\x11", 0),
        '{"cdb":"5f01","data_in_length":0,"data_out":"0011","lun":0,'
        f'"nexus":{NEXUS_JSON},"request":2,"tag":16,"target":"iqn.t","type":"forward"}}',
    ),
    (
        Reply(2, 0x18, b"", b"\x70", None),
        '{"data":"","data_out_used":null,"request":2,"sense":"70","status":24,"type":"reply"}',
    ),
    (
        DropConnections("iqn.t", 2, ("127.0.0.1:3261",)),
        '{"portals":["127.0.0.1:3261"],"tag":2,"target":"iqn.t","type":"drop"}',
    ),
    (
        Sessions(9, ({"peer": "x", "worker": 1},)),
        '{"request":9,"sessions":[{"peer":"x","worker":1}],"type":"sessions"}',
    ),
    (
        Reset(3, ResetUnits("iqn.t", -1, NEXUS, 0x2900)),
        f'{{"request":3,"reset":{{"asc":10496,"clear":false,"lun":-1,"nexus":{NEXUS_JSON},'
        '"target":"iqn.t"},"type":"reset"}',
    ),
    (
        Hello(
            0,
            (PortalAddress("iqn.t", 1, 0, "127.0.0.1", 3260),),
            (LunState("iqn.t", 0, {"generation": 1}, NEXUS, {"tas": True}),),
            (AluaGroupState("iqn.t", 1, 0, 0, False),),
        ),
        '{"alua":[{"group":1,"preferred":false,"state":0,"status":0,"target":"iqn.t"}],'
        '"index":0,"luns":[{"lun":0,"mode":{"tas":true},"pr":{"generation":1},'
        f'"scsi2":{NEXUS_JSON},"target":"iqn.t"}}],'
        '"portals":[{"host":"127.0.0.1","index":0,"port":3260,"tag":1,"target":"iqn.t"}],'
        '"type":"hello"}',
    ),
    (
        Sync(
            5,
            (LunState("iqn.t", 0, {}, None),),
            (),
            (UnitAttentionFor("iqn.t", 0, NEXUS, 0x2A05),),
            (AbortSets("iqn.t", 0, (NEXUS,), NEXUS, 0x22),),
        ),
        '{"aborts":[{"lun":0,"nexuses":[' + NEXUS_JSON + "],"
        f'"requester":{NEXUS_JSON},"tag":34,"target":"iqn.t"}}],"alua":[],'
        '"luns":[{"lun":0,"mode":{},"pr":{},"scsi2":null,"target":"iqn.t"}],"resets":[],"seq":5,'
        f'"type":"sync","unit_attentions":[{{"asc":10757,"lun":0,"nexus":{NEXUS_JSON},'
        '"target":"iqn.t"}]}',
    ),
]


@pytest.mark.parametrize(("message", "body"), VECTORS, ids=lambda v: getattr(v, "kind", ""))
def test_vectors_encode_and_decode(message: Message, body: str) -> None:
    assert encode_body(message) == body.encode()
    assert encode(message) == frame(body)
    assert decode(body.encode()) == message


def test_frames_split_anywhere_come_out_whole_and_in_order() -> None:
    stream = b"".join(encode(m) for m, _ in VECTORS)
    for cut in (1, 3, 4, 5, 17, len(stream) - 1):
        reader = FrameReader()
        got = reader.feed(stream[:cut]) + reader.feed(stream[cut:])
        assert got == [m for m, _ in VECTORS]


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"not json", "not JSON"),
        (b"[1]", "not a JSON object"),
        (b'{"type":"nope"}', "unknown message"),
        (b'{"type":"ack"}', "seq"),
        (b'{"type":"ack","seq":true}', "seq"),
        (b'{"type":"stop","grace":-1}', "grace"),
        (b'{"type":"reinstate","nexus":["a",1,"t",1]}', "nexus"),
        (b'{"type":"reply","request":1,"status":0,"data":"zz","sense":""}', "data"),
        (b'{"type":"sessions","request":1,"sessions":[1]}', "sessions"),
        (b'{"type":"drop","target":"t","tag":1,"portals":[1]}', "portals"),
    ],
)
def test_malformed_messages_are_protocol_errors(body: bytes, problem: str) -> None:
    with pytest.raises(WorkerProtocolError, match=problem):
        decode(body)


def test_an_oversized_frame_is_refused_before_it_is_buffered() -> None:
    with pytest.raises(WorkerProtocolError, match="over"):
        FrameReader().feed(struct.pack(">I", MAX_FRAME + 1))


nexuses = st.builds(
    Nexus,
    st.text(min_size=1, max_size=20),
    st.integers(0, (1 << 48) - 1),
    st.text(min_size=1, max_size=20),
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFF),
)


@given(
    st.one_of(
        st.builds(Ack, st.integers(0, 1 << 40)),
        st.builds(SessionUp, st.integers(0, 1 << 40), nexuses),
        st.builds(
            Forward,
            st.integers(0, 1 << 40),
            st.text(max_size=20),
            st.integers(0, 16383),
            nexuses,
            st.integers(0, 0xFFFFFFFF),
            st.binary(max_size=16),
            st.binary(max_size=64),
            st.integers(0, 1 << 24),
        ),
        st.builds(
            Reply,
            st.integers(0, 1 << 40),
            st.integers(0, 0xFF),
            st.binary(max_size=64),
            st.binary(max_size=32),
            st.none() | st.integers(0, 1 << 24),
        ),
    )
)
def test_decode_of_encode_is_identity(message: Message) -> None:
    assert FrameReader().feed(encode(message)) == [message]


@given(st.binary(max_size=200))
def test_random_bytes_only_ever_give_a_protocol_error(data: bytes) -> None:
    with contextlib.suppress(WorkerProtocolError):
        FrameReader().feed(data)


def test_json_is_canonical() -> None:
    body = encode_body(Ready(0, 1))
    assert body == json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
