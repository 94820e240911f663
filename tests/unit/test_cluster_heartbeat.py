"""The heartbeat datagram codec (``cluster/heartbeat.py``): byte-exact vectors both ways,
what the decoder refuses and why, splitting many claims over parts, round trips, and
fuzzing: truncated, bit-flipped and random datagrams only ever raise ``HeartbeatError``."""

from __future__ import annotations

import dataclasses
import random
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.support.wire import hx

from sanstack.cluster.heartbeat import (
    HEADER_SIZE,
    MAX_DATAGRAM,
    Claim,
    ClaimState,
    Heartbeat,
    HeartbeatError,
    decode,
    encode,
    split,
    varint,
)

SMALL = Heartbeat(
    cluster="prod",
    node="n2",
    incarnation=0x0102030405060708,
    sequence=42,
    epoch=7,
    members=("n1", "n2"),
    coordinator="n1",
    quorum=True,
)
SMALL_BYTES = """
53534842 01 02 0039          # magic, version 1, flags QUORUM, length 57
0102030405060708             # incarnation
000000000000002a             # sequence 42
0000000000000007             # epoch 7
00 01 0000 0000 02           # part 0 of 1, no claims, no moves, 2 members
04 70726f64                  # cluster "prod"
02 6e32                      # node "n2"
02 6e31                      # coordinator "n1"
00                           # no witness
02 6e31 02 6e32              # members n1, n2
"""

FULL = Heartbeat(
    cluster="c",
    node="n1",
    incarnation=(1 << 64) - 1,
    sequence=1,
    epoch=300,
    members=("n1",),
    coordinator="n1",
    paused=True,
    quorum=True,
    witness="n1",
    claims={"g1": Claim(ClaimState.ONLINE, 300), "g2": Claim(ClaimState.ONLINING, 5)},
    moves={"g3": "n2"},
    part=1,
    parts=2,
)
FULL_BYTES = """
53534842 01 03 0046          # magic, version 1, flags PAUSED|QUORUM, length 70
ffffffffffffffff             # incarnation
0000000000000001             # sequence 1
000000000000012c             # epoch 300
01 02 0002 0001 01           # part 1 of 2, 2 claims, 1 move, 1 member
01 63                        # cluster "c"
02 6e31 02 6e31 02 6e31      # node, coordinator, witness: n1
02 6e31                      # member n1
02 6731 02 ac02              # g1: ONLINE, owner epoch 300 (varint ac 02)
02 6732 01 05                # g2: ONLINING, owner epoch 5
02 6733 02 6e32              # move g3 to n2
"""


def with_header(data: bytes, **fields: int | bytes) -> bytes:
    """``data`` with some fixed-header fields replaced (by name)."""
    layout = struct.Struct(">4sBBHQQQBBHHB")
    names = "magic version flags length incarnation sequence epoch part parts claims moves members"
    values: dict[str, int | bytes] = dict(zip(names.split(), layout.unpack_from(data), strict=True))
    values.update(fields)
    return layout.pack(*values.values()) + data[HEADER_SIZE:]


def refused(data: bytes, words: str) -> None:
    with pytest.raises(HeartbeatError, match=words):
        decode(data)


# -- vectors ---------------------------------------------------------------------------------


def test_small_heartbeat_vector_both_ways() -> None:
    assert encode(SMALL) == hx(SMALL_BYTES)
    assert decode(hx(SMALL_BYTES)) == SMALL
    assert not SMALL.coordinating


def test_full_heartbeat_vector_both_ways() -> None:
    assert encode(FULL) == hx(FULL_BYTES)
    assert decode(hx(FULL_BYTES)) == FULL
    assert FULL.coordinating


def test_utf8_names_travel_as_utf8() -> None:
    hb = dataclasses.replace(SMALL, node="nœud", members=("n1", "nœud"))
    data = encode(hb)
    assert b"\x05n\xc5\x93ud" in data
    assert decode(data) == hb


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (0, "00"),
        (127, "7f"),
        (128, "8001"),
        (300, "ac02"),
        ((1 << 64) - 1, "ffffffffffffffffff01"),
    ],
)
def test_varint_vectors(value: int, encoded: str) -> None:
    assert varint(value) == hx(encoded)


# -- what the decoder refuses -----------------------------------------------------------------


def test_refuses_a_truncated_header() -> None:
    refused(hx(SMALL_BYTES)[:10], "header: truncated, 10 of 39 bytes")
    refused(b"", "header: truncated")


def test_refuses_an_oversized_datagram() -> None:
    refused(hx(SMALL_BYTES) + bytes(MAX_DATAGRAM), "over the 1400-byte limit")


def test_refuses_bad_magic_and_version() -> None:
    refused(with_header(hx(SMALL_BYTES), magic=b"SSHX"), "magic: b'SSHX'")
    refused(with_header(hx(SMALL_BYTES), version=2), "version: 2 is not supported")


def test_refuses_reserved_flags() -> None:
    refused(with_header(hx(SMALL_BYTES), flags=0x80), r"flags: reserved bits set \(0x80\)")


def test_refuses_a_datagram_shorter_or_longer_than_its_length() -> None:
    data = hx(SMALL_BYTES)
    refused(data[:-1], "length: the header says 57, the datagram has 56")
    refused(data + b"\x00", "length: the header says 57, the datagram has 58")


def test_refuses_fields_running_past_the_end() -> None:
    data = hx(SMALL_BYTES)
    refused(with_header(data[:-1], length=56), "members: truncated")
    refused(with_header(data, members=3), "members: truncated")
    refused(with_header(data, claims=1), "claims: truncated")


def test_refuses_bytes_after_the_last_field() -> None:
    data = hx(SMALL_BYTES)
    refused(with_header(data + b"\x00", length=58), "1 bytes after the last field")
    refused(with_header(data, members=1), "3 bytes after the last field")


def test_refuses_bad_utf8_and_empty_names() -> None:
    data = hx(SMALL_BYTES)
    refused(data.replace(b"\x02n2", b"\x02\xc3\x28"), "node: bad UTF-8")
    refused(data.replace(b"\x04prod", b"\x04pr\xffd"), "cluster: bad UTF-8")
    empty = with_header(data.replace(b"\x02n2\x02n1", b"\x00\x02n1"), length=55)
    refused(empty, "node: empty name")


def test_refuses_bad_parts() -> None:
    data = hx(SMALL_BYTES)
    refused(with_header(data, parts=0), "part: 0 of 0 parts")
    refused(with_header(data, part=2, parts=2), "part: 2 of 2 parts")


def test_refuses_unknown_claim_states_and_duplicates() -> None:
    data = hx(FULL_BYTES)
    refused(data.replace(b"\x02g1\x02", b"\x02g1\x09"), r"claims\['g1'\].state: unknown code 9")
    refused(data.replace(b"\x02g2", b"\x02g1"), "claims: 'g1' appears twice")
    two = dataclasses.replace(SMALL, members=("n1", "n1"))
    with pytest.raises(HeartbeatError, match="members: a name appears twice"):
        encode(two)
    refused(hx(SMALL_BYTES).replace(b"\x02n1\x02n2", b"\x02n1\x02n1"), "a name appears twice")


@pytest.mark.parametrize(
    ("owner_epoch", "words"),
    [
        ("8000", "not in its shortest form"),
        ("ffffffffffffffffff02", "over 64 bits"),
        ("ffffffffffffffffffff01", "longer than 10 bytes"),
    ],
)
def test_refuses_bad_varints(owner_epoch: str, words: str) -> None:
    data = hx(FULL_BYTES)
    bad = data.replace(b"\x02g1\x02\xac\x02", b"\x02g1\x02" + hx(owner_epoch))
    refused(with_header(bad, length=len(bad)), words)


# -- what the encoder refuses -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"node": ""}, "node: empty name"),
        ({"cluster": "x" * 256}, "cluster: 256 bytes of UTF-8, the limit is 255"),
        ({"node": "\udc80"}, "node: not encodable as UTF-8"),
        ({"witness": ""}, "witness: empty name"),
        ({"incarnation": -1}, "incarnation: -1 is not an unsigned 64-bit value"),
        ({"epoch": 1 << 64}, "epoch: .* is not an unsigned 64-bit value"),
        ({"part": 1}, "part: 1 of 1 parts"),
        ({"claims": {"g": Claim(ClaimState.ONLINE, -1)}}, r"claims\['g'\].owner_epoch"),
        ({"claims": {"g": Claim(7, 1)}}, r"claims\['g'\].state: 7 is not a ClaimState"),  # type: ignore[arg-type]
    ],
)
def test_encode_refuses_bad_fields(change: dict[str, object], words: str) -> None:
    with pytest.raises(HeartbeatError, match=words):
        encode(dataclasses.replace(SMALL, **change))  # type: ignore[arg-type]


def test_encode_refuses_a_heartbeat_over_the_datagram_size() -> None:
    claims = {f"group-{i:03}": Claim(ClaimState.ONLINE, 1) for i in range(256)}
    with pytest.raises(HeartbeatError, match="over the 1400-byte datagram: split"):
        encode(dataclasses.replace(SMALL, claims=claims))


# -- many claims: parts ---------------------------------------------------------------------------


def test_a_typical_heartbeat_is_one_small_datagram() -> None:
    hb = dataclasses.replace(
        SMALL,
        members=("n1", "n2", "n3"),
        witness="n1",
        claims={f"group-{i:02}": Claim(ClaimState.ONLINE, 12) for i in range(16)},
        moves={"group-00": "n3"},
    )
    parts = split(hb)
    assert parts == [hb]
    assert len(encode(hb)) <= 400


def test_256_groups_split_into_parts_that_each_fit() -> None:
    claims = {f"group-{i:03}": Claim(ClaimState(i % len(ClaimState)), 1000 + i) for i in range(256)}
    moves = {f"group-{i:03}": "n3" for i in range(0, 256, 16)}
    hb = dataclasses.replace(SMALL, members=("n1", "n2", "n3"), claims=claims, moves=moves)
    parts = split(hb)
    assert len(parts) == 3
    joined_claims: dict[str, Claim] = {}
    joined_moves: dict[str, str] = {}
    for index, part in enumerate(parts):
        data = encode(part)
        assert len(data) <= MAX_DATAGRAM
        got = decode(data)
        assert (got.part, got.parts, got.sequence, got.epoch) == (index, 3, 42, 7)
        assert got.members == ("n1", "n2", "n3")
        joined_claims.update(got.claims)
        joined_moves.update(got.moves)
    assert joined_claims == claims
    assert joined_moves == moves


def test_split_refuses_what_no_part_can_hold() -> None:
    hb = dataclasses.replace(SMALL, claims={"g" * 200: Claim(ClaimState.ONLINE, 1)})
    with pytest.raises(HeartbeatError, match="does not fit a 100-byte datagram"):
        split(hb, limit=100)
    many = dataclasses.replace(
        SMALL, claims={f"g{i:05}": Claim(ClaimState.ONLINE, 1) for i in range(10_000)}
    )
    with pytest.raises(HeartbeatError, match="parts needed, the limit is 255"):
        split(many, limit=100)


# -- round trips ----------------------------------------------------------------------------------

names = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=12)
u64 = st.integers(0, (1 << 64) - 1)
heartbeats = st.builds(
    Heartbeat,
    cluster=names,
    node=names,
    incarnation=u64,
    sequence=u64,
    epoch=u64,
    members=st.lists(names, max_size=8, unique=True).map(tuple),
    coordinator=names,
    paused=st.booleans(),
    quorum=st.booleans(),
    witness=st.none() | names,
    claims=st.dictionaries(names, st.builds(Claim, st.sampled_from(ClaimState), u64), max_size=12),
    moves=st.dictionaries(names, names, max_size=4),
)


@given(heartbeats)
def test_decode_encode_round_trip(hb: Heartbeat) -> None:
    for part in split(hb):
        data = encode(part)
        assert decode(data) == part
        assert encode(decode(data)) == data


# -- fuzzing --------------------------------------------------------------------------------------


def decodes_or_refuses(data: bytes) -> None:
    """The one contract for hostile bytes: a Heartbeat whose encoding is exactly those
    bytes, or HeartbeatError; nothing else escapes."""
    try:
        hb = decode(data)
    except HeartbeatError:
        return
    assert encode(hb) == data


@given(heartbeats, st.data())
def test_truncations_and_bit_flips_only_raise_heartbeat_error(
    hb: Heartbeat, data: st.DataObject
) -> None:
    wire = bytearray(encode(split(hb)[0]))
    decodes_or_refuses(bytes(wire[: data.draw(st.integers(0, len(wire)))]))
    for _ in range(data.draw(st.integers(1, 4))):
        bit = data.draw(st.integers(0, len(wire) * 8 - 1))
        wire[bit // 8] ^= 1 << (bit % 8)
    decodes_or_refuses(bytes(wire))


@given(st.binary(max_size=1500))
def test_random_bytes_only_raise_heartbeat_error(data: bytes) -> None:
    decodes_or_refuses(data)
    decodes_or_refuses(hx(SMALL_BYTES)[:HEADER_SIZE] + data)


def test_seeded_mutations_of_the_vectors() -> None:
    rng = random.Random(11)
    vectors = [hx(SMALL_BYTES), hx(FULL_BYTES)]
    accepted = 0
    for _ in range(20_000):
        wire = bytearray(rng.choice(vectors))
        for _ in range(rng.randint(1, 3)):
            match rng.randrange(4):
                case 0:
                    del wire[rng.randrange(len(wire) + 1) :]
                case 1 if wire:
                    wire[rng.randrange(len(wire))] ^= 1 << rng.randrange(8)
                case 2 if wire:
                    wire[rng.randrange(len(wire))] = rng.randrange(256)
                case _:
                    wire[rng.randrange(len(wire) + 1) : 0] = rng.randbytes(rng.randint(1, 4))
        try:
            decode(bytes(wire))
            accepted += 1
        except HeartbeatError:
            pass
        decodes_or_refuses(bytes(wire))
    assert 0 < accepted < 20_000  # some flips land in values, most break the framing


def test_the_claim_codes_stay_put() -> None:
    assert {state.name: state.value for state in ClaimState} == {
        "OFFLINE": 0,
        "ONLINING": 1,
        "ONLINE": 2,
        "OFFLINING": 3,
        "STOPPING": 4,
        "FAILED": 5,
        "NO_PATH": 6,
    }
