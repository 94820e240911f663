"""The messages between a target's coordinator and its worker processes, and their codec.

With ``sanstack target serve --workers N`` the started process is the coordinator: it
listens, hands each accepted connection to a worker, and keeps the state every worker must
agree on (persistent and SPC-2 reservations, ALUA states, which worker holds which I_T
nexus). The data path never crosses processes; only the commands that change shared state
do (``Forward``/``Reply``), and the coordinator pushes the new state to every worker
(``Sync``) and waits for every ``Ack`` before it answers.

A frame is a 4-byte big-endian length and a JSON object (sorted keys, no spaces, so a
message always encodes to the same bytes); ``"type"`` names the message. Bytes travel as
hex, an I_T nexus as ``[initiator, isid, target, tpgt, relative port]``. Anything else is a
``WorkerProtocolError``: a frame longer than ``MAX_FRAME``, bad JSON, an unknown type, a
missing or mistyped field.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final

from sanstack.scsi.command import Nexus
from sanstack.target.workers_fields import (
    AbortSets,
    AluaGroupState,
    LunState,
    PortalAddress,
    ResetUnits,
    UnitAttentionFor,
    WorkerProtocolError,
    field_of,
    hex_field,
    list_field,
    nexus_field,
    nexus_to_json,
    objects_field,
)

__all__ = [
    "MAX_FRAME",
    "AbortSets",
    "Ack",
    "AluaGroupState",
    "ConnectionEnded",
    "DropConnections",
    "Forward",
    "FrameReader",
    "Handoff",
    "Hello",
    "ListSessions",
    "LunState",
    "Message",
    "PortalAddress",
    "Ready",
    "Reinstate",
    "Reply",
    "Reset",
    "ResetUnits",
    "SessionDown",
    "SessionUp",
    "Sessions",
    "Stop",
    "Sync",
    "UnitAttentionFor",
    "WorkerProtocolError",
    "decode",
    "encode",
]

_LENGTH: Final = struct.Struct(">I")
# A READ FULL STATUS of 4096 registrations is well under a megabyte of JSON.
MAX_FRAME: Final = 16 << 20


# -- messages ----------------------------------------------------------------------------------


class Message:
    """A message of either direction; ``kind`` is its ``"type"``."""

    __slots__ = ()
    kind: ClassVar[str]

    def fields(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def parse(cls, obj: dict[str, Any]) -> Message:
        raise NotImplementedError


# Coordinator to worker.


@dataclass(frozen=True, slots=True)
class Hello(Message):
    """The worker's first message: who it is, the bound portals and the shared state now."""

    kind: ClassVar[str] = "hello"
    index: int
    portals: tuple[PortalAddress, ...]
    luns: tuple[LunState, ...]
    alua: tuple[AluaGroupState, ...]

    def fields(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "portals": [p.to_json() for p in self.portals],
            "luns": [s.to_json() for s in self.luns],
            "alua": [a.to_json() for a in self.alua],
        }

    @classmethod
    def parse(cls, obj: dict[str, Any]) -> Hello:
        return cls(
            field_of(obj, "index", int),
            tuple(objects_field(obj, "portals", PortalAddress.from_json)),
            tuple(objects_field(obj, "luns", LunState.from_json)),
            tuple(objects_field(obj, "alua", AluaGroupState.from_json)),
        )


@dataclass(frozen=True, slots=True)
class Sync(Message):
    """New shared state and what a change established; the worker applies it, carries out
    the aborts, then acks ``seq``."""

    kind: ClassVar[str] = "sync"
    seq: int
    luns: tuple[LunState, ...] = ()
    alua: tuple[AluaGroupState, ...] = ()
    unit_attentions: tuple[UnitAttentionFor, ...] = ()
    aborts: tuple[AbortSets, ...] = ()
    resets: tuple[ResetUnits, ...] = ()

    def fields(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "luns": [s.to_json() for s in self.luns],
            "alua": [a.to_json() for a in self.alua],
            "unit_attentions": [u.to_json() for u in self.unit_attentions],
            "aborts": [a.to_json() for a in self.aborts],
            "resets": [r.to_json() for r in self.resets],
        }

    @classmethod
    def parse(cls, obj: dict[str, Any]) -> Sync:
        return cls(
            field_of(obj, "seq", int),
            tuple(objects_field(obj, "luns", LunState.from_json)),
            tuple(objects_field(obj, "alua", AluaGroupState.from_json)),
            tuple(objects_field(obj, "unit_attentions", UnitAttentionFor.from_json)),
            tuple(objects_field(obj, "aborts", AbortSets.from_json)),
            tuple(objects_field(obj, "resets", ResetUnits.from_json)),
        )


@dataclass(frozen=True, slots=True)
class Reply(Message):
    """The outcome of a forwarded command."""

    kind: ClassVar[str] = "reply"
    request: int
    status: int
    data: bytes = b""
    sense: bytes = b""
    data_out_used: int | None = None

    def fields(self) -> dict[str, Any]:
        return {
            "request": self.request,
            "status": self.status,
            "data": self.data.hex(),
            "sense": self.sense.hex(),
            "data_out_used": self.data_out_used,
        }

    @classmethod
    def parse(cls, obj: dict[str, Any]) -> Reply:
        used = obj.get("data_out_used")
        return cls(
            field_of(obj, "request", int),
            field_of(obj, "status", int),
            hex_field(obj, "data"),
            hex_field(obj, "sense"),
            None if used is None else field_of(obj, "data_out_used", int),
        )


@dataclass(frozen=True, slots=True)
class Reinstate(Message):
    """A login in another worker took over this nexus: close its session here."""

    kind: ClassVar[str] = "reinstate"
    nexus: Nexus

    def fields(self) -> dict[str, Any]:
        return {"nexus": nexus_to_json(self.nexus)}

    @classmethod
    def parse(cls, obj: dict[str, Any]) -> Reinstate:
        return cls(nexus_field(obj, "nexus"))


@dataclass(frozen=True, slots=True)
class DropConnections(Message):
    """A portal group went down: drop its sessions and the discovery sessions on its
    portals (``host:port`` strings)."""

    kind: ClassVar[str] = "drop"
    target: str
    tag: int
    portals: tuple[str, ...]

    def fields(self) -> dict[str, Any]:
        return {"target": self.target, "tag": self.tag, "portals": list(self.portals)}

    @classmethod
    def parse(cls, obj: dict[str, Any]) -> DropConnections:
        portals = list_field(obj, "portals")
        if not all(isinstance(p, str) for p in portals):
            raise WorkerProtocolError("portals: expected strings")
        return cls(field_of(obj, "target", str), field_of(obj, "tag", int), tuple(portals))


@dataclass(frozen=True, slots=True)
class ListSessions(Message):
    kind: ClassVar[str] = "list-sessions"
    request: int

    def fields(self) -> dict[str, Any]:
        return {"request": self.request}

    @classmethod
    def parse(cls, obj: dict[str, Any]) -> ListSessions:
        return cls(field_of(obj, "request", int))


@dataclass(frozen=True, slots=True)
class Stop(Message):
    """Shut down: let commands in flight finish within ``grace`` seconds, then exit."""

    kind: ClassVar[str] = "stop"
    grace: float

    def fields(self) -> dict[str, Any]:
        return {"grace": self.grace}

    @classmethod
    def parse(cls, obj: dict[str, Any]) -> Stop:
        grace = obj.get("grace")
        if not isinstance(grace, (int, float)) or isinstance(grace, bool) or grace < 0:
            raise WorkerProtocolError(f"grace: expected seconds, got {grace!r}")
        return cls(float(grace))


@dataclass(frozen=True, slots=True)
class Handoff(Message):
    """An accepted connection (its socket rides along as SCM_RIGHTS) and its portal."""

    kind: ClassVar[str] = "handoff"
    connection: int
    host: str
    port: int

    def fields(self) -> dict[str, Any]:
        return {"connection": self.connection, "host": self.host, "port": self.port}

    @classmethod
    def parse(cls, obj: dict[str, Any]) -> Handoff:
        return cls(
            field_of(obj, "connection", int), field_of(obj, "host", str), field_of(obj, "port", int)
        )


# Worker to coordinator.


@dataclass(frozen=True, slots=True)
class Ready(Message):
    kind: ClassVar[str] = "ready"
    index: int
    pid: int

    def fields(self) -> dict[str, Any]:
        return {"index": self.index, "pid": self.pid}

    @classmethod
    def parse(cls, obj: dict[str, Any]) -> Ready:
        return cls(field_of(obj, "index", int), field_of(obj, "pid", int))


@dataclass(frozen=True, slots=True)
class Forward(Message):
    """A command that reads or changes shared state, for the coordinator to run."""

    kind: ClassVar[str] = "forward"
    request: int
    target: str
    lun: int
    nexus: Nexus
    tag: int
    cdb: bytes
    data_out: bytes = b""
    data_in_length: int = 0

    def fields(self) -> dict[str, Any]:
        return {
            "request": self.request,
            "target": self.target,
            "lun": self.lun,
            "nexus": nexus_to_json(self.nexus),
            "tag": self.tag,
            "cdb": self.cdb.hex(),
            "data_out": self.data_out.hex(),
            "data_in_length": self.data_in_length,
        }

    @classmethod
    def parse(cls, obj: dict[str, Any]) -> Forward:
        return cls(
            field_of(obj, "request", int),
            field_of(obj, "target", str),
            field_of(obj, "lun", int),
            nexus_field(obj, "nexus"),
            field_of(obj, "tag", int),
            hex_field(obj, "cdb"),
            hex_field(obj, "data_out"),
            field_of(obj, "data_in_length", int),
        )


@dataclass(frozen=True, slots=True)
class Reset(Message):
    """A reset task management function in a worker: the coordinator resets its units
    (the SPC-2 reservation goes) and has every other worker abort its tasks, then
    ``Reply``s; the worker then carries out the function on its own tasks."""

    kind: ClassVar[str] = "reset"
    request: int
    reset: ResetUnits

    def fields(self) -> dict[str, Any]:
        return {"request": self.request, "reset": self.reset.to_json()}

    @classmethod
    def parse(cls, obj: dict[str, Any]) -> Reset:
        return cls(
            field_of(obj, "request", int), ResetUnits.from_json(field_of(obj, "reset", dict))
        )


@dataclass(frozen=True, slots=True)
class Ack(Message):
    kind: ClassVar[str] = "ack"
    seq: int

    def fields(self) -> dict[str, Any]:
        return {"seq": self.seq}

    @classmethod
    def parse(cls, obj: dict[str, Any]) -> Ack:
        return cls(field_of(obj, "seq", int))


@dataclass(frozen=True, slots=True)
class SessionUp(Message):
    """A login on ``connection`` made ``nexus`` live in this worker."""

    kind: ClassVar[str] = "session-up"
    connection: int
    nexus: Nexus

    def fields(self) -> dict[str, Any]:
        return {"connection": self.connection, "nexus": nexus_to_json(self.nexus)}

    @classmethod
    def parse(cls, obj: dict[str, Any]) -> SessionUp:
        return cls(field_of(obj, "connection", int), nexus_field(obj, "nexus"))


@dataclass(frozen=True, slots=True)
class SessionDown(Message):
    kind: ClassVar[str] = "session-down"
    connection: int
    nexus: Nexus

    def fields(self) -> dict[str, Any]:
        return {"connection": self.connection, "nexus": nexus_to_json(self.nexus)}

    @classmethod
    def parse(cls, obj: dict[str, Any]) -> SessionDown:
        return cls(field_of(obj, "connection", int), nexus_field(obj, "nexus"))


@dataclass(frozen=True, slots=True)
class ConnectionEnded(Message):
    kind: ClassVar[str] = "connection-ended"
    connection: int

    def fields(self) -> dict[str, Any]:
        return {"connection": self.connection}

    @classmethod
    def parse(cls, obj: dict[str, Any]) -> ConnectionEnded:
        return cls(field_of(obj, "connection", int))


@dataclass(frozen=True, slots=True)
class Sessions(Message):
    """The answer to ``ListSessions``: the control API's session rows of this worker."""

    kind: ClassVar[str] = "sessions"
    request: int
    sessions: tuple[dict[str, Any], ...] = field(default=())

    def fields(self) -> dict[str, Any]:
        return {"request": self.request, "sessions": list(self.sessions)}

    @classmethod
    def parse(cls, obj: dict[str, Any]) -> Sessions:
        rows = list_field(obj, "sessions")
        if not all(isinstance(row, dict) for row in rows):
            raise WorkerProtocolError("sessions: expected objects")
        return cls(field_of(obj, "request", int), tuple(rows))


_KINDS: Final[dict[str, type[Message]]] = {
    cls.kind: cls
    for cls in (
        Hello,
        Sync,
        Reply,
        Reinstate,
        DropConnections,
        ListSessions,
        Stop,
        Handoff,
        Ready,
        Forward,
        Reset,
        Ack,
        SessionUp,
        SessionDown,
        ConnectionEnded,
        Sessions,
    )
}


# -- frames ------------------------------------------------------------------------------------


def encode_body(message: Message) -> bytes:
    """The JSON of one message, without the length (a datagram's payload)."""
    document = {"type": message.kind, **message.fields()}
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def encode(message: Message) -> bytes:
    """One frame: the length, then the JSON."""
    body = encode_body(message)
    if len(body) > MAX_FRAME:
        raise WorkerProtocolError(f"{message.kind}: {len(body)} bytes is over {MAX_FRAME}")
    return _LENGTH.pack(len(body)) + body


def decode(body: bytes) -> Message:
    """One message from its JSON (a frame without its length)."""
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise WorkerProtocolError("frame: not JSON") from None
    if not isinstance(document, dict):
        raise WorkerProtocolError("frame: not a JSON object")
    kind = _KINDS.get(document.get("type"))  # type: ignore[arg-type]
    if kind is None:
        raise WorkerProtocolError(f"type: unknown message {document.get('type')!r}")
    return kind.parse(document)


class FrameReader:
    """Bytes of a stream in, whole messages out; holds at most one frame's bytes."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Message]:
        self._buffer += data
        messages: list[Message] = []
        while len(self._buffer) >= _LENGTH.size:
            (length,) = _LENGTH.unpack_from(self._buffer)
            if length > MAX_FRAME:
                raise WorkerProtocolError(f"frame: {length} bytes is over {MAX_FRAME}")
            end = _LENGTH.size + length
            if len(self._buffer) < end:
                break
            body = bytes(self._buffer[_LENGTH.size : end])
            del self._buffer[:end]
            messages.append(decode(body))
        return messages
