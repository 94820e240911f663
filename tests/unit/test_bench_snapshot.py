"""The pure helpers behind bench/snapshot_writes.py (the benchmark itself is run by hand),
and one miniature run of it, so that it keeps working as the volume's API moves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench.snapshot_report import (
    CHUNK,
    MIB,
    Level,
    Measure,
    SizingError,
    format_report,
    plan_run,
    summarise,
)
from bench.snapshot_writes import build_parser, main, parse_counts, resolve

from sanstack.snapshot.layout import Geometry
from sanstack.snapshot.model import FormatOptions


def test_plan_fits_every_preserved_chunk_under_the_warning_threshold() -> None:
    plan = plan_run(1 << 30, (0, 1, 16, 64, 256), 1.0, 16384)
    assert plan.volume_chunks == 262144
    assert plan.pass_chunks == 2621  # 1 % of the chunks
    assert plan.preserved_chunks == 256 * 2621 + 4 * 16384  # one (b) run per count > 0
    assert plan.preserved_chunks <= 0.70 * plan.reserve_chunks
    g = Geometry.plan(plan.device_bytes, FormatOptions(reserve_percent=plan.reserve_percent))
    assert g.volume_chunks >= plan.volume_chunks
    assert g.reserve_chunks >= plan.reserve_chunks
    assert plan.device_bytes % MIB == 0
    # The smallest such device: one MiB less does not fit.
    smaller = Geometry.plan(
        plan.device_bytes - MIB, FormatOptions(reserve_percent=plan.reserve_percent)
    )
    assert smaller.volume_chunks < plan.volume_chunks or (
        smaller.reserve_chunks < plan.reserve_chunks
    )


def test_plan_refuses_what_no_reserve_can_hold() -> None:
    with pytest.raises(SizingError, match="at most 90 %"):
        plan_run(1 << 30, (0, 1024), 5.0, 16384)
    with pytest.raises(SizingError, match="do not fit"):
        plan_run(1 << 20, (0, 1), 50.0, 200)
    with pytest.raises(SizingError, match="multiple of 4 KiB"):
        plan_run(1000, (0, 1), 1.0, 1)


def test_counts_and_quick_defaults() -> None:
    assert parse_counts("0,1,16,64,256") == (0, 1, 16, 64, 256)
    for bad in ("1,0", "1,1", "-1,2", "a", ""):
        with pytest.raises(Exception, match="counts"):
            parse_counts(bad)
    args = build_parser().parse_args(["--quick", "--seconds", "2"])
    resolve(args)
    assert (args.volume_mib, args.seconds, args.first_writes, args.rounds) == (64, 2.0, 2048, 1)
    full = build_parser().parse_args([])
    resolve(full)
    assert (full.volume_mib, full.seconds, full.first_writes) == (1024, 4.0, 16384)
    assert (full.qd, full.rounds) == (32, 3)
    assert full.counts == (0, 1, 16, 64, 256)


def measure(iops: float, cpu_us: float = 50.0) -> Measure:
    return Measure(
        writes=int(iops), seconds=1.0, cpu_seconds=iops * cpu_us * 1e-6, other_cpu_seconds=0.0
    )


def test_summary_ratios_use_medians_of_the_rounds() -> None:
    raw = [measure(25000), measure(15000), measure(20000)]
    levels = [
        Level(0, [measure(20000)], [measure(21000)], raw, [], 0.0, 0, 0),
        Level(1, [measure(19000)], [measure(10000)], raw, [9000.0, 11000.0], 3.0, 100, 0),
        Level(
            256,
            [measure(21000), measure(22000, 40.0), measure(30000)],
            [measure(8800), measure(1000), measure(9000)],
            [measure(20000)],
            [9500.0],
            60.0,
            90,
            1,
        ),
    ]
    summary = summarise(levels)
    rows = {r["snapshots"]: r for r in summary["rows"]}
    assert rows[0]["first_write_cost"] is None  # no snapshot: (b) is a control
    assert rows[0]["raw_iops"] == 20000  # median of the rounds
    assert rows[1]["steady_vs_0"] == 0.95
    assert rows[1]["steady_vs_raw"] == 0.95
    assert rows[1]["first_write_cost"] == 1.9
    assert rows[256]["steady_iops"] == 22000
    assert rows[256]["first_write_iops"] == 8800
    assert rows[256]["first_write_cost"] == 2.5
    assert rows[256]["steady_vs_raw"] == 1.1
    assert rows[256]["steady_cpu_us"] == 50
    assert rows[1]["pass_iops_median"] == 10000
    assert summary["steady_vs_0_range"] == [0.95, 1.1]
    assert summary["first_write_cost_max"] == 2.5


def test_miniature_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--volume-mib", "1", "--counts", "0,1,3", "--pass-percent", "5"]
    argv += ["--first-writes", "16", "--seconds", "0.05", "--qd", "4", "--rounds", "2"]
    argv += ["--dir", str(tmp_path)]
    assert main([*argv, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["problems"] == []
    assert [r["snapshots"] for r in report["summary"]["rows"]] == [0, 1, 3]
    assert report["volume"]["snapshots"] == 3
    assert report["plan"]["volume_chunks"] == MIB // CHUNK
    assert [len(lv["pass_iops"]) for lv in report["levels"]] == [0, 1, 2]
    assert all(sum(m["writes"] for m in lv["first_write"]) == 16 for lv in report["levels"])
    assert "| 3 |" in format_report(report)
    assert list(tmp_path.iterdir()) == []  # the temp dir is removed
