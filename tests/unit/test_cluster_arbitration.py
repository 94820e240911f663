"""One disk's arbitration (cluster/arbitration.py): every row of the decision table, the
table's completeness, the per-disk arbiter against the real persistent reservation engine
(scsi/pr.py), and a randomized simulation of 2-4 nodes arbitrating one disk through it with
random interleavings, view changes, kills, restarts and lost answers."""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field

import pytest
from tests.support.pr_harness import LU, at

from sanstack.block.device import DeviceNotReady, MediumError
from sanstack.cluster.arbitration import (
    CLUSTER_TYPE,
    RULES,
    Action,
    ArbitrationView,
    Authority,
    Command,
    CommandOutcome,
    CommandResult,
    Decision,
    DiskArbiter,
    Facts,
    Holder,
    Intent,
    PRState,
    Situation,
    Verdict,
    VerdictKind,
    decide,
    outcome_of,
    rule_for,
)
from sanstack.errors import LocalProtocolError
from sanstack.initiator.lun_device import ReservationConflict
from sanstack.initiator.session import PathFailed
from sanstack.iscsi.initiator_events import PathFailureKind
from sanstack.scsi.codes import Status
from sanstack.scsi.command import Nexus
from sanstack.scsi.pr_codec import PROutServiceAction, PRType, ReadKeysData, ReadReservationData
from sanstack.scsi.sense import CheckCondition

WERO = PRType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY
US, N2, N3, N4, STRANGER = (0x5A17_0000_0000_0001 + i for i in range(5))
KEYS = {"n1": US, "n2": N2, "n3": N3, "n4": N4}
MEMBERS = frozenset({"n1", "n2", "n3"})  # n4 is configured but not a member
NOW = 100.0


def view(
    intent: Intent, *, quorum: bool = True, delay: float = 0.0, members: frozenset[str] = MEMBERS
) -> ArbitrationView:
    return ArbitrationView(intent, members, KEYS, quorum, delay)


def state(
    keys: tuple[int, ...] = (), holder: int | None = None, pr_type: PRType | None = WERO
) -> PRState:
    return PRState(keys, holder, pr_type if holder is not None else None, 7, 7)


def sit(
    intent: Intent,
    observed: PRState | CommandResult | None,
    *,
    quorum: bool = True,
    fenced: bool = False,
    owned: bool = False,
    delay: float = 0.0,
    since: float | None = None,
    after_release: bool = False,
) -> Situation:
    return Situation(
        view(intent, quorum=quorum, delay=delay),
        US,
        NOW,
        observed,
        fenced,
        owned,
        since,
        after_release,
    )


def result(action: Action, outcome: CommandOutcome) -> CommandResult:
    return CommandResult(Command(action), outcome)


READ = Command(Action.READ)
FENCED = Verdict(VerdictKind.FENCED)
OWNED = Verdict(VerdictKind.OWNED)
RELEASED = Verdict(VerdictKind.RELEASED)
WAIT = Verdict(VerdictKind.WAIT)
GOOD, CONFLICT = CommandOutcome.GOOD, CommandOutcome.RESERVATION_CONFLICT

# (row, situation, decision): every row of the table at least once.
ROWS: list[tuple[str, Situation, Decision]] = [
    ("read-first", sit(Intent.OWN, None), READ),
    ("read-first", sit(Intent.RELEASE, None, fenced=True), READ),
    ("read-first", sit(Intent.NONE, None, fenced=True), READ),
    ("fenced", sit(Intent.OWN, None, fenced=True), FENCED),
    ("fenced", sit(Intent.DEFEND, None, fenced=True), FENCED),
    ("fenced", sit(Intent.DEFEND, state((US,), US), fenced=True), FENCED),
    ("fenced", sit(Intent.OWN, state((), None), fenced=True), FENCED),
    ("reads-disagree", sit(Intent.OWN, PRState((US,), US, WERO, 7, 8)), READ),
    (
        "own-other-type",
        sit(Intent.OWN, state((US,), US, PRType.WRITE_EXCLUSIVE)),
        Command(Action.RELEASE, pr_type=PRType.WRITE_EXCLUSIVE),
    ),
    (
        "keep-clean",
        sit(Intent.DEFEND, state((US, N2, STRANGER, N4, STRANGER), US), owned=True),
        Command(Action.PREEMPT, STRANGER, WERO),
    ),
    (
        "keep-clean",
        sit(Intent.OWN, state((N4, US), US)),
        Command(Action.PREEMPT, N4, WERO),
    ),
    ("owned", sit(Intent.DEFEND, state((US, N2, N3), US), owned=True), OWNED),
    ("owned", sit(Intent.OWN, state((US, US), US)), OWNED),
    # Without quorum a holder keeps its disk but preempts nobody.
    ("owned", sit(Intent.DEFEND, state((US, STRANGER), US), quorum=False), OWNED),
    ("lost", sit(Intent.DEFEND, state((US, N2), None)), FENCED),
    (
        "lost",
        sit(Intent.DEFEND, state((N2,), N2), owned=True),
        Verdict(VerdictKind.FENCED, holder_key=N2),
    ),
    (
        "lost",
        sit(Intent.OWN, state((N4,), N4), owned=True),
        Verdict(VerdictKind.FENCED, holder_key=N4),
    ),
    (
        "lost",
        sit(Intent.RELEASE, state((US, N2), N2), owned=True),
        Verdict(VerdictKind.FENCED, holder_key=N2),
    ),
    (
        "member-holds",
        sit(Intent.OWN, state((US, N2), N2)),
        Verdict(VerdictKind.HELD_BY_MEMBER, member="n2"),
    ),
    (
        "member-holds",
        sit(Intent.OWN, state((N3,), N3), quorum=False),
        Verdict(VerdictKind.HELD_BY_MEMBER, member="n3"),
    ),
    ("no-quorum", sit(Intent.OWN, state((US,), None), quorum=False), WAIT),
    ("no-quorum", sit(Intent.OWN, state((US, N4), N4), quorum=False), WAIT),
    ("register-first", sit(Intent.OWN, state((), None)), Command(Action.REGISTER_AND_IGNORE, US)),
    (
        "register-first",
        sit(Intent.OWN, state((N4,), N4)),
        Command(Action.REGISTER_AND_IGNORE, US),
    ),
    ("reserve", sit(Intent.OWN, state((N2, US), None)), Command(Action.RESERVE, pr_type=WERO)),
    (
        "incumbent-first",
        sit(Intent.OWN, state((US, N4), N4), delay=6.0),
        Verdict(VerdictKind.WAIT, holder_key=N4, until=NOW + 6.0),
    ),
    (
        "incumbent-first",
        sit(Intent.OWN, state((US, N4), N4), delay=6.0, since=NOW - 2.0),
        Verdict(VerdictKind.WAIT, holder_key=N4, until=NOW + 4.0),
    ),
    (
        "preempt",
        sit(Intent.OWN, state((US, N4), N4), delay=6.0, since=NOW - 6.0),
        Command(Action.PREEMPT_AND_ABORT, N4, WERO),
    ),
    (
        "preempt",
        sit(Intent.OWN, state((STRANGER, US), STRANGER)),
        Command(Action.PREEMPT_AND_ABORT, STRANGER, WERO),
    ),
    # An all registrants reservation reports key 0: preempting 0 takes it (SPC-4 §5.13.11.4).
    (
        "preempt",
        sit(Intent.OWN, state((US, N4), 0, PRType.WRITE_EXCLUSIVE_ALL_REGISTRANTS)),
        Command(Action.PREEMPT_AND_ABORT, 0, WERO),
    ),
    # The RELEASE answered GOOD but did not reach the nexus holding the reservation.
    (
        "release-unheard",
        sit(Intent.RELEASE, state((US, US), US), after_release=True),
        Command(Action.PREEMPT, US, WERO),
    ),
    (
        "release",
        sit(Intent.RELEASE, state((US,), US), owned=True),
        Command(Action.RELEASE, 0, WERO),
    ),
    (
        "release",
        sit(Intent.RELEASE, state((US,), US), quorum=False, after_release=True),
        Command(Action.RELEASE, 0, WERO),
    ),
    (
        "release",
        sit(Intent.RELEASE, state((US,), US, PRType.EXCLUSIVE_ACCESS)),
        Command(Action.RELEASE, pr_type=PRType.EXCLUSIVE_ACCESS),
    ),
    ("released", sit(Intent.RELEASE, state((US, N2), N2)), RELEASED),
    ("released", sit(Intent.RELEASE, state((US,), None)), RELEASED),
    ("released", sit(Intent.RELEASE, state((US,), None), fenced=True), RELEASED),
    ("seen-owned", sit(Intent.NONE, state((US,), US)), OWNED),
    ("seen-owned", sit(Intent.NONE, state((US,), US), fenced=True, quorum=False), OWNED),
    ("seen-member", sit(Intent.NONE, state((N2,), N2)), Verdict(VerdictKind.HELD_BY_MEMBER, "n2")),
    (
        "seen-other",
        sit(Intent.NONE, state((N4,), N4)),
        Verdict(VerdictKind.HELD_BY_NON_MEMBER, holder_key=N4),
    ),
    ("seen-free", sit(Intent.NONE, state((N2,), None)), RELEASED),
    ("confirm", sit(Intent.OWN, result(Action.RESERVE, GOOD)), READ),
    ("confirm", sit(Intent.RELEASE, result(Action.RELEASE, GOOD)), READ),
    ("ejected", sit(Intent.OWN, result(Action.RESERVE, CONFLICT), owned=True), FENCED),
    ("ejected", sit(Intent.DEFEND, result(Action.RESERVE, CONFLICT)), FENCED),
    # A PREEMPT whose victim is already gone conflicts too: only the read tells.
    ("conflict-reread", sit(Intent.DEFEND, result(Action.PREEMPT, CONFLICT), owned=True), READ),
    ("conflict-reread", sit(Intent.OWN, result(Action.RESERVE, CONFLICT)), READ),
    ("conflict-reread", sit(Intent.OWN, result(Action.PREEMPT_AND_ABORT, CONFLICT)), READ),
    ("no-path", sit(Intent.DEFEND, result(Action.READ, CommandOutcome.NO_PATH)), WAIT),
    ("no-path", sit(Intent.OWN, result(Action.RESERVE, CommandOutcome.NO_PATH)), WAIT),
    ("error", sit(Intent.OWN, result(Action.REGISTER_AND_IGNORE, CommandOutcome.ERROR)), WAIT),
]


@pytest.mark.parametrize(("row", "situation", "expected"), ROWS, ids=[r[0] for r in ROWS])
def test_every_row_of_the_table(row: str, situation: Situation, expected: Decision) -> None:
    decision = decide(situation)
    assert decision == expected
    assert decision.rule == row


def test_the_cases_cover_every_row() -> None:
    after_command = {"read-first", "reads-disagree", "confirm", "ejected", "conflict-reread"}
    every = {rule.name for rule in RULES} | after_command | {"no-path", "error"}
    assert every == {row for row, _, _ in ROWS}


def test_every_combination_of_facts_has_a_row() -> None:
    flags = (False, True)
    every = itertools.product(Intent, Holder, Authority, flags, flags, flags, flags, flags)
    for intent, holder, authority, registered, strangers, due, held, released in every:
        if intent is Intent.DEFEND and not held:
            continue  # defending is holding, by definition (``facts_of``)
        facts = Facts(intent, holder, authority, registered, strangers, due, held, released)
        rule = rule_for(facts)
        if authority is not Authority.MAY_FENCE:
            # Nothing preempts, registers or reserves without quorum or while fenced.
            preempting = {"keep-clean", "preempt", "release-unheard"}
            assert rule.name not in {*preempting, "register-first", "reserve"}


@pytest.mark.parametrize(
    ("intent", "observed", "fenced", "quorum"),
    [
        (intent, observed, fenced, quorum)
        for intent in Intent
        for observed in (
            state((US, STRANGER), STRANGER),
            state((STRANGER,), None),
            state((US, STRANGER), US),
            state((N4,), N4),
        )
        for fenced, quorum in ((True, True), (False, False), (True, False))
    ],
)
def test_never_a_preempt_without_quorum_or_while_fenced(
    intent: Intent, observed: PRState, fenced: bool, quorum: bool
) -> None:
    for owned, released in itertools.product((False, True), (False, True)):
        situation = sit(
            intent, observed, fenced=fenced, quorum=quorum, owned=owned, after_release=released
        )
        decision = decide(situation)
        assert not (isinstance(decision, Command) and decision.preempts)


def test_commands_carry_the_spec_codes() -> None:
    assert Command(Action.READ).service_action is None
    assert Command(Action.REGISTER_AND_IGNORE, US).service_action is (
        PROutServiceAction.REGISTER_AND_IGNORE_EXISTING_KEY
    )
    assert Command(Action.RESERVE).service_action is PROutServiceAction.RESERVE
    assert Command(Action.PREEMPT).service_action is PROutServiceAction.PREEMPT
    assert Command(Action.PREEMPT_AND_ABORT).service_action is (
        PROutServiceAction.PREEMPT_AND_ABORT
    )
    assert Command(Action.RELEASE).service_action is PROutServiceAction.RELEASE
    assert CLUSTER_TYPE is PRType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY


def test_outcome_of_the_errors_a_multipath_device_raises() -> None:
    assert outcome_of(None) is CommandOutcome.GOOD
    assert outcome_of(ReservationConflict("x")) is CommandOutcome.RESERVATION_CONFLICT
    lost = PathFailed(PathFailureKind.CONNECTION_LOST, "x")
    assert outcome_of(lost) is CommandOutcome.NO_PATH
    assert outcome_of(DeviceNotReady("no path for RESERVE")) is CommandOutcome.NO_PATH
    assert outcome_of(MediumError("x")) is CommandOutcome.ERROR


def test_pr_state_from_the_two_reads() -> None:
    keys = ReadKeysData(3, (US, N2))
    assert PRState.from_reads(keys, ReadReservationData(3)) == PRState((US, N2), None, None, 3, 3)
    held = PRState.from_reads(keys, ReadReservationData(4, N2, 0, WERO))
    assert held == PRState((US, N2), N2, WERO, 3, 4)
    assert not held.consistent


# -- the arbiter against the real engine ------------------------------------------------------


def paths_of(name: str, index: int) -> tuple[Nexus, Nexus]:
    initiator = f"iqn.2026-11.org.sanstack:{name}"
    return at(initiator, 0x10 * index + 1, 1), at(initiator, 0x10 * index + 2, 2)


def execute(lu: LU, key: int, paths: tuple[Nexus, ...], command: Command) -> CommandOutcome:
    """Send ``command`` as a multipath map would: the REGISTERs and RELEASE down every path
    (GOOD if one took it), anything else down the first path given."""
    action = command.service_action
    assert action is not None
    pr_type = command.pr_type or 0
    try:
        if command.action is Action.REGISTER_AND_IGNORE:
            answers = [lu.out(p, action, 0, command.service_action_key) for p in paths]
        elif command.action is Action.RELEASE:
            answers = [lu.out(p, action, key, 0, pr_type) for p in paths]
        else:
            answers = [lu.out(paths[0], action, key, command.service_action_key, pr_type)]
    except CheckCondition:
        return CommandOutcome.ERROR
    if any(a.status is Status.GOOD for a in answers):
        return CommandOutcome.GOOD
    return CommandOutcome.RESERVATION_CONFLICT


def run_round(
    arbiter: DiskArbiter, lu: LU, paths: tuple[Nexus, ...], arbitration: ArbitrationView, now: float
) -> tuple[list[Action], Verdict]:
    """One round to its verdict; the actions sent."""
    sent: list[Action] = []
    decision = arbiter.begin(arbitration, now)
    while isinstance(decision, Command):
        sent.append(decision.action)
        if decision.action is Action.READ:
            decision = arbiter.read(lu.keys(), lu.reservation(), now)
        else:
            decision = arbiter.done(execute(lu, arbiter.our_key, paths, decision), now)
    return sent, decision


def holder(lu: LU) -> int | None:
    reservation = lu.reservation()
    return None if reservation.pr_type is None else reservation.reservation_key


def two_nodes() -> tuple[LU, tuple[Nexus, Nexus], tuple[Nexus, Nexus]]:
    a, b = paths_of("n1", 1), paths_of("n2", 2)
    return LU(active=[*a, *b]), a, b


def test_a_free_disk_is_registered_reserved_and_confirmed() -> None:
    lu, a, _ = two_nodes()
    arbiter = DiskArbiter(US)
    sent, verdict = run_round(arbiter, lu, a, view(Intent.OWN), NOW)
    assert sent == [
        Action.READ,
        Action.REGISTER_AND_IGNORE,
        Action.READ,
        Action.RESERVE,
        Action.READ,
    ]
    assert verdict == OWNED and verdict.rule == "owned"
    assert arbiter.owned and holder(lu) == US and lu.reservation().pr_type is WERO
    assert lu.keys().reservation_keys == (US, US)  # every path registered
    # Defending: one read, nothing else.
    assert run_round(arbiter, lu, a, view(Intent.DEFEND), NOW + 3) == ([Action.READ], OWNED)


def test_a_restarted_node_learns_from_the_disk_that_it_owns_it() -> None:
    lu, a, _ = two_nodes()
    run_round(DiskArbiter(US), lu, a, view(Intent.OWN), NOW)
    for intent in (Intent.OWN, Intent.NONE):
        restarted = DiskArbiter(US)
        assert run_round(restarted, lu, a, view(intent), NOW) == ([Action.READ], OWNED)
        assert restarted.owned


def test_failover_ejects_the_old_owner_on_every_path_and_it_stays_fenced() -> None:
    lu, a, b = two_nodes()
    old = DiskArbiter(US)
    run_round(old, lu, a, view(Intent.OWN), NOW)
    new = DiskArbiter(N2)
    without_n1 = ArbitrationView(Intent.OWN, frozenset({"n2", "n3"}), KEYS, True)
    sent, verdict = run_round(new, lu, b, without_n1, NOW)
    assert sent == [
        Action.READ,
        Action.REGISTER_AND_IGNORE,
        Action.READ,
        Action.PREEMPT_AND_ABORT,
        Action.READ,
    ]
    assert verdict == OWNED and holder(lu) == N2
    assert US not in lu.keys().reservation_keys
    assert not any(lu.can_write(p) for p in a)
    # The old owner finds out at its next defence (WSFC Event 1038) and stays out.
    sent, verdict = run_round(old, lu, a, view(Intent.DEFEND), NOW + 3)
    assert verdict == Verdict(VerdictKind.FENCED, holder_key=N2)
    assert old.fenced and not old.owned and "unexpectedly lost" in old.fence_reason
    assert run_round(old, lu, a, view(Intent.OWN), NOW + 6) == ([], FENCED)
    old.unfence()
    assert run_round(old, lu, a, view(Intent.OWN), NOW + 9)[1] == Verdict(
        VerdictKind.HELD_BY_MEMBER, "n2"
    )


def test_the_defender_cleans_out_registrations_of_non_members() -> None:
    lu, a, b = two_nodes()
    arbiter = DiskArbiter(US)
    run_round(arbiter, lu, a, view(Intent.OWN), NOW)
    lu.register(b[0], N4)  # n4 is no member
    lu.register(b[1], N2)
    sent, verdict = run_round(arbiter, lu, a, view(Intent.DEFEND), NOW)
    assert sent == [Action.READ, Action.PREEMPT, Action.READ]
    assert verdict == OWNED
    assert sorted(lu.keys().reservation_keys) == [US, US, N2]


def test_the_challenger_of_an_incumbent_waits_its_turn_then_preempts() -> None:
    lu, a, b = two_nodes()
    run_round(DiskArbiter(N4), lu, b, view(Intent.OWN, members=frozenset({"n4"})), NOW)
    challenger = DiskArbiter(US)
    racing = view(Intent.OWN, delay=6.0)
    _, verdict = run_round(challenger, lu, a, racing, NOW)
    assert verdict == Verdict(VerdictKind.WAIT, holder_key=N4, until=NOW + 6.0)
    _, verdict = run_round(challenger, lu, a, racing, NOW + 4.0)
    assert verdict == Verdict(VerdictKind.WAIT, holder_key=N4, until=NOW + 6.0)  # same clock
    sent, verdict = run_round(challenger, lu, a, racing, NOW + 6.0)
    assert sent == [Action.READ, Action.PREEMPT_AND_ABORT, Action.READ]
    assert verdict == OWNED and holder(lu) == US


def test_the_challenge_clock_restarts_when_the_holder_changes_or_quorum_goes() -> None:
    lu, a, b = two_nodes()
    n4 = view(Intent.OWN, members=frozenset({"n4"}))
    run_round(DiskArbiter(N4), lu, b, n4, NOW)
    challenger = DiskArbiter(US)
    racing = view(Intent.OWN, delay=6.0)
    run_round(challenger, lu, a, racing, NOW)
    assert run_round(challenger, lu, a, view(Intent.OWN, quorum=False), NOW + 1)[1].rule == (
        "no-quorum"
    )
    _, verdict = run_round(challenger, lu, a, racing, NOW + 7.0)
    assert verdict == Verdict(VerdictKind.WAIT, holder_key=N4, until=NOW + 13.0)


def test_a_reservation_conflict_on_the_groups_io_fences() -> None:
    arbiter = DiskArbiter(US)
    arbiter.owned = True
    assert arbiter.conflict().kind is VerdictKind.FENCED
    assert arbiter.fenced and not arbiter.owned
    assert arbiter.begin(view(Intent.OWN), NOW) == FENCED


def test_a_round_that_does_not_settle_is_bounded() -> None:
    arbiter = DiskArbiter(US, max_commands=3)
    decision = arbiter.begin(view(Intent.OWN), NOW)
    disagreeing = ReadReservationData(9)
    for _ in range(3):
        assert decision == READ
        decision = arbiter.read(ReadKeysData(8), disagreeing, NOW)
    assert decision == WAIT and decision.rule == "bounded"
    assert arbiter.pending is None


def test_path_failures_end_the_round_without_changing_belief() -> None:
    lu, a, _ = two_nodes()
    arbiter = DiskArbiter(US)
    run_round(arbiter, lu, a, view(Intent.OWN), NOW)
    assert arbiter.begin(view(Intent.DEFEND), NOW) == READ
    verdict = arbiter.done(CommandOutcome.NO_PATH, NOW, "no path for READ_KEYS")
    assert verdict == WAIT and "no path" in verdict.reason
    assert arbiter.owned and not arbiter.fenced


def test_releasing_gives_up_belief_before_the_release_is_sent() -> None:
    lu, a, _ = two_nodes()
    arbiter = DiskArbiter(US)
    run_round(arbiter, lu, a, view(Intent.OWN), NOW)
    decision = arbiter.begin(view(Intent.RELEASE), NOW)
    decision = arbiter.read(lu.keys(), lu.reservation(), NOW)
    assert decision == Command(Action.RELEASE, 0, WERO) and not arbiter.owned
    decision = arbiter.done(execute(lu, US, a, decision), NOW)
    assert decision == READ
    assert arbiter.read(lu.keys(), lu.reservation(), NOW) == RELEASED
    assert holder(lu) is None and US in lu.keys().reservation_keys


def test_the_arbiter_refuses_answers_out_of_turn() -> None:
    with pytest.raises(ValueError, match="never 0"):
        DiskArbiter(0)
    arbiter = DiskArbiter(US)
    with pytest.raises(LocalProtocolError, match="no arbitration command"):
        arbiter.done(GOOD, NOW)
    with pytest.raises(LocalProtocolError, match="read answered while nothing"):
        arbiter.read(ReadKeysData(0), ReadReservationData(0), NOW)
    arbiter.begin(view(Intent.OWN), NOW)
    with pytest.raises(LocalProtocolError, match="round is under way"):
        arbiter.begin(view(Intent.OWN), NOW)
    with pytest.raises(LocalProtocolError, match="goes to read"):
        arbiter.done(GOOD, NOW)
    decision = arbiter.read(ReadKeysData(0), ReadReservationData(0), NOW)
    assert decision == Command(Action.REGISTER_AND_IGNORE, US)
    with pytest.raises(LocalProtocolError, match="read answered while register-and-ignore"):
        arbiter.read(ReadKeysData(0), ReadReservationData(0), NOW)


# -- the randomized simulation ------------------------------------------------------------------

P_EVENT = 0.3
P_NO_PATH = 0.05  # the command never reached the disk
P_ANSWER_LOST = 0.05  # it did, but its answer was lost with the path
RANDOM_STEPS = 400
SETTLE_STEPS = 400


@dataclass
class SimNode:
    name: str
    key: int
    paths: tuple[Nexus, Nexus]
    view: frozenset[str]
    arbiter: DiskArbiter = field(init=False)
    alive: bool = True
    keys_read: ReadKeysData | None = None
    ejected: bool = False  # lost its registration while it believed it owned the disk

    def __post_init__(self) -> None:
        self.restart()

    def restart(self) -> None:
        self.arbiter = DiskArbiter(self.key)
        self.keys_read, self.ejected = None, False


class Simulation:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        count = self.rng.randint(2, 4)
        self.names = [f"n{i + 1}" for i in range(count)]
        self.keys = {name: 0x5A17_0000_0000_0001 + i for i, name in enumerate(self.names)}
        self.nodes = {
            name: SimNode(name, self.keys[name], paths_of(name, i), frozenset(self.names))
            for i, name in enumerate(self.names)
        }
        self.lu = LU(active=[p for node in self.nodes.values() for p in node.paths])
        self.now = 0.0
        self.trace: list[str] = []

    # -- the model of the rest of the node ---------------------------------------------------

    def quorum(self, node: SimNode) -> bool:
        return node.name in node.view and 2 * len(node.view) > len(self.names)

    def intent(self, node: SimNode, *, healed: bool) -> Intent:
        """The group runner's wish. Until it notices a loss of quorum (``quorum_loss_stop``)
        it may still want the disk: arbitration alone must keep it from preempting."""
        desired = next((n for n in self.names if n in node.view), None)
        lagging = not healed and self.rng.random() < 0.5
        if desired == node.name and (self.quorum(node) or lagging):
            return Intent.DEFEND if node.arbiter.owned else Intent.OWN
        return Intent.RELEASE if node.arbiter.owned else Intent.NONE

    def alive(self) -> list[SimNode]:
        return [n for n in self.nodes.values() if n.alive]

    def registered(self) -> set[int]:
        return {r.reservation_key for r in self.lu.pr.registrations}

    # -- one step ------------------------------------------------------------------------------

    def step(self, node: SimNode, delay: float, failures: bool) -> None:
        arbiter = node.arbiter
        pending = arbiter.pending
        lost = failures and self.rng.random() < P_NO_PATH
        if pending is None:
            arbitration = ArbitrationView(
                self.intent(node, healed=not failures),
                node.view,
                self.keys,
                self.quorum(node),
                delay,
            )
            decision = arbiter.begin(arbitration, self.now)
            self.check(node, decision)
            return
        if pending.action is Action.READ:
            if lost:
                node.keys_read = None
                decision = arbiter.done(CommandOutcome.NO_PATH, self.now)
            elif node.keys_read is None:
                node.keys_read = self.lu.keys()  # the two reads are two steps apart
                return
            else:
                decision = arbiter.read(node.keys_read, self.lu.reservation(), self.now)
                node.keys_read = None
        elif lost:
            decision = arbiter.done(CommandOutcome.NO_PATH, self.now)
        else:
            paths = node.paths if self.rng.random() < 0.5 else node.paths[::-1]
            outcome = execute(self.lu, node.key, paths, pending)
            self.trace.append(f"{self.now:.1f} {node.name} {pending.action.value} -> {outcome}")
            if failures and self.rng.random() < P_ANSWER_LOST:
                outcome = CommandOutcome.NO_PATH
            decision = arbiter.done(outcome, self.now)
        self.check(node, decision)

    def check(self, node: SimNode, decision: Decision) -> None:
        self.trace.append(f"{self.now:.1f} {node.name} -> {decision}")
        if not isinstance(decision, Command):
            return
        takes = {Action.REGISTER_AND_IGNORE, Action.RESERVE}
        if decision.preempts or decision.action in takes:
            assert not node.ejected, "an ejected node tried to take the disk again"
            assert not node.arbiter.fenced, "a fenced node tried to take the disk"
        if decision.preempts:
            current = node.arbiter.view
            assert current is not None and current.has_quorum, "a preempt without quorum"

    def invariants(self) -> None:
        registered = self.registered()
        for node in self.alive():
            if node.arbiter.owned and node.key not in registered:
                node.ejected = True
        believers = [n.name for n in self.alive() if n.arbiter.owned and n.key in registered]
        assert len(believers) <= 1, f"two owners that can still write: {believers}"

    def event(self) -> None:
        """A view change (often one that leaves two sides each believing it has quorum), a
        kill, a restart, or a fenced node let back in."""
        choice = self.rng.choices(("view", "kill", "restart", "unfence"), (6, 2, 2, 2))[0]
        node = self.rng.choice(list(self.nodes.values()))
        if choice == "view" and node.alive:
            others = [n for n in self.names if n != node.name and self.rng.random() < 0.6]
            node.view = frozenset([node.name, *others])
            self.trace.append(f"{self.now:.1f} {node.name} view {sorted(node.view)}")
        elif choice == "kill" and node.alive and len(self.alive()) > 1:
            node.alive = False
            self.trace.append(f"{self.now:.1f} {node.name} killed")
        elif choice == "restart" and not node.alive:
            node.alive = True
            node.restart()
            self.trace.append(f"{self.now:.1f} {node.name} restarted")
        elif choice == "unfence" and node.alive and node.arbiter.fenced:
            node.arbiter.unfence()
            node.ejected = False
            self.trace.append(f"{self.now:.1f} {node.name} unfenced")

    def run_random(self) -> None:
        for _ in range(RANDOM_STEPS):
            if self.rng.random() < P_EVENT:
                self.event()
            self.now += self.rng.uniform(0.0, 1.5)
            node = self.rng.choice(self.alive())
            self.step(node, self.rng.choice((0.0, 6.0)), failures=True)
            self.invariants()

    def settle(self) -> None:
        """Membership heals: every round under way ends, a majority is alive, every live node
        sees the same view and has stopped and been unfenced. Then the disk must settle."""
        for node in self.alive():
            while node.arbiter.pending is not None:
                self.step(node, 0.0, failures=False)
                self.invariants()
        for node in self.nodes.values():
            if not node.alive and (
                self.rng.random() < 0.5 or 2 * len(self.alive()) <= len(self.names)
            ):
                node.alive = True
                node.restart()
        live = frozenset(n.name for n in self.alive())
        for node in self.alive():
            node.view = live
            node.arbiter.unfence()
            node.ejected = False
        order = self.alive()
        for index in range(SETTLE_STEPS):
            self.now += 1.0
            node = order[index % len(order)]
            if node.arbiter.fenced and node.arbiter.pending is None:
                # Fenced by a round that was under way: it stops and rejoins the healed view.
                node.arbiter.unfence()
                node.ejected = False
            self.step(node, 0.0 if node.arbiter.owned else 6.0, failures=False)
            self.invariants()

    def settled(self) -> None:
        live = [n for n in self.names if self.nodes[n].alive]
        desired = live[0]
        assert holder(self.lu) == self.keys[desired]
        assert self.lu.reservation().pr_type is WERO
        assert self.registered() <= {self.keys[n] for n in live}, "a non-member still registered"
        owners = [n.name for n in self.alive() if n.arbiter.owned]
        assert owners == [desired]
        assert not any(n.arbiter.fenced for n in self.alive())


@pytest.mark.parametrize("seed", range(250))
def test_random_interleavings_never_make_two_owners(seed: int) -> None:
    simulation = Simulation(seed)
    try:
        simulation.run_random()
        simulation.settle()
        simulation.settled()
    except AssertionError:
        print("\n".join(simulation.trace[-80:]))
        raise
