"""A client writing a sequence pattern through a cluster group's NBD export, in its own
process, recording every acknowledged write; it reconnects to the same address when the
connection or a request fails (a failover, a move), as qemu's ``reconnect-delay`` does.

Run as ``python -m tests.support.cluster_writer HOST PORT EXPORT LOG STOP_FILE [options]``.
Write number ``n`` goes to block ``first_block + n % blocks`` (4 KiB each) and carries ``n``
and a marker with the writer's id in every 16 bytes (``pattern``), so a checker that reads
the blocks back can tell whose write, and which, each block holds
(``tests/support/cluster_checker.py``). A write is acknowledged once the WRITE and a FLUSH
after it both answered without error. A write that was not acknowledged is sent again, the
same ``n`` to the same block, so a block holds the last acknowledged write to it, or the one
after it that was in flight when the writer stopped. The log has one line per event, flushed
at once (the test reads it while this runs):

- ``A n offset time``: write ``n`` acknowledged;
- ``E n errno time``: the server answered write ``n`` (or its flush) with an NBD error;
- ``R n time reason``: the connection failed, was refused or timed out; reconnecting.

``--timeout`` bounds the connection with its handshake, and each request: an owner that was
stopped (``kill -STOP``) still holds the connection, and its kernel may even accept a new
one, which then never answers.

Ghost mode (``--ghost COUNT --go FILE``): connect once, log ``C time``, wait for FILE, then
send COUNT writes at once without waiting for answers (to blocks ``first_block`` on: few
enough to fit the peer's TCP window), wait until the kernel saw them all acknowledged by the
peer's TCP, log ``S COUNT time``, and log
each answer (``A``/``E`` with the write's number) until ``--timeout``. Its writes, sent to an
owner that was stopped, wait in that owner's socket: it must not be able to land any of them
once it resumes.

It ends when STOP_FILE exists (after the write in flight), or after ``--deadline`` seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import struct
import sys
import termios
import time
from pathlib import Path
from typing import IO

from tests.support.nbd_socket import NBDReplyError, NBDSocketClient

from sanstack.nbd import NBDCmd
from sanstack.nbd.protocol import RequestHeader, SimpleReplyHeader

BLOCK = 4096
BLOCKS = 128  # 512 KiB of the export
MARKER = 0x5EC0_C1A5_7E57_0000  # the low 16 bits carry the writer's id
REQUEST_TIMEOUT = 10.0
RECONNECT_GAP = 0.02


def pattern(n: int, writer: int = 0) -> bytes:
    return struct.pack(">QQ", n, MARKER | writer) * (BLOCK // 16)


def offset_of(n: int, first_block: int = 0, blocks: int = BLOCKS) -> int:
    return (first_block + n % blocks) * BLOCK


def stopped(stop: Path, end: float) -> bool:
    return stop.exists() or time.monotonic() >= end


async def connect(args: argparse.Namespace) -> NBDSocketClient:
    return await NBDSocketClient.connect(args.host, args.port, args.export)


async def run(args: argparse.Namespace, log: IO[str]) -> None:
    end = time.monotonic() + args.deadline
    n = 0
    client: NBDSocketClient | None = None
    while not stopped(args.stop, end):
        if client is None:
            try:
                async with asyncio.timeout(args.timeout):
                    client = await connect(args)
            except Exception as exc:  # refused, reset, timed out: try again
                log.write(f"R {n} {time.time():.6f} connect: {type(exc).__name__}\n")
                await asyncio.sleep(RECONNECT_GAP)
                continue
        offset = offset_of(n, args.first_block, args.blocks)
        try:
            async with asyncio.timeout(args.timeout):
                await client.write(offset, pattern(n, args.writer))
                await client.flush()
        except NBDReplyError as exc:
            log.write(f"E {n} {exc.errno} {time.time():.6f}\n")
        except Exception as exc:  # the connection failed: the write's fate is unknown
            log.write(f"R {n} {time.time():.6f} {type(exc).__name__}\n")
        else:
            log.write(f"A {n} {offset} {time.time():.6f}\n")
            n += 1
            continue
        with contextlib.suppress(Exception):
            await client.close()
        client = None
        await asyncio.sleep(RECONNECT_GAP)
    if client is not None:
        await client.close()


def unacknowledged(client: NBDSocketClient) -> int:
    """Bytes the peer's TCP has not acknowledged yet (sent or still queued)."""
    sock = client.writer.get_extra_info("socket")
    if sock.fileno() < 0:
        raise ConnectionResetError("the connection was closed")
    raw = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, struct.pack("i", 0))
    count: int = struct.unpack("i", raw)[0]
    return count


async def ghost(args: argparse.Namespace, log: IO[str]) -> None:
    end = time.monotonic() + args.deadline
    async with asyncio.timeout(args.timeout):
        client = await connect(args)
    log.write(f"C {time.time():.6f}\n")
    while not args.go.exists():
        if stopped(args.stop, end):
            await client.close()
            return
        await asyncio.sleep(0.005)
    cookies = {}
    for n in range(args.ghost):
        cookie = 1000 + n
        cookies[cookie] = n
        offset = offset_of(n, args.first_block, args.blocks)
        header = RequestHeader(0, NBDCmd.NBD_CMD_WRITE, cookie, offset, BLOCK).encode()
        client.writer.write(header + pattern(n, args.writer))
    try:
        await client.writer.drain()
        # The kernel's count of bytes in flight: there is no event to wait on.
        while unacknowledged(client) and time.monotonic() < end:  # noqa: ASYNC110
            await asyncio.sleep(0.001)
    except OSError as exc:  # the peer's window was too small, and the address moved
        log.write(f"R 0 {time.time():.6f} {type(exc).__name__}\n")
        return
    log.write(f"S {args.ghost} {time.time():.6f}\n")
    try:
        async with asyncio.timeout(max(0.0, end - time.monotonic())):
            while cookies and not args.stop.exists():
                raw = await client.reader.readexactly(16)
                reply = SimpleReplyHeader.decode(raw)
                n = cookies.pop(reply.cookie)
                offset = offset_of(n, args.first_block, args.blocks)
                kind = f"E {n} {reply.error}" if reply.error else f"A {n} {offset}"
                log.write(f"{kind} {time.time():.6f}\n")
    except (TimeoutError, OSError, asyncio.IncompleteReadError) as exc:
        log.write(f"R {min(cookies.values(), default=-1)} {time.time():.6f} {type(exc).__name__}\n")
    client.writer.close()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("export")
    parser.add_argument("log", type=Path)
    parser.add_argument("stop", type=Path)
    parser.add_argument("--deadline", type=float, default=120.0)
    parser.add_argument("--writer", type=int, default=0, help="id in every pattern, 0-65535")
    parser.add_argument("--first-block", type=int, default=0)
    parser.add_argument("--blocks", type=int, default=BLOCKS)
    parser.add_argument("--timeout", type=float, default=REQUEST_TIMEOUT)
    parser.add_argument("--ghost", type=int, default=0, help="send this many writes at once")
    parser.add_argument("--go", type=Path, help="ghost mode: send once this file exists")
    args = parser.parse_args(argv)
    with args.log.open("a", buffering=1) as log:
        asyncio.run(ghost(args, log) if args.ghost else run(args, log))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
