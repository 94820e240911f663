"""A small NBD client over TCP for tests that must see each request's answer: fixed newstyle,
NBD_OPT_GO, simple replies, one request at a time. Every read of the socket is bounded."""

from __future__ import annotations

import asyncio
import struct

from sanstack.nbd import NBDCmd, NBDOpt, NBDRep
from sanstack.nbd.protocol import (
    ClientFlags,
    InfoRequestData,
    OptionReply,
    OptionRequest,
    RequestHeader,
    ServerGreeting,
    SimpleReplyHeader,
)

IO_TIMEOUT = 30.0


class NBDRefused(Exception):
    """The server refused the export (NBD_OPT_GO answered with an error)."""


class NBDReplyError(Exception):
    """A request answered with an NBD error; ``errno`` is the NBD error value."""

    def __init__(self, command: str, errno: int) -> None:
        super().__init__(f"{command} failed with NBD error {errno}")
        self.errno = errno


class NBDSocketClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.size = 0
        self._cookie = 0

    @classmethod
    async def connect(cls, host: str, port: int, export: str) -> NBDSocketClient:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), IO_TIMEOUT)
        client = cls(reader, writer)
        try:
            await client._handshake(export)
        except BaseException:
            writer.close()
            raise
        return client

    async def _read(self, n: int) -> bytes:
        return await asyncio.wait_for(self.reader.readexactly(n), IO_TIMEOUT)

    async def _handshake(self, export: str) -> None:
        ServerGreeting.decode(await self._read(18))
        self.writer.write(ClientFlags(3).encode())  # FIXED_NEWSTYLE | NO_ZEROES
        data = InfoRequestData(export, ()).encode()
        self.writer.write(OptionRequest(NBDOpt.NBD_OPT_GO, data).encode())
        while True:
            head = await self._read(20)
            (length,) = struct.unpack(">I", head[16:])
            reply = OptionReply.decode(head + await self._read(length))
            if reply.reply_type & (1 << 31):
                raise NBDRefused(f"export {export!r} refused ({reply.reply_type:#x})")
            if reply.reply_type == NBDRep.NBD_REP_INFO and len(reply.data) >= 12:
                info_type, size = struct.unpack_from(">HQ", reply.data)
                if info_type == 0:  # NBD_INFO_EXPORT
                    self.size = size
            if reply.reply_type == NBDRep.NBD_REP_ACK:
                return

    async def _request(self, command: NBDCmd, offset: int, length: int, data: bytes) -> bytes:
        self._cookie += 1
        self.writer.write(RequestHeader(0, command, self._cookie, offset, length).encode() + data)
        header = SimpleReplyHeader.decode(await self._read(16))
        assert header.cookie == self._cookie
        if header.error:
            raise NBDReplyError(command.name, header.error)
        return await self._read(length) if command == NBDCmd.NBD_CMD_READ else b""

    async def read(self, offset: int, length: int) -> bytes:
        return await self._request(NBDCmd.NBD_CMD_READ, offset, length, b"")

    async def write(self, offset: int, data: bytes) -> None:
        await self._request(NBDCmd.NBD_CMD_WRITE, offset, len(data), data)

    async def flush(self) -> None:
        await self._request(NBDCmd.NBD_CMD_FLUSH, 0, 0, b"")

    async def close(self) -> None:
        try:
            self.writer.write(RequestHeader(0, NBDCmd.NBD_CMD_DISC, 0, 0, 0).encode())
            self.writer.close()
            await asyncio.wait_for(self.writer.wait_closed(), IO_TIMEOUT)
        except (OSError, TimeoutError):
            pass
