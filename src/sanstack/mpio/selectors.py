"""Path selectors: which path of the chosen group carries the next I/O.

The names and rules are those of dm-multipath (``service-time``, its default, and
``round-robin``, ``queue-length``) and of Windows MSDSM's load-balance policies (failover
only, round robin, round robin with subset, least queue depth, weighted paths): Linux's
drivers/md/dm-ps-*.c and Microsoft's MPIO load-balance policy documentation. Each selector
sees only usable paths of one priority group, so ALUA and path health are decided before it
runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Final, Protocol

from sanstack.errors import ConfigError
from sanstack.mpio.paths import Path


class Selector(Protocol):
    name: str

    def select(self, group: list[Path], size: int) -> Path: ...


class FailoverOnly:
    """MSDSM "failover only": one path carries everything until it fails (first by name)."""

    name = "failover"

    def select(self, group: list[Path], size: int) -> Path:
        return min(group, key=lambda p: p.name)


class RoundRobin:
    """Each path in turn, ``rr_min_io`` I/Os at a time (dm-multipath ``round-robin 0``)."""

    name = "round-robin"

    def __init__(self, rr_min_io: int = 1) -> None:
        if rr_min_io < 1:
            raise ConfigError("rr_min_io", "must be at least 1")
        self.rr_min_io = rr_min_io
        self._last: str | None = None
        self._count = 0

    def select(self, group: list[Path], size: int) -> Path:
        ordered = sorted(group, key=lambda p: p.name)
        names = [p.name for p in ordered]
        if self._last in names and self._count < self.rr_min_io:
            self._count += 1
            return ordered[names.index(self._last)]
        index = (names.index(self._last) + 1) % len(ordered) if self._last in names else 0
        self._last = names[index]
        self._count = 1
        return ordered[index]


# A module constant, not the class's attribute: compiled (mypyc), ``name`` is an instance
# attribute and the class object has none.
ROUND_ROBIN_SUBSET: Final = "round-robin-subset"


class RoundRobinWithSubset:
    """MSDSM "round robin with subset": round robin over the named paths while any of them
    is usable; the others are standby for the subset."""

    name = ROUND_ROBIN_SUBSET

    def __init__(self, subset: Iterable[str]) -> None:
        self.subset = frozenset(subset)
        if not self.subset:
            raise ConfigError("subset", "name at least one path")
        self._rr = RoundRobin()

    def select(self, group: list[Path], size: int) -> Path:
        preferred = [p for p in group if p.name in self.subset]
        return self._rr.select(preferred or group, size)


class LeastQueueDepth:
    """The path with the fewest I/Os in flight (dm-multipath ``queue-length``, MSDSM LQD)."""

    name = "least-queue-depth"

    def select(self, group: list[Path], size: int) -> Path:
        return min(group, key=lambda p: (p.in_flight, p.name))


class ServiceTime:
    """The path that would finish this I/O first: minimum (bytes in flight + this I/O)
    divided by its relative throughput (dm-multipath ``service-time 0``, the default)."""

    name = "service-time"

    def select(self, group: list[Path], size: int) -> Path:
        # min() by (estimate, name), written out: it runs for every I/O.
        best = group[0]
        if len(group) == 1:
            return best
        rate = best.relative_throughput
        least = (best.in_flight_bytes + size) / (rate if rate > 1 else 1)
        for path in group[1:]:
            rate = path.relative_throughput
            estimate = (path.in_flight_bytes + size) / (rate if rate > 1 else 1)
            if estimate < least or (estimate == least and path.name < best.name):
                best, least = path, estimate
        return best


class WeightedPaths:
    """MSDSM "weighted paths": the usable path with the least weight carries the I/O."""

    name = "weighted"

    def select(self, group: list[Path], size: int) -> Path:
        return min(group, key=lambda p: (p.weight, p.name))


SELECTORS: dict[str, Callable[[], Selector]] = {
    "service-time": ServiceTime,
    "round-robin": RoundRobin,
    "least-queue-depth": LeastQueueDepth,
    "failover": FailoverOnly,
    "weighted": WeightedPaths,
}
DEFAULT_SELECTOR = "service-time"


def make_selector(name: str, *, subset: Iterable[str] = ()) -> Selector:
    """A selector by its name; ``round-robin-subset`` needs the subset's path names."""
    if name == ROUND_ROBIN_SUBSET:
        return RoundRobinWithSubset(subset)
    factory = SELECTORS.get(name)
    if factory is None:
        choices = ", ".join([*SELECTORS, ROUND_ROBIN_SUBSET])
        raise ConfigError("selector", f"{name!r} is not one of {choices}")
    return factory()
