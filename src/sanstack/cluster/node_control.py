"""The node's control API (``cluster/routes.py`` serves it): status, events, move, pause,
and this node's own I/O counters and maps.

A part of ``ClusterNode`` (``cluster/node.py``), kept apart to keep each module readable;
the attributes it reads are the node's. Move requests travel in this node's heartbeats
(the node's docstring says why); a pause of another node is forwarded to it
(``cluster/peer_control.py``: signed to its ``peer_control``, else to its control socket);
this node's own pause is kept in ``state_dir/node.json`` so a restart keeps it drained.
The status carries each group's I/O counters from its owner: this node's own for the
groups it runs, the owner's ``/v1/cluster/io`` for the others (bounded: a frozen owner
leaves its groups' ``io`` null rather than holding the status up).
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

import h11

from sanstack.block.io_stats import summed
from sanstack.cluster.disks import DiskExecutor, PRDisk
from sanstack.cluster.events import EventKind
from sanstack.cluster.group_runner import GroupRunner
from sanstack.cluster.group_steps import GroupResources
from sanstack.cluster.heartbeat import Claim, ClaimState
from sanstack.cluster.heartbeat_transport import HeartbeatTransport
from sanstack.cluster.membership import Membership
from sanstack.cluster.model import ClusterConfig, GroupSpec, NodeSpec
from sanstack.cluster.node_events import NodeLog
from sanstack.cluster.node_status import StatusParts, status_document
from sanstack.cluster.peer_control import PeerControl, peer_routes
from sanstack.cluster.quorum import QuorumState
from sanstack.cluster.reconcile import owners_from
from sanstack.cluster.routes import CLUSTER_ROUTES
from sanstack.cluster.snapshots import volume_routes
from sanstack.control.forward import ForwardError
from sanstack.control.server import Route, bind_routes
from sanstack.edge.state_file import load_state, save_state
from sanstack.errors import ServiceError
from sanstack.host.host import Host

STATE_FILE = "node.json"
IO_TIMEOUT: Final = 2.0  # an owner's answer for its groups' I/O counters
PAUSE_TIMEOUT = 20.0  # below the control server's HANDLER_TIMEOUT, so the caller hears why


class NodeControl:
    config: ClusterConfig
    spec: NodeSpec
    me: str
    groups: dict[str, GroupSpec]
    host: Host
    membership: Membership
    transport: HeartbeatTransport
    executor: DiskExecutor
    runners: dict[str, GroupRunner]
    resources: dict[str, GroupResources]
    peers: PeerControl
    paused: bool
    stopping: bool
    fenced: bool
    placement: dict[str, str | None]
    _has_quorum: bool
    _moves: dict[str, str]
    _move_since: dict[str, float]
    _loop: asyncio.AbstractEventLoop
    _log: NodeLog

    def _quorum(self) -> QuorumState:
        raise NotImplementedError

    def _pulse(self) -> None:
        raise NotImplementedError

    def _pr_disk(self, disk: str) -> PRDisk:
        raise NotImplementedError

    def control_routes(self) -> list[Route]:
        """The cluster's routes and the clustered snapshot volumes' (``cluster/snapshots.py``)."""
        return bind_routes(self, CLUSTER_ROUTES) + volume_routes(self, self.peers.links)

    def peer_control_routes(self) -> list[Route]:
        """What the node's ``peer_control`` serves (``cluster/peer_control.py``)."""
        return peer_routes(self, volume_routes(self, self.peers.links))

    def _claims_of(self, node: str) -> dict[str, Claim]:
        if node == self.me:
            return dict(self.membership.peer(self.me).claims)
        return dict(self.membership.peer(node).claims)

    def claim(self, node: str, group: str) -> ClaimState | None:
        """``node``'s claim of ``group`` as its heartbeats say; None when it is not alive."""
        if node != self.me and node not in self.membership.alive():
            return None
        claim = self._claims_of(node).get(group)
        return None if claim is None else claim.state

    def scanned(self, group: str, disk: str, seconds: float) -> None:
        self._log(
            EventKind.VOLUME_SCANNED,
            f"free-space scan of the snapshot volume done {seconds:.3f} s after its open",
            group=group,
            disk=disk,
        )

    def quorum_now(self) -> tuple[QuorumState, bool]:
        """The quorum as this node evaluates it now, and whether it has it (a member of a
        view with quorum)."""
        return self._quorum(), self._has_quorum

    def event_counts(self) -> dict[EventKind, int]:
        """The events this process logged, by kind."""
        return dict(self._log.counts)

    def _paused_flag(self, node: str) -> bool:
        if node == self.me:
            return self.paused or self.stopping
        return self.membership.peer(node).paused

    async def status(self) -> dict[str, Any]:
        max_age = self.config.timings.arbitration_interval
        ages: dict[str, float] = {}

        async def read(disk: str) -> tuple[str, Any]:
            try:
                answer, ages[disk] = await self.executor.read_recent(self._pr_disk(disk), max_age)
            except ServiceError:
                return disk, "no map"
            except Exception as exc:  # shown in the table, not raised
                return disk, str(exc) or type(exc).__name__
            return disk, answer

        read_list, io = await asyncio.gather(
            asyncio.gather(*(read(d.name) for d in self.config.disks)), self._owners_io()
        )
        reads = dict(read_list)
        return status_document(
            StatusParts(
                config=self.config,
                me=self.me,
                membership=self.membership,
                quorum=self._quorum(),
                has_quorum=self._has_quorum,
                fenced=self.fenced,
                paused=self.paused,
                runners={g: r.state for g, r in self.runners.items()},
                failures={g: r.failure for g, r in self.runners.items()},
                placement=self.placement,
                moves=dict(self._moves),
                disk_reads=reads,
                disk_read_ages=ages,
                io=io,
            )
        )

    def io(self) -> dict[str, Any]:
        """The I/O counters of every group whose export this node serves."""
        groups = {}
        for name, resources in self.resources.items():
            server = resources.server
            if server is not None:
                groups[name] = summed(list(server.stats.values())).snapshot()
        return {"node": self.me, "groups": groups}

    def maps(self) -> dict[str, Any]:
        """This node's maps (paths by state, its key on each): what it sees of the disks."""
        return {"node": self.me, "maps": self.host.map_list()}

    async def _owners_io(self) -> dict[str, dict[str, Any] | None]:
        """Each group's counters from its owner (this node's own, or asked of the owner)."""
        view = self.membership.view()
        alive = self.membership.alive()
        names = self.config.node_names
        members = [n for n in names if n in view.members and (n == self.me or n in alive)]
        owners = owners_from({n: self._claims_of(n) for n in members}, names)
        answers: dict[str, dict[str, Any] | None] = {self.me: self.io()["groups"]}
        others = sorted({o for o in owners.values() if o != self.me})
        asked = await asyncio.gather(*(self._io_of(node) for node in others))
        answers.update(zip(others, asked, strict=True))
        io: dict[str, dict[str, Any] | None] = {}
        for group, owner in owners.items():
            counters = answers.get(owner)
            io[group] = None if counters is None else counters.get(group)
        return io

    async def _io_of(self, node: str) -> dict[str, Any] | None:
        try:
            code, answer = await self.peers.links.request(
                node, "GET", "/v1/cluster/io", None, within=IO_TIMEOUT
            )
        except (ForwardError, TimeoutError, OSError, h11.ProtocolError, ValueError):
            return None
        if (
            code != 200
            or not isinstance(answer, dict)
            or not isinstance(answer.get("groups"), dict)
        ):
            return None
        groups: dict[str, Any] = answer["groups"]
        return groups

    def events(self, since: int, limit: int | None) -> dict[str, Any]:
        return self._log.ring.to_dict(since, limit)

    async def move(self, group: str, target: str) -> dict[str, Any]:
        if group not in self.groups:
            raise ServiceError(404, f"group: {group!r} is not a group of this cluster")
        if target not in self.config.node_names:
            raise ServiceError(404, f"node: {target!r} is not a node of this cluster")
        view = self.membership.view()
        if target not in view.members or target not in self.membership.alive():
            raise ServiceError(409, f"node: {target} is not a live member")
        if self._paused_flag(target):
            raise ServiceError(409, f"node: {target} is paused; resume it first")
        if not self._has_quorum:
            raise ServiceError(409, "cluster: this node has no quorum; nothing moves")
        members = [n for n in self.config.node_names if n in view.members]
        owner = owners_from({n: self._claims_of(n) for n in members}, self.config.node_names).get(
            group
        )
        if owner == target:
            return {"group": group, "from": owner, "to": target, "state": "already there"}
        self._moves[group] = target
        self._move_since[group] = self._loop.time()
        self.membership.set_moves(self._moves)
        self.transport.poke()
        self._log(
            EventKind.GROUP_MOVED,
            f"move requested: from {owner or 'no node'} to {target}",
            group=group,
            peer=target,
        )
        self._pulse()
        return {"group": group, "from": owner, "to": target, "state": "requested"}

    async def set_paused(self, node: str, paused: bool) -> dict[str, Any]:
        if node not in self.config.node_names:
            raise ServiceError(404, f"node: {node!r} is not a node of this cluster")
        what = "pause" if paused else "resume"
        if node != self.me:
            resource = f"/v1/cluster/nodes/{node}/{what}"
            try:
                status, answer = await self.peers.links.request(
                    node, "POST", resource, None, within=PAUSE_TIMEOUT
                )
            except ForwardError as exc:
                raise ServiceError(exc.status, f"node: {node} {exc.reason}") from None
            if status != 200:
                message = answer.get("error") if isinstance(answer, dict) else answer
                raise ServiceError(status, f"node: {node} refused: {message}")
            return dict(answer)
        if paused != self.paused:
            self.paused = paused
            self._save_paused()
            self.membership.set_paused(paused)
            self.transport.poke()
            kind = EventKind.PAUSED if paused else EventKind.RESUMED
            self._log(kind, f"{self.me} {what}d by request", peer=self.me)
            self._pulse()
        return {"node": self.me, "paused": self.paused}

    def _load_paused(self) -> bool:
        state = load_state(self.spec.state_dir / STATE_FILE)
        return bool(state and state.get("paused"))

    def _save_paused(self) -> None:
        save_state(self.spec.state_dir / STATE_FILE, {"paused": self.paused})
