"""The demo's client load: a small paced writer and reader through one group's NBD export,
which reconnects to the same address when the connection fails (a failover, a move), as
qemu's ``reconnect-delay`` does.

Run as ``python -m sanstack.demo.load HOST:PORT EXPORT LABEL``. It writes one 4 KiB block
at a time over the first ``BLOCKS`` blocks of EXPORT, each carrying its write number, a
FLUSH after it, then reads the block back and checks it: ``PACE`` seconds per round. It
says ``ready`` on stdout once the first round is done, a line every ``REPORT_EVERY`` seconds
with its counts (``load g1: 120 writes, 120 reads checked, 1 reconnects, 0 mismatches``),
and a line for each connection lost and each reconnect with how long it took. SIGTERM or
SIGINT ends it after the round in flight, exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import struct
import sys
import time
from dataclasses import dataclass

from sanstack.config_checks import parse_address
from sanstack.errors import ConfigError
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

BLOCK = 4096
BLOCKS = 256  # the first MiB of the export
PACE = 0.1
REPORT_EVERY = 5.0
IO_TIMEOUT = 10.0  # a connection to a node that stopped answering is given up after this
RECONNECT_GAP = 0.2
MARKER = 0x5A4E_5354_4C4F_4144  # "SANSTLOAD"-ish, in every 16 bytes of a block


class NBDFailed(Exception):
    """The server answered a request or the handshake with an error."""


def block_data(n: int) -> bytes:
    return struct.pack(">QQ", n, MARKER) * (BLOCK // 16)


class NBDConnection:
    """Fixed newstyle, NBD_OPT_GO, simple replies, one request at a time, every read bounded."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.size = 0
        self._cookie = 0

    @classmethod
    async def open(cls, host: str, port: int, export: str) -> NBDConnection:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), IO_TIMEOUT)
        connection = cls(reader, writer)
        try:
            await connection._handshake(export)
        except BaseException:
            writer.close()
            raise
        return connection

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
                raise NBDFailed(f"export {export!r} refused ({reply.reply_type:#x})")
            if reply.reply_type == NBDRep.NBD_REP_INFO and len(reply.data) >= 12:
                info_type, size = struct.unpack_from(">HQ", reply.data)
                if info_type == 0:  # NBD_INFO_EXPORT
                    self.size = size
            if reply.reply_type == NBDRep.NBD_REP_ACK:
                return

    async def request(self, command: NBDCmd, offset: int, length: int, data: bytes = b"") -> bytes:
        self._cookie += 1
        self.writer.write(RequestHeader(0, command, self._cookie, offset, length).encode() + data)
        header = SimpleReplyHeader.decode(await self._read(16))
        if header.error:
            raise NBDFailed(f"{command.name} failed with NBD error {header.error}")
        return await self._read(length) if command == NBDCmd.NBD_CMD_READ else b""

    async def close(self) -> None:
        with contextlib.suppress(OSError, TimeoutError):
            self.writer.write(RequestHeader(0, NBDCmd.NBD_CMD_DISC, 0, 0, 0).encode())
            self.writer.close()
            await asyncio.wait_for(self.writer.wait_closed(), IO_TIMEOUT)


@dataclass(slots=True)
class Counts:
    writes: int = 0
    reads: int = 0
    reconnects: int = 0
    mismatches: int = 0


def say(text: str) -> None:
    print(text, flush=True)


async def run(host: str, port: int, export: str, label: str, stop: asyncio.Event) -> Counts:
    counts = Counts()
    connection: NBDConnection | None = None
    lost_at: float | None = None
    reported = time.monotonic()
    n = 0
    while not stop.is_set():
        if connection is None:
            try:
                connection = await NBDConnection.open(host, port, export)
            except (OSError, TimeoutError, NBDFailed, asyncio.IncompleteReadError, ValueError):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), RECONNECT_GAP)
                continue
            if lost_at is not None:
                counts.reconnects += 1
                say(f"load {label}: reconnected after {time.monotonic() - lost_at:.1f} s")
                lost_at = None
        offset = (n % BLOCKS) * BLOCK
        try:
            await connection.request(NBDCmd.NBD_CMD_WRITE, offset, BLOCK, block_data(n))
            await connection.request(NBDCmd.NBD_CMD_FLUSH, 0, 0)
            counts.writes += 1
            back = await connection.request(NBDCmd.NBD_CMD_READ, offset, BLOCK)
            counts.reads += 1
        except (OSError, TimeoutError, NBDFailed, asyncio.IncompleteReadError, ValueError) as exc:
            say(f"load {label}: connection lost ({type(exc).__name__}: {exc}); reconnecting")
            await connection.close()
            connection = None
            lost_at = time.monotonic()
            continue
        if back != block_data(n):
            counts.mismatches += 1
            say(f"load {label}: MISMATCH reading back write {n} at offset {offset}")
        if n == 0:
            say(f"ready load {label} nbd://{host}:{port}/{export}")
        n += 1
        if time.monotonic() - reported >= REPORT_EVERY:
            reported = time.monotonic()
            say(report(label, counts))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), PACE)
    if connection is not None:
        await connection.close()
    say(report(label, counts) + " (stopped)")
    return counts


def report(label: str, counts: Counts) -> str:
    return (
        f"load {label}: {counts.writes} writes, {counts.reads} reads checked, "
        f"{counts.reconnects} reconnects, {counts.mismatches} mismatches"
    )


async def main_async(args: argparse.Namespace) -> int:
    host, port = parse_address(args.address, "HOST:PORT")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await run(host, port, args.export, args.label, stop)
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m sanstack.demo.load", description=__doc__)
    parser.add_argument("address", metavar="HOST:PORT", help="the group's NBD export")
    parser.add_argument("export", metavar="EXPORT", help="the export's name (a disk's)")
    parser.add_argument("label", metavar="LABEL", help="what its lines call it (the group)")
    args = parser.parse_args(argv)
    try:
        return asyncio.run(main_async(args))
    except ConfigError as exc:
        print(f"sanstack demo load: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
