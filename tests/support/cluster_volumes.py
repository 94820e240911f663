"""Snapshot volumes on cluster disks, for interop tests: ``sanstack snapshot|volume ...
--cluster-control`` through any node, known patterns written through a group's export,
the backup reader (``snapshot_reader``) as a process, and the read-back check of a
writer's acknowledged writes."""

from __future__ import annotations

import asyncio
import hashlib
import json
import struct
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.cluster_nodes import REPO, ClusterNodes, WriterLog
from tests.support.cluster_writer import pattern as writer_pattern
from tests.support.nbd_socket import NBDSocketClient
from tests.support.processes import run_tool, sanstack_command
from tests.support.waits import wait_until

BLOCK = 4096
WRITE_PIECE = 256 << 10


def volume_cli(nodes: ClusterNodes, via: str, *args: str) -> Any:
    """``sanstack ARGS --json --cluster-control <via's socket>``, decoded."""
    command = [*sanstack_command(), *args, "--json", "--cluster-control", str(nodes.control(via))]
    return json.loads(run_tool(command, timeout=60).stdout)


def scheduled_after(snapshots: list[dict[str, Any]], when: float) -> list[str]:
    """The names of the scheduled snapshots in a ``snapshot list`` made after ``when``."""
    return [s["name"] for s in snapshots if s["scheduled"] and s["created"] > when]


def volume_cli_refusal(nodes: ClusterNodes, via: str, *args: str) -> tuple[int, str]:
    """(exit status, stderr) of a command that must fail, with one line on stderr."""
    command = [*sanstack_command(), *args, "--cluster-control", str(nodes.control(via))]
    result = run_tool(command, timeout=60, check=False)
    assert result.returncode != 0, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return result.returncode, lines[0]


def known_pattern(seed: int, length: int) -> bytes:
    """``length`` bytes (whole blocks), each 4 KiB block naming ``seed`` and its number."""
    return b"".join(struct.pack(">QQ", seed, i) * (BLOCK // 16) for i in range(length // BLOCK))


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_range(export: tuple[str, int], name: str, offset: int, data: bytes) -> None:
    """Write ``data`` at ``offset`` through the export, then FLUSH."""

    async def write() -> None:
        client = await NBDSocketClient.connect(export[0], export[1], name)
        try:
            for at in range(0, len(data), WRITE_PIECE):
                await client.write(offset + at, data[at : at + WRITE_PIECE])
            await client.flush()
        finally:
            await client.close()

    asyncio.run(write())


def check_reads_back(writer: WriterLog, export: tuple[str, int], name: str) -> int:
    """Every acknowledged write's block holds the last acknowledged write to it; returns
    how many blocks were checked."""
    last: dict[int, int] = {}
    for n, offset, _when in writer.acked():
        last[offset] = n

    async def check() -> None:
        client = await NBDSocketClient.connect(export[0], export[1], name)
        try:
            for offset, n in sorted(last.items()):
                data = await client.read(offset, len(writer_pattern(n)))
                assert data == writer_pattern(n), f"block at {offset}: not write {n}"
        finally:
            await client.close()

    asyncio.run(check())
    return len(last)


@dataclass
class ReaderLog:
    path: Path
    process: subprocess.Popen[bytes]

    def lines(self) -> list[list[str]]:
        return [line.split() for line in self.path.read_text().splitlines() if line.strip()]

    def pieces(self) -> int:
        return sum(1 for p in self.lines() if p[0] == "P")

    def reconnects(self) -> int:
        return sum(1 for p in self.lines() if p[0] == "R")

    def errors(self) -> list[int]:
        return [int(p[2]) for p in self.lines() if p[0] == "E"]

    def done(self) -> str | None:
        return next((p[1] for p in self.lines() if p[0] == "D"), None)

    def wait_pieces(self, count: int, within: float, what: str) -> None:
        wait_until(lambda: self.pieces() >= count or self.process.poll() is not None, within, what)
        assert self.pieces() >= count, f"{what}: the reader ended: {self.lines()[-5:]}"

    def wait_done(self, within: float) -> str:
        wait_until(lambda: self.process.poll() is not None, within, "the backup reader to end")
        sha = self.done()
        assert self.process.returncode == 0 and sha is not None, self.lines()[-10:]
        return sha


@contextmanager
def running_reader(
    directory: Path,
    tag: str,
    export: tuple[str, int],
    name: str,
    *,
    region: tuple[int, int],
    pace: float,
    deadline: float = 120.0,
) -> Iterator[ReaderLog]:
    """The backup reader of ``region`` (offset, length) of ``name`` (``DISK@SNAP``) through
    ``export``; killed at the end if it is still running."""
    offset, length = region
    log = directory / f"reader-{tag}.log"
    log.write_text("")
    command = [
        sys.executable,
        "-m",
        "tests.support.snapshot_reader",
        export[0],
        str(export[1]),
        name,
        str(offset),
        str(length),
        str(log),
        "--pace",
        str(pace),
        "--deadline",
        str(deadline),
    ]
    process = subprocess.Popen(command, cwd=REPO)
    reader = ReaderLog(log, process)
    try:
        yield reader
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)
