"""The one block-device interface every sanstack layer implements.

Layers stack like device-mapper targets: a file or memory backstore at the bottom,
then (later) ``MultipathDevice`` and ``SnapshotVolume``. The iSCSI target serves any
``BlockDevice`` as a LUN, so everything that reaches a LUN goes through these methods.

Errors a device raises are the ``BlockDeviceError`` subclasses below; the SCSI layer maps
each to its sense data (a medium error is a medium error on every transport).
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from sanstack.errors import SanstackError

# The logical block sizes a backstore may have: those every initiator copes with.
BLOCK_SIZES: Final = (512, 1024, 2048, 4096)


class BlockDeviceError(SanstackError):
    """Base of the errors a block device reports for one I/O."""


class MediumError(BlockDeviceError):
    """The data could not be read or written (SCSI MEDIUM ERROR).

    ``write`` says which: a VERIFY or COMPARE AND WRITE that fails reading the medium is an
    UNRECOVERED READ ERROR even though the command carries Data-Out.
    """

    def __init__(self, message: str, *, write: bool = False) -> None:
        super().__init__(message)
        self.write = write


class DeviceNotReady(BlockDeviceError):
    """The device cannot serve I/O now (SCSI NOT READY); the caller may retry later."""


class SpaceExhausted(BlockDeviceError):
    """A thin device ran out of space for a write (SBC-4 SPACE ALLOCATION FAILED)."""


class DeviceReadOnly(BlockDeviceError):
    """A write was sent to a read-only device (SCSI DATA PROTECT / WRITE PROTECTED)."""


class ProvisioningStatus(IntEnum):
    """SBC-4 §5.8.2 table 'PROVISIONING STATUS field' of the GET LBA STATUS descriptor."""

    MAPPED = 0x0
    DEALLOCATED = 0x1
    ANCHORED = 0x2


@dataclass(frozen=True, slots=True)
class LBAExtent:
    """A run of logical blocks sharing one provisioning status."""

    lba: int
    count: int
    status: ProvisioningStatus


@dataclass(frozen=True, slots=True)
class DeviceIdentity:
    """What makes a device the same device across paths, restarts and failovers.

    ``naa`` feeds the NAA designator of VPD page 0x83 (a multipath initiator groups paths by
    it, never by name); ``unit_serial`` feeds VPD page 0x80 and the T10 vendor designator.
    """

    naa: bytes
    unit_serial: str

    def __post_init__(self) -> None:
        if len(self.naa) != 8 or self.naa[0] >> 4 != 0x3:
            raise ValueError("naa must be an 8-byte NAA 3h (locally assigned) designator")
        if not self.unit_serial or len(self.unit_serial) > 32 or not self.unit_serial.isascii():
            raise ValueError("unit_serial must be 1..32 ASCII characters")

    @classmethod
    def from_seed(cls, seed: str) -> DeviceIdentity:
        """Derive a stable identity from a seed (a path, a volume UUID, a config name).

        sanstack owns no IEEE company id, so it uses NAA 3h, "locally assigned" (SPC-4
        §7.8.6.6.2), whose 60 bits are ours to choose: the top of SHA-256 of the seed.
        """
        digest = hashlib.sha256(seed.encode()).digest()
        naa = bytes([0x30 | (digest[0] & 0x0F)]) + digest[1:8]
        return cls(naa=naa, unit_serial=digest[8:24].hex())


class BlockDevice(ABC):
    """An asynchronous block device of ``num_blocks`` blocks of ``block_size`` bytes.

    Contract for implementations:

    * ``read``/``write`` take whole blocks; the caller has checked the range. ``read`` may
      return a ``memoryview`` or ``bytes`` of exactly ``count * block_size`` bytes.
    * A write is durable only after ``flush`` returns (a volatile write cache), unless the
      device says ``write_cache`` is False.
    * ``unmap`` deallocates; later reads of those blocks return zeroes.
    * ``close`` is idempotent; I/O issued after it fails with ``DeviceNotReady``.
    * ``read_now``/``write_now`` may do I/O synchronously; the defaults never do.
    """

    block_size: int
    num_blocks: int
    identity: DeviceIdentity
    read_only: bool = False
    thin_provisioned: bool = False
    write_cache: bool = True

    @abstractmethod
    async def read(self, lba: int, count: int) -> bytes | memoryview: ...

    def read_now(self, lba: int, count: int) -> bytes | memoryview | None:
        """The blocks if they are at hand without waiting (cached), else None.

        An optional fast path beside ``read``: a device whose data can already be in memory
        (the file backstore's page cache) overrides it so that the target answers such a
        read without a coroutine. None is always a correct answer (``read`` then runs), and
        errors are never raised here: ``read`` reports them.
        """
        return None

    def write_now(self, lba: int, data: bytes | memoryview) -> bool:
        """Write the blocks at once if that cannot wait (into a cache); True when done.

        ``read_now``'s counterpart: False is always correct (``write`` then runs, and it
        may write the same blocks again, which a write allows). Never raises: ``write``
        reports errors.
        """
        return False

    @abstractmethod
    async def write(self, lba: int, data: bytes | memoryview) -> None: ...

    @abstractmethod
    async def flush(self) -> None: ...

    async def unmap(self, lba: int, count: int) -> None:
        """Deallocate blocks; the default writes zeroes, which reads back the same."""
        chunk = 256
        while count > 0:
            n = min(chunk, count)
            await self.write(lba, bytes(n * self.block_size))
            lba += n
            count -= n

    async def get_lba_status(self, lba: int, max_count: int) -> list[LBAExtent]:
        """Provisioning status from ``lba``: one extent or more, ``max_count`` blocks at most."""
        count = min(max_count, self.num_blocks - lba)
        return [LBAExtent(lba, count, ProvisioningStatus.MAPPED)]

    def health(self) -> str | None:
        """None when the device can serve I/O, else a one-line reason (TEST UNIT READY)."""
        return None

    async def close(self) -> None:  # noqa: B027 - a device with nothing to release may keep it
        """Release resources; the default has none."""

    _physical_block_size: int | None = None

    @property
    def physical_block_size(self) -> int:
        """The unit below which a write costs a read-modify-write.

        READ CAPACITY(16) reports it as LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT. The
        default is the logical block size: file and RAM backstores handle any 512-byte
        write, and libiscsi's GetLBAStatus.UnmapSingle, for lbppb > 1, asks for the status
        at ``i + 1`` and expects the first descriptor at ``i + lbppb``, while SBC-4 ("LBA
        status descriptor relationships") says the first descriptor's LBA shall be the
        STARTING LOGICAL BLOCK ADDRESS.
        """
        return self._physical_block_size or self.block_size

    def set_physical_block_size(self, size: int | None) -> None:
        """Report ``size`` (a power-of-two multiple of the block size) as the physical block."""
        if size is not None:
            ratio = size // self.block_size
            if size % self.block_size or ratio & (ratio - 1) or ratio > 1 << 15:
                raise ValueError(
                    f"physical block size {size} is not a power-of-two multiple "
                    f"of the block size {self.block_size}"
                )
        self._physical_block_size = size

    @property
    def capacity_bytes(self) -> int:
        return self.num_blocks * self.block_size
