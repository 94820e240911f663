"""What each step of a group's lifecycle does on the node that runs it (asyncio edge).

``GroupResources`` holds what one group has on this node while it runs: a ``DiskGate`` per
disk, the snapshot volumes opened on them, and the NBD server on the group's export
address. ``run(action)`` carries out one ``GroupAction`` of ``cluster/group_state.py``:

- ARBITRATE_DISKS: every disk at once (the PR queue bounds how many commands run), each
  until this node owns it: a round whose verdict is to wait (an incumbent defends first, no
  path) is tried again when the cluster changes or after ``arbitration_interval``; a disk a
  member still holds (it must release it: a move, a failback) is tried again after
  ``arbitration_interval``, or sooner on a change once that member's claim of the group
  says it may have released it (``reconcile.holder_may_have_released``); the step's
  deadline (``pending_timeout``) bounds it all. A FENCED verdict is the node's to act on
  (``NodeServices.arbitrate`` fences the group), so the step only ends.
- OPEN_VOLUMES: ``SnapshotVolume.open`` on each volume disk's gate, this node the holder;
  the free-space scan runs in the background (KB829440: the scan runs on the new owner),
  and its end is told to the node (``scanned``: the ``volume.scanned`` event), within
  ``pending_timeout``.
- BIND_EXPORT: one NBD server on the group's address serving each disk (its volume when it
  has one) under the disk's name, and the first as the default export ``""``, and each
  volume's snapshots read-only as ``DISK@SNAP`` (``cluster/snapshot_exports.py``). A bind
  that fails because the address is still taken (an old owner closing it) is tried again.
  A ``floating`` address is added to this node's interface first and announced
  (``cluster/floating_address.py``).
- UNBIND_EXPORT: the server stops; requests in flight finish within a grace period; a
  floating address is removed.
- CLOSE_VOLUMES: each volume is flushed and closed cleanly.
- RELEASE_DISKS: the gates shut, then PERSISTENT RESERVE OUT RELEASE on every disk.
- STOP_WITHOUT_WRITES (fenced, or no quorum too long): the gates shut first, so nothing
  more reaches a disk; the server stops at once; the volumes are abandoned (their close
  meets the shut gates, so no flush and no journal write lands); nothing is released; a
  floating address is removed (a failure to is logged: the stop goes on).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Iterable
from typing import Final, Protocol

from sanstack.block.device import BlockDevice, DeviceNotReady
from sanstack.cluster.arbitration import Intent, Verdict, VerdictKind
from sanstack.cluster.disks import DiskGate
from sanstack.cluster.floating_address import FloatingAddress, FloatingAddressError
from sanstack.cluster.group_state import GroupAction
from sanstack.cluster.heartbeat import ClaimState
from sanstack.cluster.model import GroupSpec, Timings
from sanstack.cluster.reconcile import holder_may_have_released
from sanstack.cluster.snapshot_exports import SnapshotExports
from sanstack.edge.tasks import still_wanted, wait_ended
from sanstack.nbd.server import NBDServer
from sanstack.snapshot.model import Holder
from sanstack.snapshot.volume import SnapshotVolume

log = logging.getLogger(__name__)

BIND_RETRY: Final = 0.1  # seconds between tries to bind an export address still taken
UNBIND_GRACE: Final = 5.0  # requests in flight finish within this at a clean offline
ABANDON_WAIT: Final = 5.0  # a fenced group's volumes, each, before they are left as they are


class GroupFenced(Exception):
    """A disk's verdict was FENCED: the node stops the group; this step just ends."""


class NodeServices(Protocol):
    """What a group's steps need of the node."""

    me: str
    timings: Timings

    def device(self, disk: str) -> BlockDevice:
        """The disk's multipath map (``DiskMissing`` when the host has none)."""
        ...

    async def arbitrate(self, disk: str, intent: Intent) -> Verdict:
        """One arbitration round of ``disk`` (the node acts on a FENCED verdict)."""
        ...

    async def changed(self, within: float) -> None:
        """Return when the cluster changed (a view, claims) or after ``within`` seconds."""
        ...

    def conflict(self, group: str, disk: str) -> None:
        """The group's I/O to ``disk`` met RESERVATION CONFLICT."""
        ...

    def holder(self) -> Holder:
        """This node as a snapshot volume's holder."""
        ...

    def claim(self, node: str, group: str) -> ClaimState | None:
        """``node``'s claim of ``group`` as its heartbeats say (None: none, or not alive)."""
        ...

    def scanned(self, group: str, disk: str, seconds: float) -> None:
        """The free-space scan of the volume on ``disk`` ended, ``seconds`` after its open."""
        ...


async def all_of(coroutines: Iterable[Awaitable[None]]) -> None:
    """Run every coroutine at once; the first error cancels the others and is raised."""
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    if not tasks:
        return
    try:
        done, _pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
    finally:
        for task in tasks:
            task.cancel()
        await wait_ended([t for t in tasks if not t.done()], "group step parts")
        for task in tasks:
            if task.done() and not task.cancelled():
                task.exception()  # retrieved: the first one was raised


class GroupResources:
    """One group's gates, volumes and export on this node (module docstring)."""

    def __init__(self, spec: GroupSpec, services: NodeServices) -> None:
        self.spec = spec
        self.services = services
        self.gates: dict[str, DiskGate] = {}
        self.volumes: dict[str, SnapshotVolume] = {}
        self.server: NBDServer | None = None
        self.snapshot_exports = SnapshotExports(spec.name, lambda: self.volumes)
        self.verdicts: dict[str, Verdict] = {}  # each disk's last while onlining
        self.address: FloatingAddress | None = None
        if spec.floating and spec.export is not None:
            self.address = FloatingAddress(spec.export[0], spec.name)
        self._scan_watches: set[asyncio.Task[None]] = set()

    async def run(self, action: GroupAction) -> None:
        match action:
            case GroupAction.ARBITRATE_DISKS:
                await self.arbitrate_disks()
            case GroupAction.OPEN_VOLUMES:
                await self.open_volumes()
            case GroupAction.BIND_EXPORT:
                await self.bind_export()
            case GroupAction.UNBIND_EXPORT:
                await self.unbind_export(UNBIND_GRACE)
            case GroupAction.CLOSE_VOLUMES:
                await self.close_volumes()
            case GroupAction.RELEASE_DISKS:
                await self.release_disks()
            case GroupAction.STOP_WITHOUT_WRITES:
                await self.stop_without_writes("stopped without writes")

    # -- online ------------------------------------------------------------------------------

    async def arbitrate_disks(self) -> None:
        # A restart after a failure: whatever an undo step could not close is dropped.
        self.shut_gates("arbitrating again")
        await self.unbind_export(0.0)
        await self._abandon_volumes()
        self.gates = {}
        self.verdicts = {}
        await all_of(self._own(disk) for disk in self.spec.disks)
        for disk in self.spec.disks:
            self.gates[disk] = DiskGate(disk, self.services.device(disk), self._conflict_reporter())

    def _conflict_reporter(self) -> ConflictReporter:
        return ConflictReporter(self.spec.name, self.services)

    async def _own(self, disk: str) -> None:
        retry = self.services.timings.arbitration_interval
        loop = asyncio.get_running_loop()
        while True:
            still_wanted()
            verdict = await self.services.arbitrate(disk, Intent.OWN)
            self.verdicts[disk] = verdict
            if verdict.kind is VerdictKind.OWNED:
                return
            if verdict.kind is VerdictKind.FENCED:
                raise GroupFenced(f"disk {disk}: {verdict.reason}")
            wait = retry
            if verdict.until is not None:
                wait = min(retry, max(0.0, verdict.until - loop.time()))
            log.debug("group %s: disk %s: %s; again in %.2fs", self.spec.name, disk, verdict, wait)
            if verdict.until is not None:
                await asyncio.sleep(wait)  # the incumbent's turn: nothing else shortens it
            elif verdict.kind is VerdictKind.HELD_BY_MEMBER and verdict.member is not None:
                await self._until_released(verdict.member, wait)
            else:
                await self.services.changed(wait)

    async def _until_released(self, member: str, within: float) -> None:
        """Until a cluster change after which ``member`` may have released the group's
        disks, or ``within`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            left = deadline - loop.time()
            if left <= 0:
                return
            await self.services.changed(left)
            if holder_may_have_released(self.services.claim(member, self.spec.name)):
                return

    async def open_volumes(self) -> None:
        holder = self.services.holder()
        loop = asyncio.get_running_loop()

        async def open_one(disk: str) -> None:
            opened = loop.time()
            volume = await SnapshotVolume.open(self.gates[disk], holder=holder, close_base=False)
            self.volumes[disk] = volume
            watch = loop.create_task(self._watch_scan(disk, volume, opened), name=f"scan {disk}")
            self._scan_watches.add(watch)
            watch.add_done_callback(self._scan_watches.discard)

        await all_of(open_one(disk) for disk in self.spec.volumes)

    async def _watch_scan(self, disk: str, volume: SnapshotVolume, opened: float) -> None:
        bound = self.services.timings.pending_timeout
        try:
            await volume.wait_scan(bound)
        except DeviceNotReady:
            log.info(
                "group %s: volume %s: scan still running after %g s", self.spec.name, disk, bound
            )
            return
        self.services.scanned(self.spec.name, disk, asyncio.get_running_loop().time() - opened)

    async def _stop_scan_watches(self) -> None:
        watches = list(self._scan_watches)
        for watch in watches:
            watch.cancel()
        await wait_ended(watches, "scan watches")

    def exports(self) -> dict[str, BlockDevice]:
        exports: dict[str, BlockDevice] = {}
        for disk in self.spec.disks:
            exports[disk] = self.volumes.get(disk) or self.gates[disk]
        exports[""] = exports[self.spec.disks[0]]
        return exports

    async def bind_export(self) -> None:
        if self.spec.export is None:
            return
        host, port = self.spec.export
        if self.address is not None:
            await self.address.add()
        server = NBDServer(self.exports(), host, port, on_demand=self.snapshot_exports)
        while True:
            still_wanted()
            try:
                await server.start()
            except OSError as exc:
                log.info(
                    "group %s: export %s:%d not bound yet: %s", self.spec.name, host, port, exc
                )
                await asyncio.sleep(BIND_RETRY)
                continue
            self.server = server
            return

    # -- offline -----------------------------------------------------------------------------

    async def unbind_export(self, grace: float) -> None:
        await self._stop_server(grace)
        if self.address is not None:
            await self.address.remove()

    async def _stop_server(self, grace: float) -> None:
        server, self.server = self.server, None
        if server is not None:
            await server.stop(grace)
        await self.snapshot_exports.drain()

    async def drop_address(self) -> None:
        """The floating address off this node, whatever happens: a failure is logged."""
        if self.address is None:
            return
        try:
            await self.address.remove()
        except FloatingAddressError as exc:
            log.error("group %s: floating address not removed: %s", self.spec.name, exc)

    async def close_volumes(self) -> None:
        await self._stop_scan_watches()

        async def close_one(disk: str, volume: SnapshotVolume) -> None:
            await volume.close()
            self.volumes.pop(disk, None)

        await all_of(close_one(disk, volume) for disk, volume in list(self.volumes.items()))

    async def release_disks(self) -> None:
        self.shut_gates("released")
        self.gates = {}
        retry = self.services.timings.arbitration_interval

        async def release_one(disk: str) -> None:
            while True:
                still_wanted()
                verdict = await self.services.arbitrate(disk, Intent.RELEASE)
                if verdict.kind is not VerdictKind.WAIT:
                    return  # released, or not ours (fenced: the node stops the group)
                await self.services.changed(retry)

        await all_of(release_one(disk) for disk in self.spec.disks)

    def shut_gates(self, reason: str) -> None:
        for gate in self.gates.values():
            gate.shut(reason)

    async def stop_without_writes(self, reason: str) -> None:
        self.shut_gates(reason)
        await self._stop_server(0.0)
        await self.drop_address()
        await self._abandon_volumes()
        self.gates = {}

    async def _abandon_volumes(self) -> None:
        """Close each volume over its shut gate: no flush, journal commit or superblock
        write reaches the disk; bounded."""
        await self._stop_scan_watches()
        volumes, self.volumes = list(self.volumes.values()), {}
        for volume in volumes:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(ABANDON_WAIT):
                    await volume.close()

    async def close(self) -> None:
        """At the node's end: whatever is left (the node offlines its groups cleanly first,
        so this only meets a group whose offline did not finish) stops without writes."""
        await self.stop_without_writes("the node is closing")


class ConflictReporter:
    """A gate's ``on_conflict``: the node hears which group's disk it was."""

    __slots__ = ("group", "services")

    def __init__(self, group: str, services: NodeServices) -> None:
        self.group = group
        self.services = services

    def __call__(self, disk: str) -> None:
        self.services.conflict(self.group, disk)
