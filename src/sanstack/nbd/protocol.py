"""NBD message codecs: every message of the fixed newstyle handshake and the transmission
phase, both ways (the server encodes what it sends and decodes what it receives; the other
direction exists for tests and tools).

Each codec is a frozen dataclass with ``encode() -> bytes`` and ``decode(data)``; ``decode``
raises ``NBDDecodeError`` for anything the protocol document (doc/proto.md of the
NetworkBlockDevice/nbd project) does not allow, never another exception. Fields that carry
an enumerated value are the enum member when known and the bare integer otherwise, so an
unknown option or command still decodes and the connection can answer it.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Final, TypeVar

from sanstack.errors import RemoteProtocolError
from sanstack.nbd.codes import (
    EXPORT_NAME_ZEROES,
    IHAVEOPT,
    MAX_STRING_BYTES,
    NBD_REP_MAGIC,
    NBD_REQUEST_MAGIC,
    NBD_SIMPLE_REPLY_MAGIC,
    NBD_STRUCTURED_REPLY_MAGIC,
    NBDMAGIC,
    NBDClientFlag,
    NBDCmd,
    NBDCmdFlag,
    NBDHandshakeFlag,
    NBDInfo,
    NBDOpt,
    NBDRep,
    NBDReplyFlag,
    NBDReplyType,
    NBDTransmissionFlag,
)


class NBDDecodeError(RemoteProtocolError):
    """Bytes that are not a valid NBD message."""


_E = TypeVar("_E", bound=IntEnum)


def known(enum: type[_E], value: int) -> _E | int:
    """The enum member for ``value``, or ``value`` itself when the enum has none."""
    try:
        return enum(value)
    except ValueError:
        return value


def encode_string(text: str) -> bytes:
    """A protocol string ("Conventions"): UTF-8, no NUL, at most 4096 bytes."""
    raw = text.encode()
    if b"\0" in raw or len(raw) > MAX_STRING_BYTES:
        raise ValueError(f"not an NBD string: {text[:40]!r}")
    return raw


def decode_string(raw: bytes | memoryview, what: str) -> str:
    raw = bytes(raw)
    if len(raw) > MAX_STRING_BYTES:
        raise NBDDecodeError(f"{what} is {len(raw)} bytes, over the 4096-byte string limit")
    if b"\0" in raw:
        raise NBDDecodeError(f"{what} contains NUL")
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise NBDDecodeError(f"{what} is not UTF-8") from None


def _exact(data: bytes | memoryview, size: int, what: str) -> None:
    if len(data) != size:
        raise NBDDecodeError(f"{what} is {len(data)} bytes, not {size}")


# -- handshake ("Newstyle negotiation", "Fixed newstyle negotiation") ------------------------

_GREETING: Final = struct.Struct(">QQH")
_U16: Final = struct.Struct(">H")
_U32: Final = struct.Struct(">I")
_OPTION_HEADER: Final = struct.Struct(">QII")
_OPTION_REPLY_HEADER: Final = struct.Struct(">QIII")
_EXPORT_NAME_REPLY: Final = struct.Struct(">QH")

# Module constants, not ClassVars of the dataclasses: compiled (mypyc), a dataclass's
# ClassVar becomes a field (mypyc/mypyc#1122).
GREETING_SIZE: Final = _GREETING.size
CLIENT_FLAGS_SIZE: Final = _U32.size
OPTION_HEADER_SIZE: Final = _OPTION_HEADER.size
OPTION_REPLY_HEADER_SIZE: Final = _OPTION_REPLY_HEADER.size

DEFAULT_HANDSHAKE_FLAGS: Final = (
    NBDHandshakeFlag.NBD_FLAG_FIXED_NEWSTYLE | NBDHandshakeFlag.NBD_FLAG_NO_ZEROES
)


@dataclass(frozen=True, slots=True)
class ServerGreeting:
    """S: 'NBDMAGIC', 'IHAVEOPT', 16 bits of handshake flags."""

    flags: int = DEFAULT_HANDSHAKE_FLAGS

    def encode(self) -> bytes:
        return _GREETING.pack(NBDMAGIC, IHAVEOPT, self.flags)

    @classmethod
    def decode(cls, data: bytes | memoryview) -> ServerGreeting:
        _exact(data, GREETING_SIZE, "server greeting")
        magic, opt_magic, flags = _GREETING.unpack(data)
        if magic != NBDMAGIC or opt_magic != IHAVEOPT:
            raise NBDDecodeError("server greeting has no NBDMAGIC/IHAVEOPT")
        return cls(NBDHandshakeFlag(flags))


@dataclass(frozen=True, slots=True)
class ClientFlags:
    """C: 32 bits of client flags ("Values" > "Client flags")."""

    flags: int

    def encode(self) -> bytes:
        return _U32.pack(self.flags)

    @classmethod
    def decode(cls, data: bytes | memoryview) -> ClientFlags:
        _exact(data, CLIENT_FLAGS_SIZE, "client flags")
        (flags,) = _U32.unpack(data)
        return cls(NBDClientFlag(flags))


@dataclass(frozen=True, slots=True)
class OptionHeader:
    """C: 'IHAVEOPT', 32 bits option, 32 bits length of the option data that follows."""

    option: int
    length: int

    def encode(self) -> bytes:
        return _OPTION_HEADER.pack(IHAVEOPT, self.option, self.length)

    @classmethod
    def decode(cls, data: bytes | memoryview) -> OptionHeader:
        _exact(data, OPTION_HEADER_SIZE, "option header")
        magic, option, length = _OPTION_HEADER.unpack(data)
        if magic != IHAVEOPT:
            raise NBDDecodeError(f"option magic {magic:#x} is not IHAVEOPT")
        return cls(known(NBDOpt, option), length)


@dataclass(frozen=True, slots=True)
class OptionRequest:
    """An option header with its data."""

    option: int
    data: bytes = b""

    def encode(self) -> bytes:
        return OptionHeader(self.option, len(self.data)).encode() + self.data

    @classmethod
    def decode(cls, data: bytes | memoryview) -> OptionRequest:
        header = OptionHeader.decode(data[:OPTION_HEADER_SIZE])
        _exact(data[OPTION_HEADER_SIZE:], header.length, "option data")
        return cls(header.option, bytes(data[OPTION_HEADER_SIZE:]))


@dataclass(frozen=True, slots=True)
class OptionReplyHeader:
    """S: magic 0x3e889045565a9, 32 bits option, 32 bits reply type, 32 bits length."""

    option: int
    reply_type: int
    length: int

    def encode(self) -> bytes:
        return _OPTION_REPLY_HEADER.pack(NBD_REP_MAGIC, self.option, self.reply_type, self.length)

    @classmethod
    def decode(cls, data: bytes | memoryview) -> OptionReplyHeader:
        _exact(data, OPTION_REPLY_HEADER_SIZE, "option reply header")
        magic, option, reply_type, length = _OPTION_REPLY_HEADER.unpack(data)
        if magic != NBD_REP_MAGIC:
            raise NBDDecodeError(f"option reply magic {magic:#x} is wrong")
        return cls(known(NBDOpt, option), known(NBDRep, reply_type), length)


@dataclass(frozen=True, slots=True)
class OptionReply:
    """An option reply header with its data."""

    option: int
    reply_type: int
    data: bytes = b""

    def encode(self) -> bytes:
        header = OptionReplyHeader(self.option, self.reply_type, len(self.data))
        return header.encode() + self.data

    @classmethod
    def decode(cls, data: bytes | memoryview) -> OptionReply:
        header = OptionReplyHeader.decode(data[:OPTION_REPLY_HEADER_SIZE])
        _exact(data[OPTION_REPLY_HEADER_SIZE:], header.length, "option reply data")
        return cls(header.option, header.reply_type, bytes(data[OPTION_REPLY_HEADER_SIZE:]))


@dataclass(frozen=True, slots=True)
class ExportNameReply:
    """S: the reply to ``NBD_OPT_EXPORT_NAME``: size, transmission flags, 124 zeroes
    unless both sides set NO_ZEROES ("Newstyle negotiation")."""

    size: int
    flags: int
    zeroes: bool = True

    def encode(self) -> bytes:
        pad = bytes(EXPORT_NAME_ZEROES) if self.zeroes else b""
        return _EXPORT_NAME_REPLY.pack(self.size, self.flags) + pad

    @classmethod
    def decode(cls, data: bytes | memoryview) -> ExportNameReply:
        if len(data) not in (_EXPORT_NAME_REPLY.size, _EXPORT_NAME_REPLY.size + 124):
            raise NBDDecodeError(f"export name reply is {len(data)} bytes, not 10 or 134")
        size, flags = _EXPORT_NAME_REPLY.unpack(data[: _EXPORT_NAME_REPLY.size])
        return cls(size, NBDTransmissionFlag(flags), len(data) > _EXPORT_NAME_REPLY.size)


# -- option data ("Option types") ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InfoRequestData:
    """The data of ``NBD_OPT_INFO`` and ``NBD_OPT_GO``: a name and information requests."""

    name: str
    requests: tuple[int, ...] = ()

    def encode(self) -> bytes:
        raw = encode_string(self.name)
        counts = _U16.pack(len(self.requests))
        items = b"".join(_U16.pack(r) for r in self.requests)
        return _U32.pack(len(raw)) + raw + counts + items

    @classmethod
    def decode(cls, data: bytes | memoryview) -> InfoRequestData:
        # "MUST be no larger than the option data length - 6"
        if len(data) < 6:
            raise NBDDecodeError("NBD_OPT_INFO/GO data is shorter than 6 bytes")
        (name_len,) = _U32.unpack(data[:4])
        if name_len > len(data) - 6:
            raise NBDDecodeError("NBD_OPT_INFO/GO name runs past the option data")
        name = decode_string(data[4 : 4 + name_len], "export name")
        at = 4 + name_len
        (count,) = _U16.unpack(data[at : at + 2])
        at += 2
        if len(data) - at != 2 * count:
            raise NBDDecodeError("NBD_OPT_INFO/GO request count disagrees with the length")
        requests = tuple(
            known(NBDInfo, _U16.unpack(data[i : i + 2])[0]) for i in range(at, len(data), 2)
        )
        return cls(name, requests)


@dataclass(frozen=True, slots=True)
class MetaContextRequestData:
    """The data of ``NBD_OPT_LIST_META_CONTEXT`` and ``NBD_OPT_SET_META_CONTEXT``."""

    export_name: str
    queries: tuple[str, ...] = ()

    def encode(self) -> bytes:
        raw = encode_string(self.export_name)
        parts = [_U32.pack(len(raw)), raw, _U32.pack(len(self.queries))]
        for query in self.queries:
            q = encode_string(query)
            parts += [_U32.pack(len(q)), q]
        return b"".join(parts)

    @classmethod
    def decode(
        cls, data: bytes | memoryview, *, max_queries: int = 1 << 16
    ) -> MetaContextRequestData:
        view = memoryview(data)
        name, at = _length_prefixed(view, 0, "export name")
        if len(view) - at < 4:
            raise NBDDecodeError("meta context data has no query count")
        (count,) = _U32.unpack(view[at : at + 4])
        at += 4
        if count > max_queries or count * 4 > len(view) - at:
            raise NBDDecodeError(f"meta context query count {count} is too large")
        queries = []
        for _ in range(count):
            query, at = _length_prefixed(view, at, "meta context query")
            queries.append(query)
        if at != len(view):
            raise NBDDecodeError("meta context data has trailing bytes")
        return cls(name, tuple(queries))


def _length_prefixed(view: memoryview, at: int, what: str) -> tuple[str, int]:
    if len(view) - at < 4:
        raise NBDDecodeError(f"{what} length is missing")
    (length,) = _U32.unpack(view[at : at + 4])
    at += 4
    if length > len(view) - at:
        raise NBDDecodeError(f"{what} runs past the option data")
    return decode_string(view[at : at + length], what), at + length


# -- option reply data ("Option reply types") -----------------------------------------------


@dataclass(frozen=True, slots=True)
class ServerReplyData:
    """``NBD_REP_SERVER``: an export name, then optional human-readable details."""

    name: str
    details: str = ""

    def encode(self) -> bytes:
        raw = encode_string(self.name)
        return _U32.pack(len(raw)) + raw + encode_string(self.details)

    @classmethod
    def decode(cls, data: bytes | memoryview) -> ServerReplyData:
        view = memoryview(data)
        if len(view) < 4:
            raise NBDDecodeError("NBD_REP_SERVER data is shorter than 4 bytes")
        (length,) = _U32.unpack(view[:4])
        if length > len(view) - 4:
            raise NBDDecodeError("NBD_REP_SERVER name runs past the reply")
        name = decode_string(view[4 : 4 + length], "export name")
        return cls(name, decode_string(view[4 + length :], "export details"))


_INFO_EXPORT: Final = struct.Struct(">HQH")
_INFO_BLOCK_SIZE: Final = struct.Struct(">HIII")


@dataclass(frozen=True, slots=True)
class InfoExport:
    """``NBD_INFO_EXPORT``: size and transmission flags (length 12)."""

    size: int
    flags: int

    def encode(self) -> bytes:
        return _INFO_EXPORT.pack(NBDInfo.NBD_INFO_EXPORT, self.size, self.flags)


@dataclass(frozen=True, slots=True)
class InfoName:
    """``NBD_INFO_NAME``: the export's canonical name."""

    name: str

    def encode(self) -> bytes:
        return _U16.pack(NBDInfo.NBD_INFO_NAME) + encode_string(self.name)


@dataclass(frozen=True, slots=True)
class InfoDescription:
    """``NBD_INFO_DESCRIPTION``: text for a human."""

    description: str

    def encode(self) -> bytes:
        return _U16.pack(NBDInfo.NBD_INFO_DESCRIPTION) + encode_string(self.description)


@dataclass(frozen=True, slots=True)
class InfoBlockSize:
    """``NBD_INFO_BLOCK_SIZE``: minimum, preferred and maximum payload size (length 14)."""

    minimum: int
    preferred: int
    maximum: int

    def encode(self) -> bytes:
        return _INFO_BLOCK_SIZE.pack(
            NBDInfo.NBD_INFO_BLOCK_SIZE, self.minimum, self.preferred, self.maximum
        )


@dataclass(frozen=True, slots=True)
class InfoUnknown:
    """An information type this codec does not know; clients MUST ignore it."""

    info_type: int
    payload: bytes

    def encode(self) -> bytes:
        return _U16.pack(self.info_type) + self.payload


Information = InfoExport | InfoName | InfoDescription | InfoBlockSize | InfoUnknown


def decode_info(data: bytes | memoryview) -> Information:
    """The data of an ``NBD_REP_INFO`` reply."""
    if len(data) < 2:
        raise NBDDecodeError("NBD_REP_INFO data is shorter than 2 bytes")
    (info_type,) = _U16.unpack(data[:2])
    if info_type == NBDInfo.NBD_INFO_EXPORT:
        _exact(data, _INFO_EXPORT.size, "NBD_INFO_EXPORT")
        _, size, flags = _INFO_EXPORT.unpack(data)
        return InfoExport(size, NBDTransmissionFlag(flags))
    if info_type == NBDInfo.NBD_INFO_NAME:
        return InfoName(decode_string(data[2:], "NBD_INFO_NAME"))
    if info_type == NBDInfo.NBD_INFO_DESCRIPTION:
        return InfoDescription(decode_string(data[2:], "NBD_INFO_DESCRIPTION"))
    if info_type == NBDInfo.NBD_INFO_BLOCK_SIZE:
        _exact(data, _INFO_BLOCK_SIZE.size, "NBD_INFO_BLOCK_SIZE")
        _, minimum, preferred, maximum = _INFO_BLOCK_SIZE.unpack(data)
        return InfoBlockSize(minimum, preferred, maximum)
    return InfoUnknown(info_type, bytes(data[2:]))


@dataclass(frozen=True, slots=True)
class MetaContextReplyData:
    """``NBD_REP_META_CONTEXT``: a context id and the context's name."""

    context_id: int
    name: str

    def encode(self) -> bytes:
        return _U32.pack(self.context_id) + encode_string(self.name)

    @classmethod
    def decode(cls, data: bytes | memoryview) -> MetaContextReplyData:
        if len(data) < 4:
            raise NBDDecodeError("NBD_REP_META_CONTEXT data is shorter than 4 bytes")
        (context_id,) = _U32.unpack(data[:4])
        return cls(context_id, decode_string(data[4:], "meta context name"))


# -- transmission ("Request message", "Simple reply message", "Structured reply chunk") ----

_REQUEST: Final = struct.Struct(">IHHQQI")
_SIMPLE_REPLY: Final = struct.Struct(">IIQ")
_STRUCTURED_HEADER: Final = struct.Struct(">IHHQI")
_OFFSET: Final = struct.Struct(">Q")
_OFFSET_HOLE: Final = struct.Struct(">QI")
_ERROR_HEAD: Final = struct.Struct(">IH")
_DESCRIPTOR: Final = struct.Struct(">II")

REQUEST_HEADER_SIZE: Final = _REQUEST.size
SIMPLE_REPLY_HEADER_SIZE: Final = _SIMPLE_REPLY.size
STRUCTURED_REPLY_HEADER_SIZE: Final = _STRUCTURED_HEADER.size


def request_struct() -> struct.Struct:
    """The request header's layout (magic, flags, type, cookie, offset, length), for a
    caller that unpacks it where it lies and checks the magic itself."""
    return _REQUEST


def unpack_request(buf: bytes | bytearray | memoryview, pos: int) -> tuple[int, int, int, int, int]:
    """``(flags, command, cookie, offset, length)`` of the request header at ``buf[pos:]``
    (``RequestHeader.decode``'s fields as plain ints, without building the header)."""
    magic, flags, command, cookie, offset, length = _REQUEST.unpack_from(buf, pos)
    if magic != NBD_REQUEST_MAGIC:
        raise NBDDecodeError(f"request magic {magic:#010x} is not NBD_REQUEST_MAGIC")
    return flags, command, cookie, offset, length


@dataclass(frozen=True, slots=True)
class RequestHeader:
    """C: magic 0x25609513, command flags, type, cookie, offset, length (28 bytes); a
    ``NBD_CMD_WRITE`` is followed by ``length`` bytes of data."""

    flags: int
    command: int
    cookie: int
    offset: int
    length: int

    def encode(self) -> bytes:
        return _REQUEST.pack(
            NBD_REQUEST_MAGIC, self.flags, self.command, self.cookie, self.offset, self.length
        )

    @classmethod
    def decode(cls, data: bytes | memoryview) -> RequestHeader:
        _exact(data, REQUEST_HEADER_SIZE, "request header")
        magic, flags, command, cookie, offset, length = _REQUEST.unpack(data)
        if magic != NBD_REQUEST_MAGIC:
            raise NBDDecodeError(f"request magic {magic:#010x} is not NBD_REQUEST_MAGIC")
        return cls(NBDCmdFlag(flags), known(NBDCmd, command), cookie, offset, length)


@dataclass(frozen=True, slots=True)
class SimpleReplyHeader:
    """S: magic 0x67446698, error, cookie (16 bytes); a successful ``NBD_CMD_READ`` is
    followed by its data."""

    error: int
    cookie: int

    def encode(self) -> bytes:
        return _SIMPLE_REPLY.pack(NBD_SIMPLE_REPLY_MAGIC, self.error, self.cookie)

    @classmethod
    def decode(cls, data: bytes | memoryview) -> SimpleReplyHeader:
        _exact(data, SIMPLE_REPLY_HEADER_SIZE, "simple reply")
        magic, error, cookie = _SIMPLE_REPLY.unpack(data)
        if magic != NBD_SIMPLE_REPLY_MAGIC:
            raise NBDDecodeError(f"simple reply magic {magic:#010x} is wrong")
        return cls(error, cookie)


@dataclass(frozen=True, slots=True)
class StructuredReplyHeader:
    """S: magic 0x668e33ef, flags, type, cookie, payload length (20 bytes)."""

    flags: int
    reply_type: int
    cookie: int
    length: int

    def encode(self) -> bytes:
        return _STRUCTURED_HEADER.pack(
            NBD_STRUCTURED_REPLY_MAGIC, self.flags, self.reply_type, self.cookie, self.length
        )

    @classmethod
    def decode(cls, data: bytes | memoryview) -> StructuredReplyHeader:
        _exact(data, STRUCTURED_REPLY_HEADER_SIZE, "structured reply header")
        magic, flags, reply_type, cookie, length = _STRUCTURED_HEADER.unpack(data)
        if magic != NBD_STRUCTURED_REPLY_MAGIC:
            raise NBDDecodeError(f"structured reply magic {magic:#010x} is wrong")
        return cls(NBDReplyFlag(flags), known(NBDReplyType, reply_type), cookie, length)


@dataclass(frozen=True, slots=True)
class OffsetData:
    """``NBD_REPLY_TYPE_OFFSET_DATA``: 64 bits offset, then at least one byte of data."""

    offset: int
    data: bytes

    def encode(self) -> bytes:
        return _OFFSET.pack(self.offset) + self.data

    @classmethod
    def decode(cls, data: bytes | memoryview) -> OffsetData:
        if len(data) < 9:
            raise NBDDecodeError("NBD_REPLY_TYPE_OFFSET_DATA payload is shorter than 9 bytes")
        return cls(_OFFSET.unpack(data[:8])[0], bytes(data[8:]))


@dataclass(frozen=True, slots=True)
class OffsetHole:
    """``NBD_REPLY_TYPE_OFFSET_HOLE``: 64 bits offset, 32 bits nonzero hole size."""

    offset: int
    size: int

    def encode(self) -> bytes:
        return _OFFSET_HOLE.pack(self.offset, self.size)

    @classmethod
    def decode(cls, data: bytes | memoryview) -> OffsetHole:
        _exact(data, _OFFSET_HOLE.size, "NBD_REPLY_TYPE_OFFSET_HOLE payload")
        offset, size = _OFFSET_HOLE.unpack(data)
        if size == 0:
            raise NBDDecodeError("NBD_REPLY_TYPE_OFFSET_HOLE has a zero hole size")
        return cls(offset, size)


@dataclass(frozen=True, slots=True)
class BlockDescriptor:
    """One extent of a block status chunk: a nonzero length and its status flags."""

    length: int
    flags: int


@dataclass(frozen=True, slots=True)
class BlockStatusPayload:
    """``NBD_REPLY_TYPE_BLOCK_STATUS``: a context id and one or more descriptors."""

    context_id: int
    descriptors: tuple[BlockDescriptor, ...] = field(default=())

    def encode(self) -> bytes:
        return _U32.pack(self.context_id) + b"".join(
            _DESCRIPTOR.pack(d.length, d.flags) for d in self.descriptors
        )

    @classmethod
    def decode(cls, data: bytes | memoryview) -> BlockStatusPayload:
        # "length MUST be 4 + (a positive integer multiple of 8)"
        if len(data) < 12 or (len(data) - 4) % 8:
            raise NBDDecodeError(f"block status payload of {len(data)} bytes is malformed")
        descriptors = tuple(
            BlockDescriptor(*_DESCRIPTOR.unpack(data[i : i + 8])) for i in range(4, len(data), 8)
        )
        if any(d.length == 0 for d in descriptors):
            raise NBDDecodeError("block status descriptor of length zero")
        return cls(_U32.unpack(data[:4])[0], descriptors)


def _truncate_message(message: str) -> bytes:
    raw = message.replace("\0", " ").encode()[:MAX_STRING_BYTES]
    return raw.decode(errors="ignore").encode()  # never split a UTF-8 sequence


@dataclass(frozen=True, slots=True)
class ErrorPayload:
    """``NBD_REPLY_TYPE_ERROR``: nonzero error, 16 bits message length, message."""

    error: int
    message: str = ""

    def encode(self) -> bytes:
        raw = _truncate_message(self.message)
        return _ERROR_HEAD.pack(self.error, len(raw)) + raw

    @classmethod
    def decode(cls, data: bytes | memoryview) -> ErrorPayload:
        error, message, rest = _decode_error_head(data)
        if rest:
            raise NBDDecodeError("NBD_REPLY_TYPE_ERROR payload has trailing bytes")
        return cls(error, message)


@dataclass(frozen=True, slots=True)
class ErrorOffsetPayload:
    """``NBD_REPLY_TYPE_ERROR_OFFSET``: as ``ErrorPayload``, then the 64-bit offset."""

    error: int
    message: str
    offset: int

    def encode(self) -> bytes:
        raw = _truncate_message(self.message)
        return _ERROR_HEAD.pack(self.error, len(raw)) + raw + _OFFSET.pack(self.offset)

    @classmethod
    def decode(cls, data: bytes | memoryview) -> ErrorOffsetPayload:
        error, message, rest = _decode_error_head(data)
        _exact(rest, 8, "NBD_REPLY_TYPE_ERROR_OFFSET offset")
        return cls(error, message, _OFFSET.unpack(rest)[0])


def _decode_error_head(data: bytes | memoryview) -> tuple[int, str, memoryview]:
    view = memoryview(data)
    if len(view) < _ERROR_HEAD.size:
        raise NBDDecodeError("error chunk payload is shorter than 6 bytes")
    error, length = _ERROR_HEAD.unpack(view[:6])
    if error == 0:
        raise NBDDecodeError("error chunk with error 0")
    if length > len(view) - 6:
        raise NBDDecodeError("error chunk message runs past the payload")
    return error, decode_string(view[6 : 6 + length], "error message"), view[6 + length :]


def encode_chunk(
    cookie: int, reply_type: int, payload: bytes | memoryview = b"", *, done: bool = True
) -> bytes:
    """A whole structured reply chunk; big payloads go through ``StructuredReplyHeader``."""
    flags = NBDReplyFlag.NBD_REPLY_FLAG_DONE if done else 0
    return StructuredReplyHeader(flags, reply_type, cookie, len(payload)).encode() + payload


_OFFSET_DATA_HEAD: Final = struct.Struct(">IHHQIQ")
_DONE: Final = int(NBDReplyFlag.NBD_REPLY_FLAG_DONE)
_OFFSET_DATA: Final = int(NBDReplyType.NBD_REPLY_TYPE_OFFSET_DATA)


def encode_offset_data_head(cookie: int, offset: int, data_length: int) -> bytes:
    """What precedes the data of a final ``NBD_REPLY_TYPE_OFFSET_DATA`` chunk (its header
    and offset), packed at once: the data itself follows unjoined."""
    return _OFFSET_DATA_HEAD.pack(
        NBD_STRUCTURED_REPLY_MAGIC, _DONE, _OFFSET_DATA, cookie, 8 + data_length, offset
    )


def encode_info_replies(option: int, items: Sequence[Information]) -> list[bytes]:
    """One ``NBD_REP_INFO`` reply per information item."""
    return [OptionReply(option, NBDRep.NBD_REP_INFO, item.encode()).encode() for item in items]
