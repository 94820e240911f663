"""Persistent reservations over several paths, sans-IO: what to send down which path next.

Theory of operation. A SCSI-3 registration belongs to one I_T nexus, that is to one path;
a host that reserves a multipath LUN registers the same key on every path, as MSDSM and
libmpathpersist do. The rules, each a function here that ``MultipathDevice`` carries out:

- ``register``: REGISTER the new key on every path that has a session. A path holding a
  different key (or none the target remembers) answers RESERVATION CONFLICT and is retried
  once with REGISTER AND IGNORE EXISTING KEY (``next_registration``).
- ``every_path_verdict``: the host holds the new key once one path took it. A path that did
  not take it must not carry I/O (a fenced or unregistered path would see conflicts the host
  cannot explain): it is failed, and registered when it is reinstated.
- RELEASE goes down every path too: only the reservation holder's I_T nexus releases, the
  others answer GOOD without effect (SPC-4 §5.13.11.2.2), and the host cannot tell which of
  its nexuses holds it. The same verdict applies. (A holder whose path is dead keeps the
  reservation until it returns: libmpathpersist's remedy, preempting its own key and
  registering again, is not done here, where nothing reads the reservation back. The
  cluster's arbiter, which does, applies it: ``release-unheard`` in
  ``cluster/arbitration.py``.)
- ``HostRegistration.reinstatement``: a reinstated path, or a new one, is brought to the
  host's key with REGISTER AND IGNORE EXISTING KEY before it carries I/O (zero included,
  which drops a registration an unregister missed); it stays down if that fails.
- ``still_held``: but only while the target still has the host's key on some nexus, read
  with READ KEYS down that path first (multipathd's ``prflag``, set from the keys it reads).
  A key that is gone was removed by another initiator while the path was away: PREEMPT
  (AND ABORT) fenced this host, or CLEAR. Registering it again would unfence the host behind
  the back of the node that fenced it, and let writes it had queued land after all; so the
  host forgets the key (``HostRegistration.lost``) and only an explicit REGISTER (a cluster
  node that rejoined with quorum, an operator) brings it back. The same holds for a key
  kept across a restart (``MultipathDevice.hold_again``).
- ``HostRegistration.cleared``: after CLEAR the host holds no key, on any path.
- ``next_after_one_path``: any other service action (RESERVE, CLEAR, PREEMPT,
  PERSISTENT RESERVE IN) goes down one path, the best group's first; a path failure fails
  that path and the action is retried on the next; any other answer is the caller's.

The device outcome of each step comes in as an ``Outcome``; nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Generic, TypeVar

from sanstack.block.device import BlockDeviceError
from sanstack.initiator.lun_device import ReservationConflict
from sanstack.initiator.session import PathFailed
from sanstack.scsi.pr_codec import PROutServiceAction

P = TypeVar("P", bound=Hashable)


class Outcome(Enum):
    """How one PERSISTENT RESERVE command down one path ended."""

    GOOD = "good"
    RESERVATION_CONFLICT = "reservation-conflict"
    PATH_FAILED = "path-failed"  # the path's session failed: the command's fate is unknown
    ERROR = "error"  # any other error: about the device or the request, not the path


@dataclass(frozen=True, slots=True)
class Registration:
    """One PERSISTENT RESERVE OUT registration (SPC-4 §6.15.2) down one path."""

    action: PROutServiceAction
    reservation_key: int  # the key the path holds now (IGNORE EXISTING KEY ignores it)
    service_action_key: int  # the key it will hold; 0 unregisters


def register(held: int, new: int) -> Registration:
    """The first step on a path that holds ``held`` (0: none) when the host moves to ``new``."""
    return Registration(PROutServiceAction.REGISTER, held, new)


def register_ignoring_existing(new: int) -> Registration:
    return Registration(PROutServiceAction.REGISTER_AND_IGNORE_EXISTING_KEY, 0, new)


def next_registration(step: Registration, outcome: Outcome) -> Registration | None:
    """The next step on the same path after ``step`` ended with ``outcome``; None: done."""
    if outcome is Outcome.RESERVATION_CONFLICT and step.action is PROutServiceAction.REGISTER:
        return register_ignoring_existing(step.service_action_key)
    return None


@dataclass(frozen=True, slots=True)
class EveryPathVerdict(Generic[P]):
    """What a service action sent down every path (REGISTER, RELEASE) comes to."""

    done: bool  # the action took effect (REGISTER: the host holds the new key now)
    fail: tuple[P, ...]  # paths to fail: they carry no I/O until reinstated (and registered)
    report: P | None  # when no path took it: the path whose error goes to the caller


def every_path_verdict(outcomes: Mapping[P, Outcome]) -> EveryPathVerdict[P]:
    """The verdict on the final ``Outcome`` of the action on each path."""
    good = [p for p, outcome in outcomes.items() if outcome is Outcome.GOOD]
    if good:
        return EveryPathVerdict(True, tuple(p for p in outcomes if p not in good), None)
    # No path took the key, so none changed its registration: only failed paths are failed,
    # and the caller hears of the device's answer before a path failure's.
    dead = tuple(p for p, outcome in outcomes.items() if outcome is Outcome.PATH_FAILED)
    answered = [p for p in outcomes if p not in dead]
    return EveryPathVerdict(False, dead, next(iter(answered or outcomes), None))


@dataclass(slots=True)
class HostRegistration:
    """The key this host registered (MSDSM and mpathpersist remember it) and APTPL."""

    key: int = 0
    aptpl: bool = False
    used: bool = False  # the host registered (or unregistered) through this device

    def taken(self, key: int, aptpl: bool) -> None:
        self.key, self.aptpl, self.used = key, aptpl, True

    def cleared(self) -> None:
        """CLEAR removed every registration, ours too: a returning path must not bring the
        old key back."""
        self.taken(0, aptpl=False)

    def lost(self) -> None:
        """Another initiator removed our key (``still_held`` said so): a returning path
        drops its stale registration (key 0) instead of bringing the key back."""
        self.key = 0

    def reinstatement(self) -> Registration | None:
        """What a path must do before it carries I/O; None while reservations are unused."""
        return register_ignoring_existing(self.key) if self.used else None


def still_held(key: int, registered: Sequence[int]) -> bool:
    """Whether the target still has ``key`` (READ KEYS' list) and a returning path may be
    registered with it; a host holding no key (0) has nothing to lose."""
    return key == 0 or key in registered


class Next(Enum):
    """What follows one try of a one-path service action."""

    DONE = "done"
    NEXT_PATH = "next-path"  # fail this path, try the next one
    CALLER = "caller"  # the answer (an error) is the caller's


def next_after_one_path(outcome: Outcome) -> Next:
    if outcome is Outcome.GOOD:
        return Next.DONE
    if outcome is Outcome.PATH_FAILED:
        return Next.NEXT_PATH
    return Next.CALLER


def one_path_order(paths: Sequence[P], best_group: Sequence[P], usable: Sequence[P]) -> list[P]:
    """The order a one-path action tries ``paths`` in: the best group's, then other usable."""
    return [p for p in paths if p in best_group] + [
        p for p in paths if p in usable and p not in best_group
    ]


def outcome_of(error: BlockDeviceError | None) -> Outcome:
    """How a PERSISTENT RESERVE command ended, from the error it raised (None: GOOD)."""
    if error is None:
        return Outcome.GOOD
    if isinstance(error, ReservationConflict):
        return Outcome.RESERVATION_CONFLICT
    if isinstance(error, PathFailed):
        return Outcome.PATH_FAILED
    return Outcome.ERROR
