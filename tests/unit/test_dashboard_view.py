"""The dashboard's view model (sans-IO): rates from successive counters, across an owner
change; the cluster log merged from every node's own; what the page calls a group's state;
a view assembled from the nodes' answers, keeping the last one when no node answers."""

from __future__ import annotations

from typing import Any

import pytest

from sanstack.block.io_stats import IOKind, IOStats
from sanstack.dashboard.view import (
    EVENTS_KEPT,
    HISTORY,
    MIB,
    DashboardState,
    GroupHistory,
    MergedEvents,
    Poll,
    Sample,
    display_state,
    rates,
    volume_names,
)


def counters(reads: int = 0, writes: int = 0, seconds: float = 0.0) -> dict[str, Any]:
    stats = IOStats()
    for _ in range(reads):
        stats.record(IOKind.READ, 4096, seconds)
    for _ in range(writes):
        stats.record(IOKind.WRITE, MIB, seconds)
    return stats.snapshot()


def test_rates_are_per_second_between_two_samples() -> None:
    before = Sample(10.0, "n1", counters(reads=10, writes=2, seconds=0.001))
    after = Sample(12.0, "n1", counters(reads=30, writes=6, seconds=0.001))
    r = rates(before, after)
    assert r["read_ops"] == pytest.approx(10.0)
    assert r["write_ops"] == pytest.approx(2.0)
    assert r["write_mib"] == pytest.approx(2.0)
    assert r["read_mib"] == pytest.approx(20 * 4096 / MIB / 2)
    assert r["latency_ms"] == pytest.approx(1.0)


def test_no_operations_means_no_latency_and_zero_rates() -> None:
    same = counters(reads=5, seconds=0.002)
    r = rates(Sample(1.0, "n1", same), Sample(2.0, "n1", same))
    assert r["read_ops"] == 0 and r["latency_ms"] is None


def test_a_new_owner_counts_from_zero() -> None:
    """After a failover the counters are the new owner's, started at zero: what it counted
    happened since the earlier sample (never a negative rate)."""
    before = Sample(1.0, "n1", counters(writes=100))
    after = Sample(3.0, "n2", counters(writes=10))
    assert rates(before, after)["write_ops"] == pytest.approx(5.0)
    # The same owner restarted its export: the counters went down.
    restarted = Sample(3.0, "n1", counters(writes=10))
    assert rates(before, restarted)["write_ops"] == pytest.approx(5.0)


def test_a_group_running_nowhere_has_zero_rates() -> None:
    r = rates(Sample(1.0, "n1", counters(writes=3)), Sample(2.0, None, None))
    assert r["write_ops"] == 0 and r["latency_ms"] is None
    assert rates(Sample(2.0, None, None), Sample(2.0, None, counters()))["write_ops"] == 0


def test_the_history_is_bounded() -> None:
    history = GroupHistory()
    assert history.add(Sample(0.0, "n1", counters())) is None  # one sample: no rate yet
    for second in range(1, HISTORY + 20):
        history.add(Sample(float(second), "n1", counters(writes=second)))
    assert len(history.points) == HISTORY
    assert history.points[-1][0] == float(HISTORY + 19)


def event(node: str, seq: int, when: float) -> dict[str, Any]:
    return {"seq": seq, "time": when, "node": node, "kind": "group.state", "reason": "x"}


def test_events_of_every_node_merge_in_time_order() -> None:
    merged = MergedEvents()
    merged.add("n1", {"last_seq": 2, "events": [event("n1", 1, 1.0), event("n1", 2, 3.0)]})
    merged.add("n2", {"last_seq": 7, "events": [event("n2", 7, 2.0)]})
    assert [(e["node"], e["seq"]) for e in merged.events] == [("n1", 1), ("n2", 7), ("n1", 2)]
    assert merged.since == {"n1": 2, "n2": 7}
    # A node whose log began again (its state directory is new) is read from the start.
    merged.add("n2", {"last_seq": 1, "events": []})
    assert merged.since["n2"] == 0


def test_the_merged_log_is_bounded() -> None:
    merged = MergedEvents()
    many = [event("n1", i, float(i)) for i in range(1, EVENTS_KEPT + 50)]
    merged.add("n1", {"last_seq": len(many), "events": many})
    assert len(merged.events) == EVENTS_KEPT and merged.events[-1]["seq"] == len(many)


NODES = [{"name": "n1", "state": "down"}, {"name": "n2", "state": "alive"}]


@pytest.mark.parametrize(
    ("group", "has_quorum", "shown"),
    [
        ({"state": "online", "owner": "n2"}, True, "online"),
        ({"state": "online", "owner": "n1"}, True, "pending"),  # its owner just died
        ({"state": "onlining", "owner": "n2"}, True, "pending"),
        ({"state": "offlining", "owner": None}, True, "pending"),
        ({"state": "offline", "owner": None, "placed": "n2"}, True, "pending"),
        ({"state": "offline", "owner": None, "placed": None}, False, "pending"),  # no quorum
        ({"state": "offline", "owner": None, "placed": None}, True, "offline"),
        ({"state": "failed", "owner": None}, True, "failed"),
    ],
)
def test_what_the_page_calls_a_groups_state(
    group: dict[str, Any], has_quorum: bool, shown: str
) -> None:
    assert display_state(group, NODES, has_quorum) == shown


def status(owner: str | None, io: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "node": "n2",
        "view": {"epoch": 3, "members": ["n1", "n2"], "coordinator": "n1"},
        "quorum": {"has": True, "votes": 2, "needed": 2, "total": 3},
        "fenced": False,
        "nodes": [
            {"name": "n1", "state": "alive"},
            {"name": "n2", "state": "alive"},
            {"name": "n3", "state": "down"},
        ],
        "groups": [{"name": "g1", "state": "online", "owner": owner, "placed": owner, "io": io}],
        "disks": [{"name": "d1", "holder": owner}],
    }


def state() -> DashboardState:
    return DashboardState(
        cluster="c",
        controls={"n1": "/run/n1.sock", "n2": "/run/n2.sock", "n3": "/run/n3.sock"},
        devices={"d1": "iqn.2026-12.org.example:t/1", "d2": "naa.60014050000000000000000000000002"},
        volume_names=volume_names([("g1", ["d1"]), ("g2", [])]),
        has_target=True,
    )


def test_a_view_from_the_nodes_answers() -> None:
    dashboard = state()
    maps = {
        "n1": {
            "maps": [
                {"alias": "iqn.2026-12.org.example:t/1", "wwid": "naa.1", "paths": {"active": 2}},
                {"alias": "x", "wwid": "NAA.60014050000000000000000000000002", "paths": {}},
            ]
        },
        "n2": "no answer in time",
    }
    volumes = {"g1/d1": {"info": {"size_bytes": 1}, "snapshots": [{"name": "s1"}]}}
    first = dashboard.update(
        Poll(1.0, "n2", status("n1", counters(writes=1)), maps=maps, volumes=volumes)
    )
    assert first["source"] == "n2" and not first["stale"]
    assert first["nodes"][0] == {
        "name": "n1",
        "state": "alive",
        "control": "/run/n1.sock",
        "groups": ["g1"],
    }
    (group,) = first["groups"]
    assert "io" not in group and group["display"] == "online" and group["rates"] is None
    assert [m["disk"] for m in first["paths"]["n1"]["maps"]] == ["d1", "d2"]
    assert first["paths"]["n2"] == {"error": "no answer in time", "maps": []}
    assert first["volumes"] == [
        {"volume": "g1/d1", "info": {"size_bytes": 1}, "snapshots": [{"name": "s1"}], "error": None}
    ]
    second = dashboard.update(Poll(2.0, "n2", status("n1", counters(writes=4))))
    assert second["groups"][0]["rates"]["write_ops"] == pytest.approx(3.0)
    assert len(second["chart"]["g1"]) == 1
    assert second["version"] == first["version"] + 1


def test_without_any_answer_the_last_view_is_kept_and_marked_stale() -> None:
    dashboard = state()
    volumes = {"g1/d1": {"info": {"size_bytes": 1}, "snapshots": [{"name": "s1"}]}}
    dashboard.update(Poll(1.0, "n1", status("n1", counters()), volumes=volumes))
    view = dashboard.update(
        Poll(
            2.0,
            None,
            None,
            status_error="no node answered (n1: Connection refused)",
            volumes={"g1/d1": "volume: group g1 is not online on any node; try again when it is"},
        )
    )
    assert view["stale"] and view["error"].startswith("no node answered")
    assert view["groups"][0]["owner"] == "n1"  # the last status
    (volume,) = view["volumes"]
    assert volume["snapshots"] == [{"name": "s1"}] and "not online" in volume["error"]
