"""The multipath policy core: path states, ALUA groups, failback, selectors, no-path retry."""

from __future__ import annotations

from collections import Counter

import pytest

from sanstack.errors import ConfigError, LocalProtocolError
from sanstack.mpio.no_path import NoPathPolicy, NoPathRetry
from sanstack.mpio.paths import (
    _TRANSITIONS,
    FailbackPolicy,
    GroupChooser,
    Path,
    PathEvent,
    PathState,
    priority_group,
)
from sanstack.mpio.selectors import (
    LeastQueueDepth,
    RoundRobin,
    RoundRobinWithSubset,
    ServiceTime,
    WeightedPaths,
    make_selector,
)
from sanstack.scsi.alua_codec import ALUAState

AO, ANO, SB = ALUAState.ACTIVE_OPTIMIZED, ALUAState.ACTIVE_NON_OPTIMIZED, ALUAState.STANDBY


def test_transition_table_is_complete() -> None:
    for state in PathState:
        for event in PathEvent:
            assert (state, event) in _TRANSITIONS


def test_failure_and_reinstatement_are_recorded() -> None:
    path = Path("p1")
    assert path.handle(PathEvent.NOP_TIMEOUT, 10.0) is PathState.FAILED
    assert path.failed_at == 10.0 and path.failures == 1 and not path.usable
    assert path.handle(PathEvent.IO_PATH_ERROR, 11.0) is PathState.FAILED
    assert path.failures == 1  # failing a failed path is not a new failure
    assert path.handle(PathEvent.CHECKER_OK, 12.0) is PathState.ACTIVE
    assert path.reinstated_at == 12.0
    assert path.state is PathState.ACTIVE  # usable again
    assert path.handle(PathEvent.REMOVE, 13.0) is PathState.REMOVED
    assert path.handle(PathEvent.CHECKER_OK, 14.0) is PathState.REMOVED
    assert len(path.history) == 3


def test_bad_event_is_a_local_error() -> None:
    path = Path("p1")
    with pytest.raises(LocalProtocolError):
        path.handle("nonsense", 0.0)  # type: ignore[arg-type]


def test_alua_groups_order_optimized_then_non_optimized_then_standby() -> None:
    paths = [Path("a", AO), Path("b", ANO), Path("c", SB), Path("d", ALUAState.UNAVAILABLE)]
    assert [p.name for p in priority_group(paths)] == ["a"]
    paths[0].handle(PathEvent.IO_PATH_ERROR, 0)
    assert [p.name for p in priority_group(paths)] == ["b"]
    paths[1].handle(PathEvent.IO_PATH_ERROR, 0)
    assert [p.name for p in priority_group(paths)] == ["c"]
    paths[2].handle(PathEvent.IO_PATH_ERROR, 0)
    assert priority_group(paths) == []  # unavailable never carries I/O


@pytest.mark.parametrize(
    ("policy", "delay", "at", "expected"),
    [
        (FailbackPolicy.IMMEDIATE, 0.0, 101.0, "a"),
        (FailbackPolicy.MANUAL, 0.0, 500.0, "b"),
        (FailbackPolicy.DEFERRED, 30.0, 110.0, "b"),
        (FailbackPolicy.DEFERRED, 30.0, 131.0, "a"),
    ],
)
def test_failback_policies(policy: FailbackPolicy, delay: float, at: float, expected: str) -> None:
    paths = [Path("a", AO), Path("b", ANO)]
    chooser = GroupChooser(policy, delay)
    assert [p.name for p in chooser.choose(paths, 0.0)] == ["a"]
    paths[0].handle(PathEvent.IO_PATH_ERROR, 50.0)
    assert [p.name for p in chooser.choose(paths, 50.0)] == ["b"]
    paths[0].handle(PathEvent.CHECKER_OK, 100.0)
    assert [p.name for p in chooser.choose(paths, at)] == [expected]


def test_manual_failback_switches_only_when_asked() -> None:
    paths = [Path("a", AO), Path("b", ANO)]
    chooser = GroupChooser(FailbackPolicy.MANUAL)
    chooser.choose(paths, 0)
    paths[0].handle(PathEvent.IO_PATH_ERROR, 1)
    chooser.choose(paths, 1)
    paths[0].handle(PathEvent.CHECKER_OK, 2)
    assert [p.name for p in chooser.choose(paths, 3)] == ["b"]
    chooser.switch(paths)
    assert [p.name for p in chooser.choose(paths, 4)] == ["a"]


def test_round_robin_spreads_and_honours_rr_min_io() -> None:
    group = [Path("a"), Path("b"), Path("c")]
    rr = RoundRobin()
    assert [rr.select(group, 4096).name for _ in range(6)] == ["a", "b", "c", "a", "b", "c"]
    rr2 = RoundRobin(rr_min_io=2)
    assert [rr2.select(group, 4096).name for _ in range(6)] == ["a", "a", "b", "b", "c", "c"]
    # A path leaving the group does not break the rotation.
    assert rr.select(group[1:], 4096).name in {"b", "c"}


def test_round_robin_with_subset_uses_others_only_when_the_subset_is_gone() -> None:
    group = [Path("a"), Path("b"), Path("c")]
    selector = RoundRobinWithSubset(["a", "b"])
    assert Counter(selector.select(group, 1).name for _ in range(10)) == {"a": 5, "b": 5}
    assert selector.select([group[2]], 1).name == "c"


def test_least_queue_depth_and_service_time() -> None:
    a, b = Path("a"), Path("b")
    a.started(4096)
    a.started(4096)
    b.started(1 << 20)
    assert LeastQueueDepth().select([a, b], 4096) is b
    assert ServiceTime().select([a, b], 4096) is a  # fewer bytes queued wins
    b.relative_throughput = 1000
    assert ServiceTime().select([a, b], 4096) is b  # a much faster path wins despite bytes
    b.finished(1 << 20)
    assert b.in_flight == 0 and b.completed == 1


def test_service_time_breaks_ties_by_name_as_min_did() -> None:
    c, a, b = Path("c"), Path("a"), Path("b")
    assert ServiceTime().select([c, a, b], 512) is a  # nothing queued anywhere
    a.started(512)
    assert ServiceTime().select([c, a, b], 512) is b
    assert ServiceTime().select([c], 512) is c


def test_weighted_paths_prefer_the_least_weight() -> None:
    a, b = Path("a", weight=5), Path("b", weight=1)
    assert WeightedPaths().select([a, b], 1) is b


def test_selector_factory() -> None:
    assert make_selector("service-time").name == "service-time"
    assert make_selector("round-robin-subset", subset=["a"]).name == "round-robin-subset"
    with pytest.raises(ConfigError, match="selector"):
        make_selector("random")
    with pytest.raises(ConfigError, match="subset"):
        make_selector("round-robin-subset")


def test_no_path_retry() -> None:
    assert NoPathRetry.parse("fail").deadline(5.0) == 5.0
    assert NoPathRetry.parse("0").policy is NoPathPolicy.FAIL
    assert NoPathRetry.parse("10").deadline(5.0) == 15.0
    assert NoPathRetry.parse("queue").deadline(5.0) is None
    with pytest.raises(ConfigError, match="no_path_retry"):
        NoPathRetry.parse("forever")
    with pytest.raises(ConfigError):
        NoPathRetry(NoPathPolicy.QUEUE_FOR, -1)
