"""MultipathDevice over paths it does not own, without sockets.

Each fake shared path is a "session" whose commands run on real ``LogicalUnit``s (the
device server, with its persistent reservations per I_T nexus), so a map's failover,
reinstatement and key registration are checked against the SCSI semantics they rely on.
"""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import Iterable
from typing import cast

import pytest
from tests.support.waits import until

from sanstack.block.device import DeviceIdentity
from sanstack.block.memory import MemoryDevice
from sanstack.initiator.lun_device import ReservationConflict
from sanstack.initiator.session import CommandResponse, ISCSISession, PathFailed
from sanstack.iscsi.initiator_events import PathFailureKind
from sanstack.mpio.alua_reader import PortGroupReader
from sanstack.mpio.device import MultipathDevice
from sanstack.mpio.path_slot import MultipathOptions
from sanstack.mpio.shared_path import PathListener
from sanstack.scsi.alua import ALUAGroups, groups_of
from sanstack.scsi.alua_codec import ALUAState
from sanstack.scsi.codes import MaintenanceIn, Opcode
from sanstack.scsi.command import Command, CommandResult, Nexus
from sanstack.scsi.logical_unit import LogicalUnit, TargetInfo
from sanstack.scsi.pr_codec import PRType

HOST = "iqn.2026-11.org.sanstack:host"
TARGET = "iqn.2026-11.org.sanstack:t"
BS = 512


class LunSession:
    """The part of an ISCSISession a map uses, over in-memory logical units; ``kill``
    ends it as a dead connection would: every command in flight raises PathFailed."""

    def __init__(self, luns: dict[int, LogicalUnit], nexus: Nexus) -> None:
        self.luns = luns
        self.nexus = nexus
        self.closed = False
        self.failure: PathFailed | None = None
        self.parameters = None
        self.relative_target_port_id: int | None = None
        self.opcodes: list[int] = []
        self.rtpgs = 0
        self.held = asyncio.Event()  # cleared: commands wait (in flight) until it is set
        self.held.set()
        self._killed = asyncio.Event()
        self._tag = 0

    async def command(
        self,
        lun: int,
        cdb: bytes,
        *,
        data_out: bytes | bytearray | memoryview = b"",
        read_length: int = 0,
        timeout: float | None = None,  # noqa: ASYNC109 - the signature of ISCSISession's
    ) -> CommandResponse:
        if self.closed:
            assert self.failure is not None
            raise self.failure
        self.opcodes.append(cdb[0])
        if (
            cdb[0] == Opcode.MAINTENANCE_IN
            and cdb[1] & 0x1F == MaintenanceIn.REPORT_TARGET_PORT_GROUPS
        ):
            self.rtpgs += 1
        self._tag += 1
        command = Command(
            self.nexus,
            lun,
            cdb,
            tag=self._tag,
            data_out=bytes(data_out),
            data_in_length=read_length,
        )
        running = asyncio.ensure_future(self._execute(command))
        killed = asyncio.ensure_future(self._killed.wait())
        await asyncio.wait({running, killed}, return_when=asyncio.FIRST_COMPLETED)
        killed.cancel()
        if not running.done():
            running.cancel()
        if self.failure is not None:  # killed while the command was in flight
            raise self.failure
        result = running.result()
        data = bytes(result.data)[:read_length]
        return CommandResponse(result.status, data, result.sense, read_length - len(data))

    async def _execute(self, command: Command) -> CommandResult:
        await self.held.wait()
        return await self.luns[command.lun].execute(command)

    def kill(self) -> PathFailed:
        self.failure = PathFailed(PathFailureKind.CONNECTION_LOST, "fake cable pulled")
        self.closed = True
        self._killed.set()
        return self.failure


class FakePath:
    """A shared path: a session (the same nexus after every re-login) and its listeners."""

    def __init__(
        self, name: str, luns: dict[int, LogicalUnit], tpgt: int, host: str = HOST
    ) -> None:
        self.name = name
        self.luns = luns
        self.nexus = Nexus(host, 0x80_0000_0000 | tpgt, TARGET, tpgt, tpgt)
        self.listeners: list[PathListener] = []
        self.current: LunSession | None = LunSession(luns, self.nexus)
        self.sessions = [self.current]
        self.alua = PortGroupReader(lambda: self.session)

    async def read_alua(self, lun: int, since: float) -> ALUAState | None:
        return await self.alua.state(lun, since)

    def rtpg_sent(self) -> int:
        """REPORT TARGET PORT GROUPS commands sent on every session of this path."""
        return sum(s.rtpgs for s in self.sessions)

    @property
    def session(self) -> ISCSISession | None:
        return cast(ISCSISession, self.current) if self.current is not None else None

    def add_listener(self, listener: PathListener) -> None:
        self.listeners.append(listener)

    def remove_listener(self, listener: PathListener) -> None:
        self.listeners.remove(listener)

    def fail(self) -> None:
        assert self.current is not None
        failure = self.current.kill()
        self.current = None
        for listener in list(self.listeners):
            listener.path_down(self, failure)

    def restore(self) -> LunSession:
        self.current = LunSession(self.luns, self.nexus)
        self.sessions.append(self.current)
        for listener in list(self.listeners):
            listener.path_up(self)
        return self.current


def logical_units(count: int, paths: int = 2) -> dict[int, LogicalUnit]:
    def nexuses() -> Iterable[Nexus]:
        return []

    info = TargetInfo(
        TARGET,
        lambda: list(range(count)),
        nexuses,
        alua=ALUAGroups.one_per_port(list(range(1, paths + 1))),
    )
    return {
        n: LogicalUnit(n, MemoryDevice(2048, identity=DeviceIdentity.from_seed(f"lun{n}")), info)
        for n in range(count)
    }


OPTIONS = MultipathOptions(checker_interval=0.05)


async def open_maps(paths: list[FakePath], count: int) -> list[MultipathDevice]:
    return [
        await MultipathDevice.over([(p, n) for p in paths], OPTIONS, target_name=TARGET, lun=n)
        for n in range(count)
    ]


def states(device: MultipathDevice) -> list[str]:
    return [str(p["state"]) for p in device.status()["paths"]]


def test_a_shared_path_down_fails_it_in_every_map_at_once_and_up_brings_it_back() -> None:
    async def body() -> None:
        luns = logical_units(8)
        paths = [FakePath("p1", luns, 1), FakePath("p2", luns, 2)]
        maps = await open_maps(paths, 8)
        assert all(states(m) == ["active", "active"] for m in maps)
        assert len({m.identity.naa for m in maps}) == 8
        data = {m.lun: os.urandom(8 * BS) for m in maps}
        await asyncio.gather(*(m.write(0, data[m.lun]) for m in maps))
        paths[0].fail()
        # Synchronously: no map may pick the dead path after the notice.
        assert all(states(m) == ["failed", "active"] for m in maps)
        for m in maps:
            assert bytes(await m.read(0, 8)) == data[m.lun]
        paths[0].restore()
        await until(lambda: all(states(m) == ["active", "active"] for m in maps), 5, "back")
        assert len(paths[0].listeners) == 8
        for m in maps:
            await m.close()
        assert paths[0].listeners == paths[1].listeners == []

    asyncio.run(body())


def test_io_in_flight_on_a_failing_path_is_re_driven_on_the_other() -> None:
    async def body() -> None:
        luns = logical_units(1)
        paths = [FakePath("p1", luns, 1), FakePath("p2", luns, 2)]
        (device,) = await open_maps(paths, 1)
        written: dict[int, bytes] = {}
        stop = asyncio.Event()

        async def load(seed: int) -> int:
            done = 0
            while not stop.is_set():
                lba = (seed * 7 + done) % 64 * 8
                block = os.urandom(8 * BS)
                await device.write(lba, block)
                written[lba] = block
                assert bytes(await device.read(lba, 8)) == written[lba]
                done += 1
            return done

        workers = [asyncio.create_task(load(n)) for n in range(4)]
        for _ in range(3):
            await asyncio.sleep(0.02)
            paths[0].fail()
            await asyncio.sleep(0.02)
            paths[0].restore()
        await until(lambda: states(device) == ["active", "active"], 5, "path 1 back")
        stop.set()
        done = await asyncio.wait_for(asyncio.gather(*workers), 10)
        assert sum(done) > 20
        for lba, block in written.items():
            assert bytes(await device.read(lba, 8)) == block
        await device.close()

    asyncio.run(body())


def test_a_returning_path_is_registered_with_the_maps_key_before_it_carries_io() -> None:
    async def body() -> None:
        luns = logical_units(2)
        paths = [FakePath("p1", luns, 1), FakePath("p2", luns, 2)]
        maps = await open_maps(paths, 2)
        await maps[0].pr_register(0xAB)
        assert sorted((await maps[0].pr_read_keys()).reservation_keys) == [0xAB, 0xAB]
        paths[0].fail()
        await maps[0].pr_register(0xCD)  # changed while path 1 is down
        session = paths[0].restore()
        await until(lambda: all(states(m) == ["active", "active"] for m in maps), 5, "back")
        assert sorted((await maps[0].pr_read_keys()).reservation_keys) == [0xCD, 0xCD]
        # Map 0 sent its PR OUT on the new session before any I/O; map 1 (no key) none.
        await asyncio.gather(*(m.write(0, bytes(8 * BS)) for m in maps for _ in range(4)))
        io = {Opcode.READ_16, Opcode.WRITE_16}
        first_io = next(i for i, op in enumerate(session.opcodes) if op in io)
        assert Opcode.PERSISTENT_RESERVE_OUT in session.opcodes[:first_io]
        assert session.opcodes.count(Opcode.PERSISTENT_RESERVE_OUT) == 1
        # The unkeyed map is unaffected by the other's registration.
        assert (await maps[1].pr_read_keys()).reservation_keys == ()
        for m in maps:
            await m.close()

    asyncio.run(body())


OTHER_HOST = "iqn.2026-11.org.sanstack:other-host"
WERO = PRType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY


def test_a_key_another_host_removed_is_not_registered_again_on_a_returning_path() -> None:
    """Fenced while its paths were away (PREEMPT AND ABORT by another node): the returning
    paths must not bring the key back, or the fenced host's queued writes would land."""

    async def body() -> None:
        luns = logical_units(1)
        mine = [FakePath("p1", luns, 1), FakePath("p2", luns, 2)]
        (device,) = await open_maps(mine, 1)
        (other,) = await open_maps([FakePath("q1", luns, 1, host=OTHER_HOST)], 1)
        lost: list[int] = []
        device.on_key_lost = lost.append
        await device.pr_register(0xAB)
        await device.pr_reserve(WERO)
        await other.pr_register(0xCD)
        for path in mine:
            path.fail()
        await other.pr_preempt(0xAB, WERO, abort=True)
        for path in mine:
            path.restore()
        await until(lambda: states(device) == ["active", "active"], 5, "both paths back")
        assert (await other.pr_read_keys()).reservation_keys == (0xCD,)
        assert lost == [0xAB] and device.registration.key == 0
        with pytest.raises(ReservationConflict):
            await device.write(0, bytes(BS))
        # An explicit REGISTER (a node that rejoined with quorum) brings it back.
        await device.pr_register(0xAB)
        assert sorted((await other.pr_read_keys()).reservation_keys) == [0xAB, 0xAB, 0xCD]
        for m in (device, other):
            await m.close()

    asyncio.run(body())


def test_a_kept_key_is_held_again_only_while_the_target_still_has_it() -> None:
    async def body() -> None:
        luns = logical_units(1)
        mine = [FakePath("p1", luns, 1), FakePath("p2", luns, 2)]
        (device,) = await open_maps(mine, 1)
        (other,) = await open_maps([FakePath("q1", luns, 1, host=OTHER_HOST)], 1)
        await device.pr_register(0xAB)
        await device.close()
        (again,) = await open_maps(mine, 1)  # a restart: the key comes from the state dir
        assert await again.hold_again(0xAB)
        assert (await other.pr_read_keys()).reservation_keys == (0xAB, 0xAB)
        await other.pr_register(0xCD)
        await other.pr_preempt(0xAB, WERO)
        await again.close()
        (third,) = await open_maps(mine, 1)
        assert not await third.hold_again(0xAB)
        assert third.registration.key == 0
        assert (await other.pr_read_keys()).reservation_keys == (0xCD,)
        for m in (third, other):
            await m.close()

    asyncio.run(body())


def test_a_path_to_another_device_is_not_used() -> None:
    async def body() -> None:
        luns = logical_units(2)
        paths = [FakePath("p1", luns, 1), FakePath("p2", luns, 2)]
        # LUN 0 behind p1 and LUN 1 behind p2: not the same device.
        device = await MultipathDevice.over(
            [(paths[0], 0), (paths[1], 1)], OPTIONS, target_name=TARGET, lun=0
        )
        await until(lambda: states(device) == ["active", "removed"], 5, "p2 removed")
        await device.close()

    asyncio.run(body())


def test_no_path_up_refuses_the_map_and_close_ends_every_task() -> None:
    async def body() -> None:
        before = len(asyncio.all_tasks())
        luns = logical_units(1)
        path = FakePath("p1", luns, 1)
        path.fail()
        with pytest.raises(Exception, match="no path"):
            await MultipathDevice.over([(path, 0)], OPTIONS, target_name=TARGET, lun=0)
        assert path.listeners == []
        path.restore()
        (device,) = await open_maps([path], 1)
        path.fail()
        queued = asyncio.create_task(device.read(0, 1))
        await until(lambda: device.queued == 1, 5, "the read waits for a path")
        await device.close()
        with pytest.raises(Exception, match="closed"):
            await queued
        assert len(asyncio.all_tasks()) <= before

    asyncio.run(body())


def test_shared_paths_are_added_to_and_taken_from_a_map_with_io_in_flight() -> None:
    async def body() -> None:
        luns = logical_units(2, paths=3)
        p1, p2, p3 = FakePath("p1", luns, 1), FakePath("p2", luns, 2), FakePath("p3", luns, 3)
        device = await MultipathDevice.over([(p1, 0)], OPTIONS, target_name=TARGET, lun=0)
        await device.pr_register(0xAB)
        # A new portal's session reaching the map: registered with the map's key, then used.
        await device.add_shared_path(p2, 0)
        assert states(device) == ["active", "active"]
        assert p2.listeners == [device]
        assert sorted((await device.pr_read_keys()).reservation_keys) == [0xAB, 0xAB]
        with pytest.raises(ValueError, match="already"):
            await device.add_shared_path(p2, 0)
        # A path to another device (LUN 1 behind p3) is refused; the map is as it was.
        with pytest.raises(ValueError, match="not this map's device"):
            await device.add_shared_path(p3, 1)
        assert [p["path"] for p in device.status()["paths"]] == ["p1", "p2"]
        assert p3.listeners == []
        # Taken away with I/O in flight on it: that I/O is not lost. Its session fails
        # after the path left, so the I/O ends with PathFailed and is re-driven on p2.
        assert p1.current is not None
        p1.current.held.clear()
        data = os.urandom(8 * BS)
        writes = [asyncio.create_task(device.write(8 * n, data)) for n in range(8)]
        await until(lambda: device.status()["paths"][0]["in_flight"] > 0, 5, "I/O on p1")
        await device.remove_shared_path(p1, 0)
        assert [p["path"] for p in device.status()["paths"]] == ["p2"]
        assert p1.listeners == []
        with pytest.raises(ValueError, match="not a path"):
            await device.remove_shared_path(p1, 0)
        p1.fail()
        await asyncio.wait_for(asyncio.gather(*writes), 5)
        for n in range(8):
            assert bytes(await device.read(8 * n, 8)) == data
        assert states(device) == ["active"]
        # Added back while its session is down: failed until the session is up again.
        await device.add_shared_path(p1, 0)
        assert states(device) == ["active", "failed"]
        p1.restore()
        await until(lambda: states(device) == ["active", "active"], 5, "p1 back")
        assert sorted((await device.pr_read_keys()).reservation_keys) == [0xAB, 0xAB]
        await device.close()
        assert p1.listeners == p2.listeners == p3.listeners == []

    asyncio.run(body())


def alua_of(device: MultipathDevice) -> list[tuple[str, bool]]:
    return [(str(p["alua"]), bool(p["active_group"])) for p in device.status()["paths"]]


def test_alua_is_read_once_per_session_per_interval_for_every_map_on_it() -> None:
    """64 maps over two shared sessions, checking every 50 ms: one REPORT TARGET PORT GROUPS
    per session per interval (not one per map per path), and a state change still reaches
    every map within a few intervals."""

    async def body() -> None:
        loop = asyncio.get_running_loop()
        maps_count, interval = 64, 0.05
        luns = logical_units(maps_count)
        paths = [FakePath("p1", luns, 1), FakePath("p2", luns, 2)]
        options = MultipathOptions(checker_interval=interval)
        maps = [
            await MultipathDevice.over([(p, n) for p in paths], options, target_name=TARGET, lun=n)
            for n in range(maps_count)
        ]
        started, sent = loop.time(), [p.rtpg_sent() for p in paths]
        await until(
            lambda: all(p.rtpg_sent() >= s + 10 for p, s in zip(paths, sent, strict=True)),
            10,
            "ten intervals of reads",
        )
        elapsed = loop.time() - started
        for path, before in zip(paths, sent, strict=True):
            # One read per interval, plus one that was in flight at either end.
            assert path.rtpg_sent() - before <= elapsed / interval + 2, path.name
        groups_of(luns[0]).set_state(1, ALUAState.STANDBY, explicit=False)
        standby = [("standby", False), ("active_optimized", True)]
        await until(lambda: all(alua_of(m) == standby for m in maps), 5, "p1 standby in all")
        for m in maps:
            await m.close()

    asyncio.run(body())


def test_a_not_ready_answer_is_read_once_for_every_map_on_the_session() -> None:
    """No periodic checks: the maps' opening reads RTPG once per session, and a port that
    went standby, seen by every map's I/O at once, is read again at most twice."""

    async def body() -> None:
        maps_count = 64
        luns = logical_units(maps_count)
        paths = [FakePath("p1", luns, 1), FakePath("p2", luns, 2)]
        options = MultipathOptions(checker_interval=3600, selector="round-robin")
        maps = [
            await MultipathDevice.over([(p, n) for p in paths], options, target_name=TARGET, lun=n)
            for n in range(maps_count)
        ]
        assert [p.rtpg_sent() for p in paths] == [1, 1]
        groups_of(luns[0]).set_state(1, ALUAState.STANDBY, explicit=False)
        for _ in range(2):  # round-robin: one of the two writes of each map goes to p1
            await asyncio.gather(*(m.write(0, bytes(8 * BS)) for m in maps))
        standby = [("standby", False), ("active_optimized", True)]
        await until(lambda: all(alua_of(m) == standby for m in maps), 5, "p1 standby in all")
        assert paths[0].rtpg_sent() <= 1 + 2
        assert paths[1].rtpg_sent() == 1
        for m in maps:
            await m.close()

    asyncio.run(body())


def test_an_alua_read_that_fails_unexpectedly_is_logged_not_left_unretrieved(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken:
        closed = False
        relative_target_port_id = 1

        async def command(self, *_args: object, **_kwargs: object) -> CommandResponse:
            raise RuntimeError("torn down under the read")

    async def body() -> None:
        loop = asyncio.get_running_loop()
        unretrieved: list[object] = []
        loop.set_exception_handler(lambda _loop, context: unretrieved.append(context))
        reader = PortGroupReader(lambda: cast(ISCSISession, Broken()))
        assert await reader.state(0, 0.0) is None
        await reader.close()
        gc.collect()
        assert unretrieved == []

    with caplog.at_level("WARNING", logger="sanstack.mpio.alua_reader"):
        asyncio.run(body())
    assert "torn down under the read" in caplog.text
