"""Votes and quorum (docs/cluster-design.md, "Quorum").

One vote per configured node; with ``node-and-disk`` one more for the witness disk, which
belongs to the node holding the witness's reservation. A partition (the members of a view)
has quorum when its votes are more than half of all votes, so two disjoint partitions never
both have it. A partition without quorum stops its groups, fences nobody and onlines
nothing.

Two nodes and no witness (``two_node = true``, corosync's ``two_node`` + ``wait_for_all``):
one vote is enough, so either node survives the other's loss; both sides of a partition
then have quorum, and the disks' reservations alone decide which one runs each group (a
race; never two owners of a disk, since only one reservation can be held). ``wait_for_all``:
a node that has not seen its peer since it started has no quorum, so a node booted alone
cannot preempt a peer that is running the groups.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sanstack.cluster.model import ClusterConfig, QuorumModel


@dataclass(frozen=True, slots=True)
class QuorumRules:
    """What ``evaluate`` needs of the config: the model, the voting nodes, two_node."""

    model: QuorumModel
    nodes: tuple[str, ...]
    two_node: bool = False

    @classmethod
    def of(cls, config: ClusterConfig) -> QuorumRules:
        return cls(config.quorum, config.node_names, config.two_node)

    @property
    def uses_witness(self) -> bool:
        return self.model is QuorumModel.NODE_AND_DISK

    @property
    def total(self) -> int:
        return len(self.nodes) + (1 if self.uses_witness else 0)

    @property
    def needed(self) -> int:
        """The fewest votes that are more than half of ``total`` (1 in two_node mode)."""
        return 1 if self.two_node else self.total // 2 + 1


@dataclass(frozen=True, slots=True)
class QuorumState:
    has_quorum: bool
    votes: int  # the partition's: its members' and the witness's if a member holds it
    needed: int
    total: int
    members: frozenset[str]  # the configured nodes of the partition that vote
    witness_holder: str | None  # as the witness disk's reservation says; None if nobody
    uses_witness: bool  # node-and-disk

    @property
    def holds_witness(self) -> bool:
        return self.uses_witness and self.witness_holder in self.members

    def to_dict(self) -> dict[str, object]:
        return {
            "has_quorum": self.has_quorum,
            "votes": self.votes,
            "needed": self.needed,
            "total": self.total,
            "members": sorted(self.members),
            "witness_holder": self.witness_holder,
        }


def evaluate(
    rules: ClusterConfig | QuorumRules,
    members: Iterable[str],
    witness_holder: str | None,
    *,
    seen_all: bool = True,
) -> QuorumState:
    """The quorum of the partition whose view has ``members``, the witness disk's
    reservation being held by ``witness_holder`` (a node name, or None).

    Names that are not configured nodes have no vote. ``witness_holder`` counts only with
    ``node-and-disk`` and only if it is a member. ``seen_all`` is wait_for_all for two_node
    mode: whether this node has seen every configured node since it started; ignored
    otherwise.
    """
    if isinstance(rules, ClusterConfig):
        rules = QuorumRules.of(rules)
    voting = frozenset(members) & frozenset(rules.nodes)
    votes = len(voting)
    if rules.uses_witness and witness_holder in voting:
        votes += 1
    has_quorum = votes >= rules.needed and (seen_all or not rules.two_node)
    return QuorumState(
        has_quorum=has_quorum,
        votes=votes,
        needed=rules.needed,
        total=rules.total,
        members=voting,
        witness_holder=witness_holder,
        uses_witness=rules.uses_witness,
    )


def needs_witness(state: QuorumState) -> bool:
    """Whether the partition should arbitrate for the witness disk: the model has one, no
    member holds it, and its vote would give (or keep, for a partition that has quorum on
    its nodes alone: the witness must follow the live majority) quorum. A partition that
    cannot reach quorum even with the witness leaves it alone, so it cannot take the vote
    from the side that may need it later."""
    if not state.uses_witness or state.holds_witness:
        return False
    return state.votes + 1 >= state.needed
