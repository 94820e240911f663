"""I/O statistics of one device as a server sees it: counts, bytes and a latency histogram
per kind of operation (sans-IO: the caller measures the time and passes seconds).

One ``IOStats`` per export (NBD) or LUN (iSCSI target) lives as long as its server; the
Prometheus exposition (``sanstack_*_total``, ``*_bytes_total``, ``*_seconds`` histograms)
and the JSON of the service APIs (``snapshot``) read the same counters. The histogram's
buckets are fixed and cumulative only when read, so ``record`` is a few additions: it runs
once per request on the data path.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Final

# Upper bounds in seconds (Prometheus ``le``), from a page-cache hit to a path failover.
LATENCY_BUCKETS: Final = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


class IOKind(IntEnum):
    READ = 0
    WRITE = 1
    FLUSH = 2
    UNMAP = 3  # TRIM, WRITE ZEROES without data, UNMAP
    OTHER = 4  # block status, and what else a protocol asks that moves no data


@dataclass(slots=True)
class KindStats:
    """One kind's counters; ``buckets[i]`` counts latencies in (bound[i-1], bound[i]],
    the last one those above every bound."""

    ops: int = 0
    errors: int = 0
    bytes: int = 0
    seconds: float = 0.0
    buckets: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))

    def cumulative(self) -> list[tuple[float, int]]:
        """(le, count) pairs as Prometheus wants them, ``+Inf`` last."""
        total = 0
        pairs: list[tuple[float, int]] = []
        for bound, count in zip((*LATENCY_BUCKETS, float("inf")), self.buckets, strict=True):
            total += count
            pairs.append((bound, total))
        return pairs


class IOStats:
    """Counters of one device's I/O (module docstring)."""

    __slots__ = ("kinds",)

    def __init__(self) -> None:
        self.kinds = tuple(KindStats() for _ in IOKind)

    def record(self, kind: IOKind, nbytes: int, seconds: float, *, ok: bool = True) -> None:
        stats = self.kinds[kind]
        stats.ops += 1
        stats.seconds += seconds
        stats.buckets[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        if ok:
            stats.bytes += nbytes
        else:
            stats.errors += 1

    def merge(self, other: IOStats) -> None:
        """Add ``other``'s counters to these (a group's stats are its exports' summed)."""
        for mine, theirs in zip(self.kinds, other.kinds, strict=True):
            mine.ops += theirs.ops
            mine.errors += theirs.errors
            mine.bytes += theirs.bytes
            mine.seconds += theirs.seconds
            mine.buckets = [a + b for a, b in zip(mine.buckets, theirs.buckets, strict=True)]

    def snapshot(self) -> dict[str, Any]:
        """JSON: per kind ``ops``, ``errors``, ``bytes``, ``seconds`` (the latencies' sum)
        and ``buckets`` (the per-bucket counts, ``LATENCY_BUCKETS`` order, overflow last)."""
        return {
            kind.name.lower(): {
                "ops": stats.ops,
                "errors": stats.errors,
                "bytes": stats.bytes,
                "seconds": round(stats.seconds, 6),
                "buckets": list(stats.buckets),
            }
            for kind, stats in zip(IOKind, self.kinds, strict=True)
        }


def summed(stats: list[IOStats]) -> IOStats:
    total = IOStats()
    for one in stats:
        total.merge(one)
    return total
