"""The rules for persistent reservations over several paths (mpio/reservations.py), and how
each kind of path failure reaches a path's state (mpio/paths.py), without any socket."""

from __future__ import annotations

import pytest

from sanstack.iscsi.initiator_events import PathFailureKind
from sanstack.mpio import reservations
from sanstack.mpio.paths import FAILURE_EVENTS, Path, PathEvent, PathState
from sanstack.mpio.reservations import (
    HostRegistration,
    Next,
    Outcome,
    Registration,
    every_path_verdict,
    next_after_one_path,
    next_registration,
    one_path_order,
)
from sanstack.scsi.pr_codec import PROutServiceAction

REGISTER = PROutServiceAction.REGISTER
IGNORE = PROutServiceAction.REGISTER_AND_IGNORE_EXISTING_KEY


def run_registration(first: Registration, answers: list[Outcome]) -> list[Registration]:
    """Carry a registration down one path that answers ``answers`` in turn: the steps sent."""
    sent: list[Registration] = []
    step: Registration | None = first
    for answer in answers:
        assert step is not None
        sent.append(step)
        step = next_registration(step, answer)
    assert step is None, f"{step} would still be sent"
    return sent


def test_register_moves_from_the_held_key_to_the_new_one() -> None:
    assert reservations.register(0x1111, 0x2222) == Registration(REGISTER, 0x1111, 0x2222)
    assert run_registration(reservations.register(0, 0x1111), [Outcome.GOOD]) == [
        Registration(REGISTER, 0, 0x1111)
    ]


def test_a_conflict_is_retried_once_ignoring_the_existing_key() -> None:
    sent = run_registration(
        reservations.register(0x1111, 0x2222), [Outcome.RESERVATION_CONFLICT, Outcome.GOOD]
    )
    assert sent == [Registration(REGISTER, 0x1111, 0x2222), Registration(IGNORE, 0, 0x2222)]
    # A second conflict is the answer: no loop.
    sent = run_registration(
        reservations.register(0, 0x2222),
        [Outcome.RESERVATION_CONFLICT, Outcome.RESERVATION_CONFLICT],
    )
    assert [s.action for s in sent] == [REGISTER, IGNORE]


@pytest.mark.parametrize("answer", [Outcome.PATH_FAILED, Outcome.ERROR])
def test_only_a_conflict_is_retried(answer: Outcome) -> None:
    assert run_registration(reservations.register(0, 7), [answer]) == [Registration(REGISTER, 0, 7)]


def test_every_path_that_did_not_take_the_key_is_failed() -> None:
    verdict = every_path_verdict(
        {"a": Outcome.GOOD, "b": Outcome.PATH_FAILED, "c": Outcome.ERROR, "d": Outcome.GOOD}
    )
    assert verdict.done and verdict.report is None
    assert verdict.fail == ("b", "c")


def test_when_no_path_took_the_key_the_caller_hears_the_device_first() -> None:
    verdict = every_path_verdict(
        {"a": Outcome.PATH_FAILED, "b": Outcome.RESERVATION_CONFLICT, "c": Outcome.ERROR}
    )
    assert not verdict.done
    assert verdict.fail == ("a",)  # only the dead path: the others answered, unchanged
    assert verdict.report == "b"
    dead = every_path_verdict({"a": Outcome.PATH_FAILED, "b": Outcome.PATH_FAILED})
    assert (dead.done, dead.fail, dead.report) == (False, ("a", "b"), "a")


def test_a_reinstated_path_is_registered_before_it_carries_io() -> None:
    host = HostRegistration()
    assert host.reinstatement() is None  # reservations unused: nothing to do
    host.taken(0x1111, aptpl=True)
    assert host.reinstatement() == Registration(IGNORE, 0, 0x1111)
    assert host.aptpl
    # After an unregister, a path that missed it drops its old registration on return.
    host.taken(0, aptpl=False)
    assert host.reinstatement() == Registration(IGNORE, 0, 0)


def test_after_clear_no_path_brings_the_old_key_back() -> None:
    host = HostRegistration()
    host.taken(0x1111, aptpl=True)
    host.cleared()
    assert (host.key, host.aptpl) == (0, False)
    assert host.reinstatement() == Registration(IGNORE, 0, 0)


def test_one_path_actions_move_on_only_after_a_path_failure() -> None:
    assert next_after_one_path(Outcome.GOOD) is Next.DONE
    assert next_after_one_path(Outcome.PATH_FAILED) is Next.NEXT_PATH
    assert next_after_one_path(Outcome.RESERVATION_CONFLICT) is Next.CALLER
    assert next_after_one_path(Outcome.ERROR) is Next.CALLER


def test_one_path_order_is_best_group_first_then_other_usable_paths() -> None:
    paths = ["p1", "p2", "p3", "p4"]
    assert one_path_order(paths, ["p3"], ["p1", "p3"]) == ["p3", "p1"]
    assert one_path_order(paths, [], []) == []


def test_every_path_failure_kind_fails_the_path() -> None:
    assert set(FAILURE_EVENTS) == set(PathFailureKind)
    assert FAILURE_EVENTS[PathFailureKind.NOP_TIMEOUT] is PathEvent.NOP_TIMEOUT
    for kind, event in FAILURE_EVENTS.items():
        path = Path("p")
        assert path.handle(event, 1.0) is PathState.FAILED, kind
