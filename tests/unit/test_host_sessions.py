"""The host's bookkeeping without sockets: stable ISIDs and the shared sessions' notices."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, cast

import pytest
from tests.support.waits import until

from sanstack.edge.state_file import StateFileError, load_state, save_state
from sanstack.host.isids import IsidStore, IsidTable, make_isid
from sanstack.host.sessions import (
    SessionOptions,
    SessionPool,
    SessionState,
    SharedSession,
    reconnect_delay,
)
from sanstack.initiator.session import ISCSISession, LoginRefused, PathFailed
from sanstack.iscsi.initiator_events import PathFailureKind
from sanstack.mpio.path_slot import PathAddress
from sanstack.mpio.shared_path import SharedPath

HOST = "iqn.2026-11.org.sanstack:host-a"
T1 = "iqn.2026-11.org.sanstack:t1"
T2 = "iqn.2026-11.org.sanstack:t2"
P1 = PathAddress("127.0.0.1", 3260)
P2 = PathAddress("127.0.0.1", 3261)

# -- ISIDs ----------------------------------------------------------------------------------


def test_isid_has_the_random_type_and_its_fields() -> None:
    isid = make_isid(0xABCDEF, 0x0102)
    assert isid == 0x80_ABCDEF_0102
    assert isid >> 46 == 0b10  # T: random
    assert (isid >> 40) & 0x3F == 0  # A: reserved
    with pytest.raises(ValueError):
        make_isid(1 << 24, 1)


def test_isids_are_stable_across_a_reload_of_the_state_dir(tmp_path: Path) -> None:
    store = IsidStore(tmp_path)
    first = {
        (t, p): store.isid(HOST, t, str(p)) for t in (T1, T2) for p in (P1, P2)
    }  # fmt: skip
    assert store.isid(HOST, T1, str(P1)) == first[(T1, P1)]
    reloaded = IsidStore(tmp_path)
    # In another order, after a restart: the same ISID for each (host, target, portal).
    for key in reversed(list(first)):
        assert reloaded.isid(HOST, key[0], str(key[1])) == first[key]
    assert not list(tmp_path.glob(".*.tmp"))


def test_isids_never_collide_within_a_host() -> None:
    store = IsidStore(None)  # the same table as on disk, without 600 fsyncs
    isids = [store.isid(HOST, f"{T1}-{n}", str(p)) for n in range(300) for p in (P1, P2)]
    assert len(set(isids)) == len(isids) == 600
    assert store.discovery_isid(HOST) not in isids
    assert {i >> 16 for i in isids} == {isids[0] >> 16}  # one random part per host
    other = store.isid("iqn.2026-11.org.sanstack:host-b", T1, str(P1))
    assert other not in isids


def test_a_new_isid_is_on_disk_before_it_is_handed_out(tmp_path: Path) -> None:
    store = IsidStore(tmp_path)
    isid = store.isid(HOST, T1, str(P1))
    state = load_state(tmp_path / "isids.json")
    assert state is not None
    table = IsidTable.from_dict(state, lambda: 0)
    assert table.isid(HOST, T1, str(P1)) == (isid, False)


def test_a_damaged_or_inconsistent_state_file_is_refused(tmp_path: Path) -> None:
    store = IsidStore(tmp_path)
    store.isid(HOST, T1, str(P1))
    path = tmp_path / "isids.json"
    raw = json.loads(path.read_text())
    raw["state"] = raw["state"].replace("sessions", "sessionz")
    path.write_text(json.dumps(raw))
    with pytest.raises(StateFileError, match="checksum"):
        IsidStore(tmp_path)
    twice = {"target": T1, "portal": str(P1), "qualifier": 1}
    save_state(path, {"hosts": {HOST: {"random": 5, "sessions": [twice, {**twice, "target": T2}]}}})
    with pytest.raises(StateFileError, match="unusable ISID state"):
        IsidStore(tmp_path)


def test_without_a_state_dir_isids_live_in_memory() -> None:
    store = IsidStore(None, random_source=lambda: 0x123456)
    assert store.isid(HOST, T1, str(P1)) == 0x80_123456_0001
    assert store.isid(HOST, T1, str(P2)) == 0x80_123456_0002


# -- shared sessions ------------------------------------------------------------------------


class FakeSession:
    """What SharedSession uses of an ISCSISession."""

    def __init__(self, tsih: int) -> None:
        self.tsih = tsih
        self.parameters = None
        self.failure: PathFailed | None = None
        self.closed = False
        self.logged_out = False
        self.on_closed: Any = None

    def fail(self, kind: PathFailureKind) -> None:
        self.failure = PathFailed(kind, f"fake {kind.value}")
        self.closed = True
        callback, self.on_closed = self.on_closed, None
        if callback is not None:
            callback(self.failure)

    async def logout(self) -> None:
        self.logged_out = True
        self.fail(PathFailureKind.CLOSED)

    def abort(self, reason: str = "") -> None:
        self.fail(PathFailureKind.CLOSED)


class FakeTarget:
    """Logins succeed unless ``refuse`` says how many to refuse next; records each login."""

    def __init__(self) -> None:
        self.logins: list[tuple[str, int]] = []
        self.sessions: list[FakeSession] = []
        self.refuse = 0

    async def connect(self, shared: SharedSession) -> ISCSISession:
        await asyncio.sleep(0)
        self.logins.append((shared.name, shared.isid))
        if self.refuse:
            self.refuse -= 1
            raise PathFailed(PathFailureKind.CONNECTION_LOST, "refused by the fake")
        session = FakeSession(len(self.logins))
        self.sessions.append(session)
        return cast(ISCSISession, session)


def port(path: SharedPath) -> int:
    assert isinstance(path, SharedSession)
    return path.portal.port


class Recorder:
    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log

    def path_down(self, path: SharedPath, failure: PathFailed) -> None:
        self.log.append(f"{self.name} down {port(path)} {failure.kind.value}")

    def path_up(self, path: SharedPath) -> None:
        self.log.append(f"{self.name} up {port(path)}")


class Broken(Recorder):
    def path_down(self, path: SharedPath, failure: PathFailed) -> None:
        raise RuntimeError("a listener's bug")


FAST = SessionOptions(reconnect_min=0.01, reconnect_max=0.05)


def _pool(target: FakeTarget, tmp_path: Path) -> SessionPool:
    return SessionPool(HOST, IsidStore(tmp_path), FAST, connector=target.connect)


def test_one_session_per_target_and_portal_logged_in_once(tmp_path: Path) -> None:
    async def body() -> None:
        target = FakeTarget()
        pool = _pool(target, tmp_path)
        first = pool.session(T1, P1)
        assert pool.session(T1, P1) is first  # a second LUN asks for the same path
        second = pool.session(T1, P2)
        assert await first.wait_up(1) and await second.wait_up(1)
        assert len(target.logins) == 2
        assert first.isid != second.isid
        assert [s["state"] for s in pool.status()] == ["up", "up"]
        await pool.close()
        assert all(s.logged_out for s in target.sessions)
        assert [s["state"] for s in pool.status()] == ["closed", "closed"]

    asyncio.run(body())


def test_a_failure_tells_every_listener_down_at_once_then_up_with_the_same_isid(
    tmp_path: Path,
) -> None:
    async def body() -> None:
        target = FakeTarget()
        pool = _pool(target, tmp_path)
        shared = pool.session(T1, P1)
        log: list[str] = []
        listeners = [Recorder(f"map{n}", log) for n in range(3)]
        for listener in listeners:
            shared.add_listener(listener)
        shared.add_listener(Broken("broken", log))
        assert await shared.wait_up(1)
        assert log == ["map0 up 3260", "map1 up 3260", "map2 up 3260", "broken up 3260"]
        log.clear()
        target.refuse = 2  # two logins fail before one succeeds: backoff, still bounded
        target.sessions[-1].fail(PathFailureKind.CONNECTION_LOST)
        # Synchronously, in subscription order, before anything else runs; the broken
        # listener does not keep the others from hearing.
        assert log == [f"map{n} down 3260 connection-lost" for n in range(3)]
        assert shared.state is SessionState.DOWN and shared.session is None
        await until(lambda: shared.state is SessionState.UP, 2, "logged in again")
        assert log[3:] == [f"map{n} up 3260" for n in range(3)] + ["broken up 3260"]
        assert {isid for _, isid in target.logins} == {shared.isid}  # the same nexus
        assert len(target.logins) == 4
        assert shared.failures == 1 and shared.logins == 2
        await pool.close()

    asyncio.run(body())


def test_close_tells_listeners_down_once_and_ends_every_task(tmp_path: Path) -> None:
    async def body() -> None:
        before = len(asyncio.all_tasks())
        target = FakeTarget()
        target.refuse = 1000  # one session never logs in: close ends its retries too
        pool = _pool(target, tmp_path)
        never = pool.session(T1, P1)
        assert not await never.wait_up(0.1)
        target.refuse = 0
        log: list[str] = []
        up = pool.session(T2, P1)
        up.add_listener(Recorder("map", log))
        assert await up.wait_up(1)
        await pool.close()
        assert log == ["map up 3260", "map down 3260 closed"]
        assert len(asyncio.all_tasks()) <= before
        with pytest.raises(RuntimeError):
            pool.session(T1, P2)

    asyncio.run(body())


def test_login_refused_is_retried_with_backoff() -> None:
    assert reconnect_delay(0, FAST) == 0
    assert [reconnect_delay(n, SessionOptions()) for n in range(1, 7)] == [
        0.1, 0.2, 0.4, 0.8, 1.6, 2.0,
    ]  # fmt: skip

    async def body() -> None:
        refusals = [0]

        async def refuse(shared: SharedSession) -> ISCSISession:
            refusals[0] += 1
            raise LoginRefused(0x0201, "not allowed", None)

        shared = SharedSession(T1, P1, initiator_name=HOST, isid=1, options=FAST, connector=refuse)
        shared.start()
        await until(lambda: refusals[0] >= 3, 2, "three attempts")
        assert shared.state in (SessionState.DOWN, SessionState.LOGGING_IN)
        assert shared.last_failure is not None and "not allowed" in shared.last_failure
        await shared.close()

    asyncio.run(body())
