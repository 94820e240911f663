"""The pure parts of bench/snapshot_writes.py: sizing the run, summaries, the table.

Kept apart so they can be unit-tested (tests/unit/test_bench_snapshot.py) without running
the benchmark.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sanstack.snapshot.layout import Geometry
from sanstack.snapshot.model import FormatOptions

CHUNK = 4096
MIB = 1 << 20
# The run must stay below the space policy's thresholds (warn 80 %: new snapshots refused;
# delete 90 %: snapshots deleted in the background), with room to spare.
RESERVE_HEADROOM = 0.70


class SizingError(ValueError):
    """The requested run cannot fit a volume (too many preserved chunks for any reserve)."""


@dataclass(frozen=True, slots=True)
class RunPlan:
    """How big the device and its snapshot reserve must be for one run."""

    volume_chunks: int  # wanted; the formatted volume may be slightly larger
    pass_chunks: int  # chunks rewritten by one scattered overwrite pass
    first_writes: int  # chunks written once per first-write measurement
    preserved_chunks: int  # old versions the whole run makes snapshots keep
    reserve_chunks: int  # wanted snapshot reserve
    reserve_percent: int
    device_bytes: int


def plan_run(
    volume_bytes: int, counts: Sequence[int], pass_percent: float, first_writes: int
) -> RunPlan:
    """Size the device so that every pass and first-write of the run fits the reserve.

    Every write of a pass and of a first-write measurement comes right after a snapshot,
    so its old version is preserved: the run preserves ``max(counts)`` passes plus one
    first-write measurement per non-zero count. The reserve holds that at
    ``RESERVE_HEADROOM`` of its size.
    """
    if volume_bytes < 64 * CHUNK or volume_bytes % CHUNK:
        raise SizingError(f"volume size {volume_bytes} must be a multiple of 4 KiB, >= 256 KiB")
    if not counts or min(counts) < 0:
        raise SizingError("snapshot counts must be given and >= 0")
    volume = volume_bytes // CHUNK
    pass_chunks = max(1, round(volume * pass_percent / 100))
    if pass_chunks + first_writes > volume:
        raise SizingError(
            f"a pass ({pass_chunks} chunks) and a first-write run ({first_writes}) "
            f"do not fit a {volume}-chunk volume"
        )
    preserved = max(counts) * pass_chunks + first_writes * sum(1 for c in counts if c > 0)
    reserve = max(1, -(-preserved * 100 // int(RESERVE_HEADROOM * 100)))
    percent = -(-100 * reserve // (volume + reserve))
    if percent > 90:
        raise SizingError(
            f"{preserved} preserved chunks need a {percent} % reserve (at most 90 %); "
            "lower --pass-percent, --first-writes or the largest count"
        )
    percent = max(1, percent)
    options = FormatOptions(reserve_percent=percent)

    def fits(device: int) -> bool:
        g = Geometry.plan(device, options)
        return g.volume_chunks >= volume and g.reserve_chunks >= reserve

    # The smallest whole number of MiB that fits (the plan grows with the device).
    low = (volume + reserve) * CHUNK // MIB
    high = low * 2 + 64
    while low < high:
        middle = (low + high) // 2
        if fits(middle * MIB):
            high = middle
        else:
            low = middle + 1
    device = low * MIB
    return RunPlan(volume, pass_chunks, first_writes, preserved, reserve, percent, device)


# -- results ---------------------------------------------------------------------------


@dataclass(slots=True)
class Measure:
    """One timed run of 4 KiB writes."""

    writes: int
    seconds: float
    cpu_seconds: float  # this process, all threads (event loop + file I/O threads)
    other_cpu_seconds: float  # the rest of the machine, from /proc/stat
    system_seconds: float = 0.0  # the kernel's share of cpu_seconds

    @property
    def iops(self) -> float:
        return self.writes / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_us_per_write(self) -> float:
        return 1e6 * self.cpu_seconds / self.writes if self.writes else 0.0

    @property
    def system_us_per_write(self) -> float:
        return 1e6 * self.system_seconds / self.writes if self.writes else 0.0

    @property
    def other_cpu_percent(self) -> float:
        return 100 * self.other_cpu_seconds / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "writes": self.writes,
            "seconds": round(self.seconds, 4),
            "iops": round(self.iops, 1),
            "cpu_us_per_write": round(self.cpu_us_per_write, 2),
            "system_us_per_write": round(self.system_us_per_write, 2),
            "other_cpu_percent": round(self.other_cpu_percent, 1),
        }


@dataclass(slots=True)
class Level:
    """The figures at one snapshot count; each list holds one run per round."""

    snapshots: int
    steady: list[Measure]  # (a) in-place writes to chunks rewritten since the newest snapshot
    first: list[Measure]  # (b) one write to each of fresh chunks; at 0 snapshots: control
    raw: list[Measure]  # the raw FileDevice, overwrites, run just before each (a)
    pass_iops: list[float]  # the overwrite passes that led to this count (first writes too)
    used_percent: float  # of the snapshot reserve, after (b)
    journal_pages: int  # journal page writes during (b)
    checkpoints: int  # checkpoints taken during (b)

    def to_dict(self) -> dict[str, Any]:
        return {
            "snapshots": self.snapshots,
            "steady": [m.to_dict() for m in self.steady],
            "first_write": [m.to_dict() for m in self.first],
            "raw": [m.to_dict() for m in self.raw],
            "pass_iops": [round(i, 1) for i in self.pass_iops],
            "used_percent": round(self.used_percent, 2),
            "journal_page_writes": self.journal_pages,
            "checkpoints": self.checkpoints,
        }


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else 0.0


def median_iops(runs: Sequence[Measure]) -> float:
    return statistics.median(m.iops for m in runs) if runs else 0.0


def median_cpu(runs: Sequence[Measure]) -> float:
    return statistics.median(m.cpu_us_per_write for m in runs) if runs else 0.0


def summarise(levels: Sequence[Level]) -> dict[str, Any]:
    """Per count: medians of (a), (b) and raw; (a)/(a at 0); (a)/(b); (a)/raw."""
    base = next((lv for lv in levels if lv.snapshots == 0), levels[0])
    base_steady = median_iops(base.steady)
    base_cpu = median_cpu(base.steady)
    rows = []
    for lv in levels:
        steady, first, raw = median_iops(lv.steady), median_iops(lv.first), median_iops(lv.raw)
        others = [m.other_cpu_percent for m in (*lv.steady, *lv.first, *lv.raw)]
        rows.append(
            {
                "snapshots": lv.snapshots,
                "steady_iops": round(steady, 1),
                "steady_vs_0": round(ratio(steady, base_steady), 3),
                "raw_iops": round(raw, 1),
                "steady_vs_raw": round(ratio(steady, raw), 3),
                "first_write_iops": round(first, 1),
                "first_write_cost": round(ratio(steady, first), 2) if lv.snapshots else None,
                "pass_iops_median": (
                    round(statistics.median(lv.pass_iops), 1) if lv.pass_iops else None
                ),
                "steady_cpu_us": round(median_cpu(lv.steady), 1),
                "steady_cpu_vs_0": round(ratio(median_cpu(lv.steady), base_cpu), 3),
                "first_cpu_us": round(median_cpu(lv.first), 1),
                "raw_cpu_us": round(median_cpu(lv.raw), 1),
                "other_cpu_percent_max": round(max(others, default=0.0), 1),
                "used_percent": round(lv.used_percent, 1),
                "journal_page_writes": lv.journal_pages,
                "checkpoints": lv.checkpoints,
            }
        )
    flat = [round(ratio(median_iops(lv.steady), base_steady), 3) for lv in levels]
    costs = [
        round(ratio(median_iops(lv.steady), median_iops(lv.first)), 2)
        for lv in levels
        if lv.snapshots
    ]
    return {
        "rows": rows,
        "steady_vs_0_range": [min(flat), max(flat)],
        "first_write_cost_max": max(costs) if costs else None,
    }


def _n(value: float) -> str:
    return f"{value:,.0f}"


def format_report(report: dict[str, Any]) -> str:
    """The Markdown tables docs/benchmarks.md shows."""
    s = report["summary"]
    p = report["plan"]
    lines = [
        f"volume {p['volume_mib']:.0f} MiB ({p['volume_chunks']} chunks of 4 KiB), reserve "
        f"{p['reserve_percent']} % ({p['reserve_mib']:.0f} MiB), device {p['device_mib']:.0f} "
        f"MiB; queue depth {report['qd']}; pass = {p['pass_chunks']} chunks; "
        f"{report['rounds']} rounds per count of: raw {report['seconds']} s, (a) "
        f"{report['seconds']} s, (b) {p['first_writes'] // report['rounds']} chunks; "
        f"{report['event_loop']}; CPUs {report.get('cpus')}",
        "",
        "| snapshots | (a) in-place IOPS | (a) / (a at 0) | raw IOPS | (a) / raw "
        "| (b) first-write IOPS | first-write cost (a)/(b) | passes' first writes, IOPS "
        "| CPU µs/write (a) / (b) / raw | reserve used | journal page writes / "
        "checkpoints in (b) | other CPU %, max |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in s["rows"]:
        first = _n(r["first_write_iops"])
        cost = f"**{r['first_write_cost']:.2f}**" if r["first_write_cost"] is not None else "n/a"
        if not r["snapshots"]:
            first = f"({first}: control, in place)"
        passes = _n(r["pass_iops_median"]) if r["pass_iops_median"] is not None else "n/a"
        lines.append(
            f"| {r['snapshots']} | {_n(r['steady_iops'])} | **{r['steady_vs_0']:.2f}** "
            f"| {_n(r['raw_iops'])} | {r['steady_vs_raw']:.2f} | {first} | {cost} | {passes} "
            f"| {r['steady_cpu_us']:.0f} / {r['first_cpu_us']:.0f} / {r['raw_cpu_us']:.0f} "
            f"| {r['used_percent']:.0f} % | {r['journal_page_writes']} / {r['checkpoints']} "
            f"| {r['other_cpu_percent_max']:.0f} |"
        )
    extra = report["volume"]
    holes = report["raw_holes"]
    span = report["raw_span"]
    lines += [
        "",
        f"(a)/(a at 0) within {s['steady_vs_0_range'][0]:.2f}..{s['steady_vs_0_range'][1]:.2f}; "
        f"largest first-write cost {s['first_write_cost_max']}.",
        f"Raw, for reference: overwrites over the whole file {_n(span['iops'])} IOPS "
        f"({span['cpu_us_per_write']:.0f} µs CPU/write); first writes into the holes of a "
        f"sparse file {_n(holes['iops'])} IOPS ({holes['cpu_us_per_write']:.0f} µs). "
        "Prefill of the fresh volume (every chunk once, no snapshot yet): "
        f"{_n(extra['prefill']['iops'])} IOPS "
        f"({extra['prefill']['cpu_us_per_write']:.0f} µs). Snapshot create: median "
        f"{extra['create_ms_median']:.1f} ms, max {extra['create_ms_max']:.1f} ms. Close: "
        f"{extra['close_s']:.2f} s. Whole run: {extra['journal_page_writes']} journal page "
        f"writes, {extra['checkpoints']} checkpoints.",
    ]
    if report["problems"]:
        lines += ["", *(f"PROBLEM: {p}" for p in report["problems"])]
    return "\n".join(lines)
