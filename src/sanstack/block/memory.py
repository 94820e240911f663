"""A RAM backstore: sparse, thin, for tests and the embedded demo."""

from __future__ import annotations

from sanstack.block.device import (
    BLOCK_SIZES,
    BlockDevice,
    DeviceIdentity,
    DeviceNotReady,
    LBAExtent,
    ProvisioningStatus,
)


class MemoryDevice(BlockDevice):
    """Blocks live in a dict keyed by LBA; absent blocks read as zeroes and are deallocated."""

    thin_provisioned = True
    write_cache = False

    def __init__(
        self,
        num_blocks: int,
        block_size: int = 512,
        *,
        identity: DeviceIdentity | None = None,
        read_only: bool = False,
    ) -> None:
        if block_size not in BLOCK_SIZES:
            raise ValueError(f"block_size {block_size} is not one of {BLOCK_SIZES}")
        if num_blocks <= 0:
            raise ValueError("num_blocks must be positive")
        self.block_size = block_size
        self.num_blocks = num_blocks
        self.identity = identity or DeviceIdentity.from_seed(f"memory:{id(self)}")
        self.read_only = read_only
        self._blocks: dict[int, bytes] = {}
        self._zero = bytes(block_size)
        self._closed = False

    @classmethod
    def from_blocks(
        cls, num_blocks: int, block_size: int, blocks: dict[int, bytes]
    ) -> MemoryDevice:
        """A device holding ``blocks`` (``{lba: bytes}``, absent blocks zero); adopts the dict."""
        device = cls(num_blocks, block_size)
        device._blocks = blocks
        return device

    def blocks(self) -> dict[int, bytes]:
        """A copy of the stored blocks, ``{lba: bytes}`` (what ``from_blocks`` takes)."""
        return dict(self._blocks)

    def _check_open(self) -> None:
        if self._closed:
            raise DeviceNotReady("device is closed")

    async def read(self, lba: int, count: int) -> bytes:
        self._check_open()
        get = self._blocks.get
        zero = self._zero
        return b"".join([get(b, zero) for b in range(lba, lba + count)])

    async def write(self, lba: int, data: bytes | memoryview) -> None:
        self._check_open()
        bs = self.block_size
        view = memoryview(data)
        for i in range(len(view) // bs):
            self._blocks[lba + i] = bytes(view[i * bs : (i + 1) * bs])

    async def flush(self) -> None:
        self._check_open()

    async def unmap(self, lba: int, count: int) -> None:
        self._check_open()
        pop = self._blocks.pop
        for b in range(lba, lba + count):
            pop(b, None)

    async def get_lba_status(self, lba: int, max_count: int) -> list[LBAExtent]:
        self._check_open()
        end = min(self.num_blocks, lba + max_count)
        blocks = self._blocks
        mapped = lba in blocks
        # Work in proportion to the blocks stored, never to the LUN's size: a sparse
        # terabyte must not walk 2**31 empty blocks on the event loop.
        if mapped:
            b = lba
            while b < end and b in blocks:
                b += 1
        else:
            b = min((k for k in blocks if lba < k < end), default=end)
        status = ProvisioningStatus.MAPPED if mapped else ProvisioningStatus.DEALLOCATED
        return [LBAExtent(lba, b - lba, status)]

    def health(self) -> str | None:
        return "device is closed" if self._closed else None

    async def close(self) -> None:
        self._closed = True
