"""The pure helpers behind bench/host_scale.py (the benchmark itself is run by hand)."""

from __future__ import annotations

from typing import Any

import pytest
from bench.host_scale import (
    all_usable,
    build_parser,
    completed_on,
    data_sessions,
    first_completion_after,
    format_report,
    move_spread,
    parse_counts,
    per_map_kib,
    ratio,
    vm_rss_kib,
)

STATUS = """Name:\tpython3
VmPeak:\t  120000 kB
VmRSS:\t   62788 kB
RssAnon:\t   40000 kB
"""


def test_vm_rss_comes_from_the_status_file() -> None:
    assert vm_rss_kib(STATUS) == 62788
    with pytest.raises(ValueError):
        vm_rss_kib("Name:\tx\n")


def test_only_the_hosts_data_sessions_count() -> None:
    host = "iqn.2026-11.org.sanstack.host:scale"
    sessions = [
        {"initiator": host, "isid": "0x1", "tsih": 1, "discovery": False},
        {"initiator": host, "isid": "0x2", "tsih": 2, "discovery": False},
        {"initiator": host, "isid": "0x2", "tsih": 2, "discovery": False},  # a 2nd connection
        {"initiator": host, "isid": "0x0", "tsih": 3, "discovery": True},
        {"initiator": "iqn.other", "isid": "0x1", "tsih": 4, "discovery": False},
    ]
    assert data_sessions(sessions, host) == 2


def test_memory_per_map_is_the_growth_over_the_smallest_host() -> None:
    assert per_map_kib({1: 36000, 1024: 62600, 64: 37300}) == {
        1: None,
        1024: pytest.approx(26.0, abs=0.01),
        64: pytest.approx(20.63, abs=0.01),
    }
    assert per_map_kib({}) == {}


def test_usable_means_every_map_with_every_path_active() -> None:
    good = [{"paths": {"active": 2}}, {"paths": {"active": 2}}]
    assert all_usable(good, 2, 2)
    assert not all_usable(good, 3, 2)
    assert not all_usable([{"paths": {"active": 1, "failed": 1}}, *good[1:]], 2, 2)


def test_completions_on_one_portal_and_after_an_instant() -> None:
    paths = [
        {"wwid": "naa.1", "path": "iqn.t@127.0.0.1:4000", "completed": 5},
        {"wwid": "naa.1", "path": "iqn.t@127.0.0.1:4001", "completed": 7},
        {"wwid": "naa.2", "path": "iqn.t@127.0.0.1:40010", "completed": 9},
    ]
    assert completed_on(paths, "127.0.0.1:4001") == {"naa.1": 7}
    assert first_completion_after([1.0, 2.5, 3.0], 2.0) == pytest.approx(0.5)
    assert first_completion_after([1.0], 2.0) is None
    assert move_spread([0.1, 0.2, 0.3]) == {"p50": 0.2, "p99": 0.3, "max": 0.3}
    assert move_spread([]) == {}
    assert ratio(1.0, 4.0) == 0.25 and ratio(1.0, 0.0) is None


def test_counts_and_the_report() -> None:
    assert parse_counts("1024,1, 64,64") == [1, 64, 1024]
    with pytest.raises(ValueError):
        parse_counts("0,4")
    args = build_parser().parse_args([])
    assert (args.luns, args.repeat, args.hold) == ("1,64,256,1024", 3, 3.0)
    report: dict[str, Any] = {
        "machine": {
            "nproc": 2,
            "cpu_model": "Test CPU",
            "kernel": "6.1",
            "python": "3.11",
            "loadavg_at_start": ["0.1", "0.2", "0.3"],
        },
        "args": {"repeat": 3, "size_mib": 256},
        "start": [
            {
                "luns": 1,
                "ready_s": 0.3,
                "usable_s": 0.31,
                "sessions": 2,
                "rss_kib": 36000,
                "kib_per_map": None,
            },
        ],
        "reset": {
            "maps": 1,
            "interval_s": 0.5,
            "hold_s": 3.0,
            "all_moved_s": 0.4,
            "move_s": {"p50": 0.2, "p99": 0.4, "max": 0.4},
            "all_other_path_s": None,
            "stall_max_s": 0.1,
            "errors": 0,
        },
        "data_path": [
            {
                "title": "4 KiB random read, QD 32",
                "unit": "IOPS",
                "via_host": 12000.0,
                "direct": 48000.0,
                "ratio": 0.25,
                "host_cpu_s": 1.5,
                "target_cpu_s": None,
            },
        ],
        "problems": ["something"],
    }
    text = format_report(report)
    assert "Test CPU" in text and "0.25" in text and "PROBLEM: something" in text
    assert "portal-2 path completed an I/O after it: - s" in text
