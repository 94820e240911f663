"""The host: discover targets, log in once per (target, portal), one map per LUN identity.

``Host.start`` does what iscsid and multipathd do at boot, in the quick form: a SendTargets
discovery on every given portal (with the host's discovery ISID), one shared session per
(target, portal) from the ``SessionPool`` (only the targets ``iqns`` names, when given),
then one scan of every target: REPORT LUNS through every session, each LUN's identity (VPD
0x83 NAA), then one ``MultipathDevice`` per identity over every (session, LUN number) that
reaches it, never grouped by name or number. Each map is exported under its WWID
(``naa.<hex>``) and an alias ``IQN/LUN`` (the first path's target and the number the target
gives the LUN).

Rescans. The same scan runs again for one target when one of its sessions sees REPORTED
LUNS DATA HAS CHANGED (or logs in again), every ``rescan_interval`` seconds for every
target, and on ``rescan`` (``sanstack host rescan``). Discovery runs again too: on every
tick of the timer through each portal whose discovery failed (down when the host started;
in a task of its own, so a login timeout on a dead portal holds up no scan), and through
every portal on an operator's ``rescan`` (a new target); a (target, portal) it finds gets
its session, and the scan adds that path to the maps. ``host/rescan.py`` decides from the
REPORT LUNS answers what is new and what is gone: a new LUN becomes a map and its exports;
a map whose LUN no target session reports any more loses its exports first (no new client
can choose it), then is closed, so its I/O ends with an error (the target already answers
LOGICAL UNIT NOT SUPPORTED for it before that); no other map, session or export is touched.
Every scan also reads VPD 0x83 again through each known path that is still reported (one
INQUIRY each, ``PROBE_CONCURRENCY`` at a time, each bounded by ``PROBE_TIMEOUT``): a LUN
removed and another added under the same number between two scans must not leave a map
reaching the new device. A path whose identity changed leaves its map (a map with no path
left is closed and its exports go, as above), and its LUN is probed as a new one, so the new
device gets its own map (``host/rescan.py``'s ``check_identities`` decides).
A rescan of a target never runs twice at once: a request that comes while one runs is
answered by the next one, which starts when the running one ends and serves every request
made before it began. Scans are the host's tasks (``close`` waits for them, bounded) and
each step is bounded (REPORT LUNS and the probes by ``PROBE_TIMEOUT``, a map's opening by
``MultipathDevice.over``'s own bound). Exports reach whoever serves them through the
``ExportTable`` Protocol (the NBD server), given to ``attach``, which also starts the timer
and the reaction to unit attentions.

Which LUNs. The host's LUN filter (``HostConfig.luns``, ``[host.luns]``: multipath.conf's
blacklist and its exceptions, by WWID or alias ``IQN/N``) is applied in every scan, so at
start and on every rescan alike: a LUN its alias alone leaves out is never probed, and one
left out by its WWID is probed (its identity must be read to know it) but never mapped nor
exported; it is probed again on each scan, since another device may take its number.

Reservation keys. The key registered through a map (``pr_register``) is kept per WWID in the
state directory (``host/prkeys.py``) once the target took it; a map built later (after a
restart, or a LUN that comes back) holds that key again before it is exported, so
``sanstack host maps`` shows it and every path that comes back is registered before it
carries I/O.

Logins go through the discovered target names, but always to the portal the host was given
(a proxy or NAT in front of the target then stays in the path).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sanstack.block.device import BlockDevice, BlockDeviceError
from sanstack.edge.tasks import wait_ended
from sanstack.errors import ServiceError
from sanstack.host.config import HostConfig
from sanstack.host.isids import IsidStore
from sanstack.host.prkeys import PrKeyStore
from sanstack.host.rescan import check_identities, group_new, plan_scan
from sanstack.host.sessions import SessionPool, SharedSession
from sanstack.initiator.lun_device import ISCSIDevice, NotABlockDevice, page83_identity
from sanstack.initiator.session import LoginRefused, PathFailed, discover
from sanstack.mpio.device import MultipathDevice
from sanstack.mpio.discovery import report_luns
from sanstack.mpio.path_slot import PathAddress

log = logging.getLogger(__name__)

LOGIN_WAIT = 10.0  # for every session's first login at start
PROBE_TIMEOUT = 10.0
PROBE_CONCURRENCY = 64  # LUN probes in flight at once, per host
TRIGGER_SETTLE = 1.0  # after a rescan a unit attention asked for, before the next such one
IDLE_TICK = 60.0  # the rescanner's longest wait when it has nothing to do
SCAN_END_WAIT = 30.0  # at close, for scans running (each step of one is bounded)


@dataclass(slots=True)
class HostMap:
    """One LUN identity: its map, its paths and the names it is exported under."""

    wwid: str
    alias: str
    device: MultipathDevice
    paths: list[tuple[SharedSession, int]] = field(default_factory=list)

    @property
    def exports(self) -> list[str]:
        return [self.wwid, self.alias]

    def names(self) -> dict[str, str]:
        return {"wwid": self.wwid, "alias": self.alias}


class ExportTable(Protocol):
    """Where the maps are served (the NBD server): names come and go as LUNs do."""

    def add_export(self, name: str, device: BlockDevice) -> None: ...

    def remove_export(self, name: str) -> None: ...


class Host:
    """Sessions, maps and what ``sanstack host`` shows of them; see the module docstring."""

    def __init__(self, config: HostConfig) -> None:
        self.config = config
        self.isids = IsidStore(config.state_dir)
        self.prkeys = PrKeyStore(config.state_dir)
        self._saving_keys = asyncio.Lock()
        self.pool = SessionPool(
            config.initiator_name, self.isids, config.session, on_luns_changed=self._luns_changed
        )
        self.map_options = config.maps
        self.maps: dict[str, HostMap] = {}
        self._probes = asyncio.Semaphore(PROBE_CONCURRENCY)
        self._exports: ExportTable | None = None
        self._closing = False
        self._building: set[str] = set()  # NAAs whose map a scan is opening
        self._left_out: set[tuple[str, str]] = set()  # (alias, WWID) the LUN filter keeps out
        # Why a portal's discovery failed at start (a refused CHAP login, say).
        self.discovery_errors: dict[PathAddress, PathFailed | LoginRefused | TimeoutError] = {}
        self._locks: dict[str, asyncio.Lock] = {}  # one scan at a time per target
        self._asked: dict[str, int] = {}  # rescans asked for, per target
        self._served: dict[str, int] = {}  # the requests the last finished scan covered
        self._results: dict[str, dict[str, Any]] = {}
        self._scans: set[asyncio.Task[dict[str, Any]]] = set()
        self._dirty: set[str] = set()  # targets a session saw REPORTED LUNS DATA HAS CHANGED on
        self._wake = asyncio.Event()
        self._rescanner: asyncio.Task[None] | None = None
        self._rediscovery: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Discover, log in, build every map; a portal or LUN that fails is logged, the rest
        go on. Raises nothing for a partly reachable SAN; ``maps`` says what was found."""
        found = await asyncio.gather(*(self._discover(p) for p in self.config.portals))
        shared = [
            self.pool.session(target, portal)
            for portal, targets in zip(self.config.portals, found, strict=True)
            for target in targets
        ]
        await asyncio.gather(*(s.wait_up(LOGIN_WAIT) for s in shared))
        # One scan of every target at once: a device two targets show gets one map.
        await self._scan(self.targets())

    def attach(self, exports: ExportTable) -> None:
        """Serve every map through ``exports`` from now on (those of today are added), and
        start rescanning: on the timer and when a session sees the LUNs change."""
        self._exports = exports
        for entry in self.maps.values():
            for name in entry.exports:
                exports.add_export(name, entry.device)
        if self._rescanner is None and not self._closing:
            self._rescanner = asyncio.get_running_loop().create_task(self._rescan_loop())

    def targets(self) -> list[str]:
        return sorted({target for target, _portal in self.pool.sessions})

    async def _discover(self, portal: PathAddress) -> list[str]:
        try:
            targets = await discover(
                portal.host,
                portal.port,
                initiator_name=self.config.initiator_name,
                isid=self.isids.discovery_isid(self.config.initiator_name),
                chap=self.config.discovery_chap,
                login_timeout=self.config.session.login_timeout,
            )
        except (PathFailed, LoginRefused, TimeoutError) as exc:
            log.warning("discovery through %s failed: %s", portal, exc)
            self.discovery_errors[portal] = exc
            return []
        self.discovery_errors.pop(portal, None)
        names = [name for name, _addresses in targets]
        wanted = set(self.config.iqns)
        return [n for n in names if not wanted or n in wanted]

    # -- scans ----------------------------------------------------------------------------------

    async def rescan(
        self, targets: Sequence[str] = (), *, discover: bool = False
    ) -> list[dict[str, Any]]:
        """Rescan ``targets`` (every target when empty) and say what changed in each; a
        target with a scan running gets the next one (see the module docstring). With
        ``discover`` (an operator's rescan of every target), discovery runs again through
        every portal first: it may wait out a login timeout on a portal that is down."""
        known = self.targets()
        unknown = sorted(set(targets) - set(known))
        if unknown:
            raise ServiceError(404, f"targets: {', '.join(unknown)} not known to this host")
        if self._closing:
            raise ServiceError(503, "host: shutting down")
        if discover and not targets:
            # As ``iscsiadm -m discovery`` would: a portal that was down, or a target that is
            # new, is found by an operator's rescan.
            known = sorted({*known, *await self._rediscover(self.config.portals)})
        tasks = [self._scan_task(t) for t in (sorted(set(targets)) or known)]
        return list(await asyncio.gather(*(asyncio.shield(t) for t in tasks)))

    def _rediscover_failed(self) -> None:
        """A portal whose discovery failed (down at start) is tried again on every tick
        of the timer until it answers (the sessions of the others reconnect on their own),
        in a task of its own: a login timeout on a dead portal holds up no rescan."""
        running = self._rediscovery
        if not self.discovery_errors or self._closing or (running and not running.done()):
            return

        async def rediscover() -> None:
            try:
                found = await self._rediscover(list(self.discovery_errors))
            except Exception:
                log.exception("discovery again through %s failed", list(self.discovery_errors))
                return
            if found:
                self._dirty.update(found)
                self._wake.set()

        self._rediscovery = asyncio.get_running_loop().create_task(rediscover())

    async def _rediscover(self, portals: Sequence[PathAddress]) -> list[str]:
        """Discovery again through ``portals``; a (target, portal) not yet known gets its
        session (waited for, bounded). Returns the targets that gained a session."""
        found = await asyncio.gather(*(self._discover(p) for p in portals))
        if self._closing:
            return []
        new = [
            self.pool.session(target, portal)
            for portal, targets in zip(portals, found, strict=True)
            for target in targets
            if (target, portal) not in self.pool.sessions
        ]
        await asyncio.gather(*(s.wait_up(LOGIN_WAIT) for s in new))
        for shared in new:
            log.info("%s: found by discovery again", shared.name)
        return sorted({s.target for s in new})

    def _scan_task(self, target: str) -> asyncio.Task[dict[str, Any]]:
        task = asyncio.get_running_loop().create_task(self._rescan_target(target))
        self._scans.add(task)
        task.add_done_callback(self._scans.discard)
        return task

    async def _rescan_target(self, target: str) -> dict[str, Any]:
        asked = self._asked[target] = self._asked.get(target, 0) + 1
        async with self._locks.setdefault(target, asyncio.Lock()):
            if self._served.get(target, 0) >= asked:
                return self._results[target]  # a scan that began after we asked has ended
            covers = self._asked[target]
            (result,) = await self._scan([target])
            self._served[target] = covers
            self._results[target] = result
            return result

    def _luns_changed(self, shared: SharedSession, reason: str) -> None:
        """A session's hook (``SessionPool``): rescan its target soon."""
        if shared.target not in self._dirty:
            log.info("%s: %s; rescanning %s", shared.name, reason, shared.target)
        self._dirty.add(shared.target)
        self._wake.set()

    async def _rescan_loop(self) -> None:
        """The host's one rescanner: targets a unit attention marked, and every target when
        the timer is due. Runs until ``close`` cancels it."""
        loop = asyncio.get_running_loop()
        interval = self.config.rescan_interval or None
        due = None if interval is None else loop.time() + interval
        while not self._closing:
            wait = IDLE_TICK if due is None else min(IDLE_TICK, max(0.0, due - loop.time()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)
            self._wake.clear()
            targets, self._dirty = self._dirty, set()
            settle = bool(targets)
            if due is not None and loop.time() >= due:
                self._rediscover_failed()
                targets |= set(self.targets())
                due = loop.time() + (interval or IDLE_TICK)
            if not targets:
                continue
            for result in await asyncio.gather(
                *(asyncio.shield(self._scan_task(t)) for t in sorted(targets)),
                return_exceptions=True,
            ):
                if isinstance(result, Exception):
                    log.error("rescan failed", exc_info=result)
            if settle:
                # Every LUN's next command on every nexus sees the unit attention once:
                # let them come in, so they ask for one more rescan, not one each.
                await asyncio.sleep(TRIGGER_SETTLE)

    async def _scan(self, targets: Sequence[str]) -> list[dict[str, Any]]:
        """REPORT LUNS through every session of ``targets`` that is up; maps gone are taken
        away, new LUNs become maps (``host/rescan.py`` decides). One result per target."""
        loop = asyncio.get_running_loop()
        began = loop.time()
        wanted = set(targets)
        sessions = [s for (t, _p), s in self.pool.sessions.items() if t in wanted]
        up = [s for s in sessions if s.session is not None]
        answers = await asyncio.gather(*(self._report(s) for s in up))
        reported: dict[SharedSession, list[int] | None] = {
            shared: None if numbers is None else [n for n in numbers if self._may_use(shared, n)]
            for shared, numbers in zip(up, answers, strict=True)
        }
        replaced = await self._recheck(reported)
        plan = plan_scan(
            {naa: entry.paths for naa, entry in self.maps.items()}, reported, _target_of
        )
        removed = replaced + [await self._remove(naa) for naa in plan.gone if naa in self.maps]
        for naa, stale in plan.stale_paths.items():
            log.warning(
                "map naa.%s: %s no longer reported; the map keeps its other paths",
                naa,
                ", ".join(f"{s.name} LUN {n}" for s, n in stale),
            )
        identified = await asyncio.gather(*(self._identify(s, n) for s, n in plan.probe))
        down: dict[str, list[SharedSession]] = {}
        for shared in sessions:
            if reported.get(shared) is None:
                down.setdefault(shared.target, []).append(shared)
        new = group_new(
            (i for i in identified if i is not None and self._uses(*i)),
            set(self.maps) | self._building,
            down,
            _target_of,
        )
        for naa, paths in new.known.items():
            await self._add_paths(naa, paths)
        self._building |= set(new.maps)
        try:
            built = await asyncio.gather(
                *(self._build(naa, paths) for naa, paths in new.maps.items()),
                return_exceptions=True,
            )
        finally:
            self._building -= set(new.maps)
        added: list[HostMap] = []
        for naa, result in zip(new.maps, built, strict=True):
            if isinstance(result, BaseException):
                log.warning("map naa.%s not built: %s", naa, result)
            elif self._closing:
                await result.device.close()
            else:
                self._add(naa, result)
                added.append(result)
        seconds = round(loop.time() - began, 3)
        out = []
        for target in targets:
            ours = [s for s in sessions if s.target == target]
            gained = [m.names() for m in added if _on(m, target)]
            lost = [m.names() for m in removed if _on(m, target)]
            maps = sum(1 for m in self.maps.values() if _on(m, target))
            out.append(
                {
                    "target": target,
                    "sessions": len(ours),
                    "answered": sum(1 for s in ours if reported.get(s) is not None),
                    "added": gained,
                    "removed": lost,
                    "maps": maps,
                    "seconds": seconds,
                }
            )
            log.info(
                "scan of %s: %d added, %d removed, %d maps", target, len(gained), len(lost), maps
            )
        return out

    def _may_use(self, shared: SharedSession, lun: int) -> bool:
        """The LUN filter (``[host.luns]``) before the identity is read: False when the
        alias alone leaves it out, so it is never probed, mapped or exported."""
        return self.config.luns.may_use(f"{shared.target}/{lun}")

    def _uses(self, shared: SharedSession, lun: int, naa: str) -> bool:
        """The LUN filter once the identity is known; a LUN left out is said once."""
        alias, wwid = f"{shared.target}/{lun}", f"naa.{naa}"
        if self.config.luns.uses(alias, wwid):
            return True
        if (alias, wwid) not in self._left_out:
            self._left_out.add((alias, wwid))
            log.info("LUN %s (%s) left out by the host's LUN filter", alias, wwid)
        return False

    async def _report(self, shared: SharedSession) -> list[int] | None:
        """The LUN numbers REPORT LUNS gives through ``shared``; None if it could not say."""
        session = shared.session
        if session is None:
            return None
        try:
            numbers = await asyncio.wait_for(report_luns(session), PROBE_TIMEOUT)
        except (PathFailed, TimeoutError) as exc:
            log.warning("%s: REPORT LUNS failed: %s", shared.name, exc)
            return None
        if numbers is None:
            log.warning("%s: REPORT LUNS refused", shared.name)
            return None
        return numbers

    async def _recheck(self, reported: dict[SharedSession, list[int] | None]) -> list[HostMap]:
        """VPD 0x83 again through every known path that ``reported`` still lists: a path
        that reaches another device now leaves its map, and a map left without a path is
        closed (returned). Paths that left are no longer known: the scan probes them anew."""
        listed = {s: set(numbers) for s, numbers in reported.items() if numbers is not None}
        paths = [
            (naa, shared, lun)
            for naa, entry in self.maps.items()
            for shared, lun in entry.paths
            if lun in listed.get(shared, ())
        ]
        reads = await asyncio.gather(*(self._reidentify(s, n, naa) for naa, s, n in paths))
        read = {(s, n): r for (_naa, s, n), r in zip(paths, reads, strict=True)}
        check = check_identities(
            {naa: entry.paths for naa, entry in self.maps.items()}, read, _target_of
        )
        closed: list[HostMap] = []
        for naa, leave in check.leave.items():
            entry = self.maps.get(naa)
            if entry is None:  # another target's scan took it away meanwhile
                continue
            log.error(
                "map %s (%s): %s reach(es) another device now; the path(s) leave the map",
                entry.wwid,
                entry.alias,
                ", ".join(f"{s.name} LUN {n}" for s, n in leave),
            )
            if naa in check.closed:
                closed.append(await self._remove(naa, "its LUN number reaches another device"))
            else:
                for shared, lun in leave:
                    await entry.device.remove_shared_path(shared, lun)
                entry.paths = [p for p in entry.paths if p not in leave]
        return closed

    async def _add_paths(self, naa: str, paths: Sequence[tuple[SharedSession, int]]) -> None:
        """A known device seen through more (session, LUN) paths: they join its map, each
        checked to reach the same device and given the map's key before it carries I/O."""
        entry = self.maps.get(naa)
        if entry is None:
            return
        for shared, lun in paths:
            if (shared, lun) in entry.paths:
                continue
            try:
                await entry.device.add_shared_path(shared, lun)
            except (ValueError, BlockDeviceError) as exc:
                log.warning("map naa.%s: path %s LUN %d not added: %s", naa, shared.name, lun, exc)
                continue
            entry.paths.append((shared, lun))
            log.info("map naa.%s: path %s LUN %d added", naa, shared.name, lun)

    async def _reidentify(self, shared: SharedSession, lun: int, expected: str) -> str | None:
        """The NAA behind (``shared``, ``lun``) now; None if it cannot be read now. One
        INQUIRY when VPD 0x83 still gives ``expected``; anything else is confirmed by the
        full probe the map was built from (the same identity rule, serial and all)."""
        session = shared.session
        if session is None:
            return None
        async with self._probes:
            try:
                quick = await asyncio.wait_for(page83_identity(session, lun), PROBE_TIMEOUT)
                if quick is not None and quick.naa.hex() == expected:
                    return expected
                device = await asyncio.wait_for(ISCSIDevice.open(session, lun), PROBE_TIMEOUT)
            except Exception as exc:  # unknown now: the path is left as it is
                log.info("%s LUN %d: identity not read again: %s", shared.name, lun, exc)
                return None
        return device.identity.naa.hex()

    async def _identify(
        self, shared: SharedSession, lun: int
    ) -> tuple[SharedSession, int, str] | None:
        """(session, LUN, NAA) of one reported LUN; None if it cannot be read now."""
        session = shared.session
        if session is None:
            return None
        async with self._probes:
            try:
                device = await asyncio.wait_for(ISCSIDevice.open(session, lun), PROBE_TIMEOUT)
            except NotABlockDevice as exc:  # a controller LUN (tgt's LUN 0): nothing to map
                log.debug("%s: %s", shared.name, exc)
                return None
            except Exception as exc:  # one LUN that cannot be read is left out
                log.warning("%s LUN %d: not usable: %s", shared.name, lun, exc)
                return None
        return shared, lun, device.identity.naa.hex()

    async def _build(self, naa: str, paths: list[tuple[SharedSession, int]]) -> HostMap:
        first, lun = paths[0]
        device = await MultipathDevice.over(
            list(paths), self.map_options, target_name=first.target, lun=lun
        )
        entry = HostMap(f"naa.{naa}", f"{first.target}/{lun}", device, list(paths))
        device.on_key_lost = lambda _key: self._forget_key(entry.wwid)
        held = self.prkeys.get(entry.wwid)
        if held is not None:
            # The key this host registered before: held again before the map is exported,
            # if the target still has it (not if another initiator removed it meanwhile).
            # From now on a path that comes back is registered before it carries I/O.
            try:
                await device.hold_again(held.key, aptpl=held.aptpl)
            except BlockDeviceError as exc:
                log.warning("map %s: key 0x%x not registered again: %s", entry.wwid, held.key, exc)
        return entry

    def _add(self, naa: str, entry: HostMap) -> None:
        self.maps[naa] = entry
        if self._exports is not None:
            for name in entry.exports:
                self._exports.add_export(name, entry.device)
        log.info("map %s (%s) added", entry.wwid, entry.alias)

    async def _remove(self, naa: str, why: str = "its LUN is no longer reported") -> HostMap:
        """The LUN is gone: no export offers it any more, then the map is closed (what is
        still in flight ends with the target's answer, what waits for a path with an error)."""
        entry = self.maps.pop(naa)
        if self._exports is not None:
            for name in entry.exports:
                self._exports.remove_export(name)
        await entry.device.close()
        log.warning("map %s (%s) removed: %s", entry.wwid, entry.alias, why)
        return entry

    def exports(self) -> dict[str, BlockDevice]:
        out: dict[str, BlockDevice] = {}
        for entry in self.maps.values():
            for name in entry.exports:
                out[name] = entry.device
        return out

    async def close(self) -> None:
        """The rescanner, the scans running (bounded), the maps (their I/O ends), then the
        sessions (logged out)."""
        self._closing = True
        rescanner, self._rescanner = self._rescanner, None
        ended = [t for t in (rescanner, self._rediscovery) if t is not None]
        for ending in ended:
            ending.cancel()
        await wait_ended(ended, "rescanners")
        scans = set(self._scans)
        if scans:
            _done, running = await asyncio.wait(scans, timeout=SCAN_END_WAIT)
            for task in running:
                task.cancel()
            await wait_ended(running, "scans")
        await asyncio.gather(*(m.device.close() for m in self.maps.values()))
        await self.pool.close()

    # -- persistent reservations through a map (``sanstack host pr``) --------------------------

    def find_map(self, name: str) -> HostMap:
        """The map exported as ``name`` (its WWID or its alias)."""
        for entry in self.maps.values():
            if name in entry.exports:
                return entry
        raise ServiceError(404, f"map: no map is exported as {name!r}")

    async def pr_register(self, name: str, key: int) -> dict[str, Any]:
        """REGISTER ``key`` (0: unregister) through every path of the map ``name``: one
        registration per I_T nexus, the host's stable ones (``mpio.reservations``' rules)."""
        if not 0 <= key < 1 << 64:
            raise ServiceError(400, f"key: {key} is not a 64-bit reservation key")
        entry = self.find_map(name)
        try:
            await entry.device.pr_register(key)
        except BlockDeviceError as exc:
            raise ServiceError(409, f"map: {entry.alias}: REGISTER failed: {exc}") from None
        try:
            await self._save_key(entry.wwid, key)
        except OSError as exc:
            raise ServiceError(
                500, f"map: {entry.alias}: registered, but the key was not saved: {exc}"
            ) from None
        return {**entry.names(), "pr_key": f"0x{key:x}" if key else None}

    def _forget_key(self, wwid: str) -> None:
        """Another initiator removed the map's key: not held again after a restart either
        (on disk with the next save; until then ``hold_again`` finds it gone anyway)."""
        self.prkeys.change(wwid, 0)

    async def _save_key(self, wwid: str, key: int, aptpl: bool = False) -> None:
        """``key`` (0: none) of ``wwid`` on disk before this returns. One write at a time, in
        a thread; each writes every change made until it starts, so keys changed together
        cost one write after the one running, not one each."""
        version = self.prkeys.change(wwid, key, aptpl)
        async with self._saving_keys:
            if self.prkeys.saved >= version:
                return
            state, covers = self.prkeys.snapshot()
            await asyncio.to_thread(self.prkeys.write, state, covers)

    # -- what ``sanstack host`` shows -------------------------------------------------------

    def status(self) -> dict[str, Any]:
        sessions = self.pool.status()
        return {
            "initiator": self.config.initiator_name,
            "sessions": sessions,
            "counts": {
                "sessions": len(sessions),
                "sessions_up": sum(1 for s in sessions if s["state"] == "up"),
                "maps": len(self.maps),
            },
        }

    def map_list(self) -> list[dict[str, Any]]:
        out = []
        for entry in self.maps.values():
            device = entry.device
            status = device.status()
            states = Counter(str(p["state"]) for p in status["paths"])
            out.append(
                {
                    "wwid": entry.wwid,
                    "alias": entry.alias,
                    "size_bytes": device.num_blocks * device.block_size,
                    "exports": entry.exports,
                    "paths": dict(sorted(states.items())),
                    "selector": status["selector"],
                    "queued": status["queued"],
                    "pr_key": (
                        f"0x{device.registration.key:x}" if device.registration.key else None
                    ),
                }
            )
        return out

    def path_list(self) -> list[dict[str, Any]]:
        out = []
        for entry in self.maps.values():
            for path in entry.device.status()["paths"]:
                out.append({"map": entry.alias, "wwid": entry.wwid, **path})
        return out


def _target_of(shared: SharedSession) -> str:
    return shared.target


def _on(entry: HostMap, target: str) -> bool:
    return any(s.target == target for s, _n in entry.paths)
