"""REPORT SUPPORTED OPERATION CODES (SPC-4 §6.35) and REPORT SUPPORTED TASK MANAGEMENT
FUNCTIONS (SPC-4 §6.36), both MAINTENANCE IN service actions.

The operation code list is the logical unit's own command table (``lu.commands``), and each
command's CDB USAGE DATA is its ``CommandSpec.usage_data``, so what RSOC reports is exactly
what the dispatcher serves.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING

from sanstack.scsi.codes import MaintenanceIn, Opcode
from sanstack.scsi.command import Command, CommandResult, CommandSpec
from sanstack.scsi.sense import invalid_field_in_cdb

if TYPE_CHECKING:
    from sanstack.scsi.logical_unit import LogicalUnit


class ReportingOptions(IntEnum):
    """SPC-4 §6.35.1 table 'REPORTING OPTIONS field'."""

    ALL = 0b000
    OPCODE = 0b001
    OPCODE_AND_SERVICE_ACTION = 0b010
    OPCODE_EITHER = 0b011


class Support(IntEnum):
    """SPC-4 §6.35.3 table 'SUPPORT field'."""

    NOT_AVAILABLE = 0b000
    NOT_SUPPORTED = 0b001
    SUPPORTED = 0b011
    SUPPORTED_VENDOR_SPECIFIC = 0b101


_RSOC_CDB = struct.Struct(">BBBBHIxB")
_RSTMF_CDB = struct.Struct(">BBB3xIxB")
_SERVICE_ACTION_MASK = 0x1F
_RCTD = 0x80
_REPORTING_OPTIONS_MASK = 0x07
_REPD = 0x80

_ALL_HEADER = struct.Struct(">I")
# Command descriptor (§6.35.2): opcode, reserved, SA, reserved, CTDP|SERVACTV, CDB length.
_COMMAND_DESCRIPTOR = struct.Struct(">BxHxBH")
_CTDP_ALL = 0x02
_SERVACTV = 0x01
# One-command parameter data (§6.35.3): reserved, CTDP|SUPPORT, CDB SIZE, then usage data.
_ONE_HEADER = struct.Struct(">xBH")
_CTDP_ONE = 0x80
# Command timeouts descriptor (§6.35.4): length 0Ah, reserved, command specific, two timeouts.
_TIMEOUTS = struct.Struct(">HxBII")
# Zero timeouts mean "not specified": sanstack promises no processing time.
NOMINAL_TIMEOUT_SECONDS = 0
RECOMMENDED_TIMEOUT_SECONDS = 0


class TaskManagementSupport(IntEnum):
    """SPC-4 §6.36.2 byte 0 of REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS data."""

    ATS = 0x80  # ABORT TASK
    ATSS = 0x40  # ABORT TASK SET
    CACAS = 0x20  # CLEAR ACA
    CTSS = 0x10  # CLEAR TASK SET
    LURS = 0x08  # LOGICAL UNIT RESET
    QTS = 0x04  # QUERY TASK
    TRS = 0x02  # TARGET RESET (iSCSI TARGET WARM RESET)


# iSCSI (RFC 7143 §11.5.1) carries these; it has no CLEAR ACA use (NACA is not supported)
# and no QUERY TASK / QUERY TASK SET / QUERY ASYNCHRONOUS EVENT / I_T NEXUS RESET.
SUPPORTED_TMFS = (
    TaskManagementSupport.ATS
    | TaskManagementSupport.ATSS
    | TaskManagementSupport.CTSS
    | TaskManagementSupport.LURS
    | TaskManagementSupport.TRS
)
_RSTMF_BASIC = struct.Struct(">BB2x")
# REPD=1 extended data (§6.36.2): basic bytes, ADDITIONAL DATA LENGTH 0Ch, timeouts unreported.
_RSTMF_EXTENDED = struct.Struct(">BBxB12x")


@dataclass(frozen=True, slots=True)
class ReportSupportedOpcodesCdb:
    """SPC-4 §6.35.1 REPORT SUPPORTED OPERATION CODES CDB (MAINTENANCE IN, SA 0Ch)."""

    rctd: bool
    reporting_options: int
    requested_opcode: int
    requested_service_action: int
    allocation_length: int

    @classmethod
    def decode(cls, cdb: bytes) -> ReportSupportedOpcodesCdb:
        _, _, flags, opcode, sa, length, _ = _RSOC_CDB.unpack_from(cdb)
        return cls(bool(flags & _RCTD), flags & _REPORTING_OPTIONS_MASK, opcode, sa, length)

    def encode(self) -> bytes:
        flags = (_RCTD if self.rctd else 0) | self.reporting_options
        return _RSOC_CDB.pack(
            Opcode.MAINTENANCE_IN,
            MaintenanceIn.REPORT_SUPPORTED_OPERATION_CODES,
            flags,
            self.requested_opcode,
            self.requested_service_action,
            self.allocation_length,
            0,
        )


@dataclass(frozen=True, slots=True)
class ReportSupportedTmfCdb:
    """SPC-4 §6.36.1 REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS CDB (MAINTENANCE IN, 0Dh)."""

    repd: bool
    allocation_length: int

    @classmethod
    def decode(cls, cdb: bytes) -> ReportSupportedTmfCdb:
        _, _, flags, length, _ = _RSTMF_CDB.unpack_from(cdb)
        return cls(bool(flags & _REPD), length)

    def encode(self) -> bytes:
        return _RSTMF_CDB.pack(
            Opcode.MAINTENANCE_IN,
            MaintenanceIn.REPORT_SUPPORTED_TASK_MANAGEMENT_FUNCTIONS,
            _REPD if self.repd else 0,
            self.allocation_length,
            0,
        )


def _timeouts() -> bytes:
    return _TIMEOUTS.pack(
        _TIMEOUTS.size - 2, 0, NOMINAL_TIMEOUT_SECONDS, RECOMMENDED_TIMEOUT_SECONDS
    )


def all_commands(specs: Iterable[CommandSpec], *, rctd: bool) -> bytes:
    """SPC-4 §6.35.2 'all commands' parameter data, sorted by opcode then service action."""
    body = bytearray()
    for spec in sorted(specs, key=lambda s: (s.opcode, s.service_action or 0)):
        flags = (_CTDP_ALL if rctd else 0) | (_SERVACTV if spec.service_action is not None else 0)
        body += _COMMAND_DESCRIPTOR.pack(
            spec.opcode, spec.service_action or 0, flags, spec.cdb_length
        )
        if rctd:
            body += _timeouts()
    return _ALL_HEADER.pack(len(body)) + body


def one_command(spec: CommandSpec | None, *, rctd: bool) -> bytes:
    """SPC-4 §6.35.3 one-command parameter data; ``None`` reports SUPPORT 001b."""
    if spec is None:
        return _ONE_HEADER.pack(Support.NOT_SUPPORTED, 0)
    flags = (_CTDP_ONE if rctd else 0) | Support.SUPPORTED
    data = _ONE_HEADER.pack(flags, spec.cdb_length) + spec.usage_data
    return data + _timeouts() if rctd else data


def report_supported_opcodes_data(
    commands: dict[tuple[int, int | None], CommandSpec], request: ReportSupportedOpcodesCdb
) -> bytes:
    """The parameter data for ``request`` against the command table ``commands``.

    Asking for one operation code without a service action when it has service actions
    (option 001b), or with one when it has none (option 010b), is INVALID FIELD IN CDB
    (SPC-4 §6.35.1); libiscsi's RSOC OneCommand test checks both.
    """
    option = request.reporting_options
    if option == ReportingOptions.ALL:
        return all_commands(commands.values(), rctd=request.rctd)
    opcode = request.requested_opcode
    has_service_actions = any(op == opcode and sa is not None for op, sa in commands)
    if option == ReportingOptions.OPCODE:
        if has_service_actions:
            raise invalid_field_in_cdb(3)
        return one_command(commands.get((opcode, None)), rctd=request.rctd)
    if option == ReportingOptions.OPCODE_AND_SERVICE_ACTION:
        if (opcode, None) in commands:
            raise invalid_field_in_cdb(3)
        sa = request.requested_service_action
        return one_command(commands.get((opcode, sa)), rctd=request.rctd)
    if option == ReportingOptions.OPCODE_EITHER:
        key = (opcode, request.requested_service_action if has_service_actions else None)
        return one_command(commands.get(key), rctd=request.rctd)
    raise invalid_field_in_cdb(2, 2)


async def report_supported_opcodes(lu: LogicalUnit, cmd: Command) -> CommandResult:
    """REPORT SUPPORTED OPERATION CODES (SPC-4 §6.35)."""
    request = ReportSupportedOpcodesCdb.decode(cmd.cdb)
    data = report_supported_opcodes_data(lu.commands, request)
    return CommandResult(data=data[: request.allocation_length])


def supported_tmf_data(*, repd: bool) -> bytes:
    """SPC-4 §6.36.2 parameter data: 4 bytes, or 16 with REPD=1 (timeouts not reported)."""
    if repd:
        return _RSTMF_EXTENDED.pack(SUPPORTED_TMFS, 0, _RSTMF_EXTENDED.size - 4)
    return _RSTMF_BASIC.pack(SUPPORTED_TMFS, 0)


async def report_supported_tmfs(lu: LogicalUnit, cmd: Command) -> CommandResult:
    """REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS (SPC-4 §6.36)."""
    request = ReportSupportedTmfCdb.decode(cmd.cdb)
    return CommandResult(data=supported_tmf_data(repd=request.repd)[: request.allocation_length])
