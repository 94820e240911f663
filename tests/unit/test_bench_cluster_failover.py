"""bench/cluster_failover.py's pure helpers: the groups' layout, and the failover and move
splits read from cluster events as ``GET /v1/cluster/events`` answers them."""

from __future__ import annotations

from typing import Any

import pytest
from bench.cluster_failover import (
    check_holders,
    failover_split,
    format_report,
    group_layout,
    move_split,
)


def test_disks_are_laid_out_in_groups_as_even_as_can_be() -> None:
    assert group_layout(1, 100) == [["d0"]]
    assert [len(g) for g in group_layout(1000, 100)] == [100] * 10
    assert [len(g) for g in group_layout(250, 100)] == [84, 83, 83]
    assert [d for g in group_layout(10, 4) for d in g] == [f"d{i}" for i in range(10)]
    with pytest.raises(ValueError):
        group_layout(0, 10)


def event(time: float, node: str, kind: str, reason: str = "", **fields: str) -> dict[str, Any]:
    return {"time": time, "node": node, "kind": kind, "reason": reason, **fields}


def state(time: float, node: str, group: str, old: str, new: str) -> dict[str, Any]:
    return event(time, node, "group.state", f"{old} -> {new}: why", group=group)


def test_the_failover_split_is_read_from_the_survivor_s_log() -> None:
    events = [
        state(99.0, "n2", "g1", "onlining_export", "online"),  # before the kill: not counted
        event(105.0, "n2", "membership.left", "n1 is down", peer="n1"),
        event(105.5, "n2", "disk.preempted", group="g1", disk="d0"),
        event(106.0, "n2", "disk.preempted", group="g2", disk="d1"),
        state(106.2, "n2", "g1", "onlining_disks", "onlining_volumes"),
        state(106.5, "n2", "g2", "onlining_disks", "onlining_volumes"),
        state(106.6, "n2", "g1", "onlining_volumes", "onlining_export"),
        state(106.7, "n2", "g2", "onlining_volumes", "onlining_export"),
        state(106.8, "n2", "g1", "onlining_export", "online"),
        event(107.0, "n2", "volume.scanned", group="g1", disk="d0"),
        state(107.5, "n2", "g2", "onlining_export", "online"),
        state(108.0, "n3", "g2", "onlining_export", "online"),  # another node's
    ]
    split = failover_split(
        events, 100.0, survivor="n2", dead="n1", groups=["g1", "g2"], volume_groups=["g1"]
    )
    assert split == {
        "detected": 5.0,
        "fenced_first": 5.5,
        "fenced_last": 6.0,
        "preempted": 2.0,
        "disks_online": 6.5,
        "volumes_open": pytest.approx(6.7),
        "scanned": 7.0,
        "exported": 7.5,
    }
    # A group not online yet: no figure, rather than the others' last.
    partial = failover_split(
        events[:-2], 100.0, survivor="n2", dead="n1", groups=["g1", "g2"], volume_groups=[]
    )
    assert partial["exported"] is None and partial["volumes_open"] is None


def test_the_move_split_counts_each_group_from_its_own_request() -> None:
    events = [
        event(101.0, "n2", "group.moved", "move requested: from n2 to n3", group="g1"),
        event(101.2, "n2", "group.moved", "move requested: from n2 to n3", group="g2"),
        state(101.1, "n3", "g1", "offline", "onlining_disks"),
        state(101.25, "n3", "g2", "offline", "onlining_disks"),
        state(101.3, "n2", "g1", "offlining_export", "offlining_volumes"),
        state(101.3, "n2", "g2", "offlining_export", "offlining_volumes"),
        state(101.4, "n2", "g1", "offlining_volumes", "releasing_disks"),
        state(101.4, "n2", "g2", "offlining_volumes", "releasing_disks"),
        state(102.0, "n2", "g1", "releasing_disks", "offline"),
        state(102.5, "n2", "g2", "releasing_disks", "offline"),
        state(102.6, "n3", "g1", "onlining_disks", "onlining_volumes"),
        state(102.7, "n3", "g2", "onlining_disks", "onlining_volumes"),
        state(102.8, "n3", "g1", "onlining_volumes", "onlining_export"),
        state(102.8, "n3", "g2", "onlining_volumes", "onlining_export"),
        state(103.0, "n3", "g1", "onlining_export", "online"),
        state(103.0, "n3", "g2", "onlining_export", "online"),
    ]
    split = move_split(events, 100.0, old="n2", new="n3", groups=["g1", "g2"], volume_groups=[])
    assert split["cli"] == 1.0
    assert split["requested"] == pytest.approx(0.2)
    assert split["unbound"] == pytest.approx(0.3)  # g1's; g2's was 0.1
    assert split["released"] == pytest.approx(1.3)  # g2's: 102.5 - 101.2
    assert split["onlining_first"] == pytest.approx(0.1)
    assert split["disks_online"] == pytest.approx(1.6)  # g1's: 102.6 - 101.0
    assert split["volumes_open"] is None
    assert split["exported"] == pytest.approx(2.0)
    # A group not moved yet: no figure.
    partial = move_split(
        events[:-1], 100.0, old="n2", new="n3", groups=["g1", "g2"], volume_groups=[]
    )
    assert partial["exported"] is None


def test_holders_are_checked_against_the_live_nodes_keys() -> None:
    status = {
        "disks": [
            {"name": "d0", "holder": "n2", "keys": [{"key": "a"}, {"key": "b"}]},
            {"name": "d1", "holder": "n2", "keys": [{"key": "a"}, {"key": "b"}, {"key": "c"}]},
            {"name": "d2", "holder": "n3", "keys": [{"key": "a"}, {"key": "b"}]},
        ]
    }
    wrong = check_holders(status, "n2", {"a", "b"}, ["d0", "d1", "d2", "d3"])
    assert [w.split(":")[0] for w in wrong] == ["d1", "d2", "d3"]


def test_the_report_names_the_machine_and_shows_every_run() -> None:
    report = {
        "machine": {
            "nproc": 2,
            "cpu_model": "Some CPU",
            "kernel": "6.1",
            "python": "3.11",
            "loadavg_at_start": ["0.1", "0.2", "0.3"],
        },
        "args": {"timing": [], "group_size": 100},
        "runs": [{"disks": 10, "groups": 1, "start_s": 2.0, "failover": {"detected": 4.9}}],
        "problems": ["1000 disks: slow"],
    }
    text = format_report(report)
    assert "Some CPU" in text and "defaults" in text
    assert "    10      1     2.00       4.90" in text
    assert "PROBLEM: 1000 disks: slow" in text
