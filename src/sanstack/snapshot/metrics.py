"""Snapshot volumes as Prometheus metric families, built at scrape time (sans-IO).

The target daemon exposes the volumes it holds (label ``volume``: the file), a cluster
node those of the groups it runs (labels ``group`` and ``volume``: the disk). Each is read
from ``SnapshotVolume.info()``, the same numbers ``sanstack volume info`` shows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from prometheus_client.core import GaugeMetricFamily, Metric

from sanstack.snapshot.model import VolumeInfo


def volume_families(
    label_names: Sequence[str], rows: Iterable[tuple[Sequence[str], VolumeInfo]]
) -> list[Metric]:
    labels = list(label_names)

    def gauge(name: str, text: str) -> GaugeMetricFamily:
        return GaugeMetricFamily(f"sanstack_snapshot_volume_{name}", text, labels=labels)

    snapshots = gauge("snapshots", "Snapshots of the volume (those being deleted excluded)")
    most = gauge("max_snapshots", "Snapshots the volume can hold at most")
    size = gauge("size_bytes", "The volume's size as its users see it")
    used = gauge("snapshot_used_bytes", "Space the snapshots' preserved chunks take")
    free = gauge("free_bytes", "Free space for new chunks (0 until the free-space scan ends)")
    reserve = gauge("reserve_bytes", "The snapshot area: pool space beyond the volume's size")
    for values, info in rows:
        series = list(values)
        snapshots.add_metric(series, info.snapshots)
        most.add_metric(series, info.max_snapshots)
        size.add_metric(series, info.size_bytes)
        used.add_metric(series, info.snapshot_used_bytes)
        free.add_metric(series, info.free_bytes)
        reserve.add_metric(series, info.reserve_bytes)
    return [snapshots, most, size, used, free, reserve]
