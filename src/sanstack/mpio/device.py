"""``MultipathDevice``: one ``BlockDevice`` per LUN over every path to it (asyncio edge).

Theory of operation. Each path is a shared session to one portal of the target
(``mpio.shared_path.SharedPath``: the host logs in once per (target, portal) and every LUN
of that target uses that session, ``host/sessions.py``) and the LUN's number behind it; the
policy core (``sanstack.mpio``) decides which path carries each I/O. The map never logs a
session in, out, or aborts it. An I/O that fails with the session's ``PathFailed``
(connection lost, NOP timeout, ...: its ``kind`` becomes the path's event,
``paths.FAILURE_EVENTS``) fails the path and is re-driven on another; an error that is about
the data or the reservation (CHECK CONDITION other than a unit attention, RESERVATION
CONFLICT) goes back to the caller and never fails over (dm-multipath's ``blk_path_error``).
When no path is usable the I/O waits for one until the no-path-retry deadline, then fails
with ``DeviceNotReady``; ``close`` ends every wait at once.

Writes in doubt. A command whose path failed may still reach the target on that path's old
connection and run there later (a stalled port, a network that held it: SCSI orders
nothing across I_T nexuses), after a newer write to the same blocks was acknowledged
through another path, which it would then overwrite. A read re-driven at once is harmless;
a write or UNMAP is re-driven only once the failed nexus has logged in again (the target
then ended the old session and its tasks before it answered: session reinstatement, RFC
7143 §6.3.5, an I_T nexus loss for SAM-5), or after ``in_doubt_write_wait`` seconds, by
when the target must have dropped the dead connection itself (open-iscsi's
replacement_timeout, NVMe's KATO plus CQT: a bound on time, not a proof); it is queued
meanwhile, and its no-path-retry clock starts after.

The map is a ``PathListener``: ``path_down`` fails the path in this map at once (the
provider says so before any I/O on it sees its ``PathFailed``); ``path_up`` starts the
path's reinstatement, a task the map owns: the LUN over the new session (probed the first
time, re-bound without I/O after), our key registered on that nexus when we hold one, ALUA
read; only then does the path carry this map's I/O. A failure that is this map's alone (a
command timeout, a key not taken) fails the path in this map and never touches the
session; the checker reinstates it while the session is up. Paths come and go at runtime
(``add_shared_path``, ``remove_shared_path``); ``close`` unsubscribes from every provider.

Lifetime (the KB963702 lesson): a path's session is only ever used through ``PathSlot``,
whose ``session`` is None while the path is down; I/O never holds a session object past a
failure, a removed path or a closed device, and every I/O in flight on a failed session
ends with that session's ``PathFailed`` before it is re-driven. Each device owns its checker
task and its paths' reinstatement and ALUA tasks, which it cancels and awaits on ``close``;
no LUN's work waits behind another's in a common pool (KB967724).

Persistent reservations go down the paths as ``mpio.reservations`` decides
(``mpio.map_reservations``, which the device inherits); one lock per device orders a key
change against a path's reinstatement, so a path that comes back while the key changes is
registered with the new key, never left with the old one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, TypeVar

from sanstack.block.device import BlockDevice, DeviceNotReady
from sanstack.initiator.lun_device import (
    ISCSIDevice,
    LunSession,
    Parts,
    PortNotAccessible,
    ReadSink,
)
from sanstack.initiator.session import ISCSISession, PathFailed
from sanstack.mpio.map_read import MapRead
from sanstack.mpio.map_reservations import MapReservations
from sanstack.mpio.path_slot import MultipathOptions, PathSlot, still_current
from sanstack.mpio.paths import (
    FAILURE_EVENTS,
    FailbackPolicy,
    GroupChooser,
    Path,
    PathEvent,
    PathState,
)
from sanstack.mpio.reservations import Outcome
from sanstack.mpio.selectors import Selector, make_selector
from sanstack.mpio.shared_path import SharedPath

log = logging.getLogger(__name__)
T = TypeVar("T")

PROBE_TIMEOUT = 5.0  # a LUN's first read over a path (INQUIRY, VPD 0x83, capacity)
OPEN_TIMEOUT = 3 * PROBE_TIMEOUT  # a path brought into a map: probe, register, ALUA


class MultipathDevice(MapReservations, BlockDevice):
    """A LUN reached through every given portal; see the module docstring."""

    def __init__(self, target_name: str, lun: int, options: MultipathOptions) -> None:
        super().__init__()  # MapReservations: the key this host holds, its lock
        self.target_name = target_name
        self.lun = lun
        self.options = options
        self.slots: list[PathSlot] = []
        self.selector: Selector = make_selector(options.selector)
        self.chooser = GroupChooser(options.failback, options.failback_delay)
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()
        # The group the chooser picked, with each path's slot; None: choose again.
        self._group: list[tuple[Path, PathSlot]] | None = None
        self._group_paths: list[Path] = []
        self._closed = False
        self._checker: asyncio.Task[None] | None = None
        self.queued = 0
        self.in_doubt = 0  # of those queued, writes waiting for their nexus (``_settle``)
        # A path failed while another could carry the I/O on (the host's metrics).
        self.failovers = 0
        self._identified = False

    # -- opening and closing -----------------------------------------------------------------

    @classmethod
    async def over(
        cls,
        paths: Sequence[tuple[SharedPath, int]],
        options: MultipathOptions,
        *,
        target_name: str,
        lun: int,
    ) -> MultipathDevice:
        """A map over shared paths, each a (provider, LUN number behind it): the device
        subscribes to each provider's notices and never logs in or out itself. Every path
        whose session is up is probed (VPD 0x83: a path to another device is not used) and
        brought to the map's key before it carries I/O; raises ``DeviceNotReady`` when no
        path reaches the LUN. ``target_name`` and ``lun`` name the map in messages."""
        device = cls(target_name, lun, options)
        for provider, path_lun in paths:
            slot = PathSlot(provider, path_lun)
            slot.path.state = PathState.FAILED  # not usable until reinstated; not a failure
            device.slots.append(slot)
            provider.add_listener(device)
        for slot in device.slots:
            device._start_reinstating(slot)
        starting = [slot.reinstating for slot in device.slots if slot.reinstating is not None]
        if starting:
            await asyncio.wait(starting, timeout=OPEN_TIMEOUT)
        if not device._identified:
            await device.close()
            raise DeviceNotReady(f"no path to {target_name} LUN {lun} answered")
        device._checker = asyncio.create_task(device._check_paths())
        return device

    def _adopt(self, first: ISCSIDevice) -> None:
        """The map is the device its first path reaches: its size, identity, provisioning."""
        self.block_size = first.block_size
        self.num_blocks = first.num_blocks
        self.identity = first.identity
        self.thin_provisioned = first.thin_provisioned
        self._identified = True

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._paths_changed()
        for slot in self.slots:
            slot.provider.remove_listener(self)
        owned = [
            t
            for t in (
                self._checker,
                *(s.alua_refresh for s in self.slots),
                *(s.reinstating for s in self.slots),
            )
            if t
        ]
        for task in owned:
            task.cancel()
        for task in owned:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for slot in self.slots:
            slot.drop()

    async def add_shared_path(self, provider: SharedPath, lun: int) -> None:
        """A new shared path to this map's LUN (a new portal's session, ``lun`` the LUN's
        number behind it): subscribed, then brought in like any returning path (probed and
        checked to be this map's device, our key registered on that nexus when we hold
        one, ALUA read) before it carries I/O. A path whose session is down now stays
        failed until it comes up. Raises ``ValueError`` for a path this map has already or
        one that reaches another device (the map is then as it was)."""
        if self._closed:
            raise DeviceNotReady("multipath device is closed")
        if any(s.provider is provider and s.lun == lun for s in self.slots):
            raise ValueError(f"{provider.name} LUN {lun} is a path of this device already")
        slot = PathSlot(provider, lun)
        slot.path.state = PathState.FAILED  # not usable until reinstated; not a failure
        self.slots.append(slot)
        provider.add_listener(self)
        self._start_reinstating(slot)
        if slot.reinstating is not None:
            await asyncio.wait({slot.reinstating}, timeout=OPEN_TIMEOUT)
        if slot in self.slots and slot.path.state is PathState.REMOVED:
            # _device_over refused it: another device (not taken away meanwhile)
            await self._take_away(slot)
            raise ValueError(f"{provider.name} LUN {lun} is not this map's device")

    async def remove_shared_path(self, provider: SharedPath, lun: int) -> None:
        """Take a shared path away for good (its LUN gone behind that session, the portal
        given up): it carries no new I/O from now on; what is in flight on it ends with the
        session's answer, or, if the session fails first, is re-driven on the other paths.
        The session itself is its provider's and is not touched."""
        slot = next((s for s in self.slots if s.provider is provider and s.lun == lun), None)
        if slot is None:
            raise ValueError(f"{provider.name} LUN {lun} is not a path of this device")
        await self._take_away(slot)

    async def _take_away(self, slot: PathSlot) -> None:
        slot.path.handle(PathEvent.REMOVE, self._loop.time())
        slot.drop()
        self.slots.remove(slot)
        if not any(s.provider is slot.provider for s in self.slots):
            slot.provider.remove_listener(self)
        self._paths_changed()
        owned = [t for t in (slot.alua_refresh, slot.reinstating) if t is not None]
        for task in owned:
            task.cancel()
        for task in owned:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- BlockDevice ----------------------------------------------------------------------------

    async def read(self, lba: int, count: int) -> bytes | memoryview:
        return await self._io(count * self.block_size, lambda d: d.read(lba, count))

    def read_parts(self, lba: int, count: int) -> Coroutine[Any, Any, Sequence[bytes | memoryview]]:
        """``read`` in the pieces the path's Data-In brought (``ISCSIDevice.read_parts``).
        The I/O loop's own coroutine: one frame less on every resume of a read."""
        return self._io(count * self.block_size, lambda d: d.read_parts(lba, count))

    def start_read(self, lba: int, count: int, sink: ReadSink) -> MapRead | None:
        """``read_parts`` without a coroutine (``ISCSIDevice.start_read``): on the path the
        selector picks now, its end told to ``sink``. Anything but the usual answer is
        handed to the I/O loop as it stands (``MapRead.read_slow``), so a failed path is
        failed and the read re-driven exactly as ``read_parts`` would. None when the read
        cannot start that way (no usable path now, the path's session would make it wait):
        ``read_parts`` then, which waits for a path as it should."""
        if self._closed:
            return None
        size = count * self.block_size
        slot = self._pick(size)
        if slot is None:
            return None
        device = slot.device
        if device is None:
            return None
        read = MapRead(self, slot, device, lba, count, sink)
        ticket = device.start_read(lba, count, read)
        if ticket is None:
            read.withdraw()  # nothing was sent
            return None
        read.ticket = ticket
        return read

    def read_again(
        self,
        slot: PathSlot,
        device: ISCSIDevice,
        lba: int,
        count: int,
        resume: Callable[[], Awaitable[Parts]],
    ) -> Coroutine[Any, Any, Parts]:
        """``read_parts`` from an attempt under way on ``slot`` (``resume`` its rest): a
        ``start_read`` that did not end as usual, handed to the I/O loop."""
        return self._io(
            count * self.block_size,
            lambda d: d.read_parts(lba, count),
            first=(slot, device, resume),
        )

    async def write(self, lba: int, data: bytes | memoryview) -> None:
        await self._io(len(data), lambda d: d.write(lba, data), writes=True)

    async def flush(self) -> None:
        await self._io(0, lambda d: d.flush())

    async def unmap(self, lba: int, count: int) -> None:
        await self._io(0, lambda d: d.unmap(lba, count), writes=True)

    def health(self) -> str | None:
        if self._closed:
            return "device is closed"
        if not any(s.path.usable for s in self.slots):
            return "all paths down"
        return None

    # -- the I/O loop -------------------------------------------------------------------------

    async def _io(
        self,
        size: int,
        operation: Callable[[ISCSIDevice], Awaitable[T]],
        *,
        writes: bool = False,
        first: tuple[PathSlot, ISCSIDevice, Callable[[], Awaitable[T]]] | None = None,
    ) -> T:
        """Carry ``operation`` on a path, re-driven on another while paths fail.
        ``first``: an attempt already under way on a path (``MapRead.read_slow``), whose
        end is handled as any attempt's before the loop picks paths itself."""
        started = self._loop.time()
        while True:
            if first is None:
                if self._closed:
                    raise DeviceNotReady("multipath device is closed")
                slot = self._pick(size)
                if slot is None or slot.device is None:
                    await self._wait_for_path(started)
                    continue
                device = slot.device
                attempt = operation(device)
            else:
                slot, device, resume = first
                first = None
                attempt = resume()
            path = slot.path
            path.in_flight += 1  # Path.started and .finished, inlined: they run per I/O
            path.in_flight_bytes += size
            in_doubt = None
            try:
                return await attempt
            except PortNotAccessible as exc:
                # The port's ALUA state changed before our next RTPG: believe the answer,
                # move to the group that is now best, and re-drive (transitioning waits
                # like an all-paths-down I/O until the checker sees the new states).
                log.info("path %s is %s", slot.label, exc.alua_state.name.lower())
                slot.path.alua_state = exc.alua_state
                self._paths_changed()
                self._alua_changed(slot)  # the session's reader learns it too
            except PathFailed as failure:
                self._path_failed(device, failure, "I/O")
                if writes:
                    in_doubt = device.session
            finally:
                path.in_flight -= 1
                path.in_flight_bytes -= size
                path.completed += 1
            if in_doubt is not None:
                await self._settle(slot, in_doubt)
                started = self._loop.time()  # no_path_retry counts from here

    async def _settle(self, slot: PathSlot, session: LunSession) -> None:
        """A write failed on ``session``: wait until its nexus has logged in again (a new
        session of ``slot``'s provider) or ``in_doubt_write_wait`` has passed (see the
        module docstring), then it may be re-driven anywhere."""
        deadline = self._loop.time() + self.options.in_doubt_write_wait
        self.in_doubt += 1
        self.queued += 1
        try:
            while not self._closed:
                current = slot.provider.session
                if current is not None and current is not session:
                    return
                remaining = deadline - self._loop.time()
                if remaining <= 0:
                    log.warning("%s: a write in doubt re-driven, nexus not back", slot.label)
                    return
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), remaining)
        finally:
            self.in_doubt -= 1
            self.queued -= 1

    async def _wait_for_path(self, started: float) -> None:
        deadline = self.options.no_path_retry.deadline(started)
        now = self._loop.time()
        if deadline is not None and now >= deadline:
            raise DeviceNotReady(
                f"all paths to {self.target_name} LUN {self.lun} down for "
                f"{now - started:.1f}s (no_path_retry {self.options.no_path_retry.policy.value})"
            )
        self._changed.clear()
        self.queued += 1
        try:
            timeout = None if deadline is None else deadline - now
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout)
        finally:
            self.queued -= 1

    def _pick(self, size: int) -> PathSlot | None:
        """The slot of the path the selector picks from the group the chooser picks."""
        group = self._group
        if group is None:
            slots = self.slots
            paths = self.chooser.choose([s.path for s in slots], self._loop.time())
            group = [(p, s) for p in paths for s in slots if s.path is p]
            if self.chooser.policy is not FailbackPolicy.DEFERRED:
                # The choice changes only with the paths (every change comes through
                # _paths_changed) except while a deferred failback waits out its delay.
                self._group, self._group_paths = group, paths
        else:
            paths = self._group_paths
        if not group:
            return None
        chosen = self.selector.select(paths, size)
        for path, slot in group:
            if path is chosen:
                return slot
        raise AssertionError("the selector chose a path outside the group")

    def _paths_changed(self) -> None:
        """A path's state, ALUA state or presence changed: I/O waiting for a path looks
        again, and the next I/O chooses its group anew."""
        self._group = None
        self._changed.set()

    def _path_failed(self, device: ISCSIDevice, failure: PathFailed, during: str) -> None:
        """``device``'s session failed: fail its path, unless the path has dropped that
        session already (then the failure is old news and the work is simply re-driven)."""
        slot = next((s for s in self.slots if s.device is device), None)
        if slot is not None:
            self._fail(slot, FAILURE_EVENTS[failure.kind], f"{during}: {failure}")

    def _fail(self, slot: PathSlot, event: PathEvent, reason: str) -> None:
        if slot.path.state is PathState.ACTIVE:
            # A shared session's failure is logged once by its owner, not by every map.
            log.debug("path %s failed (%s): %s", slot.label, event.value, reason)
        was_active = slot.path.state is PathState.ACTIVE
        slot.path.handle(event, self._loop.time())
        slot.drop()
        if was_active and any(s.path.usable for s in self.slots):
            self.failovers += 1
        self._paths_changed()

    # -- path checker ---------------------------------------------------------------------------

    async def _check_paths(self) -> None:
        """Notice replaced sessions, reinstate paths failed for this map alone, re-read
        ALUA states (one read per session per interval, shared by every map)."""
        while not self._closed:
            await asyncio.sleep(self.options.checker_interval)
            await asyncio.gather(*(self._check(slot) for slot in self.slots))

    async def _check(self, slot: PathSlot) -> None:
        if slot.path.state is PathState.REMOVED:
            return
        session = slot.provider.session
        if slot.session is not None and slot.session is not session:
            self._fail(slot, PathEvent.CHECKER_FAILED, "session replaced")
        if slot.device is None:
            # Failed for this map alone (a command timed out, the key was not taken):
            # try again while the shared session is up.
            if session is not None and not session.closed:
                self._start_reinstating(slot)
            return
        await self._read_alua(slot)

    def _alua_changed(self, slot: PathSlot) -> None:
        """ASYMMETRIC ACCESS STATE CHANGED (or a NOT READY answer) on a path: re-read the
        groups now (bounded task owned by the device; one at a time per path; the read is
        shared with every map on the path's session)."""
        if self._closed or slot.alua_refresh is not None:
            return
        task = self._loop.create_task(self._read_alua(slot, since=self._loop.time()))
        slot.alua_refresh = task
        task.add_done_callback(lambda _t: setattr(slot, "alua_refresh", None))

    async def _read_alua(self, slot: PathSlot, *, since: float | None = None) -> None:
        """The path's ALUA state from its session's reader: a read no older than ``since``,
        by default one checker interval (``mpio.alua_reader``)."""
        session = slot.session
        if session is None:
            return
        if since is None:
            since = self._loop.time() - self.options.checker_interval
        state = await slot.provider.read_alua(slot.lun, since)
        if state is not None and slot.session is session and slot.path.alua_state != state:
            slot.path.alua_state = state
            self._paths_changed()

    # -- shared paths: the provider's notices (mpio.shared_path.PathListener) -------------------

    def path_down(self, path: SharedPath, failure: PathFailed) -> None:
        """The shared session failed: the path fails in this map now; its I/O in flight
        ends with ``failure`` and is re-driven on the other paths."""
        for slot in self.slots:
            if slot.provider is path and slot.path.state is not PathState.REMOVED:
                self._fail(slot, FAILURE_EVENTS[failure.kind], f"session: {failure}")

    def path_up(self, path: SharedPath) -> None:
        """The shared session is back: bring the path to our key, then let it carry I/O.
        A write in doubt on the old session may go now (``_settle``)."""
        self._changed.set()
        for slot in self.slots:
            if slot.provider is path:
                self._start_reinstating(slot)

    def _start_reinstating(self, slot: PathSlot) -> None:
        """One reinstatement per path at a time, owned by the device (``close`` ends it);
        one already running re-reads the provider's session before it finishes."""
        if self._closed or slot.reinstating is not None or slot.path.state is PathState.REMOVED:
            return
        task = self._loop.create_task(self._reinstate(slot))
        slot.reinstating = task
        task.add_done_callback(lambda _t: setattr(slot, "reinstating", None))

    async def _reinstate(self, slot: PathSlot) -> None:
        """Bring a shared path into this map: the LUN over the current session, our key
        registered on that nexus (when we hold one), ALUA read; then it carries I/O. A path
        that fails any step stays failed; the checker tries again."""
        while not self._gone(slot):
            session = slot.provider.session
            if session is None or session.closed or slot.session is session:
                return
            try:
                device = await self._device_over(slot, session)
            except Exception as exc:  # any failure to reach the LUN leaves the path down
                log.info("path %s: LUN %d not usable: %s", slot.label, slot.lun, str(exc))
                return
            if device is None:
                return
            async with self._registering:
                if self._gone(slot):  # closed (or removed) during the probe
                    return
                if not still_current(slot.provider, session):
                    continue  # went down (and maybe up) meanwhile: start over
                if self.registration.used and not await self._key_still_held(slot, device):
                    return  # unknown: the path stays down, the checker tries again
                step = self.registration.reinstatement()
                if step is not None:
                    outcome, error = await self._register(device, step)
                    if outcome is not Outcome.GOOD:  # an unregistered path must not carry I/O
                        log.warning("path %s: could not register our key: %s", slot.label, error)
                        return
                if not still_current(slot.provider, session):
                    continue
                slot.session, slot.device = session, device
            device.on_alua_change = lambda: self._alua_changed(slot)
            await self._read_alua(slot)
            if slot.device is device and slot.path.state is PathState.FAILED:
                slot.path.handle(PathEvent.CHECKER_OK, self._loop.time())
                log.debug("path %s reinstated", slot.label)
            self._paths_changed()
            return

    def _gone(self, slot: PathSlot) -> bool:
        return self._closed or slot.path.state is PathState.REMOVED

    async def _device_over(self, slot: PathSlot, session: ISCSISession) -> ISCSIDevice | None:
        """The LUN behind ``slot`` over ``session``: probed the first time (and checked to be
        this map's device), re-bound without I/O after that."""
        if slot.probed is not None:
            return slot.probed.over(session)
        device = await asyncio.wait_for(ISCSIDevice.open(session, slot.lun), PROBE_TIMEOUT)
        if not self._identified:
            self._adopt(device)
        elif device.identity != self.identity:
            # Paths are grouped by device identity, never by number: refuse a mix-up.
            log.error("%s LUN %d is a different device; path not used", slot.label, slot.lun)
            slot.path.handle(PathEvent.REMOVE, self._loop.time())
            self._group = None
            return None
        slot.probed = device
        return device

    # -- status ---------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        group = {
            p.name for p in self.chooser.choose([s.path for s in self.slots], self._loop.time())
        }
        return {
            "target": self.target_name,
            "lun": self.lun,
            "naa": self.identity.naa.hex() if hasattr(self, "identity") else None,
            "selector": self.selector.name,
            "no_path_retry": self.options.no_path_retry.policy.value,
            "queued": self.queued,
            "in_doubt": self.in_doubt,
            "paths": [
                {
                    "path": s.label,
                    "state": s.path.state.value,
                    "alua": s.path.alua_state.name.lower(),
                    "active_group": s.path.name in group,
                    "in_flight": s.path.in_flight,
                    "completed": s.path.completed,
                    "failures": s.path.failures,
                }
                for s in self.slots
            ],
        }
