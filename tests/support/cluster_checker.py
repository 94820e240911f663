"""The independent checker of the cluster tests: what every block written by
``cluster_writer`` may hold at the end, decided from the writers' logs alone.

A writer writes number ``n`` to block ``n % blocks`` of its region, one write at a time,
and moves on only once ``n`` is acknowledged; so for each block the writes to it are ordered,
and at the end the block must hold the last acknowledged write to it or, for the one block
the writer was still trying (``next``, never acknowledged), that write. Anything else is
a finding:

- an older write of the same writer: a write that an owner had taken before it was fenced
  landed after a newer one (a stopped owner that resumed, a partition's minority);
- another writer's pattern, or bytes that are no pattern at all;
- zeros where a write was acknowledged: an acknowledged write was lost.

A region nobody was allowed to write (a ghost writer's, aimed at a fenced owner) must read
back as zeros.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.cluster_writer import BLOCK, MARKER

_UNIT = struct.Struct(">QQ")


def decode(block: bytes) -> tuple[int, int] | None:
    """(writer id, write number) of a block a writer wrote; None for zeros; ValueError for
    anything else (a torn or foreign block)."""
    if block == bytes(len(block)):
        return None
    n, marker = _UNIT.unpack_from(block)
    if marker & ~0xFFFF != MARKER or block != block[:16] * (len(block) // 16):
        raise ValueError(f"not a writer's pattern: {block[:32].hex()}...")
    return marker & 0xFFFF, n


@dataclass
class Region:
    """One writer's blocks: ``first`` and ``blocks`` as given to it, its id and log."""

    writer: int
    first: int
    blocks: int
    log: Path
    acked: list[int] = field(default_factory=list)

    def read_log(self) -> None:
        lines = [line.split() for line in self.log.read_text().splitlines() if line.strip()]
        self.acked = [int(p[1]) for p in lines if p[0] == "A"]

    def problems(self, data: bytes) -> list[str]:
        """What is wrong with ``data``, the region's bytes as the disk holds them."""
        self.read_log()
        following = max(self.acked, default=-1) + 1  # the write in flight at the end, if any
        last: dict[int, int] = {}
        for n in self.acked:
            last[n % self.blocks] = max(n, last.get(n % self.blocks, -1))
        found = []
        for index in range(self.blocks):
            block = data[index * BLOCK : (index + 1) * BLOCK]
            where = f"writer {self.writer} block {self.first + index}"
            try:
                content = decode(block)
            except ValueError as exc:
                found.append(f"{where}: {exc}")
                continue
            expected = last.get(index)
            allowed: set[int | None] = {expected}
            if following % self.blocks == index:
                allowed.add(following)
            if content is None:
                if None not in allowed:
                    found.append(f"{where}: zeros, but write {expected} was acknowledged")
                continue
            writer, n = content
            if writer != self.writer:
                found.append(f"{where}: write {n} of writer {writer}")
            elif n not in allowed:
                age = "an older" if expected is not None and n < expected else "an unexpected"
                found.append(f"{where}: {age} write {n} (acknowledged last: {expected})")
        return found


def untouched(data: bytes, what: str) -> list[str]:
    """A region nobody may have written: every block zeros."""
    found = []
    for index in range(len(data) // BLOCK):
        block = data[index * BLOCK : (index + 1) * BLOCK]
        if block != bytes(BLOCK):
            try:
                content = decode(block)
            except ValueError as exc:
                content = None
                found.append(f"{what} block {index}: {exc}")
            if content is not None:
                found.append(f"{what} block {index}: write {content[1]} of writer {content[0]}")
    return found
