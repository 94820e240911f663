"""One cluster node: a host plus the cluster service, the asyncio edge over the cluster's cores
(docs/cluster-design.md; ``sanstack cluster node --config FILE --name NAME``).

Parts, each owned here and closed in ``close``:

- the in-process ``Host`` (shared sessions to ``[storage]``'s portals, one multipath map per
  disk), its ISIDs in ``state_dir/host`` so the I_T nexuses, and with them the registrations,
  survive a restart;
- ``HeartbeatTransport``: membership over UDP on the node's cluster address;
- the PR ``WorkQueue`` and its ``DiskExecutor``: every reservation command of every disk,
  apart from the host's path work; one ``DiskArbiter`` per disk for the node's life;
- a ``GroupRunner`` and ``GroupResources`` per group;
- the reconcile task: on every membership change, group state change and heartbeat
  interval it evaluates quorum, registers the node's key on every disk once it is a member
  of a view with quorum (unfencing; never without quorum), races for the witness when the
  coordinator needs its vote, places the groups (``place``) and onlines those placed here,
  offlines those placed elsewhere, and publishes its claims; without quorum the groups run
  on for half of ``quorum_loss_stop`` (the witness race may bring quorum back), then
  offline cleanly, and whatever still runs at ``quorum_loss_stop`` stops without writes;
- the defence task: every ``arbitration_interval`` each disk the node owns is re-read
  (DEFEND); a FENCED verdict, or a RESERVATION CONFLICT on the group's I/O, stops that
  group at once without writes (``DISK_FENCED``, WSFC Event 1038). A fenced node onlines
  nothing and registers nowhere until its fenced groups stopped and it is a member with
  quorum; then it unfences (``DISK_UNFENCED``) and registers again (``node_fencing.py``);
- the storage watch in every reconcile pass: a group whose disks have had no path for
  ``storage_loss_stop`` stops without writes, fails here and moves (``node_fencing.py``).

At start, before anything is onlined, every disk is read (``Intent.NONE``): a disk whose
reservation is ours names a group this node ran before it restarted, and placement keeps
the group here (or the disk is released when placement says otherwise).

Move requests travel in heartbeats (``Membership.set_moves``): every node hears every
other's, and placement applies the request on every node alike. A pause is the node's own
flag in its heartbeats, so ``pause NAME`` is forwarded to NAME (``PeerControl``: signed
over TCP to its ``peer_control``, else to its control socket), as snapshot commands are.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import secrets
import time
from collections.abc import Callable
from typing import Any, Final

from sanstack.block.device import BlockDevice
from sanstack.cluster.arbitration import (
    ArbitrationView,
    Command,
    CommandOutcome,
    DiskArbiter,
    Intent,
    Verdict,
    VerdictKind,
)
from sanstack.cluster.disk_maps import DiskMaps, DiskMissing, NoExports
from sanstack.cluster.disks import DiskExecutor, PRDisk
from sanstack.cluster.events import EventKind
from sanstack.cluster.group_runner import GroupRunner
from sanstack.cluster.group_state import GroupState
from sanstack.cluster.group_steps import GroupResources
from sanstack.cluster.heartbeat import Claim, ClaimState
from sanstack.cluster.heartbeat_transport import HeartbeatTransport
from sanstack.cluster.keys import cluster_word
from sanstack.cluster.membership import (
    ClaimsChanged,
    Membership,
    MembershipEvent,
    NodeJoined,
    NodeLeft,
    NodeRejoined,
)
from sanstack.cluster.model import ClusterConfig, Timings
from sanstack.cluster.node_control import NodeControl
from sanstack.cluster.node_events import NodeLog
from sanstack.cluster.node_fencing import NodeFencing
from sanstack.cluster.peer_control import PeerControl
from sanstack.cluster.placement import place
from sanstack.cluster.quorum import QuorumRules, QuorumState, evaluate, needs_witness
from sanstack.cluster.reconcile import (
    Failures,
    Want,
    claim_of,
    failed_there,
    merge_moves,
    owners_from,
    register_again,
    self_claimed_witness,
    unfit_from,
    want,
)
from sanstack.cluster.work_queue import WorkQueue
from sanstack.control.server import ControlServer
from sanstack.edge.tasks import still_wanted, wait_ended
from sanstack.errors import ConfigError, SanstackError, ServiceError
from sanstack.host.config import HostConfig
from sanstack.host.host import Host
from sanstack.mpio.no_path import NoPathPolicy, NoPathRetry
from sanstack.mpio.path_slot import MultipathOptions, PathAddress
from sanstack.snapshot.model import Holder

log = logging.getLogger(__name__)

IQN_PREFIX: Final = "iqn.2026-11.org.sanstack.cluster:"
PR_WORKERS: Final = 64  # PR commands in flight at once, per node
PR_CAPACITY: Final = 4096
MOVE_PATIENCE: Final = 4  # pending timeouts a move request waits for its target to online
STOP_PATIENCE: Final = 3  # pending timeouts a clean shutdown waits for the groups to offline
RUNNING: Final = frozenset(
    {
        GroupState.ONLINING_DISKS,
        GroupState.ONLINING_VOLUMES,
        GroupState.ONLINING_EXPORT,
        GroupState.ONLINE,
    }
)


def initiator_name(cluster: str, node: str, key: int) -> str:
    """The node's iSCSI name: the cluster's and node's names made IQN-safe, and the key's
    low word, which tells two nodes apart even when their names fold to the same text."""
    slug = re.sub(r"[^a-z0-9.-]+", "-", cluster.lower()).strip("-.")[:40] or "cluster"
    name = re.sub(r"[^a-z0-9.-]+", "-", node.lower()).strip("-.") or "node"
    return f"{IQN_PREFIX}{slug}-{cluster_word(cluster):08x}.{name}.{key & 0xFFFFFFFF:08x}"


class ClusterNode(NodeFencing, NodeControl):
    """One node of ``config`` (module docstring). ``start``, then ``stop`` (clean) or
    ``close`` (what is left stops without writes)."""

    def __init__(self, config: ClusterConfig, name: str) -> None:
        try:
            self.spec = config.node(name)
        except KeyError:
            raise ConfigError(
                "--name", f"{name!r} is not a node of cluster {config.name!r}"
            ) from None
        self.config = config
        self.me = name
        self.peers = PeerControl.of(config, name)  # the secret file read and checked
        self.timings: Timings = config.timings
        self.key = self.spec.key
        self.rules = QuorumRules.of(config)
        self.index = config.node_names.index(name)
        self.keys = {node.name: node.key for node in config.nodes}
        self.groups = {group.name: group for group in config.groups}
        self.group_of_disk = {d: g.name for g in config.groups for d in g.disks}
        self._log = NodeLog(config, name, time.time)
        self.failures = Failures()
        self.fenced = False
        self.paused = False
        self.stopping = False
        self._fenced_disks: set[str] = set()
        self._no_path_since: dict[str, float] = {}
        self._unreachable: set[str] = set()
        self.unreachable_groups: frozenset[str] = frozenset()
        self._unfit: dict[str, frozenset[str]] = {}
        self._has_quorum = False
        self._quorum_lost_at: float | None = None
        self._registered_epoch: int | None = None
        self._seen_epoch = 0  # the view epoch of the last reconcile pass
        self._learned = False
        self._held_at_start: set[str] = set()
        self._moves: dict[str, str] = {}
        self._move_since: dict[str, float] = {}
        self._owner_epoch: dict[str, int] = {}
        self._alive_since: dict[str, float] = {}
        self._peer_claims: dict[str, dict[str, Claim]] = {}
        self._released_failed_at: dict[str, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._registering: asyncio.Task[None] | None = None
        self._witness_race: asyncio.Task[None] | None = None
        self.placement: dict[str, str | None] = {}

    # -- start and stop --------------------------------------------------------------------

    async def start(self) -> None:
        """Everything up, the disks read; raises ``ConfigError`` for an address or socket
        that cannot be used (what was started is closed again)."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._wake = asyncio.Event()
        self._changes = asyncio.Event()
        self._alive_since[self.me] = loop.time()
        self.spec.state_dir.mkdir(parents=True, exist_ok=True)
        self._log.restore()
        self.paused = self._load_paused()
        self.membership = Membership(
            self.config.name,
            self.me,
            self.config.node_names,
            self.timings,
            secrets.randbits(64),
        )
        self.membership.set_paused(self.paused)
        peers = {n.name: n.address for n in self.config.nodes if n.name != self.me}
        self.transport = HeartbeatTransport(
            self.membership, self.spec.address, peers, self._on_membership
        )
        self.queue = WorkQueue("pr", PR_WORKERS, PR_CAPACITY)
        self.executor = DiskExecutor(self.queue, self.key, loop.time, on_command=self._on_command)
        self.arbiters = {disk.name: DiskArbiter(self.key) for disk in self.config.disks}
        self.locks = {disk.name: asyncio.Lock() for disk in self.config.disks}
        name = initiator_name(self.config.name, self.me, self.key)
        self.host = Host(
            HostConfig(
                initiator_name=name,
                portals=[PathAddress(h, p) for h, p in self.config.portals],
                iqns=self.config.targets,
                state_dir=self.spec.state_dir / "host",
                # I/O waits for a path no longer than a group without one runs on here.
                maps=MultipathOptions(
                    no_path_retry=NoPathRetry(
                        NoPathPolicy.QUEUE_FOR, self.timings.storage_loss_stop
                    )
                ),
            )
        )
        self.disk_maps = DiskMaps(self.host, self.config.disks)
        self.resources = {g: GroupResources(spec, self) for g, spec in self.groups.items()}
        self.runners = {
            g: GroupRunner(g, self.timings.pending_timeout, self.resources[g].run, self._on_group)
            for g in self.groups
        }
        self.control = ControlServer(self.spec.control, self.control_routes())
        where = f"node[{self.index}]"
        try:
            try:
                await self.transport.bind()
            except OSError as exc:
                raise ConfigError(
                    f"{where}.address", f"cannot bind: {exc.strerror or exc}"
                ) from None
            try:
                await self.control.start()
            except OSError as exc:
                raise ConfigError(
                    f"{where}.control", f"cannot listen: {exc.strerror or exc}"
                ) from None
            await self.peers.start(self.peer_control_routes(), f"{where}.peer_control")
            await self.host.start()
            self.host.attach(NoExports())
            # A floating address left by a process of this node that was killed: placement
            # decides anew who adds it.
            await asyncio.gather(*(r.drop_address() for r in self.resources.values()))
            await self.disk_maps.wait_all(self.timings.pending_timeout)
            await self._learn_from_disks()
            self.transport.start()
            self._spawn(self._reconcile_loop(), "reconcile")
            self._spawn(self._defend_loop(), "defence")
        except BaseException:
            await self.close()
            raise

    async def stop(self) -> None:
        """A clean shutdown: drain (peers take the groups), offline every group in order
        (export, volumes, RELEASE), bounded, then close."""
        self.stopping = True
        self.membership.set_paused(True)
        self.transport.poke()
        self._pulse()
        deadline = self._loop.time() + STOP_PATIENCE * self.timings.pending_timeout
        while any(r.state.active for r in self.runners.values()):
            left = deadline - self._loop.time()
            if left <= 0:
                log.warning("groups still running at shutdown: stopped without writes")
                break
            await self.changed(min(left, self.timings.heartbeat_interval))
        await self.close()

    async def close(self) -> None:
        tasks = [t for t in self._tasks if not t.done()]
        for task in tasks:
            task.cancel()
        await wait_ended(tasks, "cluster tasks")
        for runner in getattr(self, "runners", {}).values():
            await runner.close()
        for resources in getattr(self, "resources", {}).values():
            await resources.close()
        if hasattr(self, "transport"):
            await self.transport.close()
        if hasattr(self, "control"):
            await self.control.close()
        await self.peers.close()
        if hasattr(self, "queue"):
            await self.queue.close()
        if hasattr(self, "host"):
            await self.host.close()
        self._log.close()

    def _spawn(self, coroutine: Any, name: str) -> asyncio.Task[None]:
        task: asyncio.Task[None] = self._loop.create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("cluster task %s failed", task.get_name(), exc_info=task.exception())

    # -- what the groups' steps use (group_steps.NodeServices) -------------------------------

    def device(self, disk: str) -> BlockDevice:
        try:
            return self.disk_maps.find(disk).device
        except ServiceError:
            raise DiskMissing(f"disk {disk} ({self.config_disk(disk)}): no map") from None

    def config_disk(self, disk: str) -> str:
        return self.disk_maps.devices[disk]

    def _pr_disk(self, disk: str) -> PRDisk:
        return self.disk_maps.find(disk).device

    async def changed(self, within: float) -> None:
        changes = self._changes
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):  # not wait_for: see _reconcile_loop
                await changes.wait()

    def conflict(self, group: str, disk: str) -> None:
        self._fence_disk(disk, self.arbiters[disk].conflict())

    def holder(self) -> Holder:
        return Holder(self.me, os.getpid(), str(self.spec.control))

    async def arbitrate(
        self,
        disk: str,
        intent: Intent,
        *,
        preempt_delay: float = 0.0,
        unless: Callable[[], bool] | None = None,
    ) -> Verdict:
        """One round of ``disk``'s arbiter with the view as it is now; none (a WAIT) when
        ``unless()`` holds once the disk's rounds before it ended."""
        try:
            device = self._pr_disk(disk)
        except ServiceError:
            raise DiskMissing(f"disk {disk} ({self.config_disk(disk)}): no map") from None
        async with self.locks[disk]:
            if unless is not None and unless():
                return Verdict(VerdictKind.WAIT, reason="no longer wanted")
            view = self.membership.view()
            quorum = self._quorum()
            member = self.me in view.members
            has = quorum.has_quorum and member
            if disk == self.config.witness:
                has = has or (member and needs_witness(quorum))
            # A node that cannot reach this group's disks is no member for them: the
            # reservation it could not release is preempted (node_fencing.py).
            unfit = self._unfit.get(self.group_of_disk.get(disk, ""), frozenset())
            arbitration = ArbitrationView(
                intent, view.members - unfit, self.keys, has, preempt_delay=preempt_delay
            )
            verdict = await self.executor.round(
                disk,
                self.arbiters[disk],
                device,
                arbitration,
                fenced=self.fenced and intent is Intent.OWN,
            )
        if verdict.kind is VerdictKind.FENCED and intent is not Intent.NONE:
            self._fence_disk(disk, verdict)
        elif intent is Intent.OWN and verdict.kind is VerdictKind.OWNED:
            self._log(
                EventKind.DISK_ARBITRATED,
                f"reserved ({verdict.reason})",
                group=self.group_of_disk.get(disk),
                disk=disk,
                key=self.key,
            )
        return verdict

    # -- events --------------------------------------------------------------------------------

    def _on_command(
        self, disk: str, command: Command, outcome: CommandOutcome, detail: str
    ) -> None:
        self._log.command(disk, self.group_of_disk.get(disk), command, outcome, detail)

    def _on_membership(self, events: list[MembershipEvent]) -> None:
        now = self._loop.time()
        for event in events:
            self._log.membership(event)
            match event:
                case NodeJoined(node=node) | NodeRejoined(node=node):
                    self._alive_since[node] = now
                case NodeLeft(node=node):
                    self._alive_since.pop(node, None)
                case ClaimsChanged(node=node):
                    self._peer_claims_changed(node, now)
                case _:
                    pass
        self._pulse()

    def _peer_claims_changed(self, node: str, now: float) -> None:
        claims = dict(self.membership.peer(node).claims)
        before = self._peer_claims.get(node, {})
        if claims != before:  # a peer's group changed state: who holds its disks may have
            self.executor.forget_recent()
        for group, claim in claims.items():
            if failed_there(before.get(group), claim):
                self.failures.record(group, node, now)
        self._peer_claims[node] = claims

    def _pulse(self) -> None:
        """Wake the reconcile task and everyone waiting in ``changed``."""
        changes, self._changes = self._changes, asyncio.Event()
        changes.set()
        self._wake.set()

    def _on_group(self, runner: GroupRunner, old: GroupState, new: GroupState, reason: str) -> None:
        group = runner.name
        if new is GroupState.ONLINING_DISKS:
            self._owner_epoch[group] = self.membership.view().epoch
            self._held_at_start.discard(group)
        self._log(
            EventKind.GROUP_STATE,
            f"{old.name.lower()} -> {new.name.lower()}: {reason}",
            group=group,
        )
        if new is GroupState.FAILED:
            self.failures.record(group, self.me, self._loop.time())
            self._log(EventKind.GROUP_FAILED, runner.failure or reason, group=group)
        self._publish_claims()
        self._pulse()

    def _publish_claims(self) -> None:
        claims: dict[str, Claim] = {}
        for group, runner in self.runners.items():
            state = claim_of(runner.state, group not in self.unreachable_groups)
            if state is not None:
                claims[group] = Claim(state, self._owner_epoch.get(group, 0))
        self.membership.set_claims(claims)
        self.transport.poke()

    # -- quorum, registration, the witness ----------------------------------------------------

    def _quorum(self) -> QuorumState:
        seen_all = all(
            self.membership.peer(n).incarnation is not None
            for n in self.config.node_names
            if n != self.me
        )
        return evaluate(
            self.rules, self.membership.view().members, self._witness_holder(), seen_all=seen_all
        )

    def _witness_holder(self) -> str | None:
        witness = self.config.witness
        if witness is None:
            return None
        if self.arbiters[witness].owned:
            return self.me
        alive = self.membership.alive()
        return self_claimed_witness(
            {
                n: self.membership.peer(n).witness
                for n in self.config.node_names
                if n != self.me and n in alive
            }
        )

    def _register_everywhere(self) -> None:
        if self._registering is not None and not self._registering.done():
            self._registered_epoch = None  # once more when this one ends
            return
        self._registering = self._spawn(self._register_all(), "registration")

    async def _register_all(self) -> None:
        """Our key on every path of every disk not in a group onlining or online here
        (those are the group's arbitration's), concurrently through the PR queue. A group
        on its way down is no reason to skip: releasing a disk needs our key too."""
        busy = {
            d for g, r in self.runners.items() if r.state in RUNNING for d in self.groups[g].disks
        }

        async def register(disk: str) -> None:
            if self.fenced or not self._has_quorum:
                return
            try:
                await self.executor.register(self._pr_disk(disk))
            except (SanstackError, TimeoutError) as exc:
                log.warning("disk %s: our key not registered: %s", disk, exc)

        await asyncio.gather(*(register(d.name) for d in self.config.disks if d.name not in busy))
        self._pulse()

    def _maybe_race_witness(self, quorum: QuorumState) -> None:
        witness = self.config.witness
        if witness is None or self.fenced or self.stopping:
            return
        if self._witness_race is not None and not self._witness_race.done():
            return
        view = self.membership.view()
        if self.me not in view.members or self.membership.coordinator() != self.me:
            return
        if needs_witness(quorum):
            self._witness_race = self._spawn(self._race_witness(witness), "witness race")

    async def _race_witness(self, witness: str) -> None:
        """WSFC's arbitration for the quorum disk: the incumbent defends first (a node that
        did not hold the witness waits 2 x arbitration_interval before it preempts)."""
        interval = self.timings.arbitration_interval
        delay = 0.0 if self.arbiters[witness].owned else 2 * interval
        if delay:
            # The incumbent's turn starts with this race: an arbiter that challenged the
            # holder in an earlier race (a boot before the view formed) would preempt at once.
            self._forget(witness)
        deadline = self._loop.time() + self.timings.pending_timeout
        while self._loop.time() < deadline and needs_witness(self._quorum()):
            still_wanted()
            try:
                verdict = await self.arbitrate(witness, Intent.OWN, preempt_delay=delay)
            except DiskMissing as exc:
                log.warning("witness: %s", exc)
                return
            if verdict.kind is not VerdictKind.WAIT:
                break
            wait = interval if verdict.until is None else verdict.until - self._loop.time()
            await self.changed(max(0.0, min(wait, interval)))
        self._pulse()

    async def _learn_from_disks(self) -> None:
        """Who holds each disk, from the disk (a restarted node learns here that it owns
        a disk), before anything is onlined."""

        async def look(disk: str) -> tuple[str, Verdict | None]:
            try:
                return disk, await self.arbitrate(disk, Intent.NONE)
            except DiskMissing as exc:
                log.warning("%s", exc)
                return disk, None

        for disk, verdict in await asyncio.gather(*(look(d.name) for d in self.config.disks)):
            if verdict is not None and verdict.kind is VerdictKind.OWNED:
                group = self.group_of_disk.get(disk)
                if group is not None:
                    self._held_at_start.add(group)
                log.info("disk %s: its reservation is ours (held before a restart)", disk)
        self._learned = True

    # -- reconcile -----------------------------------------------------------------------------

    async def _reconcile_loop(self) -> None:
        while True:
            still_wanted()
            self._wake.clear()
            try:
                self._reconcile()
            except Exception:  # a bug must not end reconciliation: log it, try again
                log.exception("reconcile failed")
            # asyncio.timeout, not wait_for: 3.11's wait_for returns the event's result
            # when a cancellation comes as the event is set, and the loop went on.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.timings.heartbeat_interval):
                    await self._wake.wait()

    def _reconcile(self) -> None:
        now = self._loop.time()
        self._watch_storage(now)
        view = self.membership.view()
        quorum = self._quorum()
        has = quorum.has_quorum and self.me in view.members
        if has != self._has_quorum:
            self._has_quorum = has
            self._quorum_lost_at = None if has else now
            self._log(
                EventKind.QUORUM_GAINED if has else EventKind.QUORUM_LOST,
                f"{quorum.votes} of {quorum.total} votes, {quorum.needed} needed",
                epoch=view.epoch,
            )
        self.membership.set_quorum(has, quorum.witness_holder)
        self._maybe_unfence(has)
        if register_again(has, self._seen_epoch, view.epoch):
            self._registered_epoch = None
        self._seen_epoch = view.epoch
        if has and not self.fenced and self._registered_epoch is None:
            self._registered_epoch = view.epoch
            self._register_everywhere()
        self._maybe_race_witness(quorum)
        alive = self.membership.alive()
        members = [n for n in self.config.node_names if n in view.members and n in alive]
        claims = {n: self._claims_of(n) for n in members}
        paused = {n for n in members if self._paused_flag(n)}
        owners = owners_from(claims, self.config.node_names)
        self._unfit = unfit_from(claims)
        for group in self._held_at_start:
            owners.setdefault(group, self.me)
        moves = merge_moves(
            {n: self._moves if n == self.me else self.membership.peer(n).moves for n in members},
            self.config.node_names,
        )
        self.failures.prune(self.config.groups, now)
        placement = place(
            self.config.groups,
            members,
            has_quorum=has and not self.stopping,
            now=now,
            paused=paused,
            owners=owners,
            failures=self.failures.history(),
            alive_since=self._alive_since,
            moves=moves,
            unfit=self._unfit,
        )
        self.placement = placement
        self._apply(placement, now, has)
        self._tidy_moves(claims, members, paused, now)

    def _apply(self, placement: dict[str, str | None], now: float, has: bool) -> None:
        lost = self._quorum_lost_at
        stop = self.timings.quorum_loss_stop
        if not has and lost is not None and not self.stopping and now < lost + stop / 2:
            # Quorum may come back (the coordinator races for the witness): for the first
            # half of quorum_loss_stop the groups run on, nothing is onlined and nobody is
            # fenced (the reservations keep this safe); then they offline cleanly, and what
            # is still running at quorum_loss_stop stops without writes.
            return
        may_online = self._learned and has and not self.fenced and not self.stopping
        interval = self.timings.arbitration_interval
        for group, runner in self.runners.items():
            target = placement.get(group)
            since = self._released_failed_at.get(group, -interval)
            wanted = want(
                runner.state,
                target == self.me,
                may_online=may_online,
                release_failed=now - since >= interval,
                reachable=group not in self.unreachable_groups,
            )
            if wanted is Want.ONLINE:
                runner.request_online(f"placed on {self.me}")
            elif wanted is Want.OFFLINE:
                if runner.state is GroupState.FAILED:
                    self._released_failed_at[group] = now
                why = "no quorum" if not has else f"placed on {target or 'no node'}"
                runner.request_offline("shutting down" if self.stopping else why)
            if group in self._held_at_start and target != self.me and target is not None:
                self._held_at_start.discard(group)
                self._spawn(self._release_held(group), f"release {group}")
        if not has and lost is not None and now >= lost + stop:
            for runner in self.runners.values():
                if runner.state.active and runner.state is not GroupState.STOPPING:
                    runner.fence(f"no quorum for {stop:g} s: stopped without writes")

    async def _release_held(self, group: str) -> None:
        """A group whose disks this node held at start is placed elsewhere: release them,
        each again every ``arbitration_interval`` while its round ends in WAIT (a path in
        trouble): nothing else here would, and the next owner would wait for them. Not once
        the group runs here after all: its own arbitration has the disks then."""
        interval = self.timings.arbitration_interval
        runner = self.runners[group]

        def running() -> bool:
            return runner.state.active

        async def release(disk: str) -> None:
            while not running():
                with contextlib.suppress(DiskMissing):  # no map yet: the host may add it
                    verdict = await self.arbitrate(disk, Intent.RELEASE, unless=running)
                    if verdict.kind is not VerdictKind.WAIT:
                        return
                await asyncio.sleep(interval)

        await asyncio.gather(*(release(d) for d in self.groups[group].disks))

    def _tidy_moves(
        self, claims: dict[str, dict[str, Claim]], members: list[str], paused: set[str], now: float
    ) -> None:
        for group, target in list(self._moves.items()):
            claim = claims.get(target, {}).get(group)
            done = claim is not None and claim.state is ClaimState.ONLINE
            late = now - self._move_since[group] > MOVE_PATIENCE * self.timings.pending_timeout
            gone = target not in members or target in paused
            if done or late or gone:
                del self._moves[group]
                del self._move_since[group]
                if done:
                    why = f"online on {target}"
                elif gone:
                    why = f"{target} is no longer a live, unpaused member"
                else:
                    why = "not online on the target in time"
                self._log(EventKind.GROUP_MOVED, f"move to {target} ended: {why}", group=group)
        self.membership.set_moves(self._moves)
        self.transport.poke()

    async def _defend_loop(self) -> None:
        running = (GroupState.ONLINE, GroupState.ONLINING_VOLUMES, GroupState.ONLINING_EXPORT)
        while True:
            await asyncio.sleep(self.timings.arbitration_interval)
            still_wanted()
            disks = [
                disk
                for group, runner in self.runners.items()
                if runner.state in running
                for disk in self.groups[group].disks
            ]
            witness = self.config.witness
            if witness is not None and self.arbiters[witness].owned:
                disks.append(witness)
            await asyncio.gather(*(self._defend(d) for d in disks))

    async def _defend(self, disk: str) -> None:
        if self.locks[disk].locked():
            return  # a round of this disk is under way: it reads the disk too
        try:
            verdict = await self.arbitrate(disk, Intent.DEFEND)
        except DiskMissing as exc:
            log.warning("defence: %s", exc)
            return
        except Exception:  # a bug must not end the defence of the other disks
            log.exception("defence of disk %s failed", disk)
            return
        if verdict.kind is VerdictKind.WAIT:
            log.info("disk %s: defence: %s", disk, verdict.reason)
