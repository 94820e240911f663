"""One disk's arbitration with SCSI-3 persistent reservations, as a decision table, sans-IO.

Theory of operation. The reservation on a disk is the truth of who owns it; membership and
quorum only decide who may *try* to take it (docs/cluster-design.md, "Arbitration"). Every
node registers its 8-byte key on every path of the disk; the owner holds a WRITE EXCLUSIVE,
REGISTRANTS ONLY reservation (type 5, as fence_scsi, Veritas vxfen and OpenSVC do); taking a
disk from a node that left is PREEMPT AND ABORT of its key, which removes that node's
registration on every path at once; the owner re-reads the disk every
``arbitration_interval`` (WSFC's DiskArbInterval) and finds out there whether it still holds
it. ``decide`` is the whole policy: a pure function of the situation (intent, our key, the
members and their keys, quorum, fenced, whether we believed we held the disk, and what was
observed last: the PR state read back, or how the last PR command ended) that returns the
next PR command to send or a verdict that ends the round.

A situation is reduced to a handful of facts, and the first row of the table that matches
them decides (``RULES``; ``-`` is any value):

Before anything was read (``observed`` is None):

=================  ==============  =======================================================
row                intent          next
=================  ==============  =======================================================
fenced             own, defend     FENCED: an ejected node never takes a disk again
read-first         any             READ (keys and reservation): the disk is the truth, so a
                                   restarted node learns from it that it owns the disk
=================  ==============  =======================================================

After a PR command (``observed`` is a ``CommandResult``):

=================  ======================================  ================================
row                outcome                                 next
=================  ======================================  ================================
confirm            GOOD                                    READ: every change is confirmed
                                                           by reading the disk back
ejected            RESERVATION CONFLICT on anything but a  FENCED (Event 1038): only a node
                   PREEMPT of a disk we held (or defend)   whose key is gone conflicts there
conflict-reread    RESERVATION CONFLICT otherwise          READ: the disk changed under us
                                                           (a PREEMPT also conflicts when
                                                           its victim is already gone)
no-path            path failed or no path                  WAIT: try again next round; the
                                                           command's fate is unknown
error              any other error                         WAIT
=================  ======================================  ================================

After READ KEYS and READ RESERVATION (``observed`` is a ``PRState``). *holder*: nobody,
``us`` (our key, type 5), ``us*`` (our key, another type), ``member`` (a member's key),
``other`` (any other key, all-registrants key 0 included); *auth* (authority): ``may``
(quorum and not fenced), ``no-q`` (no quorum), ``fenc.`` (fenced); *reg*: our key is
registered; *str* (strangers): keys registered that are neither ours nor a member's; *due*:
the holder has had its turn (``now >= challenge_since + preempt_delay``); *held*: we
believed we held the disk (``owned``), or the intent is defend.

===============  =======  ===============  =====  ===  ===  ===  =============================
row              intent   holder           auth   reg  str  due  next
===============  =======  ===============  =====  ===  ===  ===  =============================
reads-disagree   -        -                -      -    -    -    READ again: PRgeneration
                                                                 moved between the two reads
fenced           own,     -                fenc.  -    -    -    FENCED
                 defend
own-other-type   own      us*              -      -    -    -    RELEASE (its type); RESERVE
                                                                 type 5 follows
keep-clean       own,     us, us*          may    -    yes  -    PREEMPT the first stranger
                 defend                                          (under WERO it could write)
owned            own,     us, us*          -      -    -    -    OWNED (defend from now on)
                 defend
lost             own,     nobody, member,  -      -    -    -    if *held*: FENCED (Event
                 defend,  other                                  1038), stop the group, no
                 release                                         more writes
member-holds     own      member           -      -    -    -    HELD_BY_MEMBER: it must
                                                                 release (move, failback)
no-quorum        own      nobody, other    no-q   -    -    -    WAIT: nothing is taken or
                                                                 preempted without quorum
register-first   own      nobody, other    may    no   -    -    REGISTER AND IGNORE EXISTING
                                                                 KEY
reserve          own      nobody           may    yes  -    -    RESERVE type 5
incumbent-first  own      other            may    yes  -    no   WAIT until its turn ends
                                                                 (the witness race)
preempt          own      other            may    yes  -    yes  PREEMPT AND ABORT its key,
                                                                 type 5
release-unheard  release  us, us*          may    -    -    -    after a RELEASE that answered
                                                                 GOOD: PREEMPT our own key
                                                                 (its type)
release          release  us, us*          -      -    -    -    RELEASE (its type)
released         release  nobody, member,  -      -    -    -    RELEASED
                          other
seen-owned       none     us, us*          -      -    -    -    OWNED, learnt from the disk
seen-member      none     member           -      -    -    -    HELD_BY_MEMBER
seen-other       none     other            -      -    -    -    HELD_BY_NON_MEMBER
seen-free        none     nobody           -      -    -    -    RELEASED
===============  =======  ===============  =====  ===  ===  ===  =============================

So nothing preempts without quorum or while fenced, and an ejected node cannot eject
another (Veritas: its key is gone, and ``fenced`` keeps it from registering again).

Only the I_T nexus holding a registrants only reservation releases it; a RELEASE from our
other nexuses is GOOD without effect (SPC-4 §5.13.11.2). A node restarted while the path of
that nexus is down would release in vain round after round, and the next owner wait for
that path. ``release-unheard`` moves the reservation to a nexus we reach (PREEMPT of our own
key), and the RELEASE that follows ends it, as mpathpersist does. Our other nexuses lose
their registration; the map registers a path again before it carries I/O: one that was
down when it returns, one that was up once it refused that RELEASE and was failed.

The witness race (WSFC's ArbitrationDelay): a challenger that did not hold the disk passes a
``preempt_delay`` of ``2 x arbitration_interval``, so the incumbent defends first.

``DiskArbiter`` carries this out for one disk on one node: it remembers what it believed
(``owned``), latches ``fenced``, times the challenge of a holder, and bounds a round's
commands. The edge sends each ``Command`` (READ is READ KEYS then READ RESERVATION) and
reports back; nothing here does I/O or reads a clock.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Final

from sanstack.block.device import DeviceNotReady
from sanstack.errors import LocalProtocolError
from sanstack.initiator.lun_device import ReservationConflict
from sanstack.scsi.pr_codec import (
    PROutServiceAction,
    PRType,
    ReadKeysData,
    ReadReservationData,
)

# The one reservation type a cluster holds (SPC-4 §6.15.3.4): every registrant may write,
# so a node is fenced by removing its registration.
CLUSTER_TYPE: Final = PRType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY
# A round that has not settled after this many commands waits for the next one.
DEFAULT_MAX_COMMANDS: Final = 16


class Intent(Enum):
    """What this node wants of the disk this round."""

    OWN = "own"  # take it (online)
    DEFEND = "defend"  # we hold it: check, and clean out non-members' registrations
    RELEASE = "release"  # give it up (offline, move, failback)
    NONE = "none"  # only look: learn who holds it


class Action(Enum):
    """The commands the table asks for. READ is READ KEYS then READ RESERVATION."""

    READ = "read"
    REGISTER_AND_IGNORE = "register-and-ignore"
    RESERVE = "reserve"
    PREEMPT = "preempt"
    PREEMPT_AND_ABORT = "preempt-and-abort"
    RELEASE = "release"


SERVICE_ACTIONS: Final[Mapping[Action, PROutServiceAction]] = {
    Action.REGISTER_AND_IGNORE: PROutServiceAction.REGISTER_AND_IGNORE_EXISTING_KEY,
    Action.RESERVE: PROutServiceAction.RESERVE,
    Action.PREEMPT: PROutServiceAction.PREEMPT,
    Action.PREEMPT_AND_ABORT: PROutServiceAction.PREEMPT_AND_ABORT,
    Action.RELEASE: PROutServiceAction.RELEASE,
}
_PREEMPTS: Final = frozenset({Action.PREEMPT, Action.PREEMPT_AND_ABORT})


@dataclass(frozen=True, slots=True)
class Command:
    """A PR command for the edge to send. ``service_action_key`` is our key for
    REGISTER AND IGNORE EXISTING KEY and the victim's for the PREEMPTs; ``pr_type`` is the
    TYPE field of RESERVE, RELEASE and the PREEMPTs. ``rule`` names the table's row."""

    action: Action
    service_action_key: int = 0
    pr_type: PRType | None = None
    rule: str = field(default="", compare=False)

    @property
    def service_action(self) -> PROutServiceAction | None:
        """The PERSISTENT RESERVE OUT service action; None for READ (PERSISTENT RESERVE IN)."""
        return SERVICE_ACTIONS.get(self.action)

    @property
    def preempts(self) -> bool:
        return self.action in _PREEMPTS


class VerdictKind(Enum):
    OWNED = "owned"
    HELD_BY_MEMBER = "held-by-member"
    HELD_BY_NON_MEMBER = "held-by-non-member"
    FENCED = "fenced"  # WSFC Event 1038: ownership unexpectedly lost
    RELEASED = "released"  # we hold no reservation on the disk
    WAIT = "wait"  # nothing to do now; ``until`` (if set) is when to look again


@dataclass(frozen=True, slots=True)
class Verdict:
    """How a round ended. ``member`` names the member holding the disk; ``holder_key`` is
    the key of a non-member holder; ``reason`` is for people."""

    kind: VerdictKind
    member: str | None = None
    holder_key: int | None = None
    until: float | None = None
    reason: str = field(default="", compare=False)
    rule: str = field(default="", compare=False)


Decision = Command | Verdict


class CommandOutcome(Enum):
    """How a PR command (READ included) ended, as the edge saw it."""

    GOOD = "good"
    RESERVATION_CONFLICT = "reservation-conflict"
    NO_PATH = "no-path"  # a path failed under it, or no path was left: its fate is unknown
    ERROR = "error"  # any other error, about the device or the request


def outcome_of(error: BaseException | None) -> CommandOutcome:
    """The outcome of a multipath PR call from the error it raised (None: GOOD)."""
    if error is None:
        return CommandOutcome.GOOD
    if isinstance(error, ReservationConflict):
        return CommandOutcome.RESERVATION_CONFLICT
    if isinstance(error, DeviceNotReady):  # PathFailed, and "no path for ..."
        return CommandOutcome.NO_PATH
    return CommandOutcome.ERROR


@dataclass(frozen=True, slots=True)
class PRState:
    """The disk's persistent reservation state as READ KEYS and READ RESERVATION told it.
    ``holder`` is the reservation's key (0 for an all registrants type), None without one."""

    keys: tuple[int, ...] = ()
    holder: int | None = None
    pr_type: PRType | None = None
    keys_generation: int = 0
    reservation_generation: int = 0

    @classmethod
    def from_reads(cls, keys: ReadKeysData, reservation: ReadReservationData) -> PRState:
        holder = None if reservation.pr_type is None else reservation.reservation_key
        return cls(
            keys.reservation_keys,
            holder,
            reservation.pr_type,
            keys.prgeneration,
            reservation.prgeneration,
        )

    @property
    def consistent(self) -> bool:
        """Both reads saw the same registrations (PRgeneration counts their changes)."""
        return self.keys_generation == self.reservation_generation


@dataclass(frozen=True, slots=True)
class CommandResult:
    command: Command
    outcome: CommandOutcome
    detail: str = ""  # the error, for the verdict's reason


@dataclass(frozen=True, slots=True)
class ArbitrationView:
    """What membership and placement say this round. ``keys`` maps every node (members or
    not) to its key. ``preempt_delay`` is how long we let a non-member holder defend before
    we preempt it: 0, or ``2 x arbitration_interval`` for a challenger of the witness."""

    intent: Intent
    members: frozenset[str]
    keys: Mapping[str, int]
    has_quorum: bool
    preempt_delay: float = 0.0

    def member_holding(self, key: int) -> str | None:
        for name in sorted(self.members):
            if self.keys.get(name) == key:
                return name
        return None


@dataclass(frozen=True, slots=True)
class Situation:
    """Everything ``decide`` looks at. ``owned``: we believed we held the disk before the
    last command. ``challenge_since``: when we first found the current non-member holder in
    our way (None: now)."""

    view: ArbitrationView
    our_key: int
    now: float
    observed: PRState | CommandResult | None = None
    fenced: bool = False
    owned: bool = False
    challenge_since: float | None = None
    after_release: bool = False  # the round's last PR OUT that answered GOOD was a RELEASE


# -- the facts a situation reduces to -----------------------------------------------------


class Holder(Enum):
    NOBODY = "nobody"
    US = "us"
    US_OTHER_TYPE = "us*"
    MEMBER = "member"
    OTHER = "other"


class Authority(Enum):
    MAY_FENCE = "may"
    NO_QUORUM = "no-q"
    FENCED = "fenced"


@dataclass(frozen=True, slots=True)
class Facts:
    intent: Intent
    holder: Holder
    authority: Authority
    registered: bool
    strangers: bool
    due: bool
    held: bool
    after_release: bool = False


def facts_of(situation: Situation, state: PRState) -> Facts:
    view, key = situation.view, situation.our_key
    if state.holder is None:
        holder = Holder.NOBODY
    elif state.holder == key:
        holder = Holder.US if state.pr_type is CLUSTER_TYPE else Holder.US_OTHER_TYPE
    elif view.member_holding(state.holder) is not None:
        holder = Holder.MEMBER
    else:
        holder = Holder.OTHER
    if situation.fenced:
        authority = Authority.FENCED
    elif not view.has_quorum:
        authority = Authority.NO_QUORUM
    else:
        authority = Authority.MAY_FENCE
    start = situation.now if situation.challenge_since is None else situation.challenge_since
    return Facts(
        situation.view.intent,
        holder,
        authority,
        key in state.keys,
        bool(_strangers(situation, state)),
        situation.now >= start + view.preempt_delay,
        situation.owned or view.intent is Intent.DEFEND,
        situation.after_release,
    )


def _strangers(situation: Situation, state: PRState) -> list[int]:
    """Registered keys of nobody in the view, ours excepted, in READ KEYS order, once each."""
    view = situation.view
    member_keys = {view.keys[m] for m in view.members if m in view.keys}
    found = [k for k in state.keys if k != situation.our_key and k not in member_keys]
    return list(dict.fromkeys(found))


# -- the table -----------------------------------------------------------------------------

ANY: Final = None
_US = frozenset({Holder.US, Holder.US_OTHER_TYPE})
_NOT_US = frozenset({Holder.NOBODY, Holder.MEMBER, Holder.OTHER})
_OWNING = frozenset({Intent.OWN, Intent.DEFEND})


@dataclass(frozen=True, slots=True)
class Rule:
    """One row: the facts it matches (None matches anything) and what it decides."""

    name: str
    intents: frozenset[Intent] | None
    holders: frozenset[Holder] | None
    authorities: frozenset[Authority] | None
    registered: bool | None
    strangers: bool | None
    due: bool | None
    held: bool | None
    then: Callable[[Situation, PRState], Decision]
    after_release: bool | None = None

    def matches(self, facts: Facts) -> bool:
        return (
            (self.intents is None or facts.intent in self.intents)
            and (self.holders is None or facts.holder in self.holders)
            and (self.authorities is None or facts.authority in self.authorities)
            and (self.registered is None or facts.registered is self.registered)
            and (self.strangers is None or facts.strangers is self.strangers)
            and (self.due is None or facts.due is self.due)
            and (self.held is None or facts.held is self.held)
            and (self.after_release is None or facts.after_release is self.after_release)
        )


def _hex(key: int | None) -> str:
    return "none" if key is None else f"{key:#018x}"


def _fenced(s: Situation, st: PRState) -> Decision:
    return Verdict(VerdictKind.FENCED, reason="this node is fenced: it takes no disk")


def _release(s: Situation, st: PRState) -> Decision:
    return Command(Action.RELEASE, pr_type=st.pr_type)


def _preempt_ourselves(s: Situation, st: PRState) -> Decision:
    return Command(Action.PREEMPT, s.our_key, st.pr_type)


def _preempt_stranger(s: Situation, st: PRState) -> Decision:
    return Command(Action.PREEMPT, _strangers(s, st)[0], CLUSTER_TYPE)


def _owned(s: Situation, st: PRState) -> Decision:
    return Verdict(VerdictKind.OWNED, reason="the reservation is ours")


def _lost(s: Situation, st: PRState) -> Decision:
    return Verdict(
        VerdictKind.FENCED,
        holder_key=st.holder,
        reason=f"ownership unexpectedly lost: reservation holder {_hex(st.holder)}",
    )


def _held_by_member(s: Situation, st: PRState) -> Decision:
    assert st.holder is not None
    member = s.view.member_holding(st.holder)
    return Verdict(VerdictKind.HELD_BY_MEMBER, member=member, reason=f"held by {member}")


def _held_by_other(s: Situation, st: PRState) -> Decision:
    return Verdict(
        VerdictKind.HELD_BY_NON_MEMBER,
        holder_key=st.holder,
        reason=f"held by non-member key {_hex(st.holder)}",
    )


def _no_quorum(s: Situation, st: PRState) -> Decision:
    return Verdict(VerdictKind.WAIT, reason="no quorum: nothing is taken or preempted")


def _register(s: Situation, st: PRState) -> Decision:
    return Command(Action.REGISTER_AND_IGNORE, s.our_key)


def _reserve(s: Situation, st: PRState) -> Decision:
    return Command(Action.RESERVE, pr_type=CLUSTER_TYPE)


def _incumbent_first(s: Situation, st: PRState) -> Decision:
    start = s.now if s.challenge_since is None else s.challenge_since
    return Verdict(
        VerdictKind.WAIT,
        holder_key=st.holder,
        until=start + s.view.preempt_delay,
        reason=f"holder {_hex(st.holder)} may defend first",
    )


def _preempt_holder(s: Situation, st: PRState) -> Decision:
    assert st.holder is not None
    return Command(Action.PREEMPT_AND_ABORT, st.holder, CLUSTER_TYPE)


def _released(s: Situation, st: PRState) -> Decision:
    return Verdict(VerdictKind.RELEASED, reason="the reservation is not ours")


def _row(
    name: str,
    then: Callable[[Situation, PRState], Decision],
    intents: frozenset[Intent] | None = ANY,
    holders: frozenset[Holder] | None = ANY,
    authorities: frozenset[Authority] | None = ANY,
    *,
    registered: bool | None = ANY,
    strangers: bool | None = ANY,
    due: bool | None = ANY,
    held: bool | None = ANY,
    after_release: bool | None = ANY,
) -> Rule:
    return Rule(
        name, intents, holders, authorities, registered, strangers, due, held, then, after_release
    )


_OWN = frozenset({Intent.OWN})
_MAY = frozenset({Authority.MAY_FENCE})

# The rows after a read, in order; the first that matches decides ("reads-disagree" comes
# before them, in ``decide``).
RULES: Final[tuple[Rule, ...]] = (
    _row("fenced", _fenced, _OWNING, ANY, frozenset({Authority.FENCED})),
    _row("own-other-type", _release, _OWN, frozenset({Holder.US_OTHER_TYPE})),
    _row("keep-clean", _preempt_stranger, _OWNING, _US, _MAY, strangers=True),
    _row("owned", _owned, _OWNING, _US),
    _row("lost", _lost, frozenset({Intent.OWN, Intent.DEFEND, Intent.RELEASE}), _NOT_US, held=True),
    _row("member-holds", _held_by_member, _OWN, frozenset({Holder.MEMBER})),
    _row(
        "no-quorum",
        _no_quorum,
        _OWN,
        frozenset({Holder.NOBODY, Holder.OTHER}),
        frozenset({Authority.NO_QUORUM}),
    ),
    _row(
        "register-first",
        _register,
        _OWN,
        frozenset({Holder.NOBODY, Holder.OTHER}),
        _MAY,
        registered=False,
    ),
    _row("reserve", _reserve, _OWN, frozenset({Holder.NOBODY}), _MAY, registered=True),
    _row(
        "incumbent-first",
        _incumbent_first,
        _OWN,
        frozenset({Holder.OTHER}),
        _MAY,
        registered=True,
        due=False,
    ),
    _row(
        "preempt",
        _preempt_holder,
        _OWN,
        frozenset({Holder.OTHER}),
        _MAY,
        registered=True,
        due=True,
    ),
    _row(
        "release-unheard",
        _preempt_ourselves,
        frozenset({Intent.RELEASE}),
        _US,
        _MAY,
        after_release=True,
    ),
    _row("release", _release, frozenset({Intent.RELEASE}), _US),
    _row("released", _released, frozenset({Intent.RELEASE}), _NOT_US),
    _row("seen-owned", _owned, frozenset({Intent.NONE}), _US),
    _row("seen-member", _held_by_member, frozenset({Intent.NONE}), frozenset({Holder.MEMBER})),
    _row("seen-other", _held_by_other, frozenset({Intent.NONE}), frozenset({Holder.OTHER})),
    _row("seen-free", _released, frozenset({Intent.NONE}), frozenset({Holder.NOBODY})),
)


def rule_for(facts: Facts) -> Rule:
    """The first row matching ``facts``; every combination has one (a test checks)."""
    for rule in RULES:
        if rule.matches(facts):
            return rule
    raise LocalProtocolError(f"no arbitration rule for {facts}")  # pragma: no cover


def _after_command(situation: Situation, result: CommandResult) -> Decision:
    command, outcome = result.command, result.outcome
    detail = f": {result.detail}" if result.detail else ""
    what = command.action.value
    if outcome is CommandOutcome.GOOD:
        return Command(Action.READ, rule="confirm")
    if outcome is CommandOutcome.RESERVATION_CONFLICT:
        held = situation.owned or situation.view.intent is Intent.DEFEND
        if held and not command.preempts:
            return Verdict(
                VerdictKind.FENCED,
                reason=f"RESERVATION CONFLICT on {what} of a disk we held: our key is gone",
                rule="ejected",
            )
        return Command(Action.READ, rule="conflict-reread")
    if outcome is CommandOutcome.NO_PATH:
        return Verdict(VerdictKind.WAIT, reason=f"no path for {what}{detail}", rule="no-path")
    return Verdict(VerdictKind.WAIT, reason=f"{what} failed{detail}", rule="error")


def _with_rule(decision: Decision, rule: str) -> Decision:
    return replace(decision, rule=rule)


def decide(situation: Situation) -> Decision:
    """The next command, or the verdict that ends the round (module docstring's tables)."""
    observed = situation.observed
    if isinstance(observed, CommandResult):
        return _after_command(situation, observed)
    if observed is None:
        if situation.fenced and situation.view.intent in _OWNING:
            return _with_rule(_fenced(situation, PRState()), "fenced")
        return Command(Action.READ, rule="read-first")
    if not observed.consistent:
        return Command(Action.READ, rule="reads-disagree")
    rule = rule_for(facts_of(situation, observed))
    return _with_rule(rule.then(situation, observed), rule.name)


# -- one disk on one node --------------------------------------------------------------------


class DiskArbiter:
    """One node's arbitration of one disk, round by round.

    A round starts with ``begin`` and ends with a ``Verdict``; in between, each ``Command``
    returned is sent by the edge, which reports ``read`` (both PR IN reads GOOD) or ``done``
    (any command's outcome, a failed READ included). ``owned`` is what we believe: set by a
    read that shows our reservation, cleared by one that does not, by deciding to RELEASE
    and by fencing. ``fenced`` latches until ``unfence`` (the node has stopped its groups and
    rejoined); ``conflict`` reports a RESERVATION CONFLICT met by the group's own I/O.
    """

    def __init__(self, our_key: int, *, max_commands: int = DEFAULT_MAX_COMMANDS) -> None:
        if our_key == 0:
            raise ValueError("a reservation key is never 0")
        self.our_key = our_key
        self.max_commands = max_commands
        self.owned = False
        self.fenced = False
        self.fence_reason = ""
        self.verdict: Verdict | None = None
        self.pending: Command | None = None
        self._view: ArbitrationView | None = None
        self._commands = 0
        self._challenge: tuple[int | None, float] | None = None  # (holder key, since)
        self._after_release = False  # this round's last GOOD PR OUT was a RELEASE

    @property
    def view(self) -> ArbitrationView | None:
        """The view of the round under way (or of the last one)."""
        return self._view

    def begin(self, view: ArbitrationView, now: float, *, fenced: bool = False) -> Decision:
        """Start a round with this view; ``fenced`` adds the node's own fencing (another
        disk of the node was lost) to this arbiter's."""
        if self.pending is not None:
            raise LocalProtocolError(f"a round is under way: {self.pending.action.value} pending")
        if fenced:
            self.fenced = True
        self._view, self._commands, self.verdict = view, 0, None
        self._after_release = False
        return self._next(Situation(view, self.our_key, now, None, self.fenced, self.owned))

    def read(self, keys: ReadKeysData, reservation: ReadReservationData, now: float) -> Decision:
        """READ KEYS and READ RESERVATION both answered."""
        self._expect(Action.READ)
        state = PRState.from_reads(keys, reservation)
        view = self._current_view()
        challenge = self._challenge
        situation = Situation(
            view,
            self.our_key,
            now,
            state,
            self.fenced,
            self.owned,  # what we believed before this read: losing it is being fenced
            challenge[1] if challenge is not None and challenge[0] == state.holder else None,
            self._after_release,
        )
        if state.consistent:
            self.owned = state.holder == self.our_key
        decision = self._next(situation)
        if decision.rule == "incumbent-first":
            if situation.challenge_since is None:
                self._challenge = (state.holder, now)
        elif decision.rule != "reads-disagree":
            self._challenge = None
        return decision

    def done(self, outcome: CommandOutcome, now: float, detail: str = "") -> Decision:
        """The pending command ended with ``outcome`` (a READ's GOOD goes to ``read``)."""
        if self.pending is None:
            raise LocalProtocolError("no arbitration command is pending")
        command = self.pending
        if command.action is Action.READ and outcome is CommandOutcome.GOOD:
            raise LocalProtocolError("a READ that answered goes to read(), with its data")
        self.pending = None
        if outcome is CommandOutcome.GOOD:
            self._after_release = command.action is Action.RELEASE
        result = CommandResult(command, outcome, detail)
        view = self._current_view()
        return self._next(Situation(view, self.our_key, now, result, self.fenced, self.owned))

    def conflict(self) -> Verdict:
        """The group's own I/O to this disk met RESERVATION CONFLICT: only a node whose key
        is gone meets it under a type 5 reservation, so the node is fenced (Event 1038)."""
        return self._fence(
            Verdict(
                VerdictKind.FENCED,
                reason="RESERVATION CONFLICT on the group's I/O: our key is gone",
                rule="io-conflict",
            )
        )

    def unfence(self) -> None:
        self.fenced, self.fence_reason = False, ""

    def _expect(self, action: Action) -> None:
        if self.pending is None or self.pending.action is not action:
            pending = "nothing" if self.pending is None else self.pending.action.value
            raise LocalProtocolError(f"{action.value} answered while {pending} is pending")
        self.pending = None

    def _current_view(self) -> ArbitrationView:
        if self._view is None:
            raise LocalProtocolError("no arbitration round was begun")
        return self._view

    def _next(self, situation: Situation) -> Decision:
        decision = decide(situation)
        if isinstance(decision, Command):
            self._commands += 1
            if self._commands > self.max_commands:
                decision = Verdict(
                    VerdictKind.WAIT,
                    reason=f"not settled after {self.max_commands} commands",
                    rule="bounded",
                )
            else:
                if decision.action is Action.RELEASE:
                    # The group stopped writing before it asked to release.
                    self.owned = False
                self.pending = decision
                return decision
        assert isinstance(decision, Verdict)
        if decision.kind is VerdictKind.FENCED:
            return self._fence(decision)
        self.verdict = decision
        return decision

    def _fence(self, verdict: Verdict) -> Verdict:
        self.owned, self.fenced = False, True
        self.fence_reason = self.fence_reason or verdict.reason
        self.verdict = verdict
        return verdict
