"""``sanstack cluster status`` as one JSON document, sans-IO: built from what the answering
node knows (membership, its quorum, every node's claims, its own groups) and what it read
from each disk (READ KEYS and READ RESERVATION): within the last arbitration interval
(a defence or an arbitration round reads them that often), else just now; each disk's
``read_age`` says how many seconds old its row is.

Reservation keys are JSON text (``format_key``), as in the event log; a key is named by the
node it belongs to when it is one of this cluster's. A group's state is its owner's claim
(``online``, ``onlining``); without an owner, the state some node still reports (a group
being offlined or stopped, or failed), else ``offline``. A group's ``io`` is its owner's
count of the I/O through the group's exports (``IOStats.snapshot()`` summed over them; the
answering node asks the owner when that is another node), null when no node serves it or
the owner did not answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sanstack.cluster.group_state import GroupState
from sanstack.cluster.heartbeat import Claim, ClaimState
from sanstack.cluster.keys import format_key
from sanstack.cluster.membership import MembershipBackend
from sanstack.cluster.model import ClusterConfig
from sanstack.cluster.quorum import QuorumState
from sanstack.cluster.reconcile import owners_from
from sanstack.scsi.pr_codec import ReadKeysData, ReadReservationData

DiskRead = tuple[ReadKeysData, ReadReservationData] | str  # str: why it was not read


@dataclass(frozen=True, slots=True)
class StatusParts:
    config: ClusterConfig
    me: str
    membership: MembershipBackend
    quorum: QuorumState
    has_quorum: bool  # a member of a view with quorum
    fenced: bool
    paused: bool
    runners: Mapping[str, GroupState]  # this node's groups
    failures: Mapping[str, str | None]
    placement: Mapping[str, str | None]
    moves: Mapping[str, str]
    disk_reads: Mapping[str, DiskRead]
    disk_read_ages: Mapping[str, float] = field(default_factory=dict)
    io: Mapping[str, dict[str, Any] | None] = field(default_factory=dict)  # group -> counters


def _node_of(config: ClusterConfig, key: int | None) -> str | None:
    node = None if key is None else config.node_with_key(key)
    return None if node is None else node.name


def _nodes(parts: StatusParts) -> list[dict[str, Any]]:
    view = parts.membership.view()
    rows = []
    for node in parts.config.nodes:
        peer = parts.membership.peer(node.name)
        if not peer.alive:
            state = "down"
        elif parts.paused if node.name == parts.me else peer.paused:
            state = "paused"
        else:
            state = "alive"
        rows.append(
            {
                "name": node.name,
                "state": state,
                "member": node.name in view.members,
                "incarnation": None if peer.incarnation is None else f"{peer.incarnation:#018x}",
                "epoch": None if peer.view is None else peer.view.epoch,
                "coordinator": peer.coordinator,
                "quorum": parts.has_quorum if node.name == parts.me else peer.quorum,
                "key": format_key(node.key),
                "address": f"{node.address[0]}:{node.address[1]}",
            }
        )
    return rows


def _groups(parts: StatusParts, claims: Mapping[str, Mapping[str, Claim]]) -> list[dict[str, Any]]:
    owners = owners_from(claims, parts.config.node_names)
    rows = []
    for group in parts.config.groups:
        held = {
            node: claim.state.name.lower()
            for node, node_claims in claims.items()
            if (claim := node_claims.get(group.name)) is not None
        }
        here = parts.runners.get(group.name, GroupState.OFFLINE)
        if here is not GroupState.OFFLINE:
            held[parts.me] = here.name.lower()
        owner = owners.get(group.name)
        if owner is not None:
            claim = claims[owner][group.name]
            state = claim.state.name.lower()
        else:
            others = [claims[n][group.name].state for n in claims if group.name in claims[n]]
            state = min(others, key=_display_rank).name.lower() if others else "offline"
        export = group.export
        rows.append(
            {
                "name": group.name,
                "state": state,
                "owner": owner,
                "owner_epoch": None if owner is None else claims[owner][group.name].owner_epoch,
                "preferred": list(group.preferred_owners),
                "placed": parts.placement.get(group.name),
                "export": None if export is None else f"{export[0]}:{export[1]}",
                "disks": list(group.disks),
                "volumes": list(group.volumes),
                "states": held,
                "move": parts.moves.get(group.name),
                "failure": parts.failures.get(group.name),
                "io": parts.io.get(group.name),
            }
        )
    return rows


def _display_rank(state: ClaimState) -> int:
    order = (ClaimState.STOPPING, ClaimState.OFFLINING, ClaimState.FAILED, ClaimState.OFFLINE)
    return order.index(state) if state in order else len(order)


def _disks(parts: StatusParts) -> list[dict[str, Any]]:
    config = parts.config
    group_of = {d: g.name for g in config.groups for d in g.disks}
    rows = []
    for disk in config.disks:
        read = parts.disk_reads.get(disk.name, "not read")
        row: dict[str, Any] = {
            "name": disk.name,
            "device": disk.device,
            "group": group_of.get(disk.name),
            "witness": disk.name == config.witness,
            "holder": None,
            "holder_key": None,
            "type": None,
            "keys": [],
            "error": None,
            "read_age": round(parts.disk_read_ages.get(disk.name, 0.0), 3),
        }
        if isinstance(read, str):
            row["error"] = read
        else:
            keys, reservation = read
            if reservation.pr_type is not None:
                row["holder_key"] = format_key(reservation.reservation_key)
                row["holder"] = _node_of(config, reservation.reservation_key)
                row["type"] = reservation.pr_type.name.lower()
            row["keys"] = [
                {"key": format_key(key), "node": _node_of(config, key)}
                for key in keys.reservation_keys
            ]
        rows.append(row)
    return rows


def status_document(parts: StatusParts) -> dict[str, Any]:
    view = parts.membership.view()
    alive = parts.membership.alive()
    members = [n for n in parts.config.node_names if n in view.members and n in alive]
    claims: dict[str, Mapping[str, Claim]] = {n: parts.membership.peer(n).claims for n in members}
    quorum = parts.quorum
    return {
        "cluster": parts.config.name,
        "node": parts.me,
        "fenced": parts.fenced,
        "view": {
            "epoch": view.epoch,
            "members": [n for n in parts.config.node_names if n in view.members],
            "coordinator": view.coordinator,
        },
        "quorum": {
            "model": parts.config.quorum.value,
            "has": parts.has_quorum,
            "votes": quorum.votes,
            "needed": quorum.needed,
            "total": quorum.total,
            "witness": parts.config.witness,
            "witness_owner": quorum.witness_holder,
        },
        "nodes": _nodes(parts),
        "groups": _groups(parts, claims),
        "disks": _disks(parts),
    }
