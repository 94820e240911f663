"""What the NBD server connection reports and what it knows of an export.

``ExportInfo`` is the handshake's view of one export; the events are what
``NBDServerConnection.next_event`` returns (doc/proto.md of the NetworkBlockDevice/nbd
project names every message they stand for).
"""

from __future__ import annotations

from dataclasses import dataclass

from sanstack.nbd.codes import (
    MAX_MINIMUM_BLOCK_SIZE,
    MAX_PAYLOAD_BYTES,
    NBDCmd,
    NBDCmdFlag,
    NBDError,
    NBDTransmissionFlag,
)


def _power_of_two(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


@dataclass(frozen=True, slots=True)
class ExportInfo:
    """What the handshake says about one export and what requests must respect.

    ``block_size`` is advertised as the minimum block size ("Size constraints"): requests
    whose offset or length is not a multiple of it fail with ``NBD_EINVAL``.
    """

    size: int
    block_size: int = 512
    read_only: bool = False
    description: str = ""
    preferred_block_size: int | None = None
    max_payload: int = MAX_PAYLOAD_BYTES
    can_flush: bool = True
    can_fua: bool = True
    can_trim: bool = True
    can_write_zeroes: bool = True
    base_allocation: bool = True

    def __post_init__(self) -> None:
        bs = self.block_size
        if not _power_of_two(bs) or bs > MAX_MINIMUM_BLOCK_SIZE:
            raise ValueError(f"block size {bs} is not a power of two up to 65536")
        if self.size < 0 or self.size % bs:
            raise ValueError(f"export size {self.size} is not a multiple of {bs}")
        preferred = self.preferred
        if not _power_of_two(preferred) or preferred < max(bs, 512):
            raise ValueError(f"preferred block size {preferred} is not a power of two >= 512")
        if self.max_payload < preferred or self.max_payload % bs or self.max_payload >= 1 << 32:
            raise ValueError(f"max payload {self.max_payload} is not a multiple of {bs}")

    @property
    def preferred(self) -> int:
        return self.preferred_block_size or max(4096, self.block_size)

    def transmission_flags(self, structured: bool) -> NBDTransmissionFlag:
        """ "Transmission flags": set only for what this export serves."""
        f = NBDTransmissionFlag.NBD_FLAG_HAS_FLAGS
        if self.read_only:
            f |= NBDTransmissionFlag.NBD_FLAG_READ_ONLY
        if self.can_flush:
            f |= NBDTransmissionFlag.NBD_FLAG_SEND_FLUSH
        if self.can_fua:
            f |= NBDTransmissionFlag.NBD_FLAG_SEND_FUA
        if not self.read_only and self.can_trim:
            f |= NBDTransmissionFlag.NBD_FLAG_SEND_TRIM
        if not self.read_only and self.can_write_zeroes:
            f |= NBDTransmissionFlag.NBD_FLAG_SEND_WRITE_ZEROES
        if structured:
            # Every READ is answered with one content chunk, so "don't fragment" is free;
            # the flag MUST stay clear without structured replies.
            f |= NBDTransmissionFlag.NBD_FLAG_SEND_DF
        return f


# -- events ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExportChosen:
    """Option haggling ended (``NBD_OPT_GO`` or ``NBD_OPT_EXPORT_NAME``); ``name`` is the
    export's own name even when the client asked for the default export ``""``."""

    name: str
    export: ExportInfo
    structured_replies: bool
    meta_contexts: tuple[str, ...]


# Not frozen: one per request, and a frozen __init__ costs twice as much.
@dataclass(slots=True, init=False)
class Request:
    """A valid request the caller must answer with exactly one ``reply_*`` call."""

    cookie: int
    command: NBDCmd
    offset: int
    length: int
    flags: NBDCmdFlag
    data: bytes = b""

    # Written out (the dataclass makes none, init=False): compiled by mypyc, a generated
    # __init__ stays interpreted Python, and this one is made for every request.
    def __init__(  # noqa: PLR0917 - the dataclass's own signature
        self,
        cookie: int,
        command: NBDCmd,
        offset: int,
        length: int,
        flags: NBDCmdFlag,
        data: bytes = b"",
    ) -> None:
        self.cookie = cookie
        self.command = command
        self.offset = offset
        self.length = length
        self.flags = flags
        self.data = data

    @property
    def fua(self) -> bool:
        return bool(self.flags & NBDCmdFlag.NBD_CMD_FLAG_FUA)


@dataclass(frozen=True, slots=True)
class RequestRejected:
    """A request the core already answered with ``error``; for logs and counters only."""

    cookie: int
    command: int
    error: NBDError
    reason: str


@dataclass(frozen=True, slots=True)
class Disconnect:
    """The client ended the session (``NBD_CMD_DISC``, ``NBD_OPT_ABORT`` or end of
    stream): finish requests in flight, send their replies, then close."""

    reason: str


@dataclass(frozen=True, slots=True)
class ProtocolFailure:
    """The client broke the protocol; the caller drops the connection (a hard
    disconnect, "Terminating the transmission phase")."""

    reason: str


Event = ExportChosen | Request | RequestRejected | Disconnect | ProtocolFailure
