"""The heartbeat datagram: what one node tells every other node each heartbeat interval
(docs/cluster-design.md "Membership"). A UDP datagram, big-endian, at most
``MAX_DATAGRAM`` (1400) bytes so it never needs IP fragmentation on a 1500-byte MTU.

Layout, version 1. A 39-byte fixed header, then the variable part in the order below.

| Offset | Size | Name | Meaning |
|---|---|---|---|
| 0 | 4 | magic | ``b"SSHB"`` |
| 4 | 1 | version | 1; any other version is refused |
| 5 | 1 | flags | bit 0 ``PAUSED`` (draining), bit 1 ``QUORUM`` (its side has quorum); others 0 |
| 6 | 2 | length | the whole datagram in bytes: a truncated or padded one is refused |
| 8 | 8 | incarnation | random per process start: a new value is a restart |
| 16 | 8 | sequence | the sender's heartbeat count in this incarnation; the same in every part |
| 24 | 8 | epoch | the epoch of the view the sender has installed |
| 32 | 1 | part | this datagram's index among the parts of one heartbeat, from 0 |
| 33 | 1 | parts | how many parts the heartbeat has, 1 to 255 |
| 34 | 2 | claim count | claims in this part |
| 36 | 2 | move count | move requests in this part |
| 38 | 1 | member count | names in the view's member list |
| 39 | var | cluster | name: the sender's cluster; a datagram of another cluster is dropped |
| | var | node | name: the sender |
| | var | coordinator | name: whose views the sender follows (itself when it coordinates) |
| | var | witness | name: the node holding the witness disk; length 0 when none or unknown |
| | var | members | member count names: the installed view's members |
| | var | claims | claim count times: group name, state (1 byte, ``ClaimState``), owner epoch |
| | var | moves | move count times: group name, target node name |

A *name* is one length byte (1 to 255; 0 only for an absent witness) and that many bytes of
UTF-8. The owner epoch is a *varint*, unsigned LEB128: 7 bits per byte, least significant
group first, the high bit set on every byte but the last; at most 10 bytes, below 2**64,
and minimal (no trailing zero group), so each value has exactly one encoding.

The coordinator is a name rather than a flag (``Heartbeat.coordinating`` is the flag) because
a coordinator must know which peers follow it: a follower whose view is newer than its
coordinator's (it followed another coordinator before a link came back) makes the
coordinator propose a newer view, and peers that follow somebody else must not.

Claims: a node claims the groups that are not offline on it (owned, onlining, offlining,
stopping, failed); a group it does not claim is offline there. The owner epoch is the view
epoch at which it took the group. Claims and move requests are what may grow with the
number of groups; when they do not fit one datagram, ``split`` spreads them over up to 255
parts that all carry the same header, names and members, and the receiver takes a peer's
claims only once every part of one sequence number has arrived. With 8-character group
names a part holds about 100 claims, so 256 groups take 3 parts.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from enum import IntEnum, IntFlag

from sanstack.errors import ProtocolError

MAGIC = b"SSHB"
VERSION = 1
MAX_DATAGRAM = 1400
MAX_NAME = 255  # bytes of UTF-8: the name's length is one byte
MAX_PARTS = 255
MAX_U64 = (1 << 64) - 1

_HEADER = struct.Struct(">4sBBHQQQBBHHB")
HEADER_SIZE = _HEADER.size  # 39


class HeartbeatError(ProtocolError):
    """A heartbeat that cannot be encoded, or a datagram that is not a valid heartbeat."""


class HeartbeatFlags(IntFlag):
    PAUSED = 0x01
    QUORUM = 0x02


_KNOWN_FLAGS = int(HeartbeatFlags.PAUSED | HeartbeatFlags.QUORUM)


class ClaimState(IntEnum):
    """What one group is doing on the node that claims it (the wire code of its state)."""

    OFFLINE = 0
    ONLINING = 1
    ONLINE = 2
    OFFLINING = 3
    STOPPING = 4  # fenced or without quorum: stopping with no further writes
    FAILED = 5
    NO_PATH = 6  # its disks have no path from the node: it cannot run the group there


@dataclass(frozen=True, slots=True)
class Claim:
    state: ClaimState
    owner_epoch: int  # the view epoch at which the claiming node took the group


@dataclass(frozen=True, slots=True)
class Heartbeat:
    cluster: str
    node: str
    incarnation: int
    sequence: int
    epoch: int
    members: tuple[str, ...]
    coordinator: str
    paused: bool = False
    quorum: bool = False
    witness: str | None = None
    claims: dict[str, Claim] = field(default_factory=dict)
    moves: dict[str, str] = field(default_factory=dict)  # group -> the node it should move to
    part: int = 0
    parts: int = 1

    @property
    def coordinating(self) -> bool:
        """The sender coordinates its partition: it proposes the views it carries."""
        return self.coordinator == self.node


# -- encoding ------------------------------------------------------------------------------


def _name_bytes(value: str, what: str) -> bytes:
    try:
        raw = value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise HeartbeatError(f"{what}: not encodable as UTF-8 ({exc.reason})") from None
    if not raw:
        raise HeartbeatError(f"{what}: empty name")
    if len(raw) > MAX_NAME:
        raise HeartbeatError(f"{what}: {len(raw)} bytes of UTF-8, the limit is {MAX_NAME}")
    return bytes((len(raw),)) + raw


def varint(value: int, what: str = "varint") -> bytes:
    """``value`` as unsigned LEB128."""
    if not 0 <= value <= MAX_U64:
        raise HeartbeatError(f"{what}: {value} is not an unsigned 64-bit value")
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _claim_bytes(group: str, claim: Claim) -> bytes:
    if not isinstance(claim.state, ClaimState):
        raise HeartbeatError(f"claims[{group!r}].state: {claim.state!r} is not a ClaimState")
    return (
        _name_bytes(group, f"claims[{group!r}]")
        + bytes((claim.state,))
        + varint(claim.owner_epoch, f"claims[{group!r}].owner_epoch")
    )


def _move_bytes(group: str, target: str) -> bytes:
    return _name_bytes(group, f"moves[{group!r}]") + _name_bytes(target, f"moves[{group!r}]")


def _fixed_body(hb: Heartbeat) -> bytes:
    """The names and members: the part every datagram of one heartbeat repeats."""
    if len(set(hb.members)) != len(hb.members):
        raise HeartbeatError("members: a name appears twice")
    if len(hb.members) > 255:
        raise HeartbeatError(f"members: {len(hb.members)} names, the limit is 255")
    witness = b"\x00" if hb.witness is None else _name_bytes(hb.witness, "witness")
    return b"".join(
        [
            _name_bytes(hb.cluster, "cluster"),
            _name_bytes(hb.node, "node"),
            _name_bytes(hb.coordinator, "coordinator"),
            witness,
            *(_name_bytes(name, "members") for name in hb.members),
        ]
    )


def _header(hb: Heartbeat, length: int) -> bytes:
    for what, value in (
        ("incarnation", hb.incarnation),
        ("sequence", hb.sequence),
        ("epoch", hb.epoch),
    ):
        if not 0 <= value <= MAX_U64:
            raise HeartbeatError(f"{what}: {value} is not an unsigned 64-bit value")
    if not 1 <= hb.parts <= MAX_PARTS or not 0 <= hb.part < hb.parts:
        raise HeartbeatError(f"part: {hb.part} of {hb.parts} parts")
    if len(hb.claims) > 0xFFFF or len(hb.moves) > 0xFFFF:
        raise HeartbeatError("claims: more than 65535 in one datagram")
    flags = HeartbeatFlags(0)
    if hb.paused:
        flags |= HeartbeatFlags.PAUSED
    if hb.quorum:
        flags |= HeartbeatFlags.QUORUM
    return _HEADER.pack(
        MAGIC,
        VERSION,
        flags,
        length,
        hb.incarnation,
        hb.sequence,
        hb.epoch,
        hb.part,
        hb.parts,
        len(hb.claims),
        len(hb.moves),
        len(hb.members),
    )


def encode(hb: Heartbeat) -> bytes:
    """One datagram; ``HeartbeatError`` if a field is invalid or it exceeds ``MAX_DATAGRAM``
    (``split`` first when the claims may be many)."""
    body = b"".join(
        [
            _fixed_body(hb),
            *(_claim_bytes(group, claim) for group, claim in hb.claims.items()),
            *(_move_bytes(group, target) for group, target in hb.moves.items()),
        ]
    )
    length = HEADER_SIZE + len(body)
    if length > MAX_DATAGRAM:
        raise HeartbeatError(
            f"length: {length} bytes, over the {MAX_DATAGRAM}-byte datagram: split() it"
        )
    return _header(hb, length) + body


def split(hb: Heartbeat, limit: int = MAX_DATAGRAM) -> list[Heartbeat]:
    """``hb`` as parts that each encode to at most ``limit`` bytes: every part repeats the
    header, names and members and carries some of the claims and move requests."""
    fixed = HEADER_SIZE + len(_fixed_body(hb))
    items: list[tuple[int, str, Claim | str]] = [
        (len(_claim_bytes(group, claim)), group, claim) for group, claim in hb.claims.items()
    ]
    items += [
        (len(_move_bytes(group, target)), group, target) for group, target in hb.moves.items()
    ]
    chunks: list[tuple[dict[str, Claim], dict[str, str]]] = [({}, {})]
    size = fixed
    for item_size, group, value in items:
        if fixed + item_size > limit:
            raise HeartbeatError(
                f"claims[{group!r}]: does not fit a {limit}-byte datagram beside the "
                f"{fixed} bytes of header, names and members"
            )
        claims, moves = chunks[-1]
        if size + item_size > limit or len(claims) + len(moves) >= 0xFFFF:
            chunks.append(({}, {}))
            claims, moves = chunks[-1]
            size = fixed
        if isinstance(value, Claim):
            claims[group] = value
        else:
            moves[group] = value
        size += item_size
    if len(chunks) > MAX_PARTS:
        raise HeartbeatError(f"claims: {len(chunks)} parts needed, the limit is {MAX_PARTS}")
    return [
        replace(hb, claims=claims, moves=moves, part=index, parts=len(chunks))
        for index, (claims, moves) in enumerate(chunks)
    ]


# -- decoding ------------------------------------------------------------------------------


class _Reader:
    __slots__ = ("data", "offset")

    def __init__(self, data: bytes, offset: int) -> None:
        self.data = data
        self.offset = offset

    def take(self, size: int, what: str) -> bytes:
        end = self.offset + size
        if end > len(self.data):
            raise HeartbeatError(f"{what}: truncated at byte {len(self.data)}")
        chunk = self.data[self.offset : end]
        self.offset = end
        return chunk

    def byte(self, what: str) -> int:
        return self.take(1, what)[0]

    def name(self, what: str, optional: bool = False) -> str | None:
        size = self.byte(what)
        if size == 0:
            if optional:
                return None
            raise HeartbeatError(f"{what}: empty name")
        raw = self.take(size, what)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise HeartbeatError(f"{what}: bad UTF-8") from None

    def required_name(self, what: str) -> str:
        name = self.name(what)
        assert name is not None  # only optional names may be absent
        return name

    def varint(self, what: str) -> int:
        value = 0
        for index in range(10):
            byte = self.byte(what)
            value |= (byte & 0x7F) << (7 * index)
            if not byte & 0x80:
                if index and byte == 0:
                    raise HeartbeatError(f"{what}: varint not in its shortest form")
                if value > MAX_U64:
                    raise HeartbeatError(f"{what}: varint over 64 bits")
                return value
        raise HeartbeatError(f"{what}: varint longer than 10 bytes")


def _unique(pairs: Iterable[tuple[str, object]], what: str) -> None:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise HeartbeatError(f"{what}: {key!r} appears twice")
        seen.add(key)


def decode(data: bytes) -> Heartbeat:
    """One datagram; ``HeartbeatError`` (naming the field) for anything else."""
    data = bytes(data)
    if len(data) > MAX_DATAGRAM:
        raise HeartbeatError(f"length: {len(data)} bytes, over the {MAX_DATAGRAM}-byte limit")
    if len(data) < HEADER_SIZE:
        raise HeartbeatError(f"header: truncated, {len(data)} of {HEADER_SIZE} bytes")
    (
        magic,
        version,
        flags,
        length,
        incarnation,
        sequence,
        epoch,
        part,
        parts,
        n_claims,
        n_moves,
        n_members,
    ) = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise HeartbeatError(f"magic: {magic!r}, not {MAGIC!r}")
    if version != VERSION:
        raise HeartbeatError(f"version: {version} is not supported (only {VERSION})")
    if flags & ~_KNOWN_FLAGS:
        raise HeartbeatError(f"flags: reserved bits set ({flags:#04x})")
    if length != len(data):
        raise HeartbeatError(f"length: the header says {length}, the datagram has {len(data)}")
    if parts == 0 or part >= parts:
        raise HeartbeatError(f"part: {part} of {parts} parts")
    reader = _Reader(data, HEADER_SIZE)
    cluster = reader.required_name("cluster")
    node = reader.required_name("node")
    coordinator = reader.required_name("coordinator")
    witness = reader.name("witness", optional=True)
    members = tuple(reader.required_name("members") for _ in range(n_members))
    if len(set(members)) != len(members):
        raise HeartbeatError("members: a name appears twice")
    claim_list: list[tuple[str, Claim]] = []
    for _ in range(n_claims):
        group = reader.required_name("claims")
        code = reader.byte("claims")
        try:
            state = ClaimState(code)
        except ValueError:
            raise HeartbeatError(f"claims[{group!r}].state: unknown code {code}") from None
        claim_list.append((group, Claim(state, reader.varint(f"claims[{group!r}].owner_epoch"))))
    _unique(claim_list, "claims")
    move_list = [
        (reader.required_name("moves"), reader.required_name("moves")) for _ in range(n_moves)
    ]
    _unique(move_list, "moves")
    if reader.offset != len(data):
        raise HeartbeatError(f"length: {len(data) - reader.offset} bytes after the last field")
    return Heartbeat(
        cluster=cluster,
        node=node,
        incarnation=incarnation,
        sequence=sequence,
        epoch=epoch,
        members=members,
        coordinator=coordinator,
        paused=bool(flags & HeartbeatFlags.PAUSED),
        quorum=bool(flags & HeartbeatFlags.QUORUM),
        witness=witness,
        claims=dict(claim_list),
        moves=dict(move_list),
        part=part,
        parts=parts,
    )
