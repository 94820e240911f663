"""The target's fast path for cached reads (issue 15): ``LogicalUnit.execute_now``,
``BlockDevice.read_now`` and the one-call Data-In header.

The fast path may decline any command (None: ``execute`` runs it); whenever it answers, the
answer must be exactly what ``execute`` gives. Each case below sets up a state that stops a
read in ``execute`` (a unit attention, an ALUA state, a reservation, a bad field) and checks
both halves of that rule, so the fast path can never skip a check that the full path makes.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import struct
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from tests.support.pr_harness import LU as PRDriver
from tests.support.pr_harness import WE, WERO, A, B

from sanstack.block.file import FileDevice
from sanstack.block.memory import MemoryDevice
from sanstack.iscsi import pdu as p
from sanstack.iscsi.codes import MAX_DATA_SEGMENT_LENGTH, RESERVED_TAG
from sanstack.iscsi.pdu_reader import PDUReader
from sanstack.scsi.alua_codec import ALUAState
from sanstack.scsi.codes import ASC, Status
from sanstack.scsi.command import Command, CommandResult
from sanstack.scsi.logical_unit import LogicalUnit, TargetInfo
from sanstack.scsi.pr_codec import PROutServiceAction

BS = 512
BLOCKS = 2048
_tags = itertools.count(1)


def read16(lba: int, count: int, flags: int = 0) -> bytes:
    return struct.pack(">BBQIBB", 0x88, flags, lba, count, 0, 0)


def read10(lba: int, count: int, flags: int = 0) -> bytes:
    return struct.pack(">BBIBHB", 0x28, flags, lba, 0, count, 0)


def make_lu(device: FileDevice | MemoryDevice) -> LogicalUnit:
    return LogicalUnit(
        0,
        device,
        TargetInfo(target_name="iqn.t", lun_numbers=lambda: [0], active_nexuses=lambda: [A, B]),
    )


@pytest.fixture
def file_device(tmp_path: Path) -> FileDevice:
    path = tmp_path / "lun.img"
    path.write_bytes(os.urandom(BLOCKS * BS))
    with path.open("rb") as f:
        f.read()  # into the page cache, so that RWF_NOWAIT reads succeed
    return FileDevice(path, BS)


def results_match(fast: CommandResult, slow: CommandResult) -> bool:
    return (fast.status, bytes(fast.data), fast.sense) == (
        slow.status,
        bytes(slow.data),
        slow.sense,
    )


async def both(
    lu: LogicalUnit, cdb: bytes, nexus: object = A
) -> tuple[CommandResult | None, CommandResult]:
    cmd = Command(nexus, 0, cdb, tag=next(_tags), data_in_length=1 << 24)  # type: ignore[arg-type]
    fast = lu.execute_now(cmd)
    slow = await lu.execute(Command(cmd.nexus, 0, cdb, tag=next(_tags), data_in_length=1 << 24))
    return fast, slow


def plain(lu: LogicalUnit) -> None:
    """Nothing in the way."""


def unit_attention_for_a(lu: LogicalUnit) -> None:
    lu.establish_unit_attention(ASC.POWER_ON_RESET_OR_BUS_DEVICE_RESET_OCCURRED, nexuses=[A])


def alua_standby(lu: LogicalUnit) -> None:
    lu.alua.set_state(lu.alua.groups[0].group_id, ALUAState.STANDBY, explicit=False)


def alua_unavailable(lu: LogicalUnit) -> None:
    lu.alua.set_state(lu.alua.groups[0].group_id, ALUAState.UNAVAILABLE, explicit=False)


def alua_non_optimized(lu: LogicalUnit) -> None:
    lu.alua.set_state(lu.alua.groups[0].group_id, ALUAState.ACTIVE_NON_OPTIMIZED, explicit=False)


def exclusive_access_by_b(lu: LogicalUnit) -> None:
    pr = PRDriver(active=[A, B], pr=lu.pr)
    pr.register(B, 0xB)
    pr.out(B, pr_sa_reserve(), 0xB, pr_type=0x3)  # EXCLUSIVE ACCESS: A may not read


def write_exclusive_by_b(lu: LogicalUnit) -> None:
    pr = PRDriver(active=[A, B], pr=lu.pr)
    pr.register(B, 0xB)
    pr.out(B, pr_sa_reserve(), 0xB, pr_type=WE)  # A may still read


def registrants_only_a_unregistered(lu: LogicalUnit) -> None:
    pr = PRDriver(active=[A, B], pr=lu.pr)
    pr.register(B, 0xB)
    pr.out(B, pr_sa_reserve(), 0xB, pr_type=WERO)


def scsi2_reserved_by_b(lu: LogicalUnit) -> None:
    lu.scsi2_reservation = B


def stopped(lu: LogicalUnit) -> None:
    lu.stopped = True


def pr_sa_reserve() -> PROutServiceAction:
    return PROutServiceAction.RESERVE


STATES: dict[str, tuple[Callable[[LogicalUnit], None], bool]] = {
    # name: (set-up, whether a plain READ from A must take the fast path)
    "plain": (plain, True),
    "unit attention for A": (unit_attention_for_a, False),
    "ALUA standby": (alua_standby, False),
    "ALUA unavailable": (alua_unavailable, False),
    "ALUA active/non-optimized": (alua_non_optimized, True),
    "EXCLUSIVE ACCESS held by B": (exclusive_access_by_b, False),
    "WRITE EXCLUSIVE held by B": (write_exclusive_by_b, True),
    "WE registrants only, A not registered": (registrants_only_a_unregistered, True),
    "SPC-2 RESERVE by B": (scsi2_reserved_by_b, False),
    "stopped": (stopped, False),
}

CDBS = {
    "READ(16)": read16(8, 8),
    "READ(10)": read10(100, 1),
    "READ(16) last block": read16(BLOCKS - 1, 1),
    "READ(16) past the end": read16(BLOCKS - 1, 2),
    "READ(10) zero length": read10(5, 0),
    "READ(16) RDPROTECT": read16(8, 8, flags=0x20),
    "READ(16) too long": read16(0, 0x10000000),
    "READ(6)": bytes([0x08, 0, 0, 8, 8, 0]),
}


@pytest.mark.parametrize("state", list(STATES))
@pytest.mark.parametrize("cdb_name", list(CDBS))
def test_fast_path_answers_exactly_as_execute_or_declines(
    file_device: FileDevice, state: str, cdb_name: str
) -> None:
    set_up, plain_read_fast = STATES[state]

    async def main() -> None:
        lu = make_lu(file_device)
        set_up(lu)
        fast, slow = await both(lu, CDBS[cdb_name])
        if fast is not None:
            assert results_match(fast, slow), (state, cdb_name, fast, slow)
            assert fast.status == Status.GOOD and bytes(fast.data)
        if cdb_name in ("READ(16)", "READ(10)", "READ(16) last block"):
            assert (fast is not None) is plain_read_fast, (state, cdb_name)
        else:
            assert fast is None  # every odd field goes the full way
        await file_device.close()

    asyncio.run(main())


def test_unit_attention_of_another_nexus_does_not_stop_the_fast_path(
    file_device: FileDevice,
) -> None:
    async def main() -> None:
        lu = make_lu(file_device)
        lu.establish_unit_attention(ASC.POWER_ON_RESET_OR_BUS_DEVICE_RESET_OCCURRED, nexuses=[B])
        fast, slow = await both(lu, read16(0, 8), A)
        assert fast is not None and results_match(fast, slow)
        fast_b, slow_b = await both(lu, read16(0, 8), B)
        assert fast_b is None and slow_b.status == Status.CHECK_CONDITION
        await file_device.close()

    asyncio.run(main())


def test_a_device_without_read_now_always_declines() -> None:
    async def main() -> None:
        lu = make_lu(MemoryDevice(BLOCKS, BS))
        fast, slow = await both(lu, read16(0, 8))
        assert fast is None and slow.status == Status.GOOD

    asyncio.run(main())


def test_read_now_declines_what_read_must_do(file_device: FileDevice, tmp_path: Path) -> None:
    assert file_device.read_now(0, 8) is not None
    assert file_device.read_now(0, (1 << 20) // BS) is None  # above NOWAIT_MAX_BYTES: a thread
    asyncio.run(file_device.close())
    assert file_device.read_now(0, 8) is None  # closed: read() raises DeviceNotReady
    no_nowait = FileDevice(tmp_path / "lun.img", BS, nowait=False)
    assert no_nowait.read_now(0, 8) is None
    asyncio.run(no_nowait.close())


def test_read_now_returns_the_blocks(file_device: FileDevice, tmp_path: Path) -> None:
    expected = (tmp_path / "lun.img").read_bytes()[BS * 3 : BS * 7]
    got = file_device.read_now(3, 4)
    assert got is not None and bytes(got) == expected
    assert file_device.stats.nowait_reads == 1
    asyncio.run(file_device.close())


# -- the Data-In header packed in one call (RFC 7143 §11.7) ---------------------------------

VECTOR = bytes.fromhex(
    "25" "81" "00" "00" "00001000" "0000000000000000" "00000007" "ffffffff"
    "0000002a" "00000010" "0000002f" "00000000" "00000000" "00000000"
)  # fmt: skip


def test_data_in_with_status_header_vector() -> None:
    header = p.data_in_with_status_header(7, 4096, 42, 16, 47, False, 0)
    assert header == VECTOR
    reader = PDUReader(MAX_DATA_SEGMENT_LENGTH)
    reader.feed(header + bytes(4096))
    pdu = reader.next_pdu()
    assert pdu == p.DataIn(
        itt=7, stat_sn=42, exp_cmd_sn=16, max_cmd_sn=47, final=True, status_present=True,
        data=bytes(4096),
    )  # fmt: skip


@pytest.mark.parametrize(("length", "underflow", "residual"), [(512, False, 0), (4096, True, 512)])
def test_data_in_with_status_header_equals_the_data_in_object(
    length: int, underflow: bool, residual: int
) -> None:
    header = p.data_in_with_status_header(0x1234, length, 9, 10, 41, underflow, residual)
    reference = p.DataIn(
        itt=0x1234,
        stat_sn=9,
        exp_cmd_sn=10,
        max_cmd_sn=41,
        ttt=RESERVED_TAG,
        final=True,
        status_present=True,
        residual_underflow=underflow,
        residual_count=residual,
        data=bytes(length),
    ).encode_parts()[0]
    assert header == reference


@pytest.mark.parametrize(
    ("status", "overflow", "underflow", "residual"),
    [
        (Status.GOOD, False, False, 0),
        (Status.GOOD, False, True, 4096),
        (Status.GOOD, True, False, 512),
        (Status.RESERVATION_CONFLICT, False, False, 0),
        (Status.TASK_ABORTED, False, False, 0),
    ],
)
def test_scsi_response_header_equals_the_scsi_response_object(
    status: Status, overflow: bool, underflow: bool, residual: int
) -> None:
    header = p.scsi_response_header(0x77, status, 5, 6, 37, overflow, underflow, residual)
    reference = p.SCSIResponse(
        itt=0x77,
        status=status,
        stat_sn=5,
        exp_cmd_sn=6,
        max_cmd_sn=37,
        residual_overflow=overflow,
        residual_underflow=underflow,
        residual_count=residual,
    ).encode()
    assert header == reference


def test_scsi_response_header_vector() -> None:
    assert p.scsi_response_header(1, Status.GOOD, 2, 3, 4, False, False, 0) == bytes.fromhex(
        "21800000" "00000000" "0000000000000000" "00000001" "00000000"
        "00000002" "00000003" "00000004" "00000000" "00000000" "00000000"
    )  # fmt: skip


# -- writes (``write_at_hand``, ``BlockDevice.write_now``) ------------------------------------


def write16(lba: int, count: int, flags: int = 0) -> bytes:
    return struct.pack(">BBQIBB", 0x8A, flags, lba, count, 0, 0)


def write10(lba: int, count: int, flags: int = 0) -> bytes:
    return struct.pack(">BBIBHB", 0x2A, flags, lba, 0, count, 0)


PAGE_BLOCKS = 4096 // BS

WRITE_CDBS: dict[str, tuple[bytes, int]] = {
    # name: (CDB, Data-Out bytes)
    "WRITE(16) a page": (write16(PAGE_BLOCKS, PAGE_BLOCKS), 4096),
    "WRITE(10) a page": (write10(2 * PAGE_BLOCKS, PAGE_BLOCKS), 4096),
    "WRITE(16) FUA": (write16(0, PAGE_BLOCKS, flags=0x08), 4096),
    "WRITE(16) WRPROTECT": (write16(0, PAGE_BLOCKS, flags=0x20), 4096),
    "WRITE(16) short data": (write16(0, PAGE_BLOCKS), 2048),
    "WRITE(16) extra data": (write16(0, PAGE_BLOCKS), 8192),
    "WRITE(16) past the end": (write16(BLOCKS - 1, 2), 1024),
    "WRITE(16) zero length": (write16(0, 0), 0),
    "WRITE(16) one unaligned block": (write16(3, 1), BS),
}

# A plain page write from A must take the fast path in these states (none stops a write).
WRITE_FAST_STATES = {"plain", "ALUA active/non-optimized"}


def wce_off(lu: LogicalUnit) -> None:
    lu.mode = replace(lu.mode, wce=False)


@pytest.mark.parametrize("state", [*STATES, "WCE=0"])
@pytest.mark.parametrize("cdb_name", list(WRITE_CDBS))
def test_fast_write_answers_exactly_as_execute_or_declines(
    file_device: FileDevice, state: str, cdb_name: str
) -> None:
    set_up = wce_off if state == "WCE=0" else STATES[state][0]
    cdb, length = WRITE_CDBS[cdb_name]
    payload = os.urandom(length)

    async def main() -> None:
        lu = make_lu(file_device)
        set_up(lu)
        cmd = Command(A, 0, cdb, tag=next(_tags), data_out=payload)
        fast = lu.execute_now(cmd)
        slow = await lu.execute(Command(A, 0, cdb, tag=next(_tags), data_out=payload))
        if fast is not None:
            assert (fast.status, fast.sense, fast.data_out_used) == (
                slow.status,
                slow.sense,
                slow.data_out_used,
            ), (state, cdb_name)
        if cdb_name in ("WRITE(16) a page", "WRITE(10) a page"):
            assert (fast is not None) is (state in WRITE_FAST_STATES), (state, cdb_name)
            if fast is not None:
                lba = struct.unpack_from(">Q" if cdb[0] == 0x8A else ">I", cdb, 2)[0]
                assert bytes(await file_device.read(lba, PAGE_BLOCKS)) == payload
        elif cdb_name != "WRITE(16) one unaligned block":  # fast where RWF_NOWAIT writes work
            assert fast is None, (state, cdb_name)
        await file_device.close()

    asyncio.run(main())


def test_a_write_under_a_range_lock_goes_the_full_way(file_device: FileDevice) -> None:
    async def main() -> None:
        lu = make_lu(file_device)
        payload = os.urandom(4096)
        async with lu.lock_range(PAGE_BLOCKS + 2, 1):  # a COMPARE AND WRITE in flight
            cmd = Command(A, 0, write16(PAGE_BLOCKS, PAGE_BLOCKS), tag=1, data_out=payload)
            assert lu.execute_now(cmd) is None
            other = Command(A, 0, write16(4 * PAGE_BLOCKS, PAGE_BLOCKS), tag=2, data_out=payload)
            assert lu.execute_now(other) is not None  # not overlapping: at once
        await file_device.close()

    asyncio.run(main())


def test_write_now_declines_a_closed_or_read_only_device(tmp_path: Path) -> None:
    path = tmp_path / "lun.img"
    path.write_bytes(bytes(BLOCKS * BS))
    device = FileDevice(path, BS, read_only=True)
    assert device.write_now(0, bytes(4096)) is False
    asyncio.run(device.close())
    device = FileDevice(path, BS)
    asyncio.run(device.close())
    assert device.write_now(0, bytes(4096)) is False


def test_a_device_without_write_now_never_writes_at_once() -> None:
    async def main() -> None:
        lu = make_lu(MemoryDevice(BLOCKS, BS))
        cmd = Command(A, 0, write16(0, PAGE_BLOCKS), tag=1, data_out=bytes(4096))
        assert lu.execute_now(cmd) is None

    asyncio.run(main())
