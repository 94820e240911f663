"""Helpers shared by test_sbc_commands.py and test_sbc_provisioning.py: a LogicalUnit over a
device, command execution, and sense checks."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from pathlib import Path

from sanstack.block.device import BlockDevice
from sanstack.block.file import FileDevice
from sanstack.block.memory import MemoryDevice
from sanstack.scsi.cdb import ReadWriteCDB
from sanstack.scsi.codes import ASC, Opcode, SenseKey, Status
from sanstack.scsi.command import Command, CommandResult, Nexus
from sanstack.scsi.logical_unit import LogicalUnit, TargetInfo
from sanstack.scsi.sense import parse_sense

TARGET = "iqn.2026-11.test:t"
NEXUS_A = Nexus("iqn.2026-11.test:a", 0x1, TARGET, 1)
NEXUS_B = Nexus("iqn.2026-11.test:b", 0x2, TARGET, 1)
BS = 512
BLOCKS = 1024
_tags = itertools.count(1)


def make_lu(device: BlockDevice) -> LogicalUnit:
    return LogicalUnit(
        0,
        device,
        TargetInfo(
            target_name=TARGET, lun_numbers=lambda: [0], active_nexuses=lambda: [NEXUS_A, NEXUS_B]
        ),
    )


def open_device(kind: str, tmp_path: Path) -> BlockDevice:
    """The device under test: a MemoryDevice or a sparse FileDevice of the same geometry."""
    if kind == "memory":
        return MemoryDevice(BLOCKS, BS)
    return FileDevice(tmp_path / "lun.img", BS, size_bytes=BLOCKS * BS, create=True)


def run(device: BlockDevice, body: Callable[[LogicalUnit], Awaitable[None]]) -> None:
    async def main() -> None:
        await body(make_lu(device))

    asyncio.run(main())


async def execute(
    lu: LogicalUnit,
    cdb: bytes,
    data_out: bytes = b"",
    *,
    nexus: Nexus = NEXUS_A,
    data_in_length: int = 1 << 24,
) -> CommandResult:
    cmd = Command(nexus, 0, cdb, tag=next(_tags), data_out=data_out, data_in_length=data_in_length)
    return await lu.execute(cmd)


def sense_of(result: CommandResult) -> tuple[SenseKey, ASC]:
    assert result.status == Status.CHECK_CONDITION
    key, asc, ascq = parse_sense(result.sense)
    return key, ASC((asc << 8) | ascq)


def information(result: CommandResult) -> int | None:
    valid = bool(result.sense[0] & 0x80)
    return int.from_bytes(result.sense[3:7], "big") if valid else None


def field_pointer(result: CommandResult) -> int:
    assert result.sense[15] & 0x80, "SKSV must be set"
    return int.from_bytes(result.sense[16:18], "big")


def expect(result: CommandResult, key: SenseKey, asc: ASC) -> None:
    assert sense_of(result) == (key, asc)


def good(result: CommandResult) -> CommandResult:
    assert result.status == Status.GOOD, result.sense.hex()
    return result


def rw(op: Opcode, lba: int, count: int, **flags: int | bool) -> bytes:
    return ReadWriteCDB(op, lba, count, **flags).encode()  # type: ignore[arg-type]


def pattern(count: int, seed: int = 1) -> bytes:
    return bytes((seed + i) & 0xFF for i in range(count * BS))


async def read(lu: LogicalUnit, lba: int, count: int) -> bytes:
    return bytes(good(await execute(lu, rw(Opcode.READ_16, lba, count))).data)


async def write(lu: LogicalUnit, lba: int, data: bytes) -> None:
    good(await execute(lu, rw(Opcode.WRITE_16, lba, len(data) // BS), data))


OOB = (SenseKey.ILLEGAL_REQUEST, ASC.LBA_OUT_OF_RANGE)
INVALID_CDB = (SenseKey.ILLEGAL_REQUEST, ASC.INVALID_FIELD_IN_CDB)
INVALID_IU = (SenseKey.ILLEGAL_REQUEST, ASC.INVALID_FIELD_IN_COMMAND_INFORMATION_UNIT)
WRITE_PROTECTED = (SenseKey.DATA_PROTECT, ASC.WRITE_PROTECTED)
MISCOMPARE = (SenseKey.MISCOMPARE, ASC.MISCOMPARE_DURING_VERIFY_OPERATION)

READS = [(Opcode.READ_6, 6), (Opcode.READ_10, 10), (Opcode.READ_12, 12), (Opcode.READ_16, 16)]
WRITES = [(Opcode.WRITE_6, 6), (Opcode.WRITE_10, 10), (Opcode.WRITE_12, 12), (Opcode.WRITE_16, 16)]


class CountingDevice(MemoryDevice):
    """A MemoryDevice that claims a volatile cache and counts flushes."""

    write_cache = True

    def __init__(self, num_blocks: int = BLOCKS) -> None:
        super().__init__(num_blocks, BS)
        self.flushes = 0

    async def flush(self) -> None:
        await super().flush()
        self.flushes += 1
