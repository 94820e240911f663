"""One group's lifecycle table (cluster/group_state.py): every (state, event), the steps
started, failure and fencing paths, deadlines, and clear refusals of illegal events."""

from __future__ import annotations

import pytest

from sanstack.cluster.group_state import (
    STEPS,
    TRANSITIONS,
    GroupAction,
    GroupEvent,
    GroupLifecycle,
    GroupState,
    transition,
)
from sanstack.errors import LocalProtocolError

S, E, A = GroupState, GroupEvent, GroupAction
TIMEOUT = 60.0

# The expected table, written out independently of the module's: state -> event -> (next
# state, failure); an event missing from a state's row is illegal there.
DONE, FAILED, TIMED_OUT = E.STEP_DONE, E.STEP_FAILED, E.STEP_TIMED_OUT
FENCED, OFF, ON = E.FENCED, E.OFFLINE_REQUESTED, E.ONLINE_REQUESTED
LOST = E.STORAGE_LOST
EXPECTED: dict[GroupState, dict[GroupEvent, tuple[GroupState, bool]]] = {
    S.OFFLINE: {
        ON: (S.ONLINING_DISKS, False),
        OFF: (S.OFFLINE, False),
        FENCED: (S.OFFLINE, False),
        LOST: (S.OFFLINE, False),
    },
    S.ONLINING_DISKS: {
        DONE: (S.ONLINING_VOLUMES, False),
        FAILED: (S.RELEASING_DISKS, True),
        TIMED_OUT: (S.RELEASING_DISKS, True),
        FENCED: (S.STOPPING, False),
        LOST: (S.STOPPING, True),
        OFF: (S.RELEASING_DISKS, False),
        ON: (S.ONLINING_DISKS, False),
    },
    S.ONLINING_VOLUMES: {
        DONE: (S.ONLINING_EXPORT, False),
        FAILED: (S.OFFLINING_VOLUMES, True),
        TIMED_OUT: (S.OFFLINING_VOLUMES, True),
        FENCED: (S.STOPPING, False),
        LOST: (S.STOPPING, True),
        OFF: (S.OFFLINING_VOLUMES, False),
        ON: (S.ONLINING_VOLUMES, False),
    },
    S.ONLINING_EXPORT: {
        DONE: (S.ONLINE, False),
        FAILED: (S.OFFLINING_EXPORT, True),
        TIMED_OUT: (S.OFFLINING_EXPORT, True),
        FENCED: (S.STOPPING, False),
        LOST: (S.STOPPING, True),
        OFF: (S.OFFLINING_EXPORT, False),
        ON: (S.ONLINING_EXPORT, False),
    },
    S.ONLINE: {
        FAILED: (S.OFFLINING_EXPORT, True),
        FENCED: (S.STOPPING, False),
        LOST: (S.STOPPING, True),
        OFF: (S.OFFLINING_EXPORT, False),
        ON: (S.ONLINE, False),
    },
    S.OFFLINING_EXPORT: {
        DONE: (S.OFFLINING_VOLUMES, False),
        FAILED: (S.OFFLINING_VOLUMES, True),
        TIMED_OUT: (S.OFFLINING_VOLUMES, True),
        FENCED: (S.STOPPING, False),
        LOST: (S.STOPPING, True),
        OFF: (S.OFFLINING_EXPORT, False),
    },
    S.OFFLINING_VOLUMES: {
        DONE: (S.RELEASING_DISKS, False),
        FAILED: (S.RELEASING_DISKS, True),
        TIMED_OUT: (S.RELEASING_DISKS, True),
        FENCED: (S.STOPPING, False),
        LOST: (S.STOPPING, True),
        OFF: (S.OFFLINING_VOLUMES, False),
    },
    S.RELEASING_DISKS: {
        DONE: (S.OFFLINE, False),
        FAILED: (S.OFFLINE, True),
        TIMED_OUT: (S.OFFLINE, True),
        FENCED: (S.STOPPING, False),
        LOST: (S.STOPPING, True),
        OFF: (S.RELEASING_DISKS, False),
    },
    S.STOPPING: {
        DONE: (S.OFFLINE, False),
        FAILED: (S.OFFLINE, True),
        TIMED_OUT: (S.OFFLINE, True),
        FENCED: (S.STOPPING, False),
        LOST: (S.STOPPING, True),
        OFF: (S.STOPPING, False),
    },
    S.FAILED: {
        ON: (S.ONLINING_DISKS, False),
        OFF: (S.RELEASING_DISKS, False),
        FENCED: (S.FAILED, False),
        LOST: (S.FAILED, False),
    },
}

PAIRS = [(state, event) for state in GroupState for event in GroupEvent]


def test_the_codes_that_travel_in_heartbeats_stay_put() -> None:
    assert {s.name: s.value for s in GroupState} == {
        "OFFLINE": 0,
        "ONLINING_DISKS": 1,
        "ONLINING_VOLUMES": 2,
        "ONLINING_EXPORT": 3,
        "ONLINE": 4,
        "OFFLINING_EXPORT": 5,
        "OFFLINING_VOLUMES": 6,
        "RELEASING_DISKS": 7,
        "STOPPING": 8,
        "FAILED": 9,
    }
    assert all(0 <= s <= 0xFF for s in GroupState)


def test_the_table_is_the_expected_one() -> None:
    assert set(TRANSITIONS) == {(s, e) for s, row in EXPECTED.items() for e in row}


@pytest.mark.parametrize(("state", "event"), PAIRS, ids=[f"{s.name}-{e.value}" for s, e in PAIRS])
def test_every_transition(state: GroupState, event: GroupEvent) -> None:
    group = GroupLifecycle("g1", TIMEOUT, state, deadline=5.0 if state.pending else None)
    expected = EXPECTED[state].get(event)
    if expected is None:
        assert not group.accepts(event)
        with pytest.raises(LocalProtocolError) as raised:
            group.handle(event, 10.0)
        assert str(raised.value) == f"group g1: {event.value} is not accepted in {state.name}"
        assert group.state is state  # a refusal changes nothing
        return
    nxt, failure = expected
    assert group.accepts(event)
    assert transition(state, event).failure is failure
    action = group.handle(event, 10.0, "why")
    if failure and nxt is S.OFFLINE:
        nxt = S.FAILED  # the way down ends FAILED once the group failed
    assert group.state is nxt
    if nxt is state:
        assert action is None
        assert group.deadline == (5.0 if state.pending else None)  # the step goes on
    else:
        assert action is STEPS.get(nxt)
        assert group.deadline == (10.0 + TIMEOUT if nxt.pending else None)
    assert group.failure == ("why" if failure else None)


def test_storage_lost_stops_without_writes_and_ends_failed() -> None:
    group = GroupLifecycle("g1")
    run(group, ON, DONE, DONE, DONE)
    assert group.handle(LOST, 1.0, "no path") is A.STOP_WITHOUT_WRITES
    assert state_of(group) is S.STOPPING
    assert group.handle(FENCED, 1.5) is None  # fenced too: the stop goes on
    assert group.handle(DONE, 2.0) is None
    assert state_of(group) is S.FAILED and group.failure == "no path"


def state_of(group: GroupLifecycle) -> GroupState:
    """The state now (a call, so that a type checker does not keep an earlier narrowing)."""
    return group.state


def run(group: GroupLifecycle, *events: GroupEvent) -> list[GroupAction | None]:
    return [group.handle(event, 0.0) for event in events]


def test_online_then_offline() -> None:
    group = GroupLifecycle("g1")
    assert run(group, ON, DONE, DONE, DONE) == [
        A.ARBITRATE_DISKS,
        A.OPEN_VOLUMES,
        A.BIND_EXPORT,
        None,
    ]
    assert state_of(group) is S.ONLINE and group.deadline is None
    assert run(group, OFF, DONE, DONE, DONE) == [
        A.UNBIND_EXPORT,
        A.CLOSE_VOLUMES,
        A.RELEASE_DISKS,
        None,
    ]
    assert state_of(group) is S.OFFLINE and group.failure is None


def test_a_failed_online_step_undoes_what_was_done_and_ends_failed() -> None:
    group = GroupLifecycle("g1")
    run(group, ON, DONE)
    assert group.handle(FAILED, 0.0, "volume d1: journal corrupt") is A.CLOSE_VOLUMES
    assert run(group, DONE, DONE) == [A.RELEASE_DISKS, None]
    assert state_of(group) is S.FAILED and group.failure == "volume d1: journal corrupt"
    # A restart clears it.
    assert group.handle(ON, 0.0) is A.ARBITRATE_DISKS and group.failure is None


def test_a_failure_on_the_way_down_goes_on_down() -> None:
    group = GroupLifecycle("g1")
    run(group, ON, DONE, DONE, DONE, OFF)
    assert group.handle(FAILED, 0.0, "unbind: address in use") is A.CLOSE_VOLUMES
    assert run(group, DONE, DONE) == [A.RELEASE_DISKS, None]
    assert state_of(group) is S.FAILED and group.failure == "unbind: address in use"


def test_a_running_group_that_fails_is_taken_down_and_failed() -> None:
    group = GroupLifecycle("g1")
    run(group, ON, DONE, DONE, DONE)
    assert group.handle(FAILED, 0.0, "export died") is A.UNBIND_EXPORT
    run(group, DONE, DONE, DONE)
    assert state_of(group) is S.FAILED and group.failure == "export died"


@pytest.mark.parametrize("state", [s for s in GroupState if s.active])
def test_fenced_stops_without_writes_and_never_releases(state: GroupState) -> None:
    group = GroupLifecycle("g1", state=state)
    assert group.handle(FENCED, 0.0) is (None if state is S.STOPPING else A.STOP_WITHOUT_WRITES)
    assert state_of(group) is S.STOPPING
    assert group.handle(FENCED, 0.0) is None  # a second disk lost changes nothing
    assert group.handle(OFF, 0.0) is None  # stopping is offlining already
    assert group.handle(DONE, 0.0) is None
    assert state_of(group) is S.OFFLINE


def test_a_failed_group_offlined_releases_its_disks_once_more() -> None:
    group = GroupLifecycle("g1", state=S.FAILED, failure="release timed out")
    assert group.handle(OFF, 0.0) is A.RELEASE_DISKS
    assert group.failure is None
    assert group.handle(DONE, 0.0) is None
    assert state_of(group) is S.OFFLINE


def test_every_step_is_bounded_by_the_pending_timeout() -> None:
    group = GroupLifecycle("g1", pending_timeout=60.0)
    assert group.get_timer() is None
    assert group.handle_timer(1000.0) is None
    group.handle(ON, 100.0)
    assert group.get_timer() == 160.0
    assert group.handle(ON, 150.0) is None and group.get_timer() == 160.0  # not re-armed
    assert group.handle_timer(159.9) is None and group.state is S.ONLINING_DISKS
    assert group.handle_timer(160.0) is A.RELEASE_DISKS
    assert group.failure == "arbitrate-disks timed out after 60 s"
    assert group.get_timer() == 220.0
    assert group.handle_timer(220.0) is None  # a release that times out ends the way down
    assert state_of(group) is S.FAILED and group.get_timer() is None
    assert group.failure == "arbitrate-disks timed out after 60 s"  # the first cause stays


def test_only_step_states_have_a_deadline() -> None:
    assert {s for s in GroupState if s.pending} == set(STEPS)
    assert {s for s in GroupState if not s.active} == {S.OFFLINE, S.FAILED}
    for state in GroupState:
        assert state.pending is ((state, TIMED_OUT) in TRANSITIONS)


def test_illegal_events_are_refused_clearly() -> None:
    group = GroupLifecycle("g7")
    with pytest.raises(LocalProtocolError, match="group g7: step-done is not accepted in OFFLINE"):
        group.handle(DONE, 0.0)
    run(group, ON, DONE, DONE, DONE, OFF)
    with pytest.raises(LocalProtocolError, match="online-requested is not accepted in OFFLINING"):
        group.handle(ON, 0.0)
    with pytest.raises(LocalProtocolError, match="step-timed-out is not accepted in ONLINE"):
        transition(S.ONLINE, TIMED_OUT)
