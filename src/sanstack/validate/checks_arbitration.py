"""Arbitration and failover (WSFC: Validate Disk Arbitration, Validate Multiple Arbitration,
Validate Disk Failover, Validate Simultaneous Failover), run with the cluster's own
``DiskArbiter`` and ``DiskExecutor`` on each node: what passes here is what ``sanstack
cluster node`` does on this target.

Membership is played by the test: a node that "stops defending" (crashed, cut off) is left
out of its successor's view, which then waits the challenger's ``preempt_delay`` (2 x the
arbitration interval, the incumbent's chance, WSFC's ArbitrationDelay) and takes the disk
with PREEMPT AND ABORT. The failover bound is that delay plus two intervals.
"""

from __future__ import annotations

import asyncio
from collections import Counter

from sanstack.cluster.arbitration import (
    Action,
    ArbitrationView,
    Command,
    CommandOutcome,
    Intent,
    Verdict,
    VerdictKind,
)
from sanstack.cluster.keys import format_key
from sanstack.validate import scsi_probe
from sanstack.validate.checks_pr import PREEMPT_AND_ABORT_MISSING
from sanstack.validate.model import TestRun
from sanstack.validate.nodes import Node, Validation

FAILOVER_SLACK = 5.0  # PR commands and reads on a busy machine, over the protocol's bound
PATTERN_BLOCK = 0


def _view(
    v: Validation, intent: Intent, members: list[Node], preempt_delay: float = 0.0
) -> ArbitrationView:
    return ArbitrationView(
        intent,
        frozenset(n.name for n in members),
        {n.name: n.key for n in v.nodes},
        True,
        preempt_delay,
    )


async def arbitrate(
    v: Validation,
    node: Node,
    lun: int,
    intent: Intent,
    *,
    members: list[Node] | None = None,
    preempt_delay: float = 0.0,
) -> Verdict:
    """One arbitration round of ``node`` on ``lun``, as the cluster node runs it; every
    node is a member unless ``members`` says otherwise."""
    view = _view(v, intent, v.nodes if members is None else members, preempt_delay)
    return await node.executor.round(f"LUN {lun}", node.arbiter(lun), node.map(lun), view)


def _record_commands(v: Validation, run: TestRun) -> list[str]:
    """Every PR command the arbiters send becomes a step; refusals are kept for reasons."""
    refused: list[str] = []
    for node in v.nodes:

        def heard(
            disk: str, command: Command, outcome: CommandOutcome, detail: str, who: str = node.name
        ) -> None:
            victim = f" of {format_key(command.service_action_key)}" if command.preempts else ""
            text = f"{who}: {disk}: {command.action.value}{victim} -> {outcome.value}"
            run.step(text + (f" ({detail})" if detail else ""))
            if command.action is Action.PREEMPT_AND_ABORT and outcome is CommandOutcome.ERROR:
                refused.append(scsi_probe.error_text(detail))

        node.executor.on_command = heard
    return refused


def _stop_recording(v: Validation) -> None:
    for node in v.nodes:
        node.executor.on_command = None


async def check_disk_arbitration(v: Validation, run: TestRun) -> None:
    """Each node in turn takes each disk; while it owns it, every other node arbitrating for
    it does not take it, as a member or as a challenger during the owner's defence."""
    _record_commands(v, run)
    interval = v.settings.arbitration_interval
    try:
        for lun in v.luns:
            for owner in v.nodes:
                others = [n for n in v.nodes if n is not owner]
                verdict = await arbitrate(v, owner, lun, Intent.OWN)
                if not run.check(
                    verdict.kind is VerdictKind.OWNED,
                    f"LUN {lun}: {owner.name} arbitrated and owns it",
                    f"LUN {lun}: {owner.name} could not take the disk "
                    f"({verdict.kind.value}: {verdict.reason})",
                ):
                    break
                for other in others:
                    seen = await arbitrate(v, other, lun, Intent.OWN)
                    run.check(
                        seen.kind is VerdictKind.HELD_BY_MEMBER and seen.member == owner.name,
                        f"LUN {lun}: {other.name} sees {owner.name} owns it and leaves it",
                        f"LUN {lun}: {other.name} arbitrating got {seen.kind.value} while "
                        f"{owner.name} owned the disk",
                    )
                    other.forget_arbitration(lun)
                    challenge = await arbitrate(
                        v, other, lun, Intent.OWN, members=[other], preempt_delay=2 * interval
                    )
                    defence = await arbitrate(v, owner, lun, Intent.DEFEND)
                    run.check(
                        challenge.kind is VerdictKind.WAIT and defence.kind is VerdictKind.OWNED,
                        f"LUN {lun}: {other.name} as a challenger waits while {owner.name} defends",
                        f"LUN {lun}: a challenger got {challenge.kind.value} and the "
                        f"defender {defence.kind.value} while {owner.name} defended",
                    )
                    other.forget_arbitration(lun)
                released = await arbitrate(v, owner, lun, Intent.RELEASE)
                run.check(
                    released.kind is VerdictKind.RELEASED,
                    f"LUN {lun}: {owner.name} released it",
                    f"LUN {lun}: {owner.name} could not release it ({released.reason})",
                )
    finally:
        _stop_recording(v)


async def check_multiple_arbitration(v: Validation, run: TestRun) -> None:
    """Every node arbitrates for the disk at once, ``rounds`` times: exactly one owns it
    each time, and every other one sees that node hold it."""
    rounds = v.settings.rounds
    for lun in v.luns:
        winners: Counter[str] = Counter()
        for number in range(1, rounds + 1):
            verdicts = await asyncio.gather(*(arbitrate(v, n, lun, Intent.OWN) for n in v.nodes))
            owners = [
                n for n, got in zip(v.nodes, verdicts, strict=True) if got.kind is VerdictKind.OWNED
            ]
            if len(owners) != 1:
                names = ", ".join(n.name for n in owners) or "no node"
                run.fail(
                    f"LUN {lun}, round {number}: {names} won a {len(v.nodes)}-node "
                    "arbitration; exactly one must"
                )
                await v.clean(lun)
                continue
            winner = owners[0]
            winners[winner.name] += 1
            losers = [
                (n, got)
                for n, got in zip(v.nodes, verdicts, strict=True)
                if n is not winner
                and not (got.kind is VerdictKind.HELD_BY_MEMBER and got.member == winner.name)
            ]
            for loser, got in losers:
                run.fail(
                    f"LUN {lun}, round {number}: {loser.name} ended with {got.kind.value} "
                    f"({got.reason}), not with {winner.name} holding the disk"
                )
            held = await scsi_probe.read_reservation(winner.paths(lun)[0][1])
            run.check(
                held.reservation_key == winner.key,
                f"LUN {lun}, round {number}: {winner.name} won and holds the reservation",
                f"LUN {lun}, round {number}: {winner.name} won but the reservation is "
                f"{held.reservation_key:#x}",
            )
            released = await arbitrate(v, winner, lun, Intent.RELEASE)
            if released.kind is not VerdictKind.RELEASED:
                run.fail(f"LUN {lun}: {winner.name} could not release ({released.reason})")
                await v.clean(lun)
        run.step(f"LUN {lun}: wins over {rounds} rounds: {dict(winners)}")


async def check_disk_failover(v: Validation, run: TestRun) -> None:
    """Node 1 owns each disk and stops defending; node 2 takes it over within the bound."""
    owner, successor = v.nodes[0], v.nodes[1]
    refused = _record_commands(v, run)
    try:
        for lun in v.luns:
            await _fail_over(v, run, lun, owner=owner, successor=successor, refused=refused)
    finally:
        _stop_recording(v)


async def check_simultaneous_failover(v: Validation, run: TestRun) -> None:
    """Node 1 owns every disk and stops; node 2 takes them all at once, each within the
    bound."""
    owner, successor = v.nodes[0], v.nodes[1]
    refused = _record_commands(v, run)
    try:
        started = v.now()
        await asyncio.gather(
            *(
                _fail_over(v, run, lun, owner=owner, successor=successor, refused=refused)
                for lun in v.luns
            )
        )
        run.step(f"{len(v.luns)} disks failed over in {v.now() - started:.2f} s")
    finally:
        _stop_recording(v)


async def _fail_over(
    v: Validation, run: TestRun, lun: int, *, owner: Node, successor: Node, refused: list[str]
) -> None:
    interval = v.settings.arbitration_interval
    delay = 2 * interval
    bound = delay + 2 * interval + FAILOVER_SLACK
    taken = await arbitrate(v, owner, lun, Intent.OWN)
    if not run.check(
        taken.kind is VerdictKind.OWNED,
        f"LUN {lun}: {owner.name} owns it",
        f"LUN {lun}: {owner.name} could not take it ({taken.reason})",
    ):
        return
    await v.register_all(lun, [successor])
    stopped = v.now()
    run.step(f"LUN {lun}: {owner.name} stops defending (left the membership)")
    verdict: Verdict | None = None
    while v.now() - stopped < bound:
        verdict = await arbitrate(
            v, successor, lun, Intent.OWN, members=[successor], preempt_delay=delay
        )
        if verdict.kind is VerdictKind.OWNED:
            break
        wait = interval if verdict.until is None else max(0.0, verdict.until - v.now())
        await asyncio.sleep(min(wait, interval))
    took = v.now() - stopped
    if verdict is None or verdict.kind is not VerdictKind.OWNED:
        why = "no verdict" if verdict is None else f"{verdict.kind.value}: {verdict.reason}"
        late = f"LUN {lun}: {successor.name} did not take the disk within {bound:g} s ({why})"
        if refused:  # the reason an administrator needs; the rest is in the steps
            run.step(late)
            run.fail(PREEMPT_AND_ABORT_MISSING.format(answer=refused[-1]))
        else:
            run.fail(late)
        return
    run.check(
        took <= bound,
        f"LUN {lun}: {successor.name} took it over in {took:.2f} s (bound {bound:g} s)",
        f"LUN {lun}: failover took {took:.2f} s, over the {bound:g} s bound",
    )
    for portal, path in owner.paths(lun):
        answer = await scsi_probe.may_write(path)
        run.check(
            answer.conflict,
            f"LUN {lun}: the old owner's write conflicts through {portal}",
            f"LUN {lun}: the old owner {owner.name} can still write through {portal} "
            f"({answer.text})",
        )
    learnt = await arbitrate(v, owner, lun, Intent.DEFEND)
    run.check(
        learnt.kind is VerdictKind.FENCED,
        f"LUN {lun}: {owner.name} learns at its next defence that it lost the disk",
        f"LUN {lun}: {owner.name}'s defence after the takeover ended {learnt.kind.value}",
    )
    owner.map(lun).registration.lost()
    await _online(v, run, lun, successor)


async def _online(v: Validation, run: TestRun, lun: int, node: Node) -> None:
    """The new owner brings the disk online: it must read it, and write it if allowed."""
    device = node.map(lun)
    try:
        before = bytes(await device.read(PATTERN_BLOCK, 1))
    except Exception as exc:
        run.fail(f"LUN {lun}: the new owner {node.name} cannot read it ({exc})")
        return
    if not v.settings.destructive:
        run.ok(f"LUN {lun}: {node.name} reads it (writing needs --destructive)")
        return
    pattern = (f"sanstack validate {v.cluster} {node.name} ".encode() * 64)[: len(before)]
    try:
        await device.write(PATTERN_BLOCK, pattern)
        back = bytes(await device.read(PATTERN_BLOCK, 1))
        await device.write(PATTERN_BLOCK, before)
    except Exception as exc:
        run.fail(f"LUN {lun}: the new owner {node.name} cannot write it ({exc})")
        return
    run.check(
        back == pattern,
        f"LUN {lun}: {node.name} reads and writes it (block put back)",
        f"LUN {lun}: {node.name} read back other data than it wrote",
    )
