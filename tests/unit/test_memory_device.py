"""The RAM backstore's provisioning status costs what is stored, not the LUN's size."""

from __future__ import annotations

import asyncio

from sanstack.block.device import LBAExtent, ProvisioningStatus
from sanstack.block.memory import MemoryDevice

MAPPED, DEALLOCATED = ProvisioningStatus.MAPPED, ProvisioningStatus.DEALLOCATED


def test_lba_status_on_a_huge_sparse_device() -> None:
    async def body() -> None:
        device = MemoryDevice(1 << 40)  # 512 TiB of 512-byte blocks, nearly all empty
        await device.write(1 << 39, bytes(3 * 512))
        everything = device.num_blocks
        assert await device.get_lba_status(0, everything) == [LBAExtent(0, 1 << 39, DEALLOCATED)]
        assert await device.get_lba_status(1 << 39, everything) == [LBAExtent(1 << 39, 3, MAPPED)]
        after = (1 << 39) + 3
        assert await device.get_lba_status(after, everything) == [
            LBAExtent(after, everything - after, DEALLOCATED)
        ]
        assert await device.get_lba_status(0, 10) == [LBAExtent(0, 10, DEALLOCATED)]

    asyncio.run(body())
