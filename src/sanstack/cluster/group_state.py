"""One group's lifecycle on one node, as a table, sans-IO (docs/cluster-design.md, "Groups").

Theory of operation. A group comes online in three steps and goes offline in the same three
in reverse, each bounded by ``pending_timeout`` (WSFC's PendingTimeout)::

    OFFLINE -> ONLINING_DISKS -> ONLINING_VOLUMES -> ONLINING_EXPORT -> ONLINE
    ONLINE -> OFFLINING_EXPORT -> OFFLINING_VOLUMES -> RELEASING_DISKS -> OFFLINE

Entering a state starts its step (``STEPS``): arbitrate for every disk, open each snapshot
volume (its free-space scan), bind the export; unbind it, close the volumes, RELEASE the
disks. The edge carries the step out and reports ``STEP_DONE`` or ``STEP_FAILED``; the
deadline reports ``STEP_TIMED_OUT`` (``handle_timer``). A new step replaces the one under way:
the edge cancels that one first.

A failure on the way up undoes what was done (the offlining state for the step that failed)
and the group ends FAILED instead of OFFLINE; a failure on the way down goes on down (there
is nothing better to do) and also ends FAILED; so does a failure reported while ONLINE (a
resource of the running group failed). The node records the failure, and placement's
restart threshold decides where the group runs next. FAILED is left by a new online request
(a restart) or an offline request, which releases the disks once more (RELEASE of a disk not
held is harmless) so that a failed release cannot keep the group from its next owner.

Fenced (a disk's reservation lost, WSFC Event 1038): from any state that runs something the
group goes to STOPPING: the export is dropped and the volumes closed without one more write
(no flush, no journal commit) and the disks are not released (our key is gone: a RELEASE
would only conflict), then OFFLINE.

Storage lost (every path to one of its disks gone for ``storage_loss_stop``): the same stop
without writes, but the group *failed* here, so it ends FAILED and placement moves it.

``TRANSITIONS`` lists every legal (state, event); anything else is a caller's bug and raises
``LocalProtocolError`` naming the group, the event and the state. ``GroupState`` codes travel
in heartbeats (one byte per group): they are never renumbered.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, IntEnum
from typing import Final

from sanstack.errors import LocalProtocolError


class GroupState(IntEnum):
    """A group's state on one node; the code is what heartbeats carry. Never renumber."""

    OFFLINE = 0
    ONLINING_DISKS = 1
    ONLINING_VOLUMES = 2
    ONLINING_EXPORT = 3
    ONLINE = 4
    OFFLINING_EXPORT = 5
    OFFLINING_VOLUMES = 6
    RELEASING_DISKS = 7
    STOPPING = 8  # fenced: stopping without writes and without RELEASE
    FAILED = 9

    @property
    def active(self) -> bool:
        """Something of the group runs or is being started or stopped on this node."""
        return self not in (GroupState.OFFLINE, GroupState.FAILED)

    @property
    def pending(self) -> bool:
        """A step is under way, bounded by ``pending_timeout``."""
        return self in STEPS


class GroupEvent(Enum):
    STEP_DONE = "step-done"
    STEP_FAILED = "step-failed"  # in ONLINE: a resource of the running group failed
    STEP_TIMED_OUT = "step-timed-out"
    FENCED = "fenced"
    STORAGE_LOST = "storage-lost"  # as FENCED, and the group failed here
    OFFLINE_REQUESTED = "offline-requested"
    ONLINE_REQUESTED = "online-requested"


class GroupAction(Enum):
    """The step the edge starts on entering a state."""

    ARBITRATE_DISKS = "arbitrate-disks"  # own every disk of the group, concurrently, bounded
    OPEN_VOLUMES = "open-volumes"  # open each snapshot volume (its free-space scan)
    BIND_EXPORT = "bind-export"
    UNBIND_EXPORT = "unbind-export"
    CLOSE_VOLUMES = "close-volumes"  # flush and close each snapshot volume
    RELEASE_DISKS = "release-disks"  # PERSISTENT RESERVE OUT RELEASE on every disk
    STOP_WITHOUT_WRITES = "stop-without-writes"  # unbind, drop volumes unflushed, no RELEASE


STEPS: Final[dict[GroupState, GroupAction]] = {
    GroupState.ONLINING_DISKS: GroupAction.ARBITRATE_DISKS,
    GroupState.ONLINING_VOLUMES: GroupAction.OPEN_VOLUMES,
    GroupState.ONLINING_EXPORT: GroupAction.BIND_EXPORT,
    GroupState.OFFLINING_EXPORT: GroupAction.UNBIND_EXPORT,
    GroupState.OFFLINING_VOLUMES: GroupAction.CLOSE_VOLUMES,
    GroupState.RELEASING_DISKS: GroupAction.RELEASE_DISKS,
    GroupState.STOPPING: GroupAction.STOP_WITHOUT_WRITES,
}


@dataclass(frozen=True, slots=True)
class Transition:
    """The next state; ``failure``: the group failed here, so the way down ends FAILED."""

    state: GroupState
    failure: bool = False


_S = GroupState
_E = GroupEvent
_FAIL = (_E.STEP_FAILED, _E.STEP_TIMED_OUT)


def _rows() -> dict[tuple[GroupState, GroupEvent], Transition]:
    rows: dict[tuple[GroupState, GroupEvent], Transition] = {
        (_S.OFFLINE, _E.ONLINE_REQUESTED): Transition(_S.ONLINING_DISKS),
        (_S.OFFLINE, _E.OFFLINE_REQUESTED): Transition(_S.OFFLINE),
        (_S.OFFLINE, _E.FENCED): Transition(_S.OFFLINE),  # nothing runs: nothing to stop
        (_S.OFFLINE, _E.STORAGE_LOST): Transition(_S.OFFLINE),
        (_S.FAILED, _E.STORAGE_LOST): Transition(_S.FAILED),
        (_S.FAILED, _E.ONLINE_REQUESTED): Transition(_S.ONLINING_DISKS),  # a restart
        (_S.FAILED, _E.OFFLINE_REQUESTED): Transition(_S.RELEASING_DISKS),
        (_S.FAILED, _E.FENCED): Transition(_S.FAILED),
        (_S.ONLINE, _E.STEP_FAILED): Transition(_S.OFFLINING_EXPORT, failure=True),
        (_S.ONLINE, _E.OFFLINE_REQUESTED): Transition(_S.OFFLINING_EXPORT),
        (_S.ONLINE, _E.ONLINE_REQUESTED): Transition(_S.ONLINE),
        (_S.ONLINE, _E.FENCED): Transition(_S.STOPPING),
        (_S.STOPPING, _E.STEP_DONE): Transition(_S.OFFLINE),
        (_S.STOPPING, _E.FENCED): Transition(_S.STOPPING),
        (_S.STOPPING, _E.OFFLINE_REQUESTED): Transition(_S.STOPPING),
    }
    # The way up: each step's success leads on; its failure, or an offline request, turns
    # back through the offlining state that undoes what was done so far.
    up = (
        (_S.ONLINING_DISKS, _S.ONLINING_VOLUMES, _S.RELEASING_DISKS),
        (_S.ONLINING_VOLUMES, _S.ONLINING_EXPORT, _S.OFFLINING_VOLUMES),
        (_S.ONLINING_EXPORT, _S.ONLINE, _S.OFFLINING_EXPORT),
    )
    for state, done, undo in up:
        rows[state, _E.STEP_DONE] = Transition(done)
        rows[state, _E.OFFLINE_REQUESTED] = Transition(undo)
        rows[state, _E.ONLINE_REQUESTED] = Transition(state)
        rows[state, _E.FENCED] = Transition(_S.STOPPING)
        for event in _FAIL:
            rows[state, event] = Transition(undo, failure=True)
    # The way down goes on down, failed step or not.
    down = (
        (_S.OFFLINING_EXPORT, _S.OFFLINING_VOLUMES),
        (_S.OFFLINING_VOLUMES, _S.RELEASING_DISKS),
        (_S.RELEASING_DISKS, _S.OFFLINE),
    )
    for state, done in down:
        rows[state, _E.STEP_DONE] = Transition(done)
        rows[state, _E.OFFLINE_REQUESTED] = Transition(state)
        rows[state, _E.FENCED] = Transition(_S.STOPPING)
        for event in _FAIL:
            rows[state, event] = Transition(done, failure=True)
    for event in _FAIL:
        rows[_S.STOPPING, event] = Transition(_S.OFFLINE, failure=True)
    # Storage lost: wherever fencing stops the group, this stops it too, as a failure.
    for (state, event), row in list(rows.items()):
        if event is _E.FENCED and row.state is _S.STOPPING:
            rows[state, _E.STORAGE_LOST] = Transition(_S.STOPPING, failure=True)
    return rows


TRANSITIONS: Final = _rows()


def transition(state: GroupState, event: GroupEvent) -> Transition:
    """The table's row, or ``LocalProtocolError`` for an event the state does not accept."""
    try:
        return TRANSITIONS[state, event]
    except KeyError:
        raise LocalProtocolError(f"{event.value} is not accepted in {state.name}") from None


@dataclass(slots=True)
class GroupLifecycle:
    """One group on one node: its state, the deadline of the step under way, and why it is
    failing or failed (``failure``; kept in FAILED, cleared by the next request)."""

    name: str
    pending_timeout: float = 60.0
    state: GroupState = GroupState.OFFLINE
    deadline: float | None = None
    failure: str | None = None

    def accepts(self, event: GroupEvent) -> bool:
        return (self.state, event) in TRANSITIONS

    def handle(self, event: GroupEvent, now: float, reason: str = "") -> GroupAction | None:
        """Apply ``event``; returns the step to start, None when none starts (the step
        under way, if any, goes on)."""
        try:
            row = transition(self.state, event)
        except LocalProtocolError as error:
            raise LocalProtocolError(f"group {self.name}: {error}") from None
        if self.state in (GroupState.OFFLINE, GroupState.FAILED) and event in (
            GroupEvent.ONLINE_REQUESTED,
            GroupEvent.OFFLINE_REQUESTED,
        ):
            self.failure = None
        if row.failure and self.failure is None:
            self.failure = reason or f"{event.value} in {self.state.name}"
        target = row.state
        if target is GroupState.OFFLINE and self.failure is not None:
            target = GroupState.FAILED
        if target is self.state:
            return None
        self.state = target
        action = STEPS.get(target)
        self.deadline = None if action is None else now + self.pending_timeout
        return action

    def get_timer(self) -> float | None:
        return self.deadline

    def handle_timer(self, now: float) -> GroupAction | None:
        """The step under way timed out if its deadline has passed."""
        if self.deadline is None or now < self.deadline:
            return None
        step = STEPS[self.state].value
        return self.handle(
            GroupEvent.STEP_TIMED_OUT,
            now,
            f"{step} timed out after {self.pending_timeout:g} s",
        )
