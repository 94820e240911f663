"""Pure helpers and the report of ``bench/multipath_faults.py`` (split to keep modules small)."""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.multipath_faults import Injection


@dataclass(frozen=True)
class FaultKind:
    name: str
    holds: float  # seconds the fault is in place (0: instantaneous)
    window: float  # seconds after injection whose I/Os the figures cover
    what: str


FAULTS = (
    FaultKind("reset", 0.0, 2.0, "proxy.reset(): RST on both sides of every connection"),
    FaultKind("blackhole", 10.0, 10.0, "proxy.blackhole() for 10 s, then restore()"),
    FaultKind("down", 5.0, 5.0, "proxy.down() (reset + connects refused) for 5 s, then up()"),
    FaultKind("delay", 5.0, 5.0, "proxy.delay(0.5) (0.5 s each way) for 5 s, then delay(None)"),
)


# ---------------------------------------------------------------- pure helpers


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def overlapping(
    starts: Sequence[float], ends: Sequence[float], begin: float, end: float
) -> list[float]:
    """Latencies of the I/Os in flight at some point of [begin, end)."""
    return [e - s for s, e in zip(starts, ends, strict=True) if s < end and e > begin]


def longest_gap(ends: Sequence[float], begin: float, end: float) -> float:
    """The longest time within [begin, end] in which no I/O completed."""
    inside = sorted(e for e in ends if begin <= e <= end)
    marks = [begin, *inside, end]
    return max(b - a for a, b in itertools.pairwise(marks))


def spread(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {"min": 0.0, "median": 0.0, "max": 0.0}
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def busiest_path(before: Sequence[int], after: Sequence[int], states: Sequence[str]) -> int:
    """The active path that completed the most I/O between two status snapshots."""
    deltas = [
        (a - b if s == "active" else -1) for b, a, s in zip(before, after, states, strict=True)
    ]
    return max(range(len(deltas)), key=lambda i: (deltas[i], -i))


# ---------------------------------------------------------------- reporting


def summarise_faults(injections: Sequence[Injection]) -> list[dict[str, Any]]:
    out = []
    for kind in FAULTS:
        mine = [i for i in injections if i.kind == kind.name]
        if mine:
            back = [i.back_after_s for i in mine if i.back_after_s is not None]
            out.append(
                {
                    **asdict(kind),
                    "injections": len(mine),
                    "max_stall_s": spread([i.max_latency_s for i in mine]),
                    "p99_in_window_s": spread([i.p99_s for i in mine]),
                    "longest_gap_s": spread([i.longest_gap_s for i in mine]),
                    "window_iops": spread([i.window_iops for i in mine]),
                    "clean_iops": spread([i.clean_iops for i in mine]),
                    "clean_p99_s": spread([i.clean_p99_s for i in mine]),
                    "path_failed": sum(i.path_failed for i in mine),
                    "back_after_s": spread(back) if back else None,
                    "failed_ios": sum(i.failed for i in mine),
                }
            )
    return out


def _ms(s: dict[str, float]) -> str:
    return "/".join(f"{s[k] * 1000:,.0f}" for k in ("min", "median", "max"))


def format_report(report: dict[str, Any]) -> str:
    o, m = report["multipath_options"], report["machine"]
    lines = [
        f"sanstack multipath benchmark, {report['date']}, {report['event_loop']}; "
        f"{m['nproc']} CPUs ({m['cpu_model']}); {report['size_mib']} MiB LUN, page cache warm",
        "one Python process (initiator, multipath, proxies, load) + the target process, on "
        "the same CPUs, loopback TCP",
        f"MultipathOptions defaults: selector {o['selector']}, checker_interval "
        f"{o['checker_interval_s']} s, no_path_retry {o['no_path_retry']}; over one shared "
        f"session per portal, SessionOptions defaults: nop_interval {o['nop_interval_s']} s, "
        f"nop_timeout {o['nop_timeout_s']} s",
        "",
        f"Stalls under faults: {report['readers']} readers of random 4 KiB blocks; "
        f"{report['repeat']} injection(s) per kind on the busiest path after "
        f"{report['clean_s']:g} s of clean load; min/median/max across injections, in ms",
        "  max stall = longest latency of an I/O in flight during the window; gap = longest "
        "time with no I/O completing; back = fault end to path active",
        f"  {'fault':10}{'window':>6}{'max stall':>20}{'p99 in window':>15}{'gap':>12}"
        f"{'IOPS window/clean':>19}{'failed':>8}{'back':>8}{'I/O err':>8}",
    ]
    for f in report["faults"]:
        back = f"{f['back_after_s']['median']:.2f}s" if f["back_after_s"] else "-"
        iops = f"{f['window_iops']['median']:,.0f}/{f['clean_iops']['median']:,.0f}"
        lines.append(
            f"  {f['name']:10}{f['window']:>5.0f}s{_ms(f['max_stall_s']):>20}"
            f"{_ms(f['p99_in_window_s']):>15}{_ms(f['longest_gap_s']):>12}{iops:>19}"
            f"{f['path_failed']:>6}/{f['injections']:<2}{back:>7}{f['failed_ios']:>8}"
        )
    lines += [f"    {f['name']}: {f['what']}" for f in report["faults"]]
    c = report["fault_part_cpu_pct"]
    lines.append(
        f"  CPU during the fault part, % of one core: bench {c['bench']:.0f}, target "
        f"{c['target']:.0f}, other {c['other']:.0f}"
    )
    if report["throughput"]:
        lines += [
            "",
            f"Throughput, no proxies, no faults: median of {report['rounds']} x "
            f"{report['seconds']:g} s; ratio = multipath / single path (one ISCSIDevice, "
            "one session, portal 1); CPU = % of one core",
        ]
    for t in report["throughput"]:
        lines.append(f"  {t['workload']['title']} ({t['workload']['unit']})")
        for config, value in t["median"].items():
            cpu = t["median_cpu_pct"][config]
            lines.append(
                f"    {config:24}{value:>10,.1f}{t['ratio_over_single_path'][config]:>7.2f}x"
                f"   CPU bench {cpu['bench']:3.0f}% target {cpu['target']:3.0f}% "
                f"other {cpu['other']:3.0f}%   runs "
                + " / ".join(f"{v:,.0f}" for v in t["runs"][config])
            )
    lines += [f"\nPROBLEM: {p}" for p in report["problems"]]
    if report["io_errors"]:
        lines.append(f"\nI/O ERRORS ({len(report['io_errors'])}), the first ones:")
        lines += [f"  {e}" for e in report["io_errors"][:20]]
    return "\n".join(lines)
