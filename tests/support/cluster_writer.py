"""A client writing a sequence pattern through a cluster group's NBD export, in its own
process, recording every acknowledged write; it reconnects to the same address when the
connection or a request fails (a failover, a move), as qemu's ``reconnect-delay`` does.

Run as ``python -m tests.support.cluster_writer HOST PORT EXPORT LOG STOP_FILE``. Write
number ``n`` goes to block ``n % BLOCKS`` (4 KiB each) and carries ``n`` and a marker in
every 16 bytes; it is acknowledged once the WRITE and a FLUSH after it both answered
without error. A write that was not acknowledged is sent again, the same ``n`` to the same
block, so a block always holds the last acknowledged write to it. The log has one line per
event, flushed at once (the test reads it while this runs):

- ``A n offset time``: write ``n`` acknowledged;
- ``E n errno time``: the server answered write ``n`` (or its flush) with an NBD error;
- ``R n time reason``: the connection failed or was refused; reconnecting.

It ends when STOP_FILE exists (after the write in flight), or after ``--deadline`` seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import struct
import sys
import time
from pathlib import Path
from typing import IO

from tests.support.nbd_socket import NBDReplyError, NBDSocketClient

BLOCK = 4096
BLOCKS = 128  # 512 KiB of the export
MARKER = 0x5EC0_C1A5_7E57_0000
REQUEST_TIMEOUT = 10.0
RECONNECT_GAP = 0.02


def pattern(n: int) -> bytes:
    return struct.pack(">QQ", n, MARKER) * (BLOCK // 16)


def offset_of(n: int) -> int:
    return (n % BLOCKS) * BLOCK


def stopped(stop: Path, end: float) -> bool:
    return stop.exists() or time.monotonic() >= end


async def run(args: argparse.Namespace, log: IO[str]) -> None:
    host, port, export, stop = args.host, args.port, args.export, args.stop
    end = time.monotonic() + args.deadline
    n = 0
    client: NBDSocketClient | None = None
    while not stopped(stop, end):
        if client is None:
            try:
                async with asyncio.timeout(REQUEST_TIMEOUT):
                    client = await NBDSocketClient.connect(host, port, export)
            except Exception as exc:  # refused, reset, timed out: try again
                log.write(f"R {n} {time.time():.6f} connect: {type(exc).__name__}\n")
                await asyncio.sleep(RECONNECT_GAP)
                continue
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                await client.write(offset_of(n), pattern(n))
                await client.flush()
        except NBDReplyError as exc:
            log.write(f"E {n} {exc.errno} {time.time():.6f}\n")
        except Exception as exc:  # the connection failed: the write's fate is unknown
            log.write(f"R {n} {time.time():.6f} {type(exc).__name__}\n")
        else:
            log.write(f"A {n} {offset_of(n)} {time.time():.6f}\n")
            n += 1
            continue
        with contextlib.suppress(Exception):
            await client.close()
        client = None
        await asyncio.sleep(RECONNECT_GAP)
    if client is not None:
        await client.close()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("export")
    parser.add_argument("log", type=Path)
    parser.add_argument("stop", type=Path)
    parser.add_argument("--deadline", type=float, default=120.0)
    args = parser.parse_args(argv)
    with args.log.open("a", buffering=1) as log:
        asyncio.run(run(args, log))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
