"""What the node makes of what it knows (``cluster/reconcile.py``), the status document
(``cluster/node_status.py``), the event file, and the node's iSCSI name."""

from __future__ import annotations

from pathlib import Path

import pytest

from sanstack.cluster.config import parse_config
from sanstack.cluster.event_file import FILE_NAME, EventFile
from sanstack.cluster.events import ClusterEvent, EventKind, encode_line
from sanstack.cluster.group_state import GroupState
from sanstack.cluster.heartbeat import Claim, ClaimState
from sanstack.cluster.keys import format_key
from sanstack.cluster.membership import Membership
from sanstack.cluster.model import GroupSpec
from sanstack.cluster.node import initiator_name
from sanstack.cluster.node_status import DiskRead, StatusParts, status_document
from sanstack.cluster.quorum import evaluate
from sanstack.cluster.reconcile import (
    Failures,
    Want,
    claim_of,
    claim_state,
    failed_there,
    merge_moves,
    owners_from,
    self_claimed_witness,
    unfit_from,
    want,
)
from sanstack.config_checks import check_name
from sanstack.scsi.pr_codec import PRType, ReadKeysData, ReadReservationData

ORDER = ("n1", "n2", "n3")
S = GroupState


def test_claims_are_the_group_states_as_heartbeats_carry_them() -> None:
    assert claim_state(S.OFFLINE) is None
    assert claim_state(S.ONLINING_VOLUMES) is ClaimState.ONLINING
    assert claim_state(S.ONLINE) is ClaimState.ONLINE
    assert claim_state(S.RELEASING_DISKS) is ClaimState.OFFLINING
    assert claim_state(S.STOPPING) is ClaimState.STOPPING
    assert claim_state(S.FAILED) is ClaimState.FAILED
    assert all(claim_state(state) is not None for state in S if state is not S.OFFLINE)


def test_the_owner_is_online_before_onlining_then_the_newer_then_config_order() -> None:
    online, onlining = Claim(ClaimState.ONLINE, 3), Claim(ClaimState.ONLINING, 5)
    claims = {
        "n3": {"g1": onlining, "g2": Claim(ClaimState.ONLINING, 4)},
        "n2": {"g1": online, "g2": Claim(ClaimState.ONLINING, 2), "g3": onlining},
        "n1": {"g3": Claim(ClaimState.OFFLINING, 9), "g4": Claim(ClaimState.FAILED, 9)},
    }
    assert owners_from(claims, ORDER) == {"g1": "n2", "g2": "n3", "g3": "n2"}
    tie = {"n3": {"g": onlining}, "n2": {"g": onlining}}
    assert owners_from(tie, ORDER) == {"g": "n2"}


def test_move_requests_of_the_first_node_in_config_order_win() -> None:
    moves = {"n3": {"g1": "n1", "g2": "n1"}, "n2": {"g1": "n3"}}
    assert merge_moves(moves, ORDER) == {"g1": "n3", "g2": "n1"}


@pytest.mark.parametrize(
    ("state", "here", "may_online", "release_failed", "expected"),
    [
        (S.OFFLINE, True, True, False, Want.ONLINE),
        (S.OFFLINE, True, False, False, Want.NOTHING),  # fenced, or no quorum yet
        (S.FAILED, True, True, False, Want.ONLINE),  # a restart
        (S.ONLINE, True, True, False, Want.NOTHING),
        (S.ONLINE, False, True, False, Want.OFFLINE),
        (S.ONLINING_DISKS, False, True, False, Want.OFFLINE),
        (S.OFFLINING_VOLUMES, False, True, False, Want.NOTHING),  # on its way already
        (S.STOPPING, False, True, False, Want.NOTHING),
        (S.FAILED, False, True, False, Want.NOTHING),
        (S.FAILED, False, True, True, Want.OFFLINE),  # release what a failure kept
        (S.OFFLINE, False, True, True, Want.NOTHING),
    ],
)
def test_what_to_ask_of_each_group(
    state: GroupState, here: bool, may_online: bool, release_failed: bool, expected: Want
) -> None:
    assert want(state, here, may_online=may_online, release_failed=release_failed) is expected


@pytest.mark.parametrize(
    ("state", "here", "release_failed", "expected"),
    [
        (S.OFFLINE, True, False, Want.NOTHING),  # no path: it would only time out
        (S.FAILED, True, False, Want.NOTHING),  # no restart without a path
        (S.FAILED, False, True, Want.NOTHING),  # nor a release
        (S.ONLINE, False, False, Want.OFFLINE),  # running: the storage watch stops it
    ],
)
def test_nothing_is_onlined_or_released_without_a_path(
    state: GroupState, here: bool, release_failed: bool, expected: Want
) -> None:
    asked = want(state, here, may_online=True, release_failed=release_failed, reachable=False)
    assert asked is expected


def test_a_group_without_a_path_here_is_claimed_no_path_once_it_stopped() -> None:
    assert claim_of(S.OFFLINE, False) is ClaimState.NO_PATH  # never ran here: unfit still
    assert claim_of(S.FAILED, False) is ClaimState.NO_PATH
    assert claim_of(S.STOPPING, False) is ClaimState.STOPPING  # still stopping: not yet
    assert claim_of(S.ONLINE, False) is ClaimState.ONLINE
    assert claim_of(S.FAILED, True) is ClaimState.FAILED
    assert claim_of(S.OFFLINE, True) is None


def test_unfit_nodes_are_those_claiming_no_path() -> None:
    no_path, online = Claim(ClaimState.NO_PATH, 0), Claim(ClaimState.ONLINE, 4)
    claims = {"n1": {"g1": no_path, "g2": no_path}, "n2": {"g1": online}, "n3": {"g2": no_path}}
    assert unfit_from(claims) == {"g1": frozenset({"n1"}), "g2": frozenset({"n1", "n3"})}
    # The owner is whoever runs it, whatever the unfit claim.
    assert owners_from(claims, ORDER) == {"g1": "n2"}


@pytest.mark.parametrize(
    ("was", "now", "failed"),
    [
        (None, ClaimState.FAILED, True),  # a peer heard first with a failed group
        (ClaimState.ONLINE, ClaimState.FAILED, True),
        (ClaimState.FAILED, ClaimState.FAILED, False),
        (ClaimState.STOPPING, ClaimState.NO_PATH, True),  # stopped: its storage is gone
        (ClaimState.ONLINE, ClaimState.NO_PATH, True),  # the heartbeat between was missed
        (None, ClaimState.NO_PATH, False),  # never ran the group there
        (ClaimState.FAILED, ClaimState.NO_PATH, False),  # counted once
        (ClaimState.NO_PATH, ClaimState.FAILED, False),  # a path back: counted already
        (ClaimState.ONLINE, ClaimState.STOPPING, False),
    ],
)
def test_a_peers_claim_tells_when_the_group_failed_there(
    was: ClaimState | None, now: ClaimState, failed: bool
) -> None:
    before = None if was is None else Claim(was, 1)
    assert failed_there(before, Claim(now, 1)) is failed


def test_failures_are_kept_for_their_groups_restart_period() -> None:
    failures = Failures()
    group = GroupSpec("g1", ("d1",), restart_period=100.0)
    failures.record("g1", "n1", 10.0)
    failures.record("g1", "n1", 50.0)
    failures.record("g1", "n2", 60.0)
    failures.prune([group], 120.0)
    assert failures.history() == {"g1": {"n1": [50.0], "n2": [60.0]}}
    failures.prune([group], 500.0)
    assert failures.history() == {"g1": {}}


def test_only_a_peer_naming_itself_is_believed_to_hold_the_witness() -> None:
    assert self_claimed_witness({"n2": "n3", "n3": None}) is None
    assert self_claimed_witness({"n2": "n3", "n3": "n3"}) == "n3"


def test_the_initiator_name_is_an_iqn_and_tells_folded_names_apart() -> None:
    a = initiator_name("Prod Cluster #1", "node_a", 0x1234_0000_0001)
    b = initiator_name("Prod Cluster #1", "node-a", 0x1234_0000_0002)
    assert check_name(a, "name") == a and check_name(b, "name") == b
    assert a != b
    assert a.startswith("iqn.2026-11.org.sanstack.cluster:prod-cluster-1-")


# -- the status document -------------------------------------------------------------------

RAW = {
    "cluster": {"name": "c"},
    "timings": {"heartbeat_interval": 0.2, "arbitration_interval": 1.0, "pending_timeout": 5},
    "storage": {"portals": ["127.0.0.1:3260"]},
    "node": [
        {"name": n, "address": f"127.0.0.1:{7400 + i}", "control": f"/tmp/{n}", "state_dir": n}
        for i, n in enumerate(ORDER)
    ],
    "disks": {"d1": "iqn.2026-11.org.sanstack:c/1", "d2": "iqn.2026-11.org.sanstack:c/2"},
    "group": [{"name": "g1", "disks": ["d1", "d2"], "preferred_owners": ["n1", "n2"]}],
}


def test_status_names_keys_by_node_and_shows_each_disks_holder() -> None:
    config = parse_config(RAW)
    membership = Membership("c", "n1", ORDER, config.timings, 7)
    membership.set_claims({"g1": Claim(ClaimState.ONLINE, 0)})
    keys = {n.name: n.key for n in config.nodes}
    reads: dict[str, DiskRead] = {
        "d1": (
            ReadKeysData(3, (keys["n1"], keys["n1"], 0xDEAD)),
            ReadReservationData(3, keys["n1"], 0, PRType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY),
        ),
        "d2": "no path for READ_KEYS",
    }
    document = status_document(
        StatusParts(
            config=config,
            me="n1",
            membership=membership,
            quorum=evaluate(config, ["n1"], None),
            has_quorum=False,
            fenced=False,
            paused=False,
            runners={"g1": S.ONLINE},
            failures={"g1": None},
            placement={"g1": None},
            moves={},
            disk_reads=reads,
            io={"g1": {"read": {"ops": 3}}},
        )
    )
    assert [n["state"] for n in document["nodes"]] == ["alive", "down", "down"]
    assert document["nodes"][0]["key"] == format_key(keys["n1"])
    assert document["quorum"] == {
        "model": "node-majority",
        "has": False,
        "votes": 1,
        "needed": 2,
        "total": 3,
        "witness": None,
        "witness_owner": None,
    }
    (group,) = document["groups"]
    assert (group["state"], group["owner"], group["states"]) == ("online", "n1", {"n1": "online"})
    assert group["io"] == {"read": {"ops": 3}}
    d1, d2 = document["disks"]
    assert (d1["holder"], d1["type"]) == ("n1", "write_exclusive_registrants_only")
    assert [k["node"] for k in d1["keys"]] == ["n1", "n1", None]
    assert d1["keys"][2]["key"] == format_key(0xDEAD)
    assert d2["error"] == "no path for READ_KEYS" and d2["holder"] is None


# -- the event file ------------------------------------------------------------------------


def event(seq: int) -> ClusterEvent:
    return ClusterEvent(float(seq), "n1", EventKind.GROUP_STATE, f"event {seq}", seq=seq)


def test_the_event_file_skips_a_torn_line_and_keeps_the_newest(tmp_path: Path) -> None:
    lines = b"".join(encode_line(event(i)) for i in range(1, 8))
    (tmp_path / FILE_NAME).write_bytes(lines + b'{"seq": 8, "ti')
    events = EventFile(tmp_path, capacity=3)
    restored = events.restore()
    assert [e.seq for e in restored] == [5, 6, 7]
    # Eight lines, more than twice the capacity: rewritten with the newest three.
    assert (tmp_path / FILE_NAME).read_bytes().count(b"\n") == 3
    events.append(event(8))
    events.close()
    assert [e.seq for e in EventFile(tmp_path, capacity=3).restore()] == [6, 7, 8]
