"""PERSISTENT RESERVE IN/OUT as commands of the device server (SPC-4 §6.15, §6.16).

The reservation logic is ``sanstack.scsi.pr``; these handlers feed it the CDB and the
parameter list and carry out what it decides on the logical unit: unit attentions to the
affected nexuses, PREEMPT AND ABORT's aborted task sets (awaited before the command
completes, SPC-4 §5.13.11.2.7), and the crash-safe save of the state before GOOD is sent
(APTPL, SPC-4 §5.13.5) through the logical unit's ``ReservationStore``, so an acknowledged
registration survives a power loss.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sanstack.scsi.codes import Opcode, Status
from sanstack.scsi.command import Command, CommandResult, CommandSpec, DataDirection
from sanstack.scsi.pr_codec import PROutCdb

if TYPE_CHECKING:
    from sanstack.scsi.logical_unit import LogicalUnit


async def persistent_reserve_in(lu: LogicalUnit, cmd: Command) -> CommandResult:
    """PERSISTENT RESERVE IN (SPC-4 §6.15): READ KEYS, RESERVATION, CAPABILITIES, FULL STATUS."""
    data = lu.pr.persistent_reserve_in(cmd.cdb, target_ports=lu.target.target_ports())
    return CommandResult(data=data)


async def persistent_reserve_out(lu: LogicalUnit, cmd: Command) -> CommandResult:
    """PERSISTENT RESERVE OUT (SPC-4 §6.16): every service action, then its side effects."""
    used = PROutCdb.decode(cmd.cdb).parameter_list_length
    outcome = lu.pr.persistent_reserve_out(
        cmd.nexus,
        cmd.cdb,
        bytes(cmd.data_out[:used]),
        target_ports=lu.target.target_ports(),
        active_nexuses=lu.target.active_nexuses(),
    )
    for nexus, asc in outcome.unit_attentions:
        lu.establish_unit_attention(asc, nexuses=[nexus])
    if outcome.abort_nexuses:
        await lu.abort_task_sets(outcome.abort_nexuses, requester=cmd.nexus)
    if outcome.changed:
        await lu.save_reservations()
    if outcome.status != Status.GOOD:
        return CommandResult(status=outcome.status, data_out_used=used)
    return CommandResult(data_out_used=used)


COMMANDS: list[CommandSpec] = [
    CommandSpec(
        Opcode.PERSISTENT_RESERVE_IN,
        "PERSISTENT RESERVE IN",
        persistent_reserve_in,
        # Service actions are decoded by the codec, so an unknown one gets INVALID FIELD IN
        # CDB at the SA field (libiscsi's PrinServiceactionRange).
        bytes.fromhex("5e1f0000000000ffff00"),
        direction=DataDirection.IN,
    ),
    CommandSpec(
        Opcode.PERSISTENT_RESERVE_OUT,
        "PERSISTENT RESERVE OUT",
        persistent_reserve_out,
        bytes.fromhex("5f1fff0000ffffffff00"),
        direction=DataDirection.OUT,
    ),
]
