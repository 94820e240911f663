"""One read started by ``MultipathDevice.start_read``: a read through a map without a
coroutine (``nbd.server.ReadStarter``), its path's counters kept as ``_io`` keeps them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

from sanstack.initiator.lun_device import ISCSIDevice, LunRead, Parts, ReadSink
from sanstack.mpio.path_slot import PathSlot


class MapOwner(Protocol):
    """What a ``MapRead`` needs of its map (``MultipathDevice``)."""

    @property
    def block_size(self) -> int: ...

    def read_again(
        self,
        slot: PathSlot,
        device: ISCSIDevice,
        lba: int,
        count: int,
        resume: Callable[[], Awaitable[Parts]],
    ) -> Coroutine[Any, Any, Parts]: ...


class MapRead:
    """One read started by ``MultipathDevice.start_read``: the sink of its path's read
    (``ReadSink``) and the ticket that cancels it. What ``_io`` does around an attempt
    (the path's counters) is done here; any end but the usual one goes to ``_io``."""

    __slots__ = ("_count", "_device", "_lba", "_map", "_sink", "_size", "_slot", "ticket")

    def __init__(  # noqa: PLR0917 - the read and where it goes, as start_read has them
        self,
        device_map: MapOwner,
        slot: PathSlot,
        device: ISCSIDevice,
        lba: int,
        count: int,
        sink: ReadSink,
    ) -> None:
        self._map = device_map
        self._slot = slot
        self._device = device
        self._lba = lba
        self._count = count
        self._sink = sink
        self._size = count * device_map.block_size
        self.ticket: LunRead | None = None
        path = slot.path
        path.in_flight += 1  # Path.started, inlined as in _io
        path.in_flight_bytes += self._size

    def withdraw(self) -> None:
        """Take the read out of its path's in-flight counters (not sent, or handed on)."""
        path = self._slot.path
        path.in_flight -= 1
        path.in_flight_bytes -= self._size

    def read_done(self, parts: Parts) -> None:
        path = self._slot.path
        path.in_flight -= 1
        path.in_flight_bytes -= self._size
        path.completed += 1
        self._sink.read_done(parts)

    def read_slow(self, resume: Callable[[], Awaitable[Parts]]) -> None:
        """The attempt did not end as usual: ``_io`` takes it from here (it counts the
        attempt in flight again while it runs, and as completed when it ends)."""
        device_map, slot, device = self._map, self._slot, self._device
        lba, count = self._lba, self._count
        self.withdraw()
        self._sink.read_slow(lambda: device_map.read_again(slot, device, lba, count, resume))

    def cancel(self) -> None:
        """The reader gave up (as a cancelled ``read_parts``): the command is aborted."""
        self.withdraw()
        self._slot.path.completed += 1
        if self.ticket is not None:
            self.ticket.cancel()
