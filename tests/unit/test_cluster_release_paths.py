"""Releasing a disk whose reservation the node holds through an I_T nexus it cannot reach now
(the KB967724 interop test's failure: a node killed with ``kill -9`` had reserved a group's
disks through portal 1; it restarted while portal 1 was down, its host logged in through
portal 2 only, and the group was placed on another node).

Only the nexus holding a registrants only reservation releases it (SPC-4 §5.13.11.2), so
every RELEASE down the paths the node had was GOOD without effect and the READ after it
still showed our key holding the disk: the round ended "not settled after 16 commands",
again every ``arbitration_interval``, and the group's next owner found the disk held by a
member (HELD_BY_MEMBER) until its onlining timed out, failed and started over, for as long
as portal 1 stayed down (the host's rescan timer: 30 s). ``cluster status`` meanwhile named
the next owner's claim: "onlining on n1", while the target said n2 held the disks.

Here, against the real PR engine (``scsi/pr.py``): the table's row, the arbiter alone, and
the round as the node carries it out (``DiskExecutor`` through the PR queue, on a map whose
first path is gone). And the same wait's other cause: the disks a node held before a
restart, of a group placed elsewhere, were released in one round, and a round that met a
path in trouble (WAIT) left them held by a node claiming nothing for the group."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import cast

from tests.support.pr_harness import LU, at

from sanstack.cluster.arbitration import (
    Action,
    ArbitrationView,
    Command,
    CommandOutcome,
    DiskArbiter,
    Intent,
    PRState,
    Situation,
    Verdict,
    VerdictKind,
    decide,
)
from sanstack.cluster.disks import DiskExecutor
from sanstack.cluster.group_state import GroupState
from sanstack.cluster.node import ClusterNode
from sanstack.cluster.work_queue import WorkQueue
from sanstack.initiator.lun_device import ReservationConflict
from sanstack.mpio.reservations import HostRegistration
from sanstack.scsi.codes import Status
from sanstack.scsi.command import Nexus
from sanstack.scsi.pr_codec import PROutServiceAction, PRType, ReadKeysData, ReadReservationData

WERO = PRType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY
SA = PROutServiceAction
N1, N2 = 0x4B96_0000_0000_0001, 0x4B96_0000_0000_0002
KEYS = {"n1": N1, "n2": N2}
NOW = 50.0


def view(intent: Intent, quorum: bool = True) -> ArbitrationView:
    return ArbitrationView(intent, frozenset(KEYS), KEYS, quorum)


def paths_of(name: str, index: int) -> list[Nexus]:
    """A node's nexuses: through portal 1, then portal 2."""
    initiator = f"iqn.2026-11.org.sanstack:{name}"
    return [at(initiator, 0x10 * index + 1, 1), at(initiator, 0x10 * index + 2, 2)]


class Map:
    """A node's multipath map over ``paths`` of ``lu`` (the paths with a session now), sending
    each PR command as ``MultipathDevice`` does: REGISTER and RELEASE down every path (GOOD
    when one took it), anything else down the first."""

    def __init__(self, lu: LU, paths: list[Nexus]) -> None:
        self.lu = lu
        self.paths = paths
        self.registration = HostRegistration()
        self.sent: list[str] = []

    def _out(self, path: Nexus, action: SA, sa_key: int = 0, pr_type: int = 0) -> Status:
        self.sent.append(f"{action.name} via port {path.tpgt}")
        return self.lu.out(path, action, self.registration.key, sa_key, pr_type).status

    def _check(self, statuses: list[Status]) -> None:
        if Status.GOOD not in statuses:
            raise ReservationConflict("reservation conflict")

    async def pr_register(self, key: int, *, aptpl: bool = False) -> None:
        action = SA.REGISTER_AND_IGNORE_EXISTING_KEY
        self._check([self.lu.out(p, action, 0, key).status for p in self.paths])
        self.registration.taken(key, aptpl)

    async def pr_reserve(self, pr_type: PRType) -> None:
        self._check([self._out(self.paths[0], SA.RESERVE, 0, pr_type)])

    async def pr_release(self, pr_type: PRType) -> None:
        self._check([self._out(p, SA.RELEASE, 0, pr_type) for p in self.paths])

    async def pr_preempt(self, victim_key: int, pr_type: PRType, *, abort: bool = False) -> None:
        action = SA.PREEMPT_AND_ABORT if abort else SA.PREEMPT
        self._check([self._out(self.paths[0], action, victim_key, pr_type)])

    async def pr_read_keys(self) -> ReadKeysData:
        return self.lu.keys()

    async def pr_read_reservation(self) -> ReadReservationData:
        return self.lu.reservation()


def run(body: Callable[[WorkQueue], Awaitable[None]]) -> None:
    async def main() -> None:
        queue = WorkQueue("pr", 4, 16)
        try:
            await body(queue)
        finally:
            await queue.close()

    asyncio.run(main())


def rounds(lu: LU, n2_paths: list[Nexus]) -> tuple[Map, Verdict, Verdict, Verdict]:
    """n2 reserves through portal 1 (registered on both), is killed, restarts with portal 2
    only and releases (the group placed on n1); then n1 takes the disk. The restarted map,
    the verdicts of n2's start (its look at the disk), of its release and of n1's round."""
    verdicts: list[Verdict] = []
    restarted = Map(lu, n2_paths[1:])

    async def body(queue: WorkQueue) -> None:
        before = DiskExecutor(queue, N2, lambda: NOW)
        old = Map(lu, n2_paths)
        verdict = await before.round("d48", DiskArbiter(N2), old, view(Intent.OWN))
        assert verdict.kind is VerdictKind.OWNED
        reservation = lu.pr.reservation
        assert reservation is not None and reservation.holder is not None
        assert reservation.holder.isid == n2_paths[0].isid  # portal 1's nexus holds it
        # kill -9; the restarted node has a session through portal 2 only.
        after = DiskExecutor(queue, N2, lambda: NOW + 5)
        arbiter = DiskArbiter(N2)
        verdicts.append(await after.round("d48", arbiter, restarted, view(Intent.NONE)))
        verdicts.append(await after.round("d48", arbiter, restarted, view(Intent.RELEASE)))
        taker = DiskExecutor(queue, N1, lambda: NOW + 6)
        n1 = Map(lu, paths_of("n1", 1))
        verdicts.append(await taker.round("d48", DiskArbiter(N1), n1, view(Intent.OWN)))

    run(body)
    return restarted, verdicts[0], verdicts[1], verdicts[2]


def test_a_release_that_missed_the_holding_nexus_preempts_our_own_key_first() -> None:
    after_release = Situation(
        view(Intent.RELEASE), N2, NOW, PRState((N2, N2), N2, WERO, 3, 3), after_release=True
    )
    decision = decide(after_release)
    assert decision == Command(Action.PREEMPT, N2, WERO)
    assert decision.rule == "release-unheard"
    # The RELEASE comes first, and never a preempt without quorum or while fenced.
    first = Situation(view(Intent.RELEASE), N2, NOW, PRState((N2, N2), N2, WERO, 3, 3))
    for situation in (
        first,
        Situation(view(Intent.RELEASE, quorum=False), N2, NOW, first.observed, after_release=True),
        Situation(view(Intent.RELEASE), N2, NOW, first.observed, fenced=True, after_release=True),
    ):
        assert decide(situation) == Command(Action.RELEASE, pr_type=WERO)


def test_a_node_restarted_without_the_path_it_reserved_through_releases_its_disk() -> None:
    n2_paths = paths_of("n2", 2)
    lu = LU(active=[*paths_of("n1", 1), *n2_paths])
    restarted, seen, released, taken = rounds(lu, n2_paths)
    assert seen.kind is VerdictKind.OWNED  # learnt from the disk: the group was ours
    assert released.kind is VerdictKind.RELEASED, released
    assert restarted.sent == [
        "RELEASE via port 2",  # GOOD without effect: port 1's nexus holds the reservation
        "PREEMPT via port 2",  # our own key: the reservation moves to port 2's nexus
        "RELEASE via port 2",
    ]
    # Portal 1's nexus lost its registration (the map registers it again when it returns);
    # n2 is registered through portal 2 still, so it may take the disk again later.
    assert not lu.can_write(n2_paths[0]) and lu.can_write(n2_paths[1])
    assert taken.kind is VerdictKind.OWNED  # the next owner at once, not HELD_BY_MEMBER
    assert lu.reservation().reservation_key == N1


def test_a_release_through_the_holding_nexus_is_not_preceded_by_a_preempt() -> None:
    arbiter = DiskArbiter(N2)
    n2_paths = paths_of("n2", 2)
    lu = LU(active=n2_paths)
    both = Map(lu, n2_paths)
    sent: list[tuple[Action, CommandOutcome]] = []

    async def body(queue: WorkQueue) -> None:
        executor = DiskExecutor(
            queue, N2, lambda: NOW, on_command=lambda d, c, o, _t: sent.append((c.action, o))
        )
        assert (await executor.round("d0", arbiter, both, view(Intent.OWN))).kind is (
            VerdictKind.OWNED
        )
        released = await executor.round("d0", arbiter, both, view(Intent.RELEASE))
        assert released.kind is VerdictKind.RELEASED

    run(body)
    assert [a for a, _ in sent] == [Action.REGISTER_AND_IGNORE, Action.RESERVE, Action.RELEASE]
    assert lu.reservation().pr_type is None


# -- the disks of a group held before a restart, placed elsewhere ----------------------------


def held_node(
    answer: Callable[[], Verdict], runner: SimpleNamespace
) -> tuple[ClusterNode, list[str]]:
    """What ``ClusterNode._release_held`` uses of a node: a group g4 of one disk whose
    arbitration rounds end with ``answer()``; the rounds asked, as ``disk:intent``."""
    asked: list[str] = []

    async def arbitrate(
        disk: str, intent: Intent, *, unless: Callable[[], bool] | None = None
    ) -> Verdict:
        if unless is not None and unless():
            return Verdict(VerdictKind.WAIT, reason="no longer wanted")
        asked.append(f"{disk}:{intent.value}")
        return answer()

    node = SimpleNamespace(
        timings=SimpleNamespace(arbitration_interval=0.0),
        runners={"g4": runner},
        groups={"g4": SimpleNamespace(disks=("d48",))},
        arbitrate=arbitrate,
    )
    return cast(ClusterNode, node), asked


NO_PATH = Verdict(VerdictKind.WAIT, reason="no path for RELEASE")


def test_a_disk_held_before_a_restart_is_released_again_after_a_round_that_waited() -> None:
    # Before: one round, and a disk whose round met a path in trouble stayed held by a node
    # that claims nothing for its group, so the next owner waited for it in vain.
    runner = SimpleNamespace(state=GroupState.OFFLINE)
    verdicts = iter([NO_PATH, NO_PATH, Verdict(VerdictKind.RELEASED)])
    node, asked = held_node(verdicts.__next__, runner)
    asyncio.run(ClusterNode._release_held(node, "g4"))
    assert asked == ["d48:release"] * 3


def test_the_release_of_a_held_disk_stops_once_the_group_runs_here() -> None:
    runner = SimpleNamespace(state=GroupState.OFFLINE)

    def placed_here_meanwhile() -> Verdict:
        runner.state = GroupState.ONLINING_DISKS  # its own rounds have the disks now
        return NO_PATH

    node, asked = held_node(placed_here_meanwhile, runner)
    asyncio.run(ClusterNode._release_held(node, "g4"))
    assert asked == ["d48:release"]
