"""A backup reading a range of a snapshot export (``DISK@SNAP``) of a cluster group, in its
own process; it reconnects to the same address and name when the connection or a read
fails (a failover), as qemu's ``reconnect-delay`` does, and reads the piece again.

Run as ``python -m tests.support.snapshot_reader HOST PORT EXPORT OFFSET LENGTH LOG``.
It reads ``PIECE`` bytes at a time, ``--pace`` seconds apart (so a test can kill the owner
while it is still reading). The log has one line per event, flushed at once:

- ``P offset time``: the piece at ``offset`` was read;
- ``E offset errno time``: the server answered the read with an NBD error (read again);
- ``R offset time reason``: the connection failed or was refused; reconnecting;
- ``D sha256 time``: done; the SHA-256 of the whole range.

It gives up (exit 1) after ``--deadline`` seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import sys
import time
from pathlib import Path
from typing import IO

from tests.support.nbd_socket import NBDReplyError, NBDSocketClient

PIECE = 64 << 10
REQUEST_TIMEOUT = 20.0  # a snapshot read on a new owner waits for its free-space scan
RECONNECT_GAP = 0.05


async def run(args: argparse.Namespace, log: IO[str]) -> bool:
    end = time.monotonic() + args.deadline
    digest = hashlib.sha256()
    offset, stop = args.offset, args.offset + args.length
    client: NBDSocketClient | None = None
    while offset < stop:
        if time.monotonic() >= end:
            return False
        if client is None:
            try:
                async with asyncio.timeout(REQUEST_TIMEOUT):
                    client = await NBDSocketClient.connect(args.host, args.port, args.export)
            except Exception as exc:  # refused, reset, not listed yet: try again
                log.write(f"R {offset} {time.time():.6f} connect: {type(exc).__name__}\n")
                await asyncio.sleep(RECONNECT_GAP)
                continue
        length = min(PIECE, stop - offset)
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                data = await client.read(offset, length)
        except NBDReplyError as exc:
            log.write(f"E {offset} {exc.errno} {time.time():.6f}\n")
        except Exception as exc:  # the connection failed: read the piece again
            log.write(f"R {offset} {time.time():.6f} {type(exc).__name__}\n")
        else:
            digest.update(data)
            log.write(f"P {offset} {time.time():.6f}\n")
            offset += length
            if args.pace:
                await asyncio.sleep(args.pace)
            continue
        with contextlib.suppress(Exception):
            await client.close()
        client = None
        await asyncio.sleep(RECONNECT_GAP)
    if client is not None:
        await client.close()
    log.write(f"D {digest.hexdigest()} {time.time():.6f}\n")
    return True


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("export")
    parser.add_argument("offset", type=int)
    parser.add_argument("length", type=int)
    parser.add_argument("log", type=Path)
    parser.add_argument("--pace", type=float, default=0.0)
    parser.add_argument("--deadline", type=float, default=120.0)
    args = parser.parse_args(argv)
    with args.log.open("a", buffering=1) as log:
        return 0 if asyncio.run(run(args, log)) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
