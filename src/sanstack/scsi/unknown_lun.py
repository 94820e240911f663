"""Commands addressed to a LUN the target does not have (SAM-5 §5.10, SPC-4 §6.6.2).

INQUIRY answers with peripheral qualifier 011b ("not capable of supporting a device at this
LUN") and device type 1Fh; REPORT LUNS is answered for the whole target; REQUEST SENSE
returns LOGICAL UNIT NOT SUPPORTED as sense data with GOOD status; everything else fails with
CHECK CONDITION, ILLEGAL REQUEST, LOGICAL UNIT NOT SUPPORTED.

All this needs of the target is its LUN map (``LunMap``), to answer REPORT LUNS.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from sanstack.scsi.codes import ASC, Opcode, PeripheralDeviceType, SenseKey
from sanstack.scsi.command import Command, CommandResult
from sanstack.scsi.logical_unit import LogicalUnit
from sanstack.scsi.sense import check_condition, fixed_sense

_NO_DEVICE = 0x60 | PeripheralDeviceType.UNKNOWN_OR_NO_DEVICE


class LunMap(Protocol):
    """The LUNs a target has (the target model's ``Target`` is one)."""

    @property
    def luns(self) -> Mapping[int, LogicalUnit]: ...


async def execute_without_lun(target: LunMap | None, cmd: Command) -> CommandResult:
    """Answer ``cmd`` for a LUN that ``target`` (None: no target reached) does not have."""
    opcode = cmd.cdb[0] if cmd.cdb else -1
    if opcode == Opcode.INQUIRY and len(cmd.cdb) >= 6:
        if cmd.cdb[1] & 0x01:
            # VPD pages of a LUN that does not exist: only the qualifier byte matters.
            data = bytes([_NO_DEVICE, cmd.cdb[2], 0, 0])
        else:
            data = bytes([_NO_DEVICE, 0, 0x06, 0x02, 31]) + bytes(31)
        allocation = int.from_bytes(cmd.cdb[3:5], "big")
        return CommandResult(data=data[:allocation])
    if opcode == Opcode.REPORT_LUNS and target is not None and target.luns:
        any_lu = next(iter(target.luns.values()))
        return await any_lu.execute(cmd)
    if opcode == Opcode.REPORT_LUNS:
        allocation = int.from_bytes(cmd.cdb[6:10], "big") if len(cmd.cdb) >= 12 else 0
        return CommandResult(data=bytes(8)[:allocation])
    if opcode == Opcode.REQUEST_SENSE:
        sense = fixed_sense(SenseKey.ILLEGAL_REQUEST, ASC.LOGICAL_UNIT_NOT_SUPPORTED)
        allocation = cmd.cdb[4] if len(cmd.cdb) >= 6 else 0
        return CommandResult(data=sense[:allocation])
    return check_condition(SenseKey.ILLEGAL_REQUEST, ASC.LOGICAL_UNIT_NOT_SUPPORTED)
