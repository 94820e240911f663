"""What takes a group from this node without its consent, a part of ``ClusterNode``
(``cluster/node.py``), kept apart to keep each module readable; the attributes it reads are
the node's.

Fencing (docs/cluster-design.md, "Defence and fencing"). A FENCED verdict of a disk's
arbitration, or a RESERVATION CONFLICT on the group's own I/O, logs ``disk.fenced`` (WSFC
Event 1038), shuts the group's gates at once and fences the group: it stops without writes
(its export and floating address dropped, its volumes abandoned, nothing released). The
node is then fenced: it onlines nothing and registers nowhere until no group is stopping
and it is a member with quorum again; then it unfences (``disk.unfenced``) and registers
again.

Storage loss ("The owner loses every storage path"). Each reconcile pass looks at the map of
every disk of every group: one whose paths are all down (or that has no map) for
``storage_loss_stop`` is *unreachable* (``disk.unreachable``). A group with an unreachable
disk that runs here stops at once without writes, as a failure (``STORAGE_LOST``: it ends
FAILED); nothing is released, there is no path to release on, and the node forgets that it
held the group's disks (a fresh arbiter each), so that finding another holder there later
is not a loss. I/O that waited in a map for a path has failed by then, or fails within the
same bound: the node's maps queue for ``storage_loss_stop`` at most. While a disk of a group
is unreachable the node claims NO_PATH for the group (``reconcile.claim_of``), whether it ran
it or not: placement puts the group on a node that reaches its disks, whose arbitration
counts this node as no member for them and so preempts the reservation this node could not
release; this node onlines and releases nothing of the group meanwhile. A path back ends it
(``disk.reachable``), and the node registers its key again on every disk (the owners
removed it meanwhile: the node was no member for those disks).
"""

from __future__ import annotations

from sanstack.cluster.arbitration import DiskArbiter, Verdict
from sanstack.cluster.events import EventKind
from sanstack.cluster.group_runner import GroupRunner
from sanstack.cluster.group_state import GroupState
from sanstack.cluster.group_steps import GroupResources
from sanstack.cluster.model import ClusterConfig, GroupSpec, Timings
from sanstack.cluster.node_events import NodeLog
from sanstack.errors import ServiceError
from sanstack.host.host import Host


class NodeFencing:
    config: ClusterConfig
    timings: Timings
    key: int
    fenced: bool
    stopping: bool
    groups: dict[str, GroupSpec]
    group_of_disk: dict[str, str]
    arbiters: dict[str, DiskArbiter]
    runners: dict[str, GroupRunner]
    resources: dict[str, GroupResources]
    host: Host
    unreachable_groups: frozenset[str]  # groups with a disk unreachable from here
    _fenced_disks: set[str]
    _registered_epoch: int | None
    _no_path_since: dict[str, float]
    _unreachable: set[str]
    _log: NodeLog

    def _pulse(self) -> None:
        raise NotImplementedError

    def _publish_claims(self) -> None:
        raise NotImplementedError

    def config_disk(self, disk: str) -> str:
        raise NotImplementedError

    # -- fencing -------------------------------------------------------------------------------

    def _fence_disk(self, disk: str, verdict: Verdict) -> None:
        group = self.group_of_disk.get(disk)
        self.fenced = True
        if disk not in self._fenced_disks:
            self._fenced_disks.add(disk)
            holder = verdict.holder_key
            self._log(
                EventKind.DISK_FENCED,
                f"ownership of cluster disk {disk} unexpectedly lost by this node: "
                f"{verdict.reason}",
                group=group,
                disk=disk,
                key=holder,
                peer=self._log.name_of(holder),
            )
        if group is not None:
            self.resources[group].shut_gates(f"fenced: {verdict.reason}")
            self.runners[group].fence(f"disk {disk} fenced: {verdict.reason}")
        self._pulse()

    def _maybe_unfence(self, has: bool) -> None:
        if not self.fenced or not has or self.stopping:
            return
        if any(r.state is GroupState.STOPPING for r in self.runners.values()):
            return
        for arbiter in self.arbiters.values():
            arbiter.unfence()
        self.fenced = False
        disks = ", ".join(sorted(self._fenced_disks)) or "none"
        self._fenced_disks.clear()
        self._registered_epoch = None
        self._log(
            EventKind.DISK_UNFENCED,
            f"fenced groups stopped and a member with quorum again (fenced disks: {disks})",
            key=self.key,
        )

    # -- storage loss --------------------------------------------------------------------------

    def _reachable(self, disk: str) -> bool:
        try:
            device = self.host.find_map(self.config_disk(disk)).device
        except ServiceError:
            return False
        return device.health() is None

    def _watch_storage(self, now: float) -> None:
        """Each disk's paths, then the groups that lost one (module docstring)."""
        bound = self.timings.storage_loss_stop
        for disk, group in self.group_of_disk.items():
            if self._reachable(disk):
                self._no_path_since.pop(disk, None)
                if disk in self._unreachable:
                    self._unreachable.discard(disk)
                    self._registered_epoch = None  # our key again where it was removed
                    self._log(EventKind.DISK_REACHABLE, "a path again", group=group, disk=disk)
                continue
            since = self._no_path_since.setdefault(disk, now)
            if now - since >= bound and disk not in self._unreachable:
                self._unreachable.add(disk)
                self._log(
                    EventKind.DISK_UNREACHABLE,
                    f"no path from this node for {now - since:.1f} s",
                    group=group,
                    disk=disk,
                )
        unreachable = frozenset(self.group_of_disk[d] for d in self._unreachable)
        for group in sorted(unreachable):
            runner = self.runners[group]
            if runner.state.active and runner.state is not GroupState.STOPPING:
                disks = ", ".join(d for d in self.groups[group].disks if d in self._unreachable)
                reason = f"every path to disk {disks} lost for {bound:g} s: stopped without writes"
                self.resources[group].shut_gates(reason)
                runner.lose_storage(reason)
                for disk in self.groups[group].disks:
                    self._forget(disk)
        if unreachable != self.unreachable_groups:
            self.unreachable_groups = unreachable
            self._publish_claims()
            self._pulse()

    def _forget(self, disk: str) -> None:
        """This node no longer believes it holds ``disk`` (the node's own fencing is not the
        arbiter's: ``arbitrate`` passes it to every round that would take a disk)."""
        self.arbiters[disk] = DiskArbiter(self.key)
