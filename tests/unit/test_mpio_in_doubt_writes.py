"""A write whose path failed is in doubt: its first try may still run at the target later.

The fake paths here keep what the initiator sent "on the wire" until the test delivers it,
even after the initiator gave up on that session, so a test decides exactly when a failed
command lands at the target, relative to every other step (no sleeps, no timing luck). The
target side is real ``LogicalUnit``s; a login on the same I_T nexus ends the old session
at the target, as session reinstatement does (RFC 7143 §6.3.5): what is still on its wire
is then dropped.
"""

from __future__ import annotations

import asyncio
import os
from typing import cast

import pytest
from tests.support.waits import until

from sanstack.block.device import DeviceIdentity, DeviceNotReady
from sanstack.block.memory import MemoryDevice
from sanstack.initiator.session import CommandResponse, ISCSISession, PathFailed
from sanstack.iscsi.initiator_events import PathFailureKind
from sanstack.mpio.alua_reader import PortGroupReader
from sanstack.mpio.device import MultipathDevice
from sanstack.mpio.path_slot import MultipathOptions
from sanstack.mpio.shared_path import PathListener
from sanstack.scsi.alua import ALUAGroups
from sanstack.scsi.alua_codec import ALUAState
from sanstack.scsi.codes import Opcode
from sanstack.scsi.command import Command, CommandResult, Nexus
from sanstack.scsi.logical_unit import LogicalUnit, TargetInfo

HOST = "iqn.2026-11.org.sanstack:host"
TARGET = "iqn.2026-11.org.sanstack:t"
BS = 512
WRITES = {Opcode.WRITE_10, Opcode.WRITE_16}
READS = {Opcode.READ_10, Opcode.READ_16}


class WireSession:
    """The part of an ISCSISession a map uses. Commands whose opcode is in ``hold`` stay on
    the wire until ``deliver``; ``kill`` fails every waiter with PathFailed (the initiator
    gave up) but leaves the wire as it is."""

    def __init__(self, lu: LogicalUnit, nexus: Nexus) -> None:
        self.lu = lu
        self.nexus = nexus
        self.closed = False
        self.ended_at_target = False
        self.failure: PathFailed | None = None
        self.parameters = None
        self.relative_target_port_id: int | None = None
        self.hold: set[int] = set()
        self.wire: list[Command] = []
        self._waiting: list[asyncio.Future[CommandResponse]] = []
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
        if self.failure is not None:
            raise self.failure
        self._tag += 1
        command = Command(
            self.nexus,
            lun,
            cdb,
            tag=self._tag,
            data_out=bytes(data_out),
            data_in_length=read_length,
        )
        if cdb[0] not in self.hold:
            return _response(await self.lu.execute(command), read_length)
        self.wire.append(command)
        answer: asyncio.Future[CommandResponse] = asyncio.get_running_loop().create_future()
        self._waiting.append(answer)
        return await answer

    def kill(self) -> PathFailed:
        self.failure = PathFailed(PathFailureKind.NOP_TIMEOUT, "fake path went silent")
        self.closed = True
        for answer in self._waiting:
            if not answer.done():
                answer.set_exception(self.failure)
        return self.failure

    async def deliver(self) -> int:
        """What is on the wire reaches the target now and runs there, unless the target
        ended this session meanwhile; how many commands ran."""
        commands, self.wire = self.wire, []
        if self.ended_at_target:
            return 0
        for command in commands:
            await self.lu.execute(command)
        return len(commands)


def _response(result: CommandResult, read_length: int) -> CommandResponse:
    data = bytes(result.data)[:read_length]
    return CommandResponse(result.status, data, result.sense, read_length - len(data))


class WirePath:
    """A shared path whose sessions are ``WireSession``s on one I_T nexus."""

    def __init__(self, name: str, lu: LogicalUnit, tpgt: int) -> None:
        self.name = name
        self.lu = lu
        self.nexus = Nexus(HOST, 0x80_0000_0000 | tpgt, TARGET, tpgt, tpgt)
        self.listeners: list[PathListener] = []
        self.current: WireSession | None = WireSession(lu, self.nexus)
        self.sessions = [self.current]
        self.alua = PortGroupReader(lambda: self.session)

    @property
    def session(self) -> ISCSISession | None:
        return cast(ISCSISession, self.current) if self.current is not None else None

    async def read_alua(self, lun: int, since: float) -> ALUAState | None:
        return await self.alua.state(lun, since)

    def add_listener(self, listener: PathListener) -> None:
        self.listeners.append(listener)

    def remove_listener(self, listener: PathListener) -> None:
        self.listeners.remove(listener)

    def fail(self) -> WireSession:
        """The session fails (a NOP timeout); the old session, its wire still loaded."""
        old = self.current
        assert old is not None
        failure = old.kill()
        self.current = None
        for listener in list(self.listeners):
            listener.path_down(self, failure)
        return old

    def log_in_again(self) -> None:
        """A login on the same nexus: the target ends the old session first."""
        for session in self.sessions:
            session.ended_at_target = True
        self.current = WireSession(self.lu, self.nexus)
        self.sessions.append(self.current)
        for listener in list(self.listeners):
            listener.path_up(self)


def _logical_unit() -> LogicalUnit:
    info = TargetInfo(TARGET, lambda: [0], list, alua=ALUAGroups.one_per_port([1, 2]))
    return LogicalUnit(0, MemoryDevice(2048, identity=DeviceIdentity.from_seed("lun0")), info)


async def _map(wait: float) -> tuple[MultipathDevice, list[WirePath]]:
    lu = _logical_unit()
    paths = [WirePath("p1", lu, 1), WirePath("p2", lu, 2)]
    options = MultipathOptions(checker_interval=0.05, in_doubt_write_wait=wait)
    device = await MultipathDevice.over([(p, 0) for p in paths], options, target_name=TARGET, lun=0)
    return device, paths


def _in_doubt(device: MultipathDevice) -> int:
    return int(device.status().get("in_doubt", 0))


def test_a_write_in_doubt_never_lands_after_a_later_acknowledged_write() -> None:
    """The stress test's "stale or torn data", step by step: the first try of a write is
    held on a path that then fails; the caller, once the write is acknowledged, writes the
    same blocks again; the first try reaches the target at the worst moment."""

    async def body() -> None:
        device, (p1, _p2) = await _map(wait=60.0)  # the nexus's return decides, not time
        old, first, second = (os.urandom(8 * BS) for _ in range(3))
        await device.write(0, old)
        assert p1.current is not None
        p1.current.hold = set(WRITES)  # every I/O goes to p1 first (service-time, by name)

        async def caller() -> None:
            await device.write(0, first)
            await device.write(0, second)

        task = asyncio.create_task(caller())
        await until(lambda: len(p1.sessions[-1].wire) == 1, 5, "the first write on p1's wire")
        dead = p1.fail()
        # Either the map holds the write (the fix) or the caller got both acknowledged
        # through p2 while the first try of ``first`` was still on p1's wire (the bug).
        await until(lambda: task.done() or _in_doubt(device) == 1, 5, "held or acknowledged")
        assert await dead.deliver() == 1  # the first try lands late, on the old nexus
        p1.log_in_again()
        await asyncio.wait_for(task, 5)
        assert await dead.deliver() == 0
        got = bytes(await device.read(0, 8))
        assert got == second, "an acknowledged write was overwritten by an earlier one"
        assert _in_doubt(device) == 0
        await device.close()

    asyncio.run(body())


def test_the_target_drops_a_first_try_that_arrives_after_the_nexus_logged_in_again() -> None:
    async def body() -> None:
        device, (p1, _p2) = await _map(wait=60.0)
        first, second = os.urandom(8 * BS), os.urandom(8 * BS)
        assert p1.current is not None
        p1.current.hold = set(WRITES)
        write = asyncio.create_task(device.write(0, first))
        await until(lambda: len(p1.sessions[-1].wire) == 1, 5, "the write on p1's wire")
        dead = p1.fail()
        await until(lambda: _in_doubt(device) == 1, 5, "the write held")
        # p2 carries other I/O meanwhile: the target still has the old data.
        assert bytes(await device.read(0, 8)) == bytes(8 * BS)
        p1.log_in_again()
        await asyncio.wait_for(write, 5)
        await device.write(0, second)
        assert await dead.deliver() == 0
        assert bytes(await device.read(0, 8)) == second
        await device.close()

    asyncio.run(body())


def test_a_write_in_doubt_on_a_path_that_stays_down_goes_on_after_the_wait() -> None:
    async def body() -> None:
        device, (p1, p2) = await _map(wait=0.2)
        data = os.urandom(8 * BS)
        assert p1.current is not None
        p1.current.hold = set(WRITES)
        write = asyncio.create_task(device.write(8, data))
        await until(lambda: len(p1.sessions[-1].wire) == 1, 5, "the write on p1's wire")
        p1.fail()
        await asyncio.wait_for(write, 5)  # through p2, once the wait is over
        assert _in_doubt(device) == 0
        assert p2.current is not None and bytes(await device.read(8, 8)) == data
        await device.close()

    asyncio.run(body())


def test_a_read_whose_path_failed_is_re_driven_at_once() -> None:
    async def body() -> None:
        device, (p1, _p2) = await _map(wait=60.0)
        data = os.urandom(8 * BS)
        await device.write(0, data)
        assert p1.current is not None
        p1.current.hold = set(READS)
        read = asyncio.create_task(device.read(0, 8))
        await until(lambda: len(p1.sessions[-1].wire) == 1, 5, "the read on p1's wire")
        p1.fail()
        assert bytes(await asyncio.wait_for(read, 5)) == data  # not held for 60 s
        assert _in_doubt(device) == 0
        await device.close()

    asyncio.run(body())


def test_close_ends_a_write_in_doubt() -> None:
    async def body() -> None:
        device, (p1, _p2) = await _map(wait=60.0)
        assert p1.current is not None
        p1.current.hold = set(WRITES)
        write = asyncio.create_task(device.write(0, os.urandom(8 * BS)))
        await until(lambda: len(p1.sessions[-1].wire) == 1, 5, "the write on p1's wire")
        p1.fail()
        await until(lambda: _in_doubt(device) == 1, 5, "the write held")
        await device.close()
        with pytest.raises(DeviceNotReady):
            await asyncio.wait_for(write, 5)
        assert _in_doubt(device) == 0

    asyncio.run(body())
