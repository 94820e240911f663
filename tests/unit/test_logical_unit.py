"""The device server's own rules: error mapping, D_SENSE, task management, unit attentions,
and where persistent reservations are stored."""

from __future__ import annotations

import asyncio
import functools
import struct
from pathlib import Path

import pytest

from sanstack.block.device import DeviceIdentity, DeviceNotReady, MediumError, SpaceExhausted
from sanstack.block.memory import MemoryDevice
from sanstack.edge.state_file import StateFileError, load_state, save_state
from sanstack.scsi.codes import ASC, SenseKey, Status
from sanstack.scsi.command import Command, CommandResult, Nexus
from sanstack.scsi.logical_unit import LogicalUnit, TargetInfo, TaskAborted
from sanstack.scsi.pr import PersistentReservations
from sanstack.scsi.pr_codec import PROutCdb, PROutParameters, PROutServiceAction
from sanstack.scsi.sense import parse_sense
from sanstack.scsi.unknown_lun import execute_without_lun
from sanstack.target.model import Portal, PortalGroup, Target
from sanstack.target.state_store import ReservationFile

A = Nexus("iqn.2026-11.org.sanstack:a", 1, "iqn.2026-11.org.sanstack:t", 1)
B = Nexus("iqn.2026-11.org.sanstack:b", 2, "iqn.2026-11.org.sanstack:t", 1)


def read10(lba: int = 0, blocks: int = 1) -> bytes:
    return struct.pack(">BBIBHB", 0x28, 0, lba, 0, blocks, 0)


def write10(lba: int = 0, blocks: int = 1) -> bytes:
    return struct.pack(">BBIBHB", 0x2A, 0, lba, 0, blocks, 0)


VERIFY10_BYTCHK = struct.pack(">BBIBHB", 0x2F, 0x02, 0, 0, 1, 0)
TUR = bytes(6)


class FailingDevice(MemoryDevice):
    """Raises a chosen error from reads or writes."""

    def __init__(self, error: Exception, *, on_write: bool) -> None:
        super().__init__(64)
        self.error = error
        self.on_write = on_write

    async def read(self, lba: int, count: int) -> bytes:
        if not self.on_write:
            raise self.error
        return await super().read(lba, count)

    async def write(self, lba: int, data: bytes | memoryview) -> None:
        if self.on_write:
            raise self.error
        await super().write(lba, data)


class SlowDevice(MemoryDevice):
    """Reads wait until released, so a command can be aborted while it runs."""

    def __init__(self) -> None:
        super().__init__(64)
        self.release = asyncio.Event()

    async def read(self, lba: int, count: int) -> bytes:
        await self.release.wait()
        return await super().read(lba, count)


def unit(device: MemoryDevice) -> LogicalUnit:
    return LogicalUnit(
        0, device, TargetInfo("iqn.2026-11.org.sanstack:t", lambda: [0], lambda: [A, B])
    )


def run(lu: LogicalUnit, cdb: bytes, nexus: Nexus = A, data_out: bytes = b"") -> CommandResult:
    command = Command(nexus, 0, cdb, tag=1, data_out=data_out, data_in_length=512)
    return asyncio.run(lu.execute(command))


def sense_of(result: CommandResult) -> tuple[SenseKey, int]:
    key, asc, ascq = parse_sense(result.sense)
    return key, asc << 8 | ascq


@pytest.mark.parametrize(
    ("error", "on_write", "cdb", "expected"),
    [
        (MediumError("bad"), False, read10(), (SenseKey.MEDIUM_ERROR, ASC.UNRECOVERED_READ_ERROR)),
        (MediumError("bad", write=True), True, write10(), (SenseKey.MEDIUM_ERROR, ASC.WRITE_ERROR)),
        # VERIFY carries Data-Out but fails reading the medium: a read error, not a write one.
        (MediumError("bad"), False, VERIFY10_BYTCHK,
         (SenseKey.MEDIUM_ERROR, ASC.UNRECOVERED_READ_ERROR)),
        (SpaceExhausted("full"), True, write10(),
         (SenseKey.DATA_PROTECT, ASC.SPACE_ALLOCATION_FAILED_WRITE_PROTECT)),
        (DeviceNotReady("gone"), False, read10(),
         (SenseKey.NOT_READY, ASC.LOGICAL_UNIT_NOT_READY_CAUSE_NOT_REPORTABLE)),
        (RuntimeError("a bug"), False, read10(),
         (SenseKey.HARDWARE_ERROR, ASC.INTERNAL_TARGET_FAILURE)),
    ],
)  # fmt: skip
def test_device_errors_become_sense(
    error: Exception, on_write: bool, cdb: bytes, expected: tuple[SenseKey, ASC]
) -> None:
    lu = unit(FailingDevice(error, on_write=on_write))
    result = run(lu, cdb, data_out=bytes(512) if cdb[0] != 0x28 else b"")
    assert result.status == Status.CHECK_CONDITION
    assert sense_of(result) == expected


def test_d_sense_switches_every_check_condition_to_descriptor_format() -> None:
    lu = unit(MemoryDevice(64))
    lu.mode.d_sense = True
    result = run(lu, read10(lba=1000))
    assert result.sense[0] == 0x72
    assert sense_of(result) == (SenseKey.ILLEGAL_REQUEST, ASC.LBA_OUT_OF_RANGE)


def test_unknown_opcode_and_unknown_service_action() -> None:
    lu = unit(MemoryDevice(64))
    assert sense_of(run(lu, bytes([0xC7]) + bytes(9)))[1] == ASC.INVALID_COMMAND_OPERATION_CODE
    # SERVICE ACTION IN(16) exists; service action 0x1F does not.
    assert sense_of(run(lu, bytes([0x9E, 0x1F]) + bytes(14)))[1] == ASC.INVALID_FIELD_IN_CDB


def test_unit_attention_is_reported_once_then_the_command_runs() -> None:
    lu = unit(MemoryDevice(64))
    lu.establish_unit_attention(ASC.CAPACITY_DATA_HAS_CHANGED)
    first = run(lu, TUR)
    assert sense_of(first) == (SenseKey.UNIT_ATTENTION, ASC.CAPACITY_DATA_HAS_CHANGED)
    assert run(lu, TUR).status == Status.GOOD
    assert sense_of(run(lu, TUR, nexus=B))[0] == SenseKey.UNIT_ATTENTION
    # INQUIRY passes through a pending unit attention (SAM-5 §5.14).
    lu.establish_unit_attention(ASC.MODE_PARAMETERS_CHANGED)
    assert run(lu, bytes([0x12, 0, 0, 0, 36, 0])).status == Status.GOOD
    assert sense_of(run(lu, TUR))[1] == ASC.MODE_PARAMETERS_CHANGED


def test_abort_task_ends_a_running_command_with_task_aborted() -> None:
    async def body() -> None:
        lu = unit(SlowDevice())
        command = Command(A, 0, read10(), tag=9, data_in_length=512)
        task = asyncio.ensure_future(lu.execute(command))
        await asyncio.sleep(0)
        assert lu.task_exists(A, 9)
        victims = lu.abort_task(A, 9)
        assert victims == [task]
        with pytest.raises(TaskAborted) as aborted:
            await task
        assert aborted.value.report_status is False
        assert not lu.task_exists(A, 9)

    asyncio.run(body())


def test_clear_task_set_from_another_nexus_reports_per_tas() -> None:
    async def body(tas: bool) -> tuple[bool, ASC | None]:
        device = SlowDevice()
        lu = unit(device)
        lu.mode.tas = tas
        task = asyncio.ensure_future(lu.execute(Command(A, 0, read10(), tag=1)))
        await asyncio.sleep(0)
        lu.clear_task_set(B)
        with pytest.raises(TaskAborted) as aborted:
            await task
        return aborted.value.report_status, lu.pop_unit_attention(A)

    assert asyncio.run(body(tas=True)) == (True, None)
    assert asyncio.run(body(tas=False)) == (False, ASC.COMMANDS_CLEARED_BY_ANOTHER_INITIATOR)


def test_a_teardown_cancellation_is_not_an_abort() -> None:
    async def body() -> None:
        lu = unit(SlowDevice())
        task = asyncio.ensure_future(lu.execute(Command(A, 0, read10(), tag=1)))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(body())


def test_logical_unit_reset_drops_reservation_and_sets_unit_attention() -> None:
    lu = unit(MemoryDevice(64))
    lu.scsi2_reservation = B
    lu.logical_unit_reset(A)
    assert not lu.scsi2_reservation
    assert lu.pop_unit_attention(A) == ASC.BUS_DEVICE_RESET_FUNCTION_OCCURRED
    assert lu.pop_unit_attention(B) == ASC.BUS_DEVICE_RESET_FUNCTION_OCCURRED


def test_commands_to_a_lun_that_does_not_exist() -> None:
    target = Target("iqn.2026-11.org.sanstack:t", [PortalGroup(1, [Portal("127.0.0.1", 3260)])])
    target.add_lun(0, MemoryDevice(64))

    def ask(cdb: bytes) -> CommandResult:
        return asyncio.run(execute_without_lun(target, Command(A, 7, cdb)))

    inquiry = ask(bytes([0x12, 0, 0, 0, 36, 0]))
    assert inquiry.data[0] == 0x7F  # qualifier 011b, device type 1Fh
    luns = ask(bytes([0xA0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0]))
    assert luns.status == Status.GOOD and luns.data[:4] == (8).to_bytes(4, "big")
    sense = ask(bytes([0x03, 0, 0, 0, 18, 0]))
    assert sense.status == Status.GOOD and sense.data[12] == 0x25
    assert sense_of(ask(read10()))[1] == ASC.LOGICAL_UNIT_NOT_SUPPORTED


# -- persistent reservations outlive a restart through the logical unit's ReservationStore -----


class GatedStore:
    """A ReservationStore in memory whose saves wait until the test opens the gate."""

    def __init__(self) -> None:
        self.saved: PersistentReservations | None = None
        self.saving = asyncio.Event()
        self.gate = asyncio.Event()

    def load(self) -> PersistentReservations | None:
        return self.saved

    async def save(self, reservations: PersistentReservations) -> None:
        self.saving.set()
        await self.gate.wait()
        self.saved = PersistentReservations.from_dict(reservations.to_dict())


def register(key: int, *, aptpl: bool, old_key: int = 0) -> tuple[bytes, bytes]:
    data = PROutParameters(old_key, key, aptpl=aptpl).encode()
    return PROutCdb(PROutServiceAction.REGISTER, 0, 0, len(data)).encode(), data


def test_a_reservation_change_is_stored_before_good_and_a_restart_keeps_only_aptpl() -> None:
    info = TargetInfo("iqn.2026-11.org.sanstack:t", lambda: [0], lambda: [A, B])
    store = GatedStore()
    lu = LogicalUnit(0, MemoryDevice(64), info, store)

    async def registered(aptpl: bool, old_key: int = 0) -> CommandResult:
        store.saving = asyncio.Event()
        store.gate = asyncio.Event()
        cdb, data = register(0xA1, aptpl=aptpl, old_key=old_key)
        command = Command(A, 0, cdb, tag=1, data_out=data)
        task = asyncio.create_task(lu.execute(command))
        await asyncio.wait_for(store.saving.wait(), 10)
        assert not task.done()  # no status while the state is not stored
        store.gate.set()
        return await asyncio.wait_for(task, 10)

    assert asyncio.run(registered(aptpl=True)).status == Status.GOOD
    restarted = LogicalUnit(0, MemoryDevice(64), info, store)
    assert [r.reservation_key for r in restarted.pr.registrations] == [0xA1]
    assert restarted.pr.generation == 0  # PRgeneration restarts (SPC-4 §6.15.2)
    assert asyncio.run(registered(aptpl=False, old_key=0xA1)).status == Status.GOOD
    assert LogicalUnit(0, MemoryDevice(64), info, store).pr.registrations == ()


def test_a_target_keeps_each_luns_reservations_in_a_file_named_by_its_naa(
    tmp_path: Path,
) -> None:
    def target() -> Target:
        return Target(
            "iqn.2026-11.org.sanstack:t",
            [PortalGroup(1, [Portal("127.0.0.1", 3260)])],
            reservation_store_for=functools.partial(ReservationFile.in_directory, tmp_path),
        )

    identity = DeviceIdentity.from_seed("pr-file")
    lu = target().add_lun(0, MemoryDevice(64, identity=identity))
    cdb, data = register(0xB2, aptpl=True)
    assert run(lu, cdb, A, data).status == Status.GOOD
    state_file = tmp_path / f"pr-{identity.naa.hex()}.json"
    assert state_file.exists()
    # The file follows the device, whatever its LUN number.
    again = target().add_lun(3, MemoryDevice(64, identity=identity))
    assert [r.reservation_key for r in again.pr.registrations] == [0xB2]
    save_state(state_file, {"format": "something else"})
    with pytest.raises(StateFileError, match=f"{state_file}: unusable reservation state"):
        target().add_lun(0, MemoryDevice(64, identity=identity))


def test_the_reservation_file_is_written_only_for_what_a_power_cycle_keeps(
    tmp_path: Path,
) -> None:
    """A state whose last APTPL is zero is gone after a power cycle anyway: it costs no
    write, except the one that replaces an APTPL state in the file."""

    def target() -> Target:
        return Target(
            "iqn.2026-11.org.sanstack:t",
            [PortalGroup(1, [Portal("127.0.0.1", 3260)])],
            reservation_store_for=functools.partial(ReservationFile.in_directory, tmp_path),
        )

    identity = DeviceIdentity.from_seed("pr-aptpl-only")
    lu = target().add_lun(0, MemoryDevice(64, identity=identity))

    def pr_register(nexus: Nexus, key: int, aptpl: bool, old_key: int = 0) -> Status:
        cdb, data = register(key, aptpl=aptpl, old_key=old_key)
        return run(lu, cdb, nexus, data).status

    state_file = tmp_path / f"pr-{identity.naa.hex()}.json"
    assert pr_register(A, 0xC1, False) == Status.GOOD
    assert not state_file.exists()
    assert pr_register(B, 0xC2, True) == Status.GOOD
    assert (load_state(state_file) or {}).get("aptpl") is True
    # APTPL back to zero: the file must stop promising the registrations after a restart.
    assert pr_register(A, 0xC3, False, 0xC1) == Status.GOOD
    written = state_file.stat().st_mtime_ns, state_file.stat().st_ino
    assert (load_state(state_file) or {}).get("aptpl") is False
    assert pr_register(B, 0, False, 0xC2) == Status.GOOD
    assert (state_file.stat().st_mtime_ns, state_file.stat().st_ino) == written
    assert target().add_lun(0, MemoryDevice(64, identity=identity)).pr.registrations == ()
