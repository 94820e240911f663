"""Rescans without sockets: what two REPORT LUNS answers add and remove (``host/rescan.py``),
and the host's scans: maps and exports added and taken away, one scan at a time per target,
started by REPORTED LUNS DATA HAS CHANGED and by the timer; a LUN number that reaches another
device than its map's (removed and re-added between two scans) leaves the map."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest
from tests.support.waits import until

from sanstack.block.device import BlockDevice
from sanstack.errors import ServiceError
from sanstack.host.config import HostConfig, LunFilter
from sanstack.host.host import Host, HostMap
from sanstack.host.isids import IsidStore
from sanstack.host.rescan import check_identities, group_new, lun_changes, plan_scan
from sanstack.host.sessions import SessionOptions, SessionPool, SharedSession
from sanstack.initiator.session import ISCSISession
from sanstack.mpio.device import MultipathDevice
from sanstack.mpio.path_slot import PathAddress
from sanstack.scsi.codes import ASC

HOST = "iqn.2026-11.org.sanstack:host-r"
T1 = "iqn.2026-11.org.sanstack:t1"
T2 = "iqn.2026-11.org.sanstack:t2"
P1 = PathAddress("127.0.0.1", 3260)
P2 = PathAddress("127.0.0.1", 3261)

# Session keys for the pure functions: (target, portal).
A1, B1, A2 = (T1, "a"), (T1, "b"), (T2, "a")


def target_of(session: tuple[str, str]) -> str:
    return session[0]


# -- what changes, from REPORT LUNS answers (sans-IO) --------------------------------------------


def test_lun_changes_between_two_report_luns_snapshots() -> None:
    assert lun_changes([0, 1, 2, 16683], [0, 2, 3, 16683, 299]) == ([3, 299], [1])
    assert lun_changes([], [5, 4]) == ([4, 5], [])
    assert lun_changes([7], []) == ([], [7])
    assert lun_changes([1, 2], [2, 1]) == ([], [])


def test_a_scan_probes_new_luns_on_every_session_and_takes_away_the_gone() -> None:
    maps = {
        "n0": [(A1, 0), (B1, 0)],
        "n1": [(A1, 1), (B1, 1)],
        "n2": [(A1, 2), (B1, 2)],
    }
    # Before: 0, 1, 2. After: LUN 1 removed, LUN 3 added; both sessions answer.
    plan = plan_scan(maps, {A1: [0, 2, 3], B1: [0, 2, 3]}, target_of)
    assert sorted(plan.probe) == [(A1, 3), (B1, 3)]
    assert plan.gone == ["n1"]
    assert plan.stale_paths == {}
    # Nothing changed: nothing to do.
    same = plan_scan(maps, {A1: [0, 1, 2], B1: [0, 1, 2]}, target_of)
    assert (same.probe, same.gone, same.stale_paths) == ([], [], {})


def test_a_session_that_does_not_answer_removes_nothing_and_a_lagging_one_is_outvoted() -> None:
    maps = {"n0": [(A1, 0), (B1, 0)], "n1": [(A1, 1), (B1, 1)], "m0": [(A2, 0)]}
    # No session of T1 answered (both down): no map of T1 is touched, nor T2's.
    silent = plan_scan(maps, {A1: None, B1: None}, target_of)
    assert (silent.probe, silent.gone) == ([], [])
    # One session answers, the other is down: its answer counts for the target.
    one = plan_scan(maps, {A1: [0], B1: None}, target_of)
    assert one.gone == ["n1"]
    # Two answers disagree (one session saw the change first): a LUN any of them still
    # reports stays, and the new one is probed where it was seen.
    split = plan_scan(maps, {A1: [0, 1, 5], B1: [0]}, target_of)
    assert split.gone == []
    assert split.probe == [(A1, 5)]
    # T2 was not scanned: its map stays even though T1's answers never list LUN 0 of T2.
    assert "m0" not in plan_scan(maps, {A1: [], B1: []}, target_of).gone


def test_a_device_on_two_targets_gone_from_one_keeps_its_map() -> None:
    maps = {"n0": [(A1, 4), (A2, 7)]}
    plan = plan_scan(maps, {A1: [], A2: [7]}, target_of)
    assert plan.gone == []
    assert plan.stale_paths == {"n0": [(A1, 4)]}
    assert plan_scan(maps, {A1: [], A2: []}, target_of).gone == ["n0"]


def test_new_luns_are_grouped_by_identity_never_by_number() -> None:
    identified = [
        (A1, 3, "aa"),
        (B1, 3, "aa"),
        (A2, 9, "aa"),  # the same device on another target, under another number
        (A1, 4, "bb"),
        (B1, 4, "cc"),  # the same number, another device: another map
        (A1, 5, "old"),  # a new path to a device that has a map already
    ]
    new = group_new(identified, {"old"}, {}, target_of)
    assert new.maps == {"aa": [(A1, 3), (B1, 3), (A2, 9)], "bb": [(A1, 4)], "cc": [(B1, 4)]}
    assert new.known == {"old": [(A1, 5)]}


def test_a_new_map_gets_the_down_sessions_of_its_target_at_the_same_number() -> None:
    down_b = (T1, "down")
    new = group_new([(A1, 3, "aa"), (A2, 6, "bb")], set(), {T1: [down_b]}, target_of)
    assert new.maps == {"aa": [(A1, 3), (down_b, 3)], "bb": [(A2, 6)]}
    # A device the target shows under two numbers: which one the down session has is unknown.
    odd = group_new([(A1, 3, "aa"), (B1, 8, "aa")], set(), {T1: [down_b]}, target_of)
    assert odd.maps == {"aa": [(A1, 3), (B1, 8)]}


def test_a_path_whose_identity_changed_leaves_its_map_and_a_map_with_none_left_closes() -> None:
    maps = {
        "n0": [(A1, 0), (B1, 0)],
        "n1": [(A1, 1), (B1, 1)],
        "both": [(A1, 2), (A2, 4)],  # one device on two targets
    }
    same = {(A1, 0): "n0", (B1, 0): "n0", (A1, 1): "n1", (B1, 1): "n1", (A1, 2): "both"}
    assert check_identities(maps, {**same, (A2, 4): "both"}, target_of).leave == {}
    # Nothing read again (sessions down, or the reads timed out): nothing is decided.
    assert check_identities(maps, {}, target_of).leave == {}
    # LUN 1 removed and another device added under the same number: both paths leave.
    swapped = check_identities(maps, {**same, (A1, 1): "new", (B1, 1): "new"}, target_of)
    assert swapped.leave == {"n1": [(A1, 1), (B1, 1)]}
    assert swapped.closed == ["n1"]
    # One path read the new device, the other could not be read: the same target and
    # number reach the new device there too (it would re-bind to it when its session
    # returns), so it leaves as well.
    half = check_identities(maps, {**same, (A1, 1): "new", (B1, 1): None}, target_of)
    assert half.leave == {"n1": [(A1, 1), (B1, 1)]}
    assert half.closed == ["n1"]
    # The device on two targets: another device under T1's number, T2's path unread: the
    # T2 path is not presumed changed (another target's LUN map), and the map keeps it.
    split = check_identities(maps, {**same, (A1, 2): "other"}, target_of)
    assert split.leave == {"both": [(A1, 2)]}
    assert split.closed == []


# -- the host's scans, over fake sessions --------------------------------------------------------


class FakeSession:
    """What SharedSession and the host's scan use of an ISCSISession."""

    def __init__(self) -> None:
        self.tsih = 1
        self.parameters = None
        self.failure = None
        self.closed = False
        self.on_closed: Any = None
        self.on_unit_attention: Any = None

    async def logout(self) -> None:
        self.closed = True

    def abort(self, reason: str = "") -> None:
        self.closed = True


async def fake_connect(shared: SharedSession) -> ISCSISession:
    await asyncio.sleep(0)
    return cast(ISCSISession, FakeSession())


class FakeMap:
    def __init__(self, naa: str) -> None:
        self.naa = naa
        self.closed = False
        self.slots: list[Any] = []  # the host's path bookkeeping is what these tests read

    async def close(self) -> None:
        self.closed = True


class Exports:
    def __init__(self) -> None:
        self.names: dict[str, BlockDevice] = {}
        self.removed: list[str] = []

    def add_export(self, name: str, device: BlockDevice) -> None:
        self.names[name] = device

    def remove_export(self, name: str) -> None:
        del self.names[name]
        self.removed.append(name)


class FakeSan:
    """The host's I/O steps replaced: REPORT LUNS answers and identities come from here, and
    a map is a ``FakeMap``. ``gate`` (when set) holds every REPORT LUNS until it opens."""

    def __init__(self, host: Host) -> None:
        self.luns: dict[str, dict[int, str]] = {T1: {0: "a0", 1: "a1"}, T2: {0: "b0"}}
        self.reports = 0
        self.in_scan = 0
        self.active: dict[str, int] = {}  # REPORT LUNS in flight, per target
        self.most_active: dict[str, int] = {}
        self.gate: asyncio.Event | None = None
        self.built: dict[str, FakeMap] = {}
        self.rereads: list[tuple[str, int]] = []  # (target, LUN) whose identity was read again
        self.probed: list[tuple[str, int]] = []  # (target, LUN) whose identity was read
        host.pool = SessionPool(
            HOST,
            IsidStore(None),
            SessionOptions(),
            connector=fake_connect,
            on_luns_changed=host._luns_changed,
        )
        host._report = self.report  # type: ignore[method-assign]
        host._identify = self.identify  # type: ignore[method-assign]
        host._reidentify = self.reidentify  # type: ignore[method-assign]
        host._build = self.build  # type: ignore[method-assign]

    async def report(self, shared: SharedSession) -> list[int] | None:
        self.reports += 1
        self.in_scan += 1
        target = shared.target
        self.active[target] = self.active.get(target, 0) + 1
        self.most_active[target] = max(self.most_active.get(target, 0), self.active[target])
        answer = sorted(self.luns[target])  # the target's answer, as it is when asked
        try:
            if self.gate is not None:
                await asyncio.wait_for(self.gate.wait(), 5)
            return answer
        finally:
            self.in_scan -= 1
            self.active[target] -= 1

    async def identify(self, shared: SharedSession, lun: int) -> tuple[SharedSession, int, str]:
        self.probed.append((shared.target, lun))
        return shared, lun, self.luns[shared.target][lun]

    async def reidentify(self, shared: SharedSession, lun: int, expected: str) -> str | None:
        self.rereads.append((shared.target, lun))
        return self.luns[shared.target].get(lun)

    async def build(self, naa: str, paths: list[tuple[SharedSession, int]]) -> HostMap:
        device = FakeMap(naa)
        self.built[naa] = device
        first, lun = paths[0]
        return HostMap(f"naa.{naa}", f"{first.target}/{lun}", cast(MultipathDevice, device), paths)


async def started_host(
    interval: float | None = None, luns: LunFilter | None = None
) -> tuple[Host, FakeSan]:
    host = Host(HostConfig(HOST, [P1], rescan_interval=interval, luns=luns or LunFilter()))
    san = FakeSan(host)
    shared = [host.pool.session(t, p) for t in (T1, T2) for p in (P1, P2)]
    assert all([await s.wait_up(5) for s in shared])
    return host, san


def test_a_rescan_adds_new_luns_as_maps_and_exports_and_takes_away_the_removed() -> None:
    async def body() -> None:
        host, san = await started_host()
        await host._scan(host.targets())
        exports = Exports()
        host.attach(exports)
        assert sorted(host.maps) == ["a0", "a1", "b0"]
        assert len(host.maps["a0"].paths) == 2  # both portals of T1
        assert sorted(exports.names) == sorted(
            [f"naa.{n}" for n in ("a0", "a1", "b0")] + [f"{T1}/0", f"{T1}/1", f"{T2}/0"]
        )
        san.luns[T1] = {0: "a0", 2: "a2"}  # LUN 1 removed, LUN 2 added
        (result,) = await host.rescan([T1])
        assert result["added"] == [{"wwid": "naa.a2", "alias": f"{T1}/2"}]
        assert result["removed"] == [{"wwid": "naa.a1", "alias": f"{T1}/1"}]
        assert (result["sessions"], result["answered"], result["maps"]) == (2, 2, 2)
        assert sorted(host.maps) == ["a0", "a2", "b0"]
        assert san.built["a1"].closed and not san.built["a0"].closed
        assert not san.built["b0"].closed
        assert exports.removed == ["naa.a1", f"{T1}/1"]
        assert f"{T1}/2" in exports.names and f"{T2}/0" in exports.names
        # Every target, nothing changed: nothing added or removed.
        results = await host.rescan()
        assert [(r["target"], r["added"], r["removed"]) for r in results] == [
            (T1, [], []),
            (T2, [], []),
        ]
        with pytest.raises(ServiceError, match="not known"):
            await host.rescan(["iqn.2026-11.org.sanstack:nowhere"])
        await host.close()
        assert all(m.closed for m in san.built.values())

    asyncio.run(body())


def test_the_lun_filter_keeps_left_out_luns_out_of_maps_and_exports_on_every_scan() -> None:
    async def body() -> None:
        # T1's LUNs 1 and 5 left out by their alias, the device b0 by its WWID.
        left_out = LunFilter(exclude=(f"{T1}/1", f"{T1}/5", "naa.b0"))
        host, san = await started_host(luns=left_out)
        await host._scan(host.targets())
        exports = Exports()
        host.attach(exports)
        assert sorted(host.maps) == ["a0"]
        assert set(exports.names) == {"naa.a0", f"{T1}/0"}
        assert (T1, 1) not in san.probed  # its alias says enough: never probed
        assert (T2, 0) in san.probed  # its WWID must be read to know it
        # LUNs come: some the filter lets through, one its alias and one its WWID keeps out.
        san.luns[T1] |= {2: "a2", 5: "a5"}
        san.luns[T2] = {0: "b0", 1: "b1", 2: "b0"}
        san.probed.clear()
        results = await host.rescan()
        assert [r["added"] for r in results] == [
            [{"wwid": "naa.a2", "alias": f"{T1}/2"}],
            [{"wwid": "naa.b1", "alias": f"{T2}/1"}],
        ]
        assert sorted(host.maps) == ["a0", "a2", "b1"]
        assert "naa.b0" not in exports.names and f"{T2}/0" not in exports.names
        assert not {f"{T1}/1", f"{T1}/5", f"{T2}/2"} & set(exports.names)
        assert (T1, 1) not in san.probed and (T1, 5) not in san.probed
        assert set(san.built) == {"a0", "a2", "b1"}  # never a map for what is left out
        await host.close()

    asyncio.run(body())


def test_an_include_list_alone_keeps_only_the_luns_it_names() -> None:
    async def body() -> None:
        host, _san = await started_host(luns=LunFilter(include=(f"{T2}/*", "naa.a1")))
        await host._scan(host.targets())
        assert sorted(host.maps) == ["a1", "b0"]  # T2's LUNs, and a1 by its WWID
        host2, san2 = await started_host(luns=LunFilter(include=(f"{T2}/0",)))
        await host2._scan(host2.targets())
        assert sorted(host2.maps) == ["b0"]
        assert san2.probed == [(T2, 0), (T2, 0)]  # T1's LUNs were never probed
        await host.close()
        await host2.close()

    asyncio.run(body())


def test_a_lun_removed_and_readded_under_its_number_between_two_scans_is_a_new_map() -> None:
    async def body() -> None:
        host, san = await started_host()
        await host._scan(host.targets())
        exports = Exports()
        host.attach(exports)
        old_map = host.maps["a1"]
        # REPORT LUNS says the same before and after; only VPD 0x83 tells the two apart.
        san.luns[T1] = {0: "a0", 1: "x1"}
        (result,) = await host.rescan([T1])
        assert sorted(san.rereads) == [(T1, 0), (T1, 0), (T1, 1), (T1, 1)]  # known paths, once
        assert result["removed"] == [{"wwid": "naa.a1", "alias": f"{T1}/1"}]
        assert result["added"] == [{"wwid": "naa.x1", "alias": f"{T1}/1"}]
        assert sorted(host.maps) == ["a0", "b0", "x1"]
        assert san.built["a1"].closed and old_map.paths == host.maps["x1"].paths
        assert "naa.a1" not in exports.names and "naa.x1" in exports.names
        assert exports.names[f"{T1}/1"] is cast(BlockDevice, san.built["x1"])
        assert not san.built["a0"].closed and len(host.maps["a0"].paths) == 2
        # A scan of another target reads only its own maps' paths.
        san.rereads.clear()
        await host.rescan([T2])
        assert san.rereads == [(T2, 0), (T2, 0)]
        await host.close()

    asyncio.run(body())


def test_a_rescan_never_runs_twice_at_once_per_target() -> None:
    async def body() -> None:
        host, san = await started_host()
        await host._scan(host.targets())
        reports_before = san.reports
        san.gate = asyncio.Event()
        first = asyncio.create_task(host.rescan([T1]))
        await until(lambda: san.in_scan == 2, 5, "the first scan asks both sessions")
        # While it runs: three more requests for T1 and one for T2.
        more = [asyncio.create_task(host.rescan([T1])) for _ in range(3)]
        other = asyncio.create_task(host.rescan([T2]))
        await until(lambda: san.in_scan == 4, 5, "T2's scan runs beside T1's")
        san.luns[T1][3] = "a3"  # seen only by a scan that begins after this
        san.gate.set()
        results = await asyncio.wait_for(asyncio.gather(first, *more, other), 10)
        # The first scan, then one more that served all three requests made during it.
        assert san.reports - reports_before == 2 + 2 + 2  # each target has two sessions
        assert san.most_active[T1] == 2  # T1's two sessions at once: never two scans
        assert results[0][0]["added"] == []
        assert all(r[0]["added"] == [{"wwid": "naa.a3", "alias": f"{T1}/3"}] for r in results[1:4])
        assert results[1][0] is results[3][0]  # one scan answered them all
        await host.close()

    asyncio.run(body())


def test_reported_luns_data_has_changed_rescans_that_target_and_the_timer_every_one() -> None:
    async def body() -> None:
        host, san = await started_host(interval=None)
        await host._scan(host.targets())
        host.attach(Exports())
        san.luns[T2][5] = "b5"
        t2 = next(s for (t, _p), s in host.pool.sessions.items() if t == T2)
        session = t2.session
        assert session is not None and session.on_unit_attention is not None
        session.on_unit_attention(ASC.POWER_ON_RESET_OR_BUS_DEVICE_RESET_OCCURRED)  # not ours
        session.on_unit_attention(ASC.REPORTED_LUNS_DATA_HAS_CHANGED)
        await until(lambda: "b5" in host.maps, 5, "T2 rescanned after the unit attention")
        await host.close()

        timed, san = await started_host(interval=0.05)
        await timed._scan(timed.targets())
        timed.attach(Exports())
        san.luns[T1][7] = "a7"
        san.luns[T2].pop(0)
        await until(lambda: "a7" in timed.maps and "b0" not in timed.maps, 5, "timer rescans")
        await timed.close()

    asyncio.run(body())
