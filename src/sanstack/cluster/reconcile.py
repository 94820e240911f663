"""What the node makes of what it knows, sans-IO: claims, owners, moves, failures, and what
each group should do here (the node's edge, ``cluster/node.py``, calls these every pass).

- A group's *claim* is its state on a node as heartbeats carry it (``ClaimState``); OFFLINE
  is no claim at all.
- The *owner* of a group is the member whose claim is ONLINE, else ONLINING (while a move
  or failover is under way the old owner may still be ONLINE: it owns until it offlines);
  between two such claims the higher owner epoch, then configuration order, wins, so every
  node names the same owner from the same heartbeats.
- *Moves*: a move request may be made on any node; it travels in that node's heartbeats,
  and every node takes, per group, the request of the first node in configuration order
  that has one.
- *Failures*: a group that ends FAILED on a node (here, or a peer's claim turning FAILED)
  is recorded with the time; placement's restart threshold reads the history.
- ``want``: placed here and not running: online it (not while the node is fenced); placed
  elsewhere and running here: offline it (a FAILED group too, once in a while, so a
  release that failed cannot keep the group from its next owner). Neither while the
  group's disks have no path from here: it would only wait out its pending timeout.
- *No path*: a node whose paths to a group's disks have all been gone for
  ``storage_loss_stop`` stops the group if it runs it, and then claims NO_PATH for it
  (``claim_of``), running or not, until a path returns. Every node reads those claims
  (``unfit_from``): placement puts the group on a node that can reach it, and arbitration
  counts the unfit node as no member for that group's disks, so the reservation it could
  not release is preempted. A NO_PATH claim that follows the group running there is a
  failure, as a FAILED claim is (``failed_there``).
- ``holder_may_have_released``: a disk held by a member is read again on a cluster change
  only once that member's claim of the group says it may have released it.
- ``register_again``: when the node registers its key on every disk once more.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum

from sanstack.cluster.group_state import GroupState
from sanstack.cluster.heartbeat import Claim, ClaimState
from sanstack.cluster.model import GroupSpec
from sanstack.cluster.placement import FailureHistory

_CLAIMS: dict[GroupState, ClaimState | None] = {
    GroupState.OFFLINE: None,
    GroupState.ONLINING_DISKS: ClaimState.ONLINING,
    GroupState.ONLINING_VOLUMES: ClaimState.ONLINING,
    GroupState.ONLINING_EXPORT: ClaimState.ONLINING,
    GroupState.ONLINE: ClaimState.ONLINE,
    GroupState.OFFLINING_EXPORT: ClaimState.OFFLINING,
    GroupState.OFFLINING_VOLUMES: ClaimState.OFFLINING,
    GroupState.RELEASING_DISKS: ClaimState.OFFLINING,
    GroupState.STOPPING: ClaimState.STOPPING,
    GroupState.FAILED: ClaimState.FAILED,
}
_OWNING = (ClaimState.ONLINE, ClaimState.ONLINING)
_HOLDING = (*_OWNING, ClaimState.OFFLINING)
_DOWN = frozenset(
    {
        GroupState.OFFLINING_EXPORT,
        GroupState.OFFLINING_VOLUMES,
        GroupState.RELEASING_DISKS,
        GroupState.STOPPING,
    }
)


def claim_state(state: GroupState) -> ClaimState | None:
    """The heartbeat's code for ``state``; None for OFFLINE (not claimed)."""
    return _CLAIMS[state]


def claim_of(state: GroupState, reachable: bool) -> ClaimState | None:
    """What a node claims for a group in ``state``: ``claim_state``, or NO_PATH for a group
    that does not run there while its disks have no path from there."""
    if not reachable and not state.active:
        return ClaimState.NO_PATH
    return claim_state(state)


def unfit_from(claims: Mapping[str, Mapping[str, Claim]]) -> dict[str, frozenset[str]]:
    """group -> the nodes of ``claims`` (node -> its claims) that claim NO_PATH for it."""
    unfit: dict[str, set[str]] = {}
    for node, node_claims in claims.items():
        for group, claim in node_claims.items():
            if claim.state is ClaimState.NO_PATH:
                unfit.setdefault(group, set()).add(node)
    return {group: frozenset(nodes) for group, nodes in unfit.items()}


def failed_there(was: Claim | None, claim: Claim) -> bool:
    """A peer's claim, ``was`` before and ``claim`` now, tells that the group failed there:
    it turned FAILED, or NO_PATH from a claim of the group running there."""
    before = None if was is None else was.state
    if before in (ClaimState.FAILED, ClaimState.NO_PATH):
        return False
    if claim.state is ClaimState.FAILED:
        return True
    return claim.state is ClaimState.NO_PATH and before is not None


def owners_from(claims: Mapping[str, Mapping[str, Claim]], order: Sequence[str]) -> dict[str, str]:
    """group -> its owner among the nodes of ``claims`` (node -> its claims), per the
    module docstring; ``order`` is the configuration's node order."""
    rank = {name: index for index, name in enumerate(order)}
    best: dict[str, tuple[int, int, int, str]] = {}
    for node, node_claims in claims.items():
        for group, claim in node_claims.items():
            if claim.state not in _OWNING:
                continue
            score = (
                0 if claim.state is ClaimState.ONLINE else 1,
                -claim.owner_epoch,
                rank.get(node, len(rank)),
                node,
            )
            if group not in best or score < best[group]:
                best[group] = score
    return {group: score[3] for group, score in best.items()}


def merge_moves(moves: Mapping[str, Mapping[str, str]], order: Sequence[str]) -> dict[str, str]:
    """group -> target, from every node's requests (node -> its moves): the first node in
    ``order`` with a request for a group decides it."""
    merged: dict[str, str] = {}
    for node in order:
        for group, target in moves.get(node, {}).items():
            merged.setdefault(group, target)
    return merged


@dataclass(slots=True)
class Failures:
    """Each group's failures per node, with the time (``now`` of the node's clock)."""

    times: dict[str, dict[str, list[float]]] = field(default_factory=dict)

    def record(self, group: str, node: str, now: float) -> None:
        self.times.setdefault(group, {}).setdefault(node, []).append(now)

    def prune(self, groups: Iterable[GroupSpec], now: float) -> None:
        """Forget failures older than their group's restart period."""
        for spec in groups:
            per_node = self.times.get(spec.name)
            if not per_node:
                continue
            for node in list(per_node):
                kept = [t for t in per_node[node] if now - t < spec.restart_period]
                if kept:
                    per_node[node] = kept
                else:
                    del per_node[node]

    def history(self) -> FailureHistory:
        return self.times


class Want(Enum):
    NOTHING = "nothing"
    ONLINE = "online"
    OFFLINE = "offline"


def want(
    state: GroupState,
    placed_here: bool,
    *,
    may_online: bool,
    release_failed: bool,
    reachable: bool = True,
) -> Want:
    """What to ask of a group in ``state`` here (module docstring). ``release_failed``:
    the time has come to release a FAILED group placed elsewhere once more; ``reachable``:
    the group's disks have a path from here."""
    if placed_here:
        if state in (GroupState.OFFLINE, GroupState.FAILED) and may_online and reachable:
            return Want.ONLINE
        return Want.NOTHING
    if state is GroupState.FAILED:
        return Want.OFFLINE if release_failed and reachable else Want.NOTHING
    if state.active and state not in _DOWN:
        return Want.OFFLINE
    return Want.NOTHING


def self_claimed_witness(peers: Mapping[str, str | None]) -> str | None:
    """The witness holder as the live peers say of themselves (peer -> the witness holder
    its heartbeat names): only a peer naming itself is believed, the first in order."""
    for peer, witness in peers.items():
        if witness == peer:
            return peer
    return None


def holder_may_have_released(claim: ClaimState | None) -> bool:
    """A disk of a group that a member holds: is a cluster change worth a new read of it?
    Not while the member claims the group running, onlining or offlining: it releases its
    disks at the end of its offline, all at once, and then claims nothing. Reading every
    waiting disk on every change instead (a move of 1000 disks saw dozens of changes) fills
    the PR queue and the target with READs that slow the holder's own RELEASEs. ``claim``
    is None when the member claims nothing (or is not alive); the waiting side still reads
    again every ``arbitration_interval``, whatever the claims say."""
    return claim not in _HOLDING


def register_again(has_quorum: bool, seen_epoch: int, epoch: int) -> bool:
    """Should the node register its key on every disk again (once it is a member with
    quorum and not fenced)? Its key can only have been removed by nodes whose view left it
    out, with quorum: after it had no quorum itself (a minority, or outside its own view),
    or after views it never installed (it was stopped, ``kill -STOP``: its view's epoch
    jumps by more than one). Not on every new view: each REGISTER changes and saves the
    disk's PR state at the target, and a node registering 1000 disks again while a
    survivor preempted them more than doubled the preemption's time. A key removed anyway
    is registered by the arbitration that needs it (register first)."""
    return not has_quorum or epoch > seen_epoch + 1
