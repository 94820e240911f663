"""The sans-IO NBD server connection: fixed newstyle handshake, option haggling and the
transmission phase, as in doc/proto.md of the NetworkBlockDevice/nbd project.

Feed it bytes with ``receive_data`` (``b""`` for end of stream), take events with
``next_event`` until it returns None, answer each ``Request`` with one ``reply_*`` call,
and send what ``data_to_send`` returns. The core answers by itself everything that needs no
device: option haggling, and requests that fail validation ("Size constraints", "Error
values"), which only show up as ``RequestRejected`` for logging.

Memory is bounded: an option's data is capped (a larger one is skipped and refused with
``NBD_REP_ERR_TOO_BIG``), a WRITE longer than the maximum payload ends the connection, and
the receive buffer may hold at most one maximum payload plus ``READ_AHEAD_BYTES``: the
caller must drain ``next_event`` before feeding more (an edge pauses reading while it has
its fill of requests in flight, so it never comes close).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from enum import Enum, auto
from typing import Final

from sanstack.errors import LocalProtocolError
from sanstack.nbd.codes import (
    BASE_ALLOCATION,
    MAX_PAYLOAD_BYTES,
    NBD_REQUEST_MAGIC,
    NBDClientFlag,
    NBDCmd,
    NBDCmdFlag,
    NBDError,
    NBDInfo,
    NBDOpt,
    NBDRep,
    NBDReplyType,
)
from sanstack.nbd.events import (
    Disconnect,
    Event,
    ExportChosen,
    ExportInfo,
    ProtocolFailure,
    Request,
    RequestRejected,
)
from sanstack.nbd.protocol import (
    CLIENT_FLAGS_SIZE,
    DEFAULT_HANDSHAKE_FLAGS,
    OPTION_HEADER_SIZE,
    REQUEST_HEADER_SIZE,
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
    Information,
    MetaContextReplyData,
    MetaContextRequestData,
    NBDDecodeError,
    OptionHeader,
    OptionReply,
    ServerGreeting,
    ServerReplyData,
    SimpleReplyHeader,
    decode_string,
    encode_chunk,
    encode_info_replies,
    encode_offset_data_head,
    request_struct,
    unpack_request,
)

# Option data above this is refused unread: no option we know needs more than a few
# strings of at most 4096 bytes ("Conventions").
MAX_OPTION_BYTES: Final = 64 * 1024
# A client haggling forever is a denial of service ("Termination of the session during
# option haggling" allows a hard disconnect then). The bound grows with the exports: a
# client may ask a few options of each (nbdinfo --list asks NBD_OPT_INFO and
# NBD_OPT_LIST_META_CONTEXT of every export on one connection).
MAX_OPTIONS: Final = 1024
OPTIONS_PER_EXPORT: Final = 4
MAX_META_QUERIES: Final = 64
# What may sit in the receive buffer beyond one maximum-size WRITE.
READ_AHEAD_BYTES: Final = 4 << 20
# "Servers SHOULD NOT send more than 2^20 extents in a single reply chunk".
MAX_EXTENTS: Final = 1 << 20
# The id of base:allocation once selected; ids are ours to choose ("NBD_OPT_SET_META_CONTEXT").
BASE_ALLOCATION_ID: Final = 1

_ALL_CLIENT_FLAGS: Final = int(
    NBDClientFlag.NBD_FLAG_C_FIXED_NEWSTYLE | NBDClientFlag.NBD_FLAG_C_NO_ZEROES
)
_WRITES: Final = frozenset({NBDCmd.NBD_CMD_WRITE, NBDCmd.NBD_CMD_TRIM, NBDCmd.NBD_CMD_WRITE_ZEROES})
_RANGED: Final = frozenset(
    {
        NBDCmd.NBD_CMD_READ,
        NBDCmd.NBD_CMD_WRITE,
        NBDCmd.NBD_CMD_TRIM,
        NBDCmd.NBD_CMD_WRITE_ZEROES,
        NBDCmd.NBD_CMD_BLOCK_STATUS,
    }
)


# The commands served (CACHE and RESIZE are not); NBD_CMD_DISC never reaches _validate.
_SERVED: Final = frozenset(_RANGED | {NBDCmd.NBD_CMD_FLUSH})
_COMMANDS: Final = {int(command): command for command in NBDCmd}
# Plain ints for the comparisons made per request (an IntEnum member is looked up first).
_READ: Final = int(NBDCmd.NBD_CMD_READ)
_WRITE: Final = int(NBDCmd.NBD_CMD_WRITE)
_FLUSH: Final = int(NBDCmd.NBD_CMD_FLUSH)
_DISC: Final = int(NBDCmd.NBD_CMD_DISC)
_READ_COMMAND: Final = NBDCmd.NBD_CMD_READ
_REQUEST: Final = request_struct()
# Every combination of the command flags a request may carry once validated.
_FLAGS: Final = tuple(NBDCmdFlag(bits) for bits in range(1 << len(NBDCmdFlag)))


class Phase(Enum):
    CLIENT_FLAGS = auto()
    OPTIONS = auto()
    TRANSMISSION = auto()
    DISCONNECTED = auto()  # replies to requests in flight still go out
    FAILED = auto()


# -- the connection --------------------------------------------------------------------------


class NBDServerConnection:
    """One client connection, from the greeting (queued at once) to the disconnect."""

    def __init__(self, exports: Mapping[str, ExportInfo]) -> None:
        self.exports = dict(exports)
        self.phase = Phase.CLIENT_FLAGS
        self.export_name: str | None = None
        self.export: ExportInfo | None = None
        self.structured = False
        self.no_zeroes = False
        self.meta_contexts: tuple[str, ...] = ()
        self._meta_export: str | None = None
        self._meta_selected: tuple[str, ...] = ()
        self._shutting_down = False
        self._options_seen = 0
        self._max_options = MAX_OPTIONS + OPTIONS_PER_EXPORT * len(self.exports)
        self._buf = bytearray()
        self._pos = 0
        self._skip = 0
        self._eof = False
        self._overflow = False
        self._out: list[bytes | memoryview] = [ServerGreeting(DEFAULT_HANDSHAKE_FLAGS).encode()]
        self._in_flight: dict[int, Request] = {}  # by cookie, the first of each cookie
        self._same_cookie: dict[int, deque[Request]] = {}  # those after it, in order
        self._allowed_flags: dict[int, int] = {}  # by command, once transmission starts
        # (size, block size, maximum payload, flags allowed) for READ's one-step path while
        # in transmission and not shutting down; None otherwise.
        self._read_limits: tuple[int, int, int, int] | None = None
        self.in_flight = 0  # requests delivered and not yet answered
        limit = max((e.max_payload for e in self.exports.values()), default=MAX_PAYLOAD_BYTES)
        self._buffer_limit = limit + REQUEST_HEADER_SIZE + READ_AHEAD_BYTES

    # -- input -------------------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Bytes from the client; ``b""`` means the client closed its side."""
        if self.phase in (Phase.DISCONNECTED, Phase.FAILED) or self._eof:
            return
        if not data:
            self._eof = True
            return
        if self._pos and self._pos * 2 >= len(self._buf):
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data
        if len(self._buf) - self._pos > self._buffer_limit:
            self._overflow = True

    def next_event(self) -> Event | None:
        read = self._read_limits
        if read is not None and not self._skip:
            # A valid READ, the usual request, taken in one step (see _enter_transmission).
            buf, pos = self._buf, self._pos
            if len(buf) - pos >= REQUEST_HEADER_SIZE:
                magic, flags, command, cookie, offset, length = _REQUEST.unpack_from(buf, pos)
                size, block, max_payload, allowed = read
                if (
                    command == _READ
                    and magic == NBD_REQUEST_MAGIC
                    and not flags & ~allowed
                    and 0 < length <= max_payload
                    and offset + length <= size
                    and not offset % block
                    and not length % block
                    and cookie not in self._in_flight
                    and not self._overflow
                ):
                    self._pos = pos + REQUEST_HEADER_SIZE
                    request = Request(cookie, _READ_COMMAND, offset, length, _FLAGS[flags])
                    self._in_flight[cookie] = request
                    self.in_flight += 1
                    return request
        if self._overflow and self.phase is not Phase.FAILED:
            return self._fail("receive buffer limit exceeded: events were not drained")
        while self.phase not in (Phase.DISCONNECTED, Phase.FAILED):
            try:
                if self.phase is Phase.TRANSMISSION and not self._skip:
                    event, progressed = self._request_step()  # the usual message
                else:
                    event, progressed = self._step()
            except NBDDecodeError as exc:
                return self._fail(str(exc))
            if event is not None:
                return event
            if not progressed:
                break
        if self._eof and self.phase not in (Phase.DISCONNECTED, Phase.FAILED):
            self._disconnected()
            left = len(self._buf) - self._pos
            return Disconnect(
                "client closed the connection" + (f" mid-message ({left} bytes)" if left else "")
            )
        return None

    def _available(self) -> int:
        return len(self._buf) - self._pos

    def _take(self, n: int) -> memoryview:
        view = memoryview(self._buf)[self._pos : self._pos + n]
        self._pos += n
        return view

    def _step(self) -> tuple[Event | None, bool]:
        """Parse at most one message: (its event, whether any bytes were consumed)."""
        if self._skip:
            n = min(self._skip, self._available())
            self._pos += n
            self._skip -= n
            return None, n > 0
        if self.phase is Phase.CLIENT_FLAGS:
            if self._available() < CLIENT_FLAGS_SIZE:
                return None, False
            with self._take(CLIENT_FLAGS_SIZE) as raw:
                flags = ClientFlags.decode(raw).flags
            return self._client_flags(flags), True
        if self.phase is Phase.OPTIONS:
            return self._option_step()
        return self._request_step()

    def _client_flags(self, flags: int) -> Event | None:
        # "the server MUST drop the TCP connection if the client sets an unknown flag"
        if int(flags) & ~_ALL_CLIENT_FLAGS:
            return self._fail(f"unknown client flags {flags:#x}")
        self.no_zeroes = bool(flags & NBDClientFlag.NBD_FLAG_C_NO_ZEROES)
        self.phase = Phase.OPTIONS
        return None

    # -- option haggling ("Fixed newstyle negotiation", "Option types") -----------------------

    def _option_step(self) -> tuple[Event | None, bool]:
        if self._available() < OPTION_HEADER_SIZE:
            return None, False
        with memoryview(self._buf)[self._pos : self._pos + OPTION_HEADER_SIZE] as raw:
            header = OptionHeader.decode(raw)
        if self._options_seen >= self._max_options:
            return self._fail(f"more than {self._max_options} options"), True
        if header.length > MAX_OPTION_BYTES:
            self._options_seen += 1
            if header.option == NBDOpt.NBD_OPT_EXPORT_NAME:
                return self._fail("NBD_OPT_EXPORT_NAME name is too long"), True
            self._pos += OPTION_HEADER_SIZE
            self._skip = header.length
            self._option_reply(header.option, NBDRep.NBD_REP_ERR_TOO_BIG, "option data too long")
            return None, True
        if self._available() < OPTION_HEADER_SIZE + header.length:
            return None, False
        self._options_seen += 1
        self._pos += OPTION_HEADER_SIZE
        with self._take(header.length) as view:
            data = bytes(view)
        return self._option(header.option, data), True

    def _option_reply(self, option: int, reply: NBDRep, payload: bytes | str = b"") -> None:
        data = payload.encode() if isinstance(payload, str) else payload
        self._out.append(OptionReply(option, reply, data).encode())

    def _option(self, option: int, data: bytes) -> Event | None:
        if self._shutting_down and option != NBDOpt.NBD_OPT_ABORT:
            self._option_reply(option, NBDRep.NBD_REP_ERR_SHUTDOWN, "server is shutting down")
            return None
        match option:
            case NBDOpt.NBD_OPT_EXPORT_NAME:
                return self._opt_export_name(data)
            case NBDOpt.NBD_OPT_ABORT:
                # "The server MUST reply with NBD_REP_ACK"; data is ignored, as advised.
                self._option_reply(option, NBDRep.NBD_REP_ACK)
                self._disconnected()
                return Disconnect("client sent NBD_OPT_ABORT")
            case NBDOpt.NBD_OPT_LIST:
                if data:
                    self._option_reply(option, NBDRep.NBD_REP_ERR_INVALID, "LIST takes no data")
                    return None
                for name, export in self.exports.items():
                    entry = ServerReplyData(name, export.description).encode()
                    self._option_reply(option, NBDRep.NBD_REP_SERVER, entry)
                self._option_reply(option, NBDRep.NBD_REP_ACK)
                return None
            case NBDOpt.NBD_OPT_INFO | NBDOpt.NBD_OPT_GO:
                return self._opt_info_go(option, data)
            case NBDOpt.NBD_OPT_STRUCTURED_REPLY:
                if data:
                    self._option_reply(option, NBDRep.NBD_REP_ERR_INVALID, "takes no data")
                elif self.structured:
                    # "the server MAY fail the repeated message with NBD_REP_ERR_INVALID"
                    self._option_reply(option, NBDRep.NBD_REP_ERR_INVALID, "already negotiated")
                else:
                    self.structured = True
                    self._option_reply(option, NBDRep.NBD_REP_ACK)
                return None
            case NBDOpt.NBD_OPT_LIST_META_CONTEXT | NBDOpt.NBD_OPT_SET_META_CONTEXT:
                self._opt_meta_context(option, data)
                return None
            case _:
                # STARTTLS included: a NOTLS server answers it NBD_REP_ERR_UNSUP ("NOTLS mode").
                self._option_reply(option, NBDRep.NBD_REP_ERR_UNSUP, "option not supported")
                return None

    def resolve(self, name: str) -> tuple[str, ExportInfo] | None:
        """The export a client means by ``name``: "" is the default export, which is the
        export named "" or else the only export."""
        export = self.exports.get(name)
        if export is not None:
            return name, export
        if name == "" and len(self.exports) == 1:
            return next(iter(self.exports.items()))
        return None

    def _opt_export_name(self, data: bytes) -> Event:
        # No way to refuse but to end the session ("NBD_OPT_EXPORT_NAME").
        try:
            name = decode_string(data, "export name")
        except NBDDecodeError as exc:
            return self._fail(str(exc))
        found = self.resolve(name)
        if found is None:
            return self._fail(f"NBD_OPT_EXPORT_NAME for unknown export {name[:256]!r}")
        canonical, export = found
        flags = export.transmission_flags(self.structured)
        self._out.append(ExportNameReply(export.size, flags, zeroes=not self.no_zeroes).encode())
        return self._enter_transmission(canonical, export)

    def _opt_info_go(self, option: int, data: bytes) -> Event | None:
        try:
            request = InfoRequestData.decode(data)
        except NBDDecodeError as exc:
            self._option_reply(option, NBDRep.NBD_REP_ERR_INVALID, str(exc))
            return None
        found = self.resolve(request.name)
        if found is None:
            self._option_reply(
                option, NBDRep.NBD_REP_ERR_UNKNOWN, f"no export named {request.name[:256]!r}"
            )
            return None
        canonical, export = found
        items: list[Information] = [
            InfoExport(export.size, export.transmission_flags(self.structured))
        ]
        if NBDInfo.NBD_INFO_NAME in request.requests:
            items.append(InfoName(canonical))
        if NBDInfo.NBD_INFO_DESCRIPTION in request.requests and export.description:
            items.append(InfoDescription(export.description))
        # Sent even unasked: our minimum block size is not the default of 1, and "a server
        # ... MUST do so unless it has agreed on size constraints via out of band means".
        items.append(InfoBlockSize(export.block_size, export.preferred, export.max_payload))
        self._out.extend(encode_info_replies(option, items))
        self._option_reply(option, NBDRep.NBD_REP_ACK)
        if option == NBDOpt.NBD_OPT_GO:
            return self._enter_transmission(canonical, export)
        return None

    def _opt_meta_context(self, option: int, data: bytes) -> None:
        setting = option == NBDOpt.NBD_OPT_SET_META_CONTEXT
        if setting:
            # "replaces all previously-set metadata contexts (including when this command
            # fails)"
            self._meta_export, self._meta_selected = None, ()
        if not self.structured:
            self._option_reply(
                option, NBDRep.NBD_REP_ERR_INVALID, "negotiate NBD_OPT_STRUCTURED_REPLY first"
            )
            return
        try:
            request = MetaContextRequestData.decode(data)
        except NBDDecodeError as exc:
            self._option_reply(option, NBDRep.NBD_REP_ERR_INVALID, str(exc))
            return
        if len(request.queries) > MAX_META_QUERIES:
            self._option_reply(option, NBDRep.NBD_REP_ERR_TOO_BIG, "too many queries")
            return
        found = self.resolve(request.export_name)
        if found is None:
            self._option_reply(
                option, NBDRep.NBD_REP_ERR_UNKNOWN, f"no export named {request.export_name[:256]!r}"
            )
            return
        canonical, export = found
        if any(":" not in q for q in request.queries):
            self._option_reply(option, NBDRep.NBD_REP_ERR_INVALID, "a query lacks a namespace")
            return
        offered = (BASE_ALLOCATION,) if export.base_allocation else ()
        if setting:
            # "base:" alone selects nothing in SET; unknown names are ignored.
            chosen = tuple(c for c in offered if c in request.queries)
        elif not request.queries:
            chosen = offered
        else:
            # "base:" is the namespace's wildcard for LIST.
            chosen = tuple(c for c in offered if c in request.queries or "base:" in request.queries)
        context_id = BASE_ALLOCATION_ID if setting else 0
        for name in chosen:
            payload = MetaContextReplyData(context_id, name).encode()
            self._option_reply(option, NBDRep.NBD_REP_META_CONTEXT, payload)
        self._option_reply(option, NBDRep.NBD_REP_ACK)
        if setting and chosen:
            self._meta_export, self._meta_selected = canonical, chosen

    def _enter_transmission(self, name: str, export: ExportInfo) -> Event:
        self.phase = Phase.TRANSMISSION
        # Plain ints: ~ of an IntFlag keeps only the bits NBDCmdFlag names, and an unknown
        # flag must be refused too.
        fua = int(NBDCmdFlag.NBD_CMD_FLAG_FUA) if export.can_fua else 0
        allowed = dict.fromkeys(map(int, _SERVED), fua)
        if self.structured:
            allowed[NBDCmd.NBD_CMD_READ] |= int(NBDCmdFlag.NBD_CMD_FLAG_DF)
        allowed[NBDCmd.NBD_CMD_WRITE_ZEROES] |= int(NBDCmdFlag.NBD_CMD_FLAG_NO_HOLE)
        allowed[NBDCmd.NBD_CMD_BLOCK_STATUS] |= int(NBDCmdFlag.NBD_CMD_FLAG_REQ_ONE)
        self._allowed_flags = allowed
        self._read_limits = (export.size, export.block_size, export.max_payload, allowed[_READ])
        self.export_name = name
        self.export = export
        # Contexts count only if set for the export that was finally chosen.
        self.meta_contexts = self._meta_selected if self._meta_export == name else ()
        return ExportChosen(name, export, self.structured, self.meta_contexts)

    # -- transmission ("Request message", "Request types") -----------------------------------

    def _request_step(self) -> tuple[Event | None, bool]:
        export = self.export
        assert export is not None
        pos = self._pos
        if len(self._buf) - pos < REQUEST_HEADER_SIZE:
            return None, False
        flags, command, cookie, offset, length = unpack_request(self._buf, pos)
        payload = 0
        if command == _WRITE:
            # "either the server or the client MAY initiate a hard disconnect if a payload
            # length ... would be large enough to be deemed a denial of service attack"
            if length > export.max_payload:
                return self._fail(f"WRITE of {length} bytes exceeds the maximum"), True
            payload = length
        if len(self._buf) - pos < REQUEST_HEADER_SIZE + payload:
            return None, False
        self._pos = pos + REQUEST_HEADER_SIZE
        data = b""
        if payload:
            with self._take(payload) as view:
                data = bytes(view)
        return self._request(flags, command, cookie, offset, length, data, export), True

    def _request(  # noqa: PLR0917 - private, the request header's fields
        self,
        flags: int,
        command: int,
        cookie: int,
        offset: int,
        length: int,
        data: bytes,
        export: ExportInfo,
    ) -> Event | None:
        if command == _DISC:
            # "The server MUST handle all outstanding requests ... and close"
            self._disconnected()
            return Disconnect("client sent NBD_CMD_DISC")
        known_command = _COMMANDS.get(command)
        rejected = self._validate(known_command, command, flags, offset, length, export)
        if rejected is not None:
            error, reason = rejected
            self._answer_error(cookie, offset, length, error, reason)
            return RequestRejected(cookie, known_command or command, error, reason)
        assert known_command is not None  # _validate refuses unknown commands
        request = Request(cookie, known_command, offset, length, _FLAGS[flags], data)
        if cookie in self._in_flight:
            self._same_cookie.setdefault(cookie, deque()).append(request)
        else:
            self._in_flight[cookie] = request
        self.in_flight += 1
        if not length and command != _FLUSH:
            # "the behavior of a server on such a request is unspecified although the
            # server SHOULD NOT disconnect": there is nothing to do, so it succeeds.
            if known_command == NBDCmd.NBD_CMD_READ:
                self.reply_read(cookie, b"")
            else:
                self.reply_ok(cookie)
            return None
        return request

    def _validate(  # noqa: PLR0917 - private, the request header's fields
        self,
        command: NBDCmd | None,
        raw_command: int,
        flags: int,
        offset: int,
        length: int,
        export: ExportInfo,
    ) -> tuple[NBDError, str] | None:
        """The error "Error values" and "Size constraints" call for, or None."""
        if self._shutting_down:
            return NBDError.NBD_ESHUTDOWN, "server is shutting down"
        allowed = self._allowed_flags.get(raw_command)
        if command is None or allowed is None:
            return NBDError.NBD_EINVAL, f"unsupported command {raw_command}"
        if flags & ~allowed:
            return NBDError.NBD_EINVAL, f"flags {flags:#x} not valid for {command.name}"
        if raw_command == _READ:  # the usual request: none of the checks below
            if offset + length > export.size:
                return NBDError.NBD_EINVAL, f"range {offset}+{length} is past the end"
        elif reason := self._refusal(command, offset, length, export):
            return reason
        bs = export.block_size
        if offset % bs or length % bs:
            return NBDError.NBD_EINVAL, f"range {offset}+{length} not {bs}-aligned"
        if raw_command == _READ and length > export.max_payload:
            return NBDError.NBD_EINVAL, f"READ of {length} bytes exceeds the maximum"
        return None

    def _refusal(
        self, command: NBDCmd, offset: int, length: int, export: ExportInfo
    ) -> tuple[NBDError, str] | None:
        """``_validate``'s checks for every command but READ, up to the range's end."""
        if command in _WRITES and export.read_only:
            return NBDError.NBD_EPERM, "export is read-only"
        if command == NBDCmd.NBD_CMD_FLUSH:
            if not export.can_flush:
                return NBDError.NBD_EINVAL, "FLUSH not supported"
            if offset or length:
                return NBDError.NBD_EINVAL, "FLUSH offset and length must be zero"
            return None
        if command == NBDCmd.NBD_CMD_TRIM and not export.can_trim:
            return NBDError.NBD_EINVAL, "TRIM not supported"
        if command == NBDCmd.NBD_CMD_WRITE_ZEROES and not export.can_write_zeroes:
            return NBDError.NBD_EINVAL, "WRITE_ZEROES not supported"
        if command == NBDCmd.NBD_CMD_BLOCK_STATUS:
            if not self.meta_contexts:
                return NBDError.NBD_EINVAL, "no metadata context was negotiated"
            if length == 0:
                return NBDError.NBD_EINVAL, "BLOCK_STATUS of length zero"
        assert command in _RANGED
        if offset + length > export.size:
            # "SHOULD return NBD_ENOSPC if it receives a write request including one or
            # more sectors beyond the size of the device", EINVAL for the others.
            writes = (NBDCmd.NBD_CMD_WRITE, NBDCmd.NBD_CMD_WRITE_ZEROES)
            error = NBDError.NBD_ENOSPC if command in writes else NBDError.NBD_EINVAL
            return error, f"range {offset}+{length} is past the end"
        return None

    # -- replies ("Simple reply message", "Structured reply chunk message") ------------------

    def _pop(self, cookie: int) -> Request | None:
        """The request ``cookie`` names; None after a failure, when nothing is sent."""
        if self.phase is Phase.FAILED:
            return None
        request = self._in_flight.pop(cookie, None)
        if request is None:
            raise LocalProtocolError(f"no request with cookie {cookie:#x} is in flight")
        if self._same_cookie:
            # A client may reuse a cookie while it is in flight: answered first come, first served.
            later = self._same_cookie.get(cookie)
            if later:
                self._in_flight[cookie] = later.popleft()
                if not later:
                    del self._same_cookie[cookie]
        self.in_flight -= 1
        return request

    def reply_read(self, cookie: int, data: bytes | bytearray | memoryview) -> None:
        """Answer a READ with all of its data."""
        if isinstance(data, bytearray):
            data = memoryview(data)
        self.reply_read_parts(cookie, (data,) if data else ())

    def reply_read_parts(self, cookie: int, parts: Sequence[bytes | memoryview]) -> None:
        """Answer a READ with all of its data in ``parts``, in order: they go out as they
        are, never joined (``data_to_send`` hands them to the edge's ``writelines``)."""
        request = self._pop(cookie)
        if request is None:
            return
        length = len(parts[0]) if len(parts) == 1 else sum(map(len, parts))
        if request.command != NBDCmd.NBD_CMD_READ or length != request.length:
            raise LocalProtocolError(
                f"reply_read for {request.command.name} of {request.length} bytes "
                f"with {length} bytes"
            )
        out = self._out
        if not self.structured:
            out.append(SimpleReplyHeader(0, cookie).encode())
            out += parts
            return
        if not length:
            out.append(encode_chunk(cookie, NBDReplyType.NBD_REPLY_TYPE_NONE))
            return
        # One content chunk carrying DONE: the data is all here, so no error can follow
        # ("MUST NOT do so for a content chunk if it would still be possible to detect an
        # error"). The payload may exceed the maximum by its 8-byte offset ("Size
        # constraints").
        out.append(encode_offset_data_head(cookie, request.offset, length))
        out += parts

    def reply_ok(self, cookie: int) -> None:
        """Answer a request other than READ: success."""
        request = self._pop(cookie)
        if request is None:
            return
        if request.command == NBDCmd.NBD_CMD_READ:
            raise LocalProtocolError("a READ is answered with reply_read or reply_error")
        # Structured replies still allow a simple reply without payload for everything
        # but READ ("Simple reply message").
        self._out.append(SimpleReplyHeader(0, cookie).encode())

    def reply_error(
        self, cookie: int, error: NBDError, message: str = "", *, offset: int | None = None
    ) -> None:
        """Answer any request with an error; ``offset`` (structured replies only) says
        where in the request's range it happened."""
        request = self._pop(cookie)
        if request is not None:
            self._answer_error(cookie, request.offset, request.length, error, message, offset)

    def _answer_error(  # noqa: PLR0917 - private, called with the request's fields
        self,
        cookie: int,
        start: int,
        length: int,
        error: NBDError,
        message: str,
        offset: int | None = None,
    ) -> None:
        if not self.structured:
            self._out.append(SimpleReplyHeader(int(error), cookie).encode())
            return
        # "The server SHOULD prefer sending errors via a structured reply": it carries text.
        if offset is not None and start <= offset < start + length:
            payload = ErrorOffsetPayload(error, message, offset).encode()
            kind = NBDReplyType.NBD_REPLY_TYPE_ERROR_OFFSET
        else:
            payload = ErrorPayload(error, message).encode()
            kind = NBDReplyType.NBD_REPLY_TYPE_ERROR
        self._out.append(encode_chunk(cookie, kind, payload))

    def reply_block_status(self, cookie: int, extents: Sequence[tuple[int, int]]) -> None:
        """Answer a BLOCK_STATUS with ``(length, NBDState flags)`` extents in bytes from
        the request's offset. Extents are merged, and cut at the end of the request (and to
        one with ``NBD_CMD_FLAG_REQ_ONE``), so the caller may pass more than asked."""
        request = self._pop(cookie)
        if request is None:
            return
        if request.command != NBDCmd.NBD_CMD_BLOCK_STATUS:
            raise LocalProtocolError(f"reply_block_status for {request.command.name}")
        descriptors: list[BlockDescriptor] = []
        remaining = request.length
        for extent_length, flags in extents:
            if remaining <= 0 or len(descriptors) >= MAX_EXTENTS:
                break
            length = min(extent_length, remaining)
            if length <= 0:
                continue
            remaining -= length
            if descriptors and descriptors[-1].flags == flags:
                descriptors[-1] = BlockDescriptor(descriptors[-1].length + length, flags)
            else:
                descriptors.append(BlockDescriptor(length, flags))
        if not descriptors:
            raise LocalProtocolError("a block status reply needs at least one extent")
        if request.flags & NBDCmdFlag.NBD_CMD_FLAG_REQ_ONE:
            descriptors = descriptors[:1]
        for context in self.meta_contexts:
            assert context == BASE_ALLOCATION
            payload = BlockStatusPayload(BASE_ALLOCATION_ID, tuple(descriptors)).encode()
            self._out.append(
                encode_chunk(cookie, NBDReplyType.NBD_REPLY_TYPE_BLOCK_STATUS, payload)
            )

    # -- output and lifetime -----------------------------------------------------------------

    @property
    def has_data_to_send(self) -> bool:
        return bool(self._out)

    def data_to_send(self) -> list[bytes | memoryview]:
        """What to write, in order: large READ data is passed through without a copy."""
        out, self._out = self._out, []
        return out

    @property
    def closed(self) -> bool:
        return self.phase in (Phase.DISCONNECTED, Phase.FAILED)

    def shutdown(self) -> None:
        """The server is stopping: refuse further options with NBD_REP_ERR_SHUTDOWN and
        further requests with NBD_ESHUTDOWN ("Terminating the transmission phase")."""
        self._shutting_down = True
        self._read_limits = None

    def _disconnected(self) -> None:
        self.phase = Phase.DISCONNECTED
        self._read_limits = None

    def _fail(self, reason: str) -> ProtocolFailure:
        self.phase = Phase.FAILED
        self._read_limits = None
        self._out.clear()
        self._in_flight.clear()
        self._same_cookie.clear()
        self.in_flight = 0
        return ProtocolFailure(reason)
