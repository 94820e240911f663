"""Quorum: node majority, node majority plus a disk witness, two_node; 1 to 5 nodes and
their partitions, table-driven (docs/cluster-design.md, "Quorum")."""

from __future__ import annotations

from pathlib import Path

import pytest

from sanstack.cluster.config import load_config
from sanstack.cluster.model import QuorumModel
from sanstack.cluster.quorum import QuorumRules, QuorumState, evaluate, needs_witness

MAJORITY = QuorumModel.NODE_MAJORITY
WITH_DISK = QuorumModel.NODE_AND_DISK
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "cluster.toml"


def nodes(count: int) -> tuple[str, ...]:
    return tuple(f"n{i}" for i in range(1, count + 1))


Case = tuple[QuorumModel, int, bool, set[str], str | None, bool, int, int, int, bool]

# (model, node count, two_node, partition members, witness holder,
#  has quorum, votes, needed, total, should race for the witness)
CASES: list[Case] = [
    # one node: a cluster of one
    (MAJORITY, 1, False, {"n1"}, None, True, 1, 1, 1, False),
    (MAJORITY, 1, False, set(), None, False, 0, 1, 1, False),
    # one node and a witness: it needs the witness
    (WITH_DISK, 1, False, {"n1"}, "n1", True, 2, 2, 2, False),
    (WITH_DISK, 1, False, {"n1"}, None, False, 1, 2, 2, True),
    # two nodes, two_node: one vote is enough, the reservations decide
    (MAJORITY, 2, True, {"n1", "n2"}, None, True, 2, 1, 2, False),
    (MAJORITY, 2, True, {"n1"}, None, True, 1, 1, 2, False),
    (MAJORITY, 2, True, {"n2"}, None, True, 1, 1, 2, False),
    # two nodes without two_node (the config refuses it; the arithmetic is a majority)
    (MAJORITY, 2, False, {"n1"}, None, False, 1, 2, 2, False),
    # two nodes and a witness split one to one: exactly the witness holder's side runs
    (WITH_DISK, 2, False, {"n1"}, "n1", True, 2, 2, 3, False),
    (WITH_DISK, 2, False, {"n2"}, "n1", False, 1, 2, 3, True),
    (WITH_DISK, 2, False, {"n2"}, None, False, 1, 2, 3, True),
    (WITH_DISK, 2, False, {"n1", "n2"}, "n2", True, 3, 2, 3, False),
    # three nodes
    (MAJORITY, 3, False, {"n1", "n2", "n3"}, None, True, 3, 2, 3, False),
    (MAJORITY, 3, False, {"n1", "n2"}, None, True, 2, 2, 3, False),
    (MAJORITY, 3, False, {"n3"}, None, False, 1, 2, 3, False),
    # three nodes and a witness: total 4, needed 3
    (WITH_DISK, 3, False, {"n1", "n2"}, None, False, 2, 3, 4, True),
    (WITH_DISK, 3, False, {"n1", "n2"}, "n1", True, 3, 3, 4, False),
    (WITH_DISK, 3, False, {"n3"}, "n3", False, 2, 3, 4, False),
    (WITH_DISK, 3, False, {"n3"}, "n1", False, 1, 3, 4, False),  # cannot win: leaves it alone
    (WITH_DISK, 3, False, {"n1", "n2", "n3"}, "n3", True, 4, 3, 4, False),
    # four nodes and a witness: total 5, needed 3; a 2-2 split is decided by the witness
    (WITH_DISK, 4, False, {"n1", "n2"}, "n1", True, 3, 3, 5, False),
    (WITH_DISK, 4, False, {"n3", "n4"}, "n1", False, 2, 3, 5, True),
    (WITH_DISK, 4, False, {"n3", "n4"}, None, False, 2, 3, 5, True),
    # 3 of 4 have quorum on their nodes alone and take the witness from a dead holder
    (WITH_DISK, 4, False, {"n1", "n2", "n3"}, "n4", True, 3, 3, 5, True),
    (WITH_DISK, 4, False, {"n4"}, "n4", False, 2, 3, 5, False),
    (WITH_DISK, 4, False, {"n4"}, None, False, 1, 3, 5, False),
    # four nodes without a witness: a 2-2 split has no quorum anywhere
    (MAJORITY, 4, False, {"n1", "n2"}, None, False, 2, 3, 4, False),
    (MAJORITY, 4, False, {"n1", "n2", "n3"}, None, True, 3, 3, 4, False),
    # five nodes
    (MAJORITY, 5, False, {"n1", "n2", "n3"}, None, True, 3, 3, 5, False),
    (MAJORITY, 5, False, {"n4", "n5"}, None, False, 2, 3, 5, False),
    (MAJORITY, 5, False, set(nodes(5)), None, True, 5, 3, 5, False),
    (WITH_DISK, 5, False, {"n1", "n2", "n3"}, None, False, 3, 4, 6, True),
    (WITH_DISK, 5, False, {"n1", "n2", "n3"}, "n1", True, 4, 4, 6, False),
    (WITH_DISK, 5, False, {"n4", "n5"}, "n4", False, 3, 4, 6, False),
]


@pytest.mark.parametrize("case", CASES)
def test_quorum_table(case: Case) -> None:
    model, count, two_node, members, holder, quorum, votes, needed, total, race = case
    state = evaluate(QuorumRules(model, nodes(count), two_node), frozenset(members), holder)
    assert (state.has_quorum, state.votes, state.needed, state.total) == (
        quorum,
        votes,
        needed,
        total,
    )
    assert needs_witness(state) is race
    assert state.witness_holder == holder


@pytest.mark.parametrize("count", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("model", [MAJORITY, WITH_DISK])
def test_two_disjoint_partitions_never_both_have_quorum(count: int, model: QuorumModel) -> None:
    rules = QuorumRules(model, nodes(count))
    names = nodes(count)
    for mask in range(1 << count):
        left = frozenset(n for i, n in enumerate(names) if mask >> i & 1)
        right = frozenset(names) - left
        for holder in (None, *names):
            both = (
                evaluate(rules, left, holder).has_quorum
                and evaluate(rules, right, holder).has_quorum
            )
            assert not both, (left, right, holder)


def test_names_that_are_not_nodes_have_no_vote() -> None:
    state = evaluate(QuorumRules(MAJORITY, nodes(3)), frozenset({"n1", "intruder"}), None)
    assert state.votes == 1
    assert state.members == frozenset({"n1"})
    assert not state.has_quorum


def test_a_witness_holder_counts_only_with_node_and_disk() -> None:
    state = evaluate(QuorumRules(MAJORITY, nodes(3)), frozenset({"n1"}), "n1")
    assert (state.votes, state.holds_witness, needs_witness(state)) == (1, False, False)


def test_two_node_waits_for_all() -> None:
    rules = QuorumRules(MAJORITY, nodes(2), two_node=True)
    alone = evaluate(rules, frozenset({"n1"}), None, seen_all=False)
    assert not alone.has_quorum
    assert evaluate(rules, frozenset({"n1"}), None, seen_all=True).has_quorum
    # wait_for_all is a two_node rule only
    majority = QuorumRules(MAJORITY, nodes(3))
    assert evaluate(majority, frozenset({"n1", "n2"}), None, seen_all=False).has_quorum


def test_evaluate_takes_the_config() -> None:
    config = load_config(EXAMPLE)
    state = evaluate(config, frozenset({"n1", "n2"}), "n2")
    assert state == QuorumState(
        has_quorum=True,
        votes=3,
        needed=3,
        total=4,
        members=frozenset({"n1", "n2"}),
        witness_holder="n2",
        uses_witness=True,
    )
    assert state.to_dict() == {
        "has_quorum": True,
        "votes": 3,
        "needed": 3,
        "total": 4,
        "members": ["n1", "n2"],
        "witness_holder": "n2",
    }
