"""An in-memory NBD client for the sans-IO ``NBDServerConnection``: it speaks the client
side through bytes only, with the exports and transmission flags the NBD tests expect."""

from __future__ import annotations

import struct

from sanstack.nbd import (
    Event,
    ExportInfo,
    NBDInfo,
    NBDOpt,
    NBDRep,
    NBDServerConnection,
    NBDTransmissionFlag,
)
from sanstack.nbd.protocol import (
    ClientFlags,
    InfoRequestData,
    MetaContextRequestData,
    OptionReply,
    OptionRequest,
    RequestHeader,
    ServerGreeting,
    SimpleReplyHeader,
    StructuredReplyHeader,
)

MiB = 1 << 20
# What a writable export advertises; DF comes on top once structured replies are agreed.
RW_FLAGS = (
    NBDTransmissionFlag.NBD_FLAG_HAS_FLAGS
    | NBDTransmissionFlag.NBD_FLAG_SEND_FLUSH
    | NBDTransmissionFlag.NBD_FLAG_SEND_FUA
    | NBDTransmissionFlag.NBD_FLAG_SEND_TRIM
    | NBDTransmissionFlag.NBD_FLAG_SEND_WRITE_ZEROES
)
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
