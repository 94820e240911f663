"""``IOStats`` as Prometheus metric families, built at scrape time (sans-IO).

Every daemon exposes its devices' I/O the same way, under its own prefix and labels
(``sanstack_target_lun``, ``sanstack_nbd_export``, ``sanstack_cluster_group``): for each
kind of operation (label ``op``: read, write, flush, unmap, other) the operations, the
failed ones, the bytes moved and a latency histogram, all read from the live counters.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric

from sanstack.block.io_stats import LATENCY_BUCKETS, IOKind, IOStats

OPS: tuple[str, ...] = tuple(kind.name.lower() for kind in IOKind)


def le_text(bound: float) -> str:
    """A bucket's upper bound as the text format writes it (``0.005``, ``+Inf``)."""
    return "+Inf" if bound == float("inf") else repr(float(bound))


_BOUNDS = tuple(le_text(bound) for bound in (*LATENCY_BUCKETS, float("inf")))


def io_families(
    prefix: str,
    what: str,
    label_names: Sequence[str],
    rows: Iterable[tuple[Sequence[str], IOStats]],
) -> list[Metric]:
    """``{prefix}_io_operations_total``, ``_io_errors_total``, ``_io_bytes_total`` and the
    ``_io_duration_seconds`` histogram, one series per row and ``op``; ``what`` names the
    device in the help text (``"LUN"``)."""
    labels = [*label_names, "op"]
    ops = CounterMetricFamily(
        f"{prefix}_io_operations", f"I/O requests completed per {what}, by operation", labels=labels
    )
    errors = CounterMetricFamily(
        f"{prefix}_io_errors", f"I/O requests per {what} that failed, by operation", labels=labels
    )
    moved = CounterMetricFamily(
        f"{prefix}_io_bytes",
        f"Bytes read or written per {what} by requests that succeeded",
        labels=labels,
        unit="bytes",
    )
    latency = HistogramMetricFamily(
        f"{prefix}_io_duration_seconds",
        f"Time from receiving an I/O request per {what} to its answer",
        labels=labels,
    )
    for values, stats in rows:
        for op, kind in zip(OPS, stats.kinds, strict=True):
            series = [*values, op]
            ops.add_metric(series, kind.ops)
            errors.add_metric(series, kind.errors)
            moved.add_metric(series, kind.bytes)
            buckets = [
                (bound, float(count))
                for bound, (_le, count) in zip(_BOUNDS, kind.cumulative(), strict=True)
            ]
            latency.add_metric(series, buckets, kind.seconds)
    return [ops, errors, moved, latency]
