"""Membership (``cluster/membership.py``): first one heartbeat at a time (the failure
detector, incarnations, what is dropped and why, who proposes a view and who follows it,
pause, claims in parts, the deadlines the edge waits for), then whole clusters in the
deterministic simulation (``tests/support/cluster_sim.py``) under kills, restarts, clean and
one-way partitions and loss, over many seeds."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence

import pytest
from tests.support.cluster_sim import ClusterSim

from sanstack.cluster.heartbeat import Claim, ClaimState, Heartbeat, HeartbeatError, split
from sanstack.cluster.membership import (
    STARTUP_GRACE,
    ClaimsChanged,
    HeartbeatDropped,
    Membership,
    MembershipBackend,
    NodeJoined,
    NodeLeft,
    NodePaused,
    NodeRejoined,
    NodeResumed,
    PeerStatus,
    View,
    ViewInstalled,
)
from sanstack.cluster.model import Timings
from sanstack.errors import ConfigError

NODES = ("n1", "n2", "n3")
TIMINGS = Timings()  # 1 s interval, down after 5 missed
GRACE = STARTUP_GRACE * TIMINGS.heartbeat_interval
INCARNATION = {"n1": 101, "n2": 102, "n3": 103}


def heartbeat(node: str, sequence: int = 1, **fields: object) -> Heartbeat:
    """A heartbeat of ``node`` as it sends one before it has heard anybody."""
    base = Heartbeat(
        cluster="prod",
        node=node,
        incarnation=INCARNATION[node],
        sequence=sequence,
        epoch=0,
        members=(node,),
        coordinator=node,
    )
    return dataclasses.replace(base, **fields)  # type: ignore[arg-type]


def membership(me: str = "n2", now: float = 0.0) -> Membership:
    node = Membership("prod", me, NODES, TIMINGS, INCARNATION[me])
    node.tick(now)
    return node


def views_installed(events: Sequence[object]) -> list[ViewInstalled]:
    return [e for e in events if isinstance(e, ViewInstalled)]


# -- setup and sending ---------------------------------------------------------------------------


def test_refuses_a_node_that_is_not_configured_and_duplicate_names() -> None:
    with pytest.raises(ConfigError, match="name: 'n9' is not a node of cluster 'prod'"):
        Membership("prod", "n9", NODES, TIMINGS, 1)
    with pytest.raises(ConfigError, match="nodes: a node name appears twice"):
        Membership("prod", "n1", ("n1", "n1"), TIMINGS, 1)
    with pytest.raises(ConfigError, match="incarnation"):
        Membership("prod", "n1", NODES, TIMINGS, -1)


def test_a_new_node_is_alone_in_epoch_0_and_must_tick_at_once() -> None:
    node = Membership("prod", "n2", NODES, TIMINGS, 102)
    assert node.view() == View(0, frozenset({"n2"}), "n2")
    assert node.alive() == {"n2"}
    assert node.next_deadline(12.5) == 12.5


def test_tick_sends_every_interval_to_every_other_node() -> None:
    node = Membership("prod", "n2", NODES, TIMINGS, 102)
    first = node.tick(10.0)
    assert first.events == []
    assert [out.node for out in first.outgoing] == ["n1", "n3"]
    assert first.outgoing[0].heartbeat == heartbeat("n2", sequence=1)
    assert node.next_deadline(10.0) == 11.0
    assert node.tick(10.5).outgoing == []
    second = node.tick(11.0).outgoing
    assert {out.heartbeat.sequence for out in second} == {2}


# -- the failure detector ------------------------------------------------------------------------


def test_a_peer_joins_when_heard_and_leaves_after_the_node_timeout() -> None:
    node = membership()
    assert node.receive(heartbeat("n1"), 0.2) == [NodeJoined("n1", 101)]
    assert node.alive() == {"n1", "n2"}
    assert node.peer("n1").status is PeerStatus.ALIVE
    assert node.peer("n1").last_heard == 0.2
    node.tick(1.0)
    node.tick(2.0)
    node.tick(3.0)
    node.tick(4.0)
    assert node.next_deadline(4.0) == 5.0
    node.tick(5.0)
    assert node.next_deadline(5.0) == pytest.approx(5.2)
    assert node.tick(5.19).events == []
    left = node.tick(5.2).events
    assert left == [NodeLeft("n1", "no heartbeat for 5.00s (node timeout)")]
    assert node.alive() == {"n2"}
    assert not node.peer("n1").alive


def test_a_down_peer_heard_again_with_the_same_incarnation_joins_again() -> None:
    node = membership()
    node.receive(heartbeat("n3", sequence=1), 0.0)
    node.tick(5.0)
    assert node.alive() == {"n2"}
    assert node.receive(heartbeat("n3", sequence=9), 7.0) == [NodeJoined("n3", 103)]


def test_a_new_incarnation_is_a_restart_and_the_old_ones_late_datagrams_are_dropped() -> None:
    node = membership()
    claims = {"g1": Claim(ClaimState.ONLINE, 1)}
    node.receive(heartbeat("n3", sequence=50, claims=claims, paused=True), 0.0)
    restarted = heartbeat("n3", sequence=1, incarnation=999)
    assert node.receive(restarted, 1.0) == [NodeRejoined("n3", 999, 103), ClaimsChanged("n3")]
    state = node.peer("n3")
    assert (state.incarnation, state.claims, state.paused) == (999, {}, False)
    late = node.receive(heartbeat("n3", sequence=51), 1.1)
    assert late == [HeartbeatDropped("n3", "from an incarnation it has since replaced")]
    assert node.peer("n3").incarnation == 999


def test_late_and_duplicate_sequences_are_dropped() -> None:
    node = membership()
    node.receive(heartbeat("n1", sequence=5), 0.0)
    for sequence in (4, 5):
        dropped = node.receive(heartbeat("n1", sequence=sequence), 0.1)
        assert len(dropped) == 1
        assert isinstance(dropped[0], HeartbeatDropped)
        assert "late or a duplicate (sequence 5 was heard)" in dropped[0].reason
    assert node.peer("n1").last_heard == 0.0


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"cluster": "test"}, "from cluster 'test', this is cluster 'prod'"),
        ({"node": "n9"}, "'n9' is not a node of this cluster"),
        ({"node": "n2"}, "our own heartbeat came back"),
        ({"node": "n2", "incarnation": 5}, "another process calls itself 'n2'"),
        ({"members": ()}, "its view has no members"),
        ({"members": ("n1", "n7")}, "member 'n7' is not a node of this cluster"),
        ({"coordinator": "x"}, "coordinator 'x' is not a node of this cluster"),
        ({"witness": "x"}, "witness 'x' is not a node of this cluster"),
        ({"epoch": (1 << 64) - 1}, "leaves no room for a next one"),
    ],
)
def test_what_is_dropped_and_why(fields: dict[str, object], reason: str) -> None:
    node = membership()
    hb = dataclasses.replace(heartbeat("n1"), **fields)  # type: ignore[arg-type]
    if hb.node == "n2" and "incarnation" not in fields:
        hb = dataclasses.replace(hb, incarnation=102)
    dropped = node.receive(hb, 0.0)
    assert len(dropped) == 1
    assert isinstance(dropped[0], HeartbeatDropped)
    assert dropped[0].node == hb.node
    assert reason in dropped[0].reason
    assert node.alive() == {"n2"}


def test_a_datagram_that_does_not_decode_is_dropped_with_the_reason() -> None:
    node = membership()
    dropped = node.receive_datagram(b"SSHB\x01", 0.0)
    assert dropped == [HeartbeatDropped(None, "not a heartbeat: header: truncated, 5 of 39 bytes")]
    hello = node.tick(1.0).datagrams()
    assert [name for name, _ in hello] == ["n1", "n3"]
    assert hello[0][1] is hello[1][1]  # encoded once for every receiver
    other = Membership("prod", "n1", NODES, TIMINGS, 101)
    assert other.receive_datagram(hello[0][1], 1.0) == [NodeJoined("n2", 102)]


# -- pause ----------------------------------------------------------------------------------------


def test_a_peers_pause_and_resume_are_events() -> None:
    node = membership()
    assert node.receive(heartbeat("n1", paused=True), 0.0) == [
        NodeJoined("n1", 101),
        NodePaused("n1"),
    ]
    assert node.receive(heartbeat("n1", sequence=2, paused=True), 1.0) == []
    assert node.receive(heartbeat("n1", sequence=3), 2.0) == [NodeResumed("n1")]
    assert not node.peer("n1").paused


def test_pausing_this_node_is_sent_within_a_tenth_of_an_interval() -> None:
    node = membership(now=0.0)
    node.set_paused(True)
    assert node.next_deadline(0.05) == pytest.approx(0.1)
    sent = node.tick(0.1).outgoing
    assert sent
    assert all(out.heartbeat.paused for out in sent)
    assert node.peer("n2").paused
    assert node.next_deadline(0.1) == pytest.approx(1.1)


# -- views: who proposes, who follows -------------------------------------------------------------


def test_the_coordinator_proposes_after_the_startup_grace_at_the_highest_epoch_plus_one() -> None:
    node = membership("n1", now=0.0)
    node.receive(heartbeat("n2", epoch=4, members=("n2", "n3"), coordinator="n2"), 0.3)
    assert node.tick(1.0).events == []
    assert node.next_deadline(1.0) == GRACE
    installed = node.tick(GRACE)
    assert installed.events == [ViewInstalled(5, frozenset({"n1", "n2"}), "n1", proposed=True)]
    assert node.view() == View(5, frozenset({"n1", "n2"}), "n1")
    assert installed.outgoing[0].heartbeat.epoch == 5
    assert installed.outgoing[0].heartbeat.members == ("n1", "n2")
    assert node.tick(GRACE + 0.5).events == []


def test_a_follower_installs_only_its_coordinators_newer_views() -> None:
    node = membership("n2")
    carried = heartbeat("n1", epoch=3, members=("n1", "n2"))
    assert views_installed(node.receive(carried, 0.1)) == [
        ViewInstalled(3, frozenset({"n1", "n2"}), "n1", proposed=False)
    ]
    older = heartbeat("n1", sequence=2, epoch=2, members=("n1", "n2", "n3"))
    assert views_installed(node.receive(older, 0.2)) == []
    not_mine = heartbeat("n3", epoch=9, members=("n2", "n3"), coordinator="n3")
    assert views_installed(node.receive(not_mine, 0.3)) == []
    assert node.view().epoch == 3
    assert node.coordinator() == "n1"
    # n1 goes silent: n2 now coordinates n2 and n3, above the highest epoch it has seen (9)
    node.receive(heartbeat("n3", sequence=2, epoch=9, members=("n2", "n3")), 4.0)
    events = node.tick(5.2).events
    assert events == [
        NodeLeft("n1", "no heartbeat for 5.00s (node timeout)"),
        ViewInstalled(10, frozenset({"n2", "n3"}), "n2", proposed=True),
    ]


def test_a_view_that_leaves_this_node_out_waits_until_the_coordinator_had_time_to_hear_it() -> None:
    node = membership("n2")
    without_me = heartbeat("n1", epoch=5, members=("n1", "n3"))
    assert views_installed(node.receive(without_me, 0.0)) == []
    assert node.next_deadline(0.5) == pytest.approx(min(1.0, GRACE))
    node.receive(dataclasses.replace(without_me, sequence=2), 1.0)
    assert views_installed(node.tick(1.0).events) == []
    assert views_installed(node.tick(GRACE).events) == [
        ViewInstalled(5, frozenset({"n1", "n3"}), "n1", proposed=False)
    ]
    assert "n2" not in node.view().members


def test_a_view_with_this_node_is_installed_at_once() -> None:
    node = membership("n2")
    node.receive(heartbeat("n1", epoch=5, members=("n1", "n3")), 0.0)
    with_me = heartbeat("n1", sequence=2, epoch=6, members=("n1", "n2", "n3"))
    assert views_installed(node.receive(with_me, 0.4))[0].epoch == 6


def test_the_coordinator_proposes_again_when_a_member_restarts() -> None:
    node = membership("n1")
    node.receive(heartbeat("n2"), 0.1)
    node.tick(GRACE)
    assert node.view().epoch == 1
    node.receive(heartbeat("n2", sequence=1, incarnation=7), 2.5)
    assert node.next_deadline(2.5) == 2.5
    assert node.tick(2.5).events == [ViewInstalled(2, frozenset({"n1", "n2"}), "n1", proposed=True)]


def test_a_follower_arriving_with_a_newer_view_makes_its_coordinator_propose() -> None:
    node = membership("n1")
    node.receive(heartbeat("n2"), 0.1)
    node.tick(GRACE)
    assert node.view() == View(1, frozenset({"n1", "n2"}), "n1")
    # n2 still carries a view it followed elsewhere, at a higher epoch, and now follows n1
    newer = heartbeat("n2", sequence=2, epoch=7, members=("n1", "n2"), coordinator="n1")
    node.receive(newer, 3.0)
    assert node.tick(3.0).events == [ViewInstalled(8, frozenset({"n1", "n2"}), "n1", proposed=True)]


def test_a_peer_that_coordinates_itself_does_not_make_this_coordinator_propose() -> None:
    node = membership("n1")
    node.receive(heartbeat("n2"), 0.1)
    node.tick(GRACE)
    # n2 does not hear n1 (a one-way link): it coordinates itself, and n1 leaves it be
    alone = heartbeat("n2", sequence=2, epoch=7, members=("n2",), coordinator="n2")
    node.receive(alone, 3.0)
    assert node.tick(3.0).events == []
    assert node.view().epoch == 1


# -- claims ---------------------------------------------------------------------------------------


def many_claims(count: int) -> dict[str, Claim]:
    return {f"group-{i:03}": Claim(ClaimState.ONLINE, 2) for i in range(count)}


def test_a_peers_claims_count_only_once_every_part_arrived() -> None:
    node = membership("n2")
    parts = split(heartbeat("n1", claims=many_claims(256), moves={"group-000": "n3"}))
    assert len(parts) == 3
    assert ClaimsChanged("n1") not in node.receive(parts[0], 0.0)
    assert node.receive(parts[2], 0.0) == []
    assert node.peer("n1").claims == {}
    assert node.receive(parts[1], 0.0) == [ClaimsChanged("n1")]
    assert node.peer("n1").claims == many_claims(256)
    assert node.peer("n1").moves == {"group-000": "n3"}
    # the next heartbeat loses a part: the complete set heard last stays
    fewer = split(heartbeat("n1", sequence=2, claims=many_claims(10)))
    again = split(heartbeat("n1", sequence=3, claims=many_claims(300)))
    node.receive(fewer[0], 1.0)
    node.receive(again[0], 2.0)
    assert node.peer("n1").claims == many_claims(10)
    assert node.receive(dataclasses.replace(again[0], part=1), 2.0) == []  # part 1 of 3 is new


def test_this_nodes_claims_go_out_in_parts_with_one_sequence() -> None:
    node = membership("n1")
    node.set_claims(many_claims(256))
    node.set_moves({"group-001": "n2"})
    assert node.peer("n1").claims == many_claims(256)
    sent = node.tick(0.1).outgoing
    assert len(sent) == 2 * 3
    assert {out.heartbeat.sequence for out in sent} == {2}
    to_n2 = [out.heartbeat for out in sent if out.node == "n2"]
    assert [hb.part for hb in to_n2] == [0, 1, 2]
    assert sum(len(hb.claims) for hb in to_n2) == 256


def test_bad_claims_moves_and_witness_are_refused_when_set() -> None:
    node = membership("n1")
    with pytest.raises(HeartbeatError, match="empty name"):
        node.set_claims({"": Claim(ClaimState.ONLINE, 1)})
    with pytest.raises(ConfigError, match=r"moves\.g1: 'n9' is not a node"):
        node.set_moves({"g1": "n9"})
    with pytest.raises(ConfigError, match="witness: 'n9' is not a node"):
        node.set_quorum(True, "n9")
    node.set_quorum(True, "n3")
    sent = node.tick(0.1).outgoing[0].heartbeat
    assert (sent.quorum, sent.witness) == (True, "n3")


# -- the backend seam -----------------------------------------------------------------------------


def test_membership_is_a_membership_backend() -> None:
    backend: MembershipBackend = membership("n3")
    backend_node = backend.peer("n3")
    assert backend_node.alive
    assert backend_node.incarnation == 103
    assert backend.view() == View(0, frozenset({"n3"}), "n3")
    assert backend.alive() == {"n3"}
    unknown = backend.peer("n1")
    assert (unknown.status, unknown.incarnation, unknown.last_heard) == (
        PeerStatus.DOWN,
        None,
        None,
    )
    with pytest.raises(KeyError):
        backend.peer("n9")


# -- whole clusters, simulated --------------------------------------------------------------------

FAST = Timings(heartbeat_interval=0.2, missed_heartbeats=3)


def started(count: int, seed: int, timings: Timings = TIMINGS) -> ClusterSim:
    """``count`` nodes started within one interval of each other, run until they agree."""
    sim = ClusterSim([f"n{i}" for i in range(1, count + 1)], seed=seed, timings=timings)
    for name in sim.names:
        sim.run_for(sim.rng.uniform(0, timings.heartbeat_interval))
        sim.start(name)
    sim.run_for(3 * timings.node_timeout)
    assert sim.converged(), sim.views()
    return sim


def random_split(rng: random.Random, names: tuple[str, ...]) -> list[list[str]]:
    shuffled = list(names)
    rng.shuffle(shuffled)
    cuts = sorted(rng.sample(range(1, len(names)), rng.randint(1, min(2, len(names) - 1))))
    return [shuffled[a:b] for a, b in zip([0, *cuts], [*cuts, len(names)], strict=True)]


def change_at_random(sim: ClusterSim, rng: random.Random) -> str:
    running = sim.running()
    stopped = [name for name in sim.names if name not in running]
    kind = rng.choice(["kill", "start", "restart", "partition", "heal"])
    if kind == "kill" and len(running) > 1:
        victim = rng.choice(running)
        sim.stop(victim)
        return f"kill {victim}"
    if kind == "start" and stopped:
        name = rng.choice(stopped)
        sim.start(name)
        return f"start {name}"
    if kind == "restart" and running:
        name = rng.choice(running)
        sim.restart(name)
        return f"restart {name}"
    if kind == "partition":
        sides = random_split(rng, sim.names)
        sim.heal()
        sim.partition(*sides)
        return f"partition {sides}"
    sim.heal()
    return "heal"


@pytest.mark.parametrize("timings", [TIMINGS, FAST], ids=["default", "fast"])
@pytest.mark.parametrize("seed", range(40))
def test_views_converge_within_three_node_timeouts_of_the_last_change(
    seed: int, timings: Timings
) -> None:
    rng = random.Random(seed)
    sim = started(rng.randint(3, 5), seed, timings)
    story = []
    for _ in range(rng.randint(1, 6)):
        sim.run_for(rng.uniform(0.1, 3) * timings.node_timeout)
        story.append(f"{sim.now:.2f} {change_at_random(sim, rng)}")
    last_change = sim.now
    bound = 3 * timings.node_timeout
    sim.run_until(last_change + bound)
    assert sim.converged(), (story, sim.views())
    sim.run_for(4 * timings.node_timeout)
    assert sim.converged()
    assert sim.last_install() <= last_change + bound, story


@pytest.mark.parametrize("seed", range(20))
def test_a_killed_node_leaves_every_view_within_the_node_timeout_and_an_interval(
    seed: int,
) -> None:
    rng = random.Random(seed)
    sim = started(rng.randint(3, 5), seed)
    sim.run_for(rng.uniform(0, 10))
    victim = rng.choice(sim.names)
    before = sim.node(victim).view().epoch
    killed = sim.now
    sim.stop(victim)
    sim.run_for(TIMINGS.node_timeout + TIMINGS.heartbeat_interval)
    for name in sim.running():
        view = sim.node(name).view()
        assert victim not in view.members
        assert view.epoch > before
        left = sim.events_of(name, NodeLeft)
        assert left[-1][1].node == victim
        # not before the timeout: the last heartbeat was at most one interval before the kill
        assert left[-1][0] - killed >= TIMINGS.node_timeout - TIMINGS.heartbeat_interval
    assert sim.converged()


@pytest.mark.parametrize("seed", range(20))
def test_a_restarted_node_rejoins_with_a_new_incarnation(seed: int) -> None:
    rng = random.Random(seed)
    sim = started(rng.randint(3, 5), seed)
    victim = rng.choice(sim.names)
    before = max(view.epoch for view in sim.views().values())
    down_for = rng.choice([0.0, rng.uniform(0, 2 * TIMINGS.node_timeout)])
    sim.stop(victim)
    sim.run_for(down_for)
    sim.start(victim)
    sim.run_for(GRACE + 2 * TIMINGS.heartbeat_interval)
    assert sim.converged(), sim.views()
    assert set(sim.views()[victim].members) == set(sim.names)
    assert sim.views()[victim].epoch > before
    new_incarnation = sim.nodes[victim].incarnations[-1]
    for name in sim.names:
        if name != victim:
            rejoined = sim.events_of(name, NodeRejoined)
            assert rejoined[-1][1] == NodeRejoined(
                victim, new_incarnation, sim.nodes[victim].incarnations[-2]
            )
            assert sim.node(name).peer(victim).incarnation == new_incarnation


@pytest.mark.parametrize("seed", range(20))
def test_each_side_of_a_stable_partition_installs_one_view_and_they_merge_again(
    seed: int,
) -> None:
    rng = random.Random(seed)
    sim = started(5, seed)
    sides = random_split(rng, sim.names)
    sim.partition(*sides)
    sim.run_for(3 * TIMINGS.node_timeout)
    views = sim.views()
    for side in sides:
        assert {views[name] for name in side} == {views[side[0]]}
        assert views[side[0]].members == frozenset(side)
    sim.heal()
    sim.run_for(3 * TIMINGS.node_timeout)
    assert sim.converged()
    assert len(set(sim.views().values())) == 1


def test_one_way_links_settle_instead_of_flapping() -> None:
    """n2 stops hearing n1 (n1 still hears n2): n2 leaves n1 out and coordinates n2 and n3,
    while n1 and n3 keep the view of all three. Each failure detector is stable, so nothing
    proposes again: two views, both stable. The other way round (n1 stops hearing n2) n1
    drops n2, and n2, which still hears n1, follows n1's view without itself."""
    sim = started(3, seed=5)
    sim.cut("n1", "n2")
    cut = sim.now
    sim.run_for(20 * TIMINGS.node_timeout)
    views = sim.views()
    assert views["n1"].members == views["n3"].members == {"n1", "n2", "n3"}
    assert views["n1"] == views["n3"]
    assert views["n2"].members == {"n2", "n3"}
    assert sim.last_install() <= cut + 2 * TIMINGS.node_timeout

    sim.heal()
    sim.cut("n2", "n1")
    cut = sim.now
    sim.run_for(20 * TIMINGS.node_timeout)
    views = sim.views()
    assert {views[name].members for name in sim.names} == {frozenset({"n1", "n3"})}
    assert len(set(views.values())) == 1
    assert sim.last_install() <= cut + 2 * TIMINGS.node_timeout

    sim.heal()
    sim.run_for(3 * TIMINGS.node_timeout)
    assert sim.converged()


@pytest.mark.parametrize("seed", range(30))
def test_random_one_way_cuts_stop_changing_views(seed: int) -> None:
    rng = random.Random(seed)
    sim = started(rng.randint(3, 5), seed)
    links = [(a, b) for a in sim.names for b in sim.names if a != b]
    for sender, receiver in rng.sample(links, rng.randint(1, 4)):
        sim.cut(sender, receiver)
    cut = sim.now
    sim.run_for(20 * TIMINGS.node_timeout)
    assert sim.last_install() <= cut + 3 * TIMINGS.node_timeout, sim.views()
    sim.heal()
    sim.run_for(3 * TIMINGS.node_timeout)
    assert sim.converged()


def test_pause_and_claims_reach_every_peer() -> None:
    sim = started(3, seed=8)
    sim.node("n2").set_paused(True)
    sim.node("n2").set_claims(many_claims(256))
    paused_at = sim.now
    sim.run_for(TIMINGS.heartbeat_interval)
    for name in ("n1", "n3"):
        when, _ = sim.events_of(name, NodePaused)[-1]
        assert when - paused_at <= 0.1 * TIMINGS.heartbeat_interval + 0.01
        assert sim.node(name).peer("n2").paused
        assert sim.node(name).peer("n2").claims == many_claims(256)
    sim.node("n2").set_paused(False)
    sim.run_for(TIMINGS.heartbeat_interval)
    assert [e for _, e in sim.events_of("n1", NodeResumed)] == [NodeResumed("n2")]
    assert sim.views()["n1"].members == {"n1", "n2", "n3"}  # paused nodes stay members


@pytest.mark.parametrize("seed", range(10))
def test_lossy_links_keep_epochs_increasing_and_views_converge_once_loss_ends(
    seed: int,
) -> None:
    sim = started(4, seed)
    sim.loss = 0.3
    sim.run_for(30 * TIMINGS.node_timeout)  # ClusterSim checks every install's epoch
    sim.loss = 0.0
    healed = sim.now
    sim.run_for(3 * TIMINGS.node_timeout)
    assert sim.converged()
    assert sim.last_install() <= healed + 3 * TIMINGS.node_timeout
