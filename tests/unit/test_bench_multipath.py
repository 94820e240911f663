"""The pure helpers behind bench/multipath_faults.py (the benchmark itself is run by hand)."""

from __future__ import annotations

from pathlib import Path

import pytest
from bench.multipath_faults import (
    SESSION_OPTIONS,
    TwoPortalTarget,
    build_parser,
    options_dict,
    resolve,
)
from bench.multipath_report import (
    FAULTS,
    busiest_path,
    longest_gap,
    overlapping,
    percentile,
    spread,
)

from sanstack.host.sessions import SessionOptions
from sanstack.mpio.path_slot import MultipathOptions


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 99) == 99.0
    assert percentile(values, 50) == 50.0
    assert percentile(values, 100) == 100.0
    assert percentile([3.0, 1.0, 2.0], 99) == 3.0
    assert percentile([], 99) == 0.0


def test_overlapping_keeps_ios_in_flight_during_the_window() -> None:
    starts = [0.0, 0.5, 1.5, 3.0, 1.0]
    ends = [0.9, 1.2, 2.0, 3.5, 4.0]
    # window [1, 3): the first ended before it, the fourth started after it
    assert overlapping(starts, ends, 1.0, 3.0) == pytest.approx([0.7, 0.5, 3.0])


def test_longest_gap_counts_the_window_edges() -> None:
    assert longest_gap([1.0, 1.5, 4.0], 0.0, 5.0) == pytest.approx(2.5)
    assert longest_gap([0.5, 9.0], 1.0, 3.0) == pytest.approx(2.0)  # none inside
    assert longest_gap([1.0, 2.0], 1.0, 2.0) == pytest.approx(1.0)


def test_spread() -> None:
    assert spread([3.0, 1.0, 2.0]) == {"min": 1.0, "median": 2.0, "max": 3.0}
    assert spread([]) == {"min": 0.0, "median": 0.0, "max": 0.0}


def test_busiest_path_prefers_the_active_path_with_most_completions() -> None:
    assert busiest_path([10, 10], [20, 500], ["active", "active"]) == 1
    assert busiest_path([10, 10], [20, 500], ["active", "failed"]) == 0
    assert busiest_path([0, 0], [5, 5], ["active", "active"]) == 0  # tie: the first


def test_fault_kinds_match_the_brief() -> None:
    by_name = {f.name: f for f in FAULTS}
    assert list(by_name) == ["reset", "blackhole", "down", "delay"]
    assert by_name["blackhole"].holds == 10.0
    assert by_name["down"].holds == 5.0
    assert by_name["delay"].holds == 5.0
    assert all(f.window >= f.holds for f in FAULTS)


def test_quick_shortens_only_what_was_not_given() -> None:
    args = build_parser().parse_args(["--quick", "--repeat", "3"])
    resolve(args)
    assert (args.repeat, args.rounds, args.seconds, args.size_mib) == (3, 1, 2.0, 256)
    full = build_parser().parse_args([])
    resolve(full)
    assert (full.repeat, full.rounds, full.seconds, full.size_mib) == (5, 3, 10.0, 1024)


def test_target_gets_a_second_portal(tmp_path: Path) -> None:
    target = TwoPortalTarget("python3", tmp_path, tmp_path / "lun.img", 1 << 30)
    portals = [target.args[i + 1] for i, a in enumerate(target.args) if a == "--portal"]
    assert portals == [f"127.0.0.1:{target.port}", f"127.0.0.1:{target.port2}"]
    assert target.ports == [target.port, target.port2]
    assert f"{tmp_path / 'lun.img'}:1024M" in target.args


def test_options_report_the_shared_sessions_nop_timings() -> None:
    """The maps run over the host's shared sessions: the NOP timings the report shows are
    the sessions' (``SessionOptions``), the rest the map's."""
    options = MultipathOptions(selector="round-robin")
    sessions = SessionOptions(nop_interval=0.5, nop_timeout=1.5)
    shown = options_dict(options, sessions)
    assert (shown["nop_interval_s"], shown["nop_timeout_s"]) == (0.5, 1.5)
    assert shown["selector"] == "round-robin"
    assert shown["checker_interval_s"] == options.checker_interval
    assert options_dict(options, SESSION_OPTIONS)["nop_interval_s"] == SessionOptions().nop_interval
