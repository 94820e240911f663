"""A ``SnapshotVolume`` over a RAM device for the snapshot volume tests: ``ProbeDevice``
counts I/O and can hold reads or writes in flight, ``new_volume`` formats and opens a
volume on one, and ``data`` gives each tag distinct, reproducible content."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable
from typing import Any, TypeVar

from sanstack.block.device import BlockDevice, LBAExtent
from sanstack.block.memory import MemoryDevice
from sanstack.snapshot.model import FormatOptions
from sanstack.snapshot.volume import SnapshotVolume, format_volume

MiB = 1 << 20
CHUNK = 4096
BLOCK = 512
PER_CHUNK = CHUNK // BLOCK
T = TypeVar("T")


def run(coro: Awaitable[T]) -> T:
    async def main() -> T:
        return await coro

    return asyncio.run(main())


def data(tag: int, size: int = CHUNK) -> bytes:
    """Distinct, reproducible content for ``tag``."""
    return random.Random(tag).randbytes(size)


class ProbeDevice(BlockDevice):
    """A RAM device that counts I/O and can hold writes in flight (``gate``) or slow them."""

    def __init__(self, size_bytes: int) -> None:
        self.inner = MemoryDevice(size_bytes // BLOCK, BLOCK)
        self.block_size = BLOCK
        self.num_blocks = self.inner.num_blocks
        self.identity = self.inner.identity
        self.thin_provisioned = True
        self.write_cache = False
        self.reads = 0
        self.read_bytes = 0
        self.writes = 0
        self.write_bytes = 0
        self.write_lbas: list[int] = []
        self.gate: asyncio.Event | None = None
        self.held = 0  # writes waiting at the gate
        self.read_gate: asyncio.Event | None = None
        self.reads_held = 0
        self.read_end = 0  # the highest block read, plus one
        self.delay = 0.0

    def reset(self) -> None:
        self.reads = self.read_bytes = self.writes = self.write_bytes = self.read_end = 0
        self.write_lbas = []

    async def read(self, lba: int, count: int) -> bytes:
        if self.read_gate is not None and not self.read_gate.is_set():
            self.reads_held += 1
            try:
                await self.read_gate.wait()
            finally:
                self.reads_held -= 1
        if self.delay:
            await asyncio.sleep(self.delay)
        self.reads += 1
        self.read_end = max(self.read_end, lba + count)
        self.read_bytes += count * BLOCK
        return await self.inner.read(lba, count)

    async def write(self, lba: int, data: bytes | memoryview) -> None:
        if self.gate is not None and not self.gate.is_set():
            self.held += 1
            try:
                await self.gate.wait()
            finally:
                self.held -= 1
        if self.delay:
            await asyncio.sleep(self.delay)
        self.writes += 1
        self.write_bytes += len(data)
        self.write_lbas.append(lba)
        await self.inner.write(lba, data)

    async def flush(self) -> None:
        await self.inner.flush()

    async def unmap(self, lba: int, count: int) -> None:
        await self.inner.unmap(lba, count)

    async def get_lba_status(self, lba: int, max_count: int) -> list[LBAExtent]:
        return await self.inner.get_lba_status(lba, max_count)

    def health(self) -> str | None:
        return self.inner.health()

    async def close(self) -> None:
        await self.inner.close()


async def new_volume(size_bytes: int, **options: Any) -> tuple[ProbeDevice, SnapshotVolume]:
    base = ProbeDevice(size_bytes)
    await format_volume(base, FormatOptions(**options))
    volume = await SnapshotVolume.open(base, close_base=False)
    await volume.wait_background(30)
    return base, volume


async def read_chunk(device: BlockDevice, v: int) -> bytes:
    return bytes(await device.read(v * PER_CHUNK, PER_CHUNK))
