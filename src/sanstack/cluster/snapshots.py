"""Snapshot volumes on cluster disks, from any node (asyncio edge; the routes are
``cluster/snapshot_routes.py``, the CLI ``sanstack snapshot|volume ... --cluster-control``).

The holder of a group's volume is the node that runs the group (it opened the volume in the
group's OPEN_VOLUMES step, and the superblock names it). A request for volume
``GROUP/DISK`` may reach any node:

- the node that runs the group (ONLINING_EXPORT or ONLINE: the volume is open) acts on its
  open ``SnapshotVolume``;
- any other node forwards the request to the group's owner, as this node sees it from the
  heartbeats' claims (``reconcile.owners_from``), and returns the owner's answer (its
  status and message as they are): signed over TCP to the owner's ``peer_control`` when
  the config gives it one (across machines), else to its Unix control socket
  (``cluster/peer_control.py``);
- a forwarded request carries ``via=NODE``; a node that is not running the group refuses
  it rather than forwarding it again (two nodes that disagree about the owner for a moment
  never bounce a request between them).

A group that runs nowhere (failing over, stopped, failed) is refused at once with a line
saying so: the caller tries again (a failover takes seconds; the request is not queued).
"""

from __future__ import annotations

import urllib.parse
from typing import Any, Final, Protocol

from sanstack.block.device import BlockDeviceError
from sanstack.cluster.group_runner import GroupRunner
from sanstack.cluster.group_state import GroupState
from sanstack.cluster.group_steps import GroupResources
from sanstack.cluster.membership import Membership
from sanstack.cluster.model import ClusterConfig
from sanstack.cluster.peer_control import PeerLinks
from sanstack.cluster.reconcile import owners_from
from sanstack.cluster.snapshot_routes import CLUSTER_VOLUME_ROUTES, PREFIX, VolumeRequest
from sanstack.control.forward import ForwardError
from sanstack.control.server import Route, bind_routes
from sanstack.errors import ServiceError
from sanstack.snapshot.model import (
    SnapshotExists,
    SnapshotNotFound,
    SnapshotRefused,
    VolumeError,
)
from sanstack.snapshot.volume import SnapshotVolume

# Below the control server's HANDLER_TIMEOUT (25 s), so the caller hears why.
FORWARD_TIMEOUT: Final = 20.0
_OPEN_STATES: Final = (GroupState.ONLINING_EXPORT, GroupState.ONLINE)


class VolumeNode(Protocol):
    """What the service reads of the node (``ClusterNode``)."""

    me: str
    config: ClusterConfig
    membership: Membership
    runners: dict[str, GroupRunner]
    resources: dict[str, GroupResources]


class ClusterVolumes:
    """The ``ClusterVolumeService`` of every node (module docstring)."""

    def __init__(self, node: VolumeNode, links: PeerLinks | None = None) -> None:
        self.node = node
        self.links = links or PeerLinks(node.config, node.me, None)

    def resolve(self, volume: str) -> tuple[str, str]:
        """``GROUP/DISK`` -> (group, disk), a disk carrying a snapshot volume, or a refusal
        naming the field."""
        group, sep, disk = volume.partition("/")
        if not sep or not group or not disk or "/" in disk:
            raise ServiceError(400, f"volume: {volume!r} is not GROUP/DISK")
        config = self.node.config
        spec = next((g for g in config.groups if g.name == group), None)
        if spec is None:
            raise ServiceError(404, f"volume: {group!r} is not a group of cluster {config.name}")
        if disk not in spec.disks:
            raise ServiceError(404, f"volume: {disk!r} is not a disk of group {group}")
        if disk not in spec.volumes:
            listed = ", ".join(spec.volumes) or "none"
            raise ServiceError(
                404,
                f"volume: disk {disk} of group {group} carries no snapshot volume "
                f"(the group's volumes: {listed})",
            )
        return group, disk

    def open_here(self, group: str, disk: str) -> SnapshotVolume | None:
        """The group's open volume on ``disk`` when this node runs the group."""
        if self.node.runners[group].state not in _OPEN_STATES:
            return None
        volume = self.node.resources[group].volumes.get(disk)
        if volume is None or volume.health() is not None:
            return None
        return volume

    def owner(self, group: str) -> str | None:
        """The group's owner from the live members' claims, as this node sees them."""
        membership = self.node.membership
        view = membership.view()
        alive = membership.alive()
        names = self.node.config.node_names
        members = [n for n in names if n in view.members and (n == self.node.me or n in alive)]
        claims = {n: dict(membership.peer(n).claims) for n in members}
        return owners_from(claims, names).get(group)

    async def volume_request(self, volume: str, via: str | None, request: VolumeRequest) -> Any:
        group, disk = self.resolve(volume)
        me = self.node.me
        here = self.open_here(group, disk)
        if here is not None:
            return await act(here, volume, request, me)
        state = self.node.runners[group].state.name.lower()
        if via is not None:
            raise ServiceError(
                409,
                f"volume: group {group} is not online on {me} ({state}), as {via} believed; "
                "try again",
            )
        owner = self.owner(group)
        if owner is None:
            raise ServiceError(
                409, f"volume: group {group} is not online on any node; try again when it is"
            )
        if owner == me:
            volume_here = self.node.resources[group].volumes.get(disk)
            health = volume_here.health() if volume_here is not None else None
            if health is not None:
                raise ServiceError(503, f"volume: {volume} on {me}: {health}")
            raise ServiceError(
                409, f"volume: group {group} is {state} on {me}, its volume not open; try again"
            )
        query = urllib.parse.urlencode({"volume": volume, "via": me})
        resource = f"{PREFIX}/{request.suffix}?{query}"
        try:
            status, answer = await self.links.request(
                owner, request.method, resource, request.body, within=FORWARD_TIMEOUT
            )
        except ForwardError as exc:
            raise ServiceError(
                exc.status, f"volume: {owner}, which runs group {group}, {exc.reason}"
            ) from None
        if status != 200:
            message = answer.get("error") if isinstance(answer, dict) else answer
            raise ServiceError(status, str(message))
        return answer


async def act(volume: SnapshotVolume, key: str, request: VolumeRequest, me: str) -> Any:
    """``request``'s action on the open volume, its refusals as ``ServiceError``s."""
    try:
        return await request.action(volume, key)
    except SnapshotNotFound as exc:
        raise ServiceError(404, f"name: {exc}") from None
    except (SnapshotExists, SnapshotRefused) as exc:
        raise ServiceError(409, f"name: {exc}") from None
    except VolumeError as exc:
        raise ServiceError(409, f"volume: {key}: {exc}") from None
    except BlockDeviceError as exc:  # the group is going offline here, or fenced
        raise ServiceError(503, f"volume: {key} on {me}: {exc}; try again") from None


def volume_routes(node: VolumeNode, links: PeerLinks | None = None) -> list[Route]:
    """The node's snapshot volume routes, bound to its ``ClusterVolumes``."""
    return bind_routes(ClusterVolumes(node, links), CLUSTER_VOLUME_ROUTES)
