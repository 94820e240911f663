"""SPC-4 primary commands (and the SBC-4 unit-control commands that go with them).

``COMMANDS`` is this half of the device server's command table. Simple commands live here:
TEST UNIT READY, REQUEST SENSE, REPORT LUNS, START STOP UNIT, PREVENT ALLOW MEDIUM REMOVAL and
the SPC-2 RESERVE/RELEASE. INQUIRY is in ``sanstack.scsi.inquiry``, MODE SENSE/SELECT in
``sanstack.scsi.mode_pages`` and the MAINTENANCE IN reports in ``sanstack.scsi.opcodes_report``.

``check_ready`` and ``check_writable`` are the readiness and write-protection checks every
media-access handler in ``sanstack.scsi.sbc`` runs first.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING

from sanstack.scsi.codes import ASC, MaintenanceIn, Opcode, SenseKey, Status
from sanstack.scsi.command import Command, CommandResult, CommandSpec, DataDirection
from sanstack.scsi.inquiry import inquiry
from sanstack.scsi.lun import lun_field_bytes
from sanstack.scsi.mode_pages import mode_select, mode_sense
from sanstack.scsi.opcodes_report import report_supported_opcodes, report_supported_tmfs
from sanstack.scsi.pr_table import LegacyReservation
from sanstack.scsi.sense import CheckCondition, fixed_sense, invalid_field_in_cdb
from sanstack.scsi.sense_descriptor import descriptor_sense

if TYPE_CHECKING:
    from sanstack.scsi.logical_unit import LogicalUnit

# The control byte's NACA, FLAG and LINK bits are not examined: ACA is not supported and
# linked commands are obsolete (SAM-5 §5.2), so CDB USAGE DATA shows 00h for it.
CONTROL_USAGE = 0x00


# -- readiness ---------------------------------------------------------------------------


def not_ready_reason(lu: LogicalUnit) -> ASC | None:
    """Why the logical unit cannot access its medium now, or None when it can.

    A unit stopped by START STOP UNIT waits for a START (04h/02h INITIALIZING COMMAND
    REQUIRED, which makes Linux sd send one); an unhealthy backing device needs an
    administrator (04h/03h MANUAL INTERVENTION REQUIRED).
    """
    if lu.stopped:
        return ASC.LOGICAL_UNIT_NOT_READY_INITIALIZING_COMMAND_REQUIRED
    if lu.device.health() is not None:
        return ASC.LOGICAL_UNIT_NOT_READY_MANUAL_INTERVENTION_REQUIRED
    return None


def check_ready(lu: LogicalUnit) -> None:
    """Raise NOT READY when a media-access command finds the unit stopped.

    Only the flag is checked: this runs on every READ and WRITE, and a failing backing device
    reports itself through the I/O error it raises (mapped to sense in ``LogicalUnit``).
    TEST UNIT READY asks the device itself (``not_ready_reason``).
    """
    if lu.stopped:
        raise CheckCondition(
            SenseKey.NOT_READY, ASC.LOGICAL_UNIT_NOT_READY_INITIALIZING_COMMAND_REQUIRED
        )


def check_writable(lu: LogicalUnit) -> None:
    """Raise DATA PROTECT for a read-only device (27/00) or one protected by SWP (27/02)."""
    if lu.device.read_only:
        raise CheckCondition(SenseKey.DATA_PROTECT, ASC.WRITE_PROTECTED)
    if lu.mode.swp:
        raise CheckCondition(SenseKey.DATA_PROTECT, ASC.SOFTWARE_WRITE_PROTECTED)


# -- TEST UNIT READY (SPC-4 §6.47) -------------------------------------------------------


async def handle_test_unit_ready(lu: LogicalUnit, cmd: Command) -> CommandResult:
    """TEST UNIT READY (SPC-4 §6.47): GOOD, or NOT READY with the reason."""
    reason = not_ready_reason(lu)
    if reason is not None:
        raise CheckCondition(SenseKey.NOT_READY, reason)
    return CommandResult()


# -- REQUEST SENSE (SPC-4 §6.39) ---------------------------------------------------------

_REQUEST_SENSE_CDB = struct.Struct(">BB2xBB")
_DESC = 0x01


@dataclass(frozen=True, slots=True)
class RequestSenseCdb:
    """SPC-4 §6.39.1 REQUEST SENSE CDB: DESC bit and one-byte ALLOCATION LENGTH."""

    desc: bool
    allocation_length: int

    @classmethod
    def decode(cls, cdb: bytes) -> RequestSenseCdb:
        _, flags, length, _ = _REQUEST_SENSE_CDB.unpack_from(cdb)
        return cls(bool(flags & _DESC), length)

    def encode(self) -> bytes:
        flags = _DESC if self.desc else 0
        return _REQUEST_SENSE_CDB.pack(Opcode.REQUEST_SENSE, flags, self.allocation_length, 0)


async def request_sense(lu: LogicalUnit, cmd: Command) -> CommandResult:
    """REQUEST SENSE (SPC-4 §6.39): the pending unit attention (cleared), else the not-ready
    reason, else NO SENSE; fixed format, or descriptor format when DESC is set.
    """
    request = RequestSenseCdb.decode(cmd.cdb)
    key, asc = SenseKey.NO_SENSE, ASC.NO_ADDITIONAL_SENSE
    ua = lu.pop_unit_attention(cmd.nexus)
    if ua is not None:
        key, asc = SenseKey.UNIT_ATTENTION, ua
    else:
        reason = not_ready_reason(lu)
        if reason is not None:
            key, asc = SenseKey.NOT_READY, reason
    sense = descriptor_sense(key, asc) if request.desc else fixed_sense(key, asc)
    return CommandResult(data=sense[: request.allocation_length])


# -- REPORT LUNS (SPC-4 §6.33) -----------------------------------------------------------


class SelectReport(IntEnum):
    """SPC-4 §6.33 table 'SELECT REPORT field' (the codes sanstack serves)."""

    ALL_LOGICAL_UNITS = 0x00
    WELL_KNOWN_ONLY = 0x01
    ALL = 0x02


_REPORT_LUNS_CDB = struct.Struct(">BxB3xIxB")
_REPORT_LUNS_HEADER = struct.Struct(">I4x")
# SPC-4 §6.33: an ALLOCATION LENGTH under 16 cannot hold the header and one LUN.
MIN_REPORT_LUNS_ALLOCATION = 16


@dataclass(frozen=True, slots=True)
class ReportLunsCdb:
    """SPC-4 §6.33 REPORT LUNS CDB: SELECT REPORT and four-byte ALLOCATION LENGTH."""

    select_report: int
    allocation_length: int

    @classmethod
    def decode(cls, cdb: bytes) -> ReportLunsCdb:
        _, select, length, _ = _REPORT_LUNS_CDB.unpack_from(cdb)
        return cls(select, length)

    def encode(self) -> bytes:
        return _REPORT_LUNS_CDB.pack(
            Opcode.REPORT_LUNS, self.select_report, self.allocation_length, 0
        )


def report_luns_data(luns: list[int]) -> bytes:
    """SPC-4 §6.33 parameter data: LUN LIST LENGTH, reserved, one 8-byte LUN each."""
    body = b"".join(lun_field_bytes(lun) for lun in sorted(set(luns)))
    return _REPORT_LUNS_HEADER.pack(len(body)) + body


async def report_luns(lu: LogicalUnit, cmd: Command) -> CommandResult:
    """REPORT LUNS (SPC-4 §6.33); clears REPORTED LUNS DATA HAS CHANGED for this nexus."""
    request = ReportLunsCdb.decode(cmd.cdb)
    if request.allocation_length < MIN_REPORT_LUNS_ALLOCATION:
        raise invalid_field_in_cdb(6)
    match request.select_report:
        case SelectReport.ALL_LOGICAL_UNITS | SelectReport.ALL:
            luns = lu.target.lun_numbers()
        case SelectReport.WELL_KNOWN_ONLY:
            luns = []
        case _:
            raise invalid_field_in_cdb(2)
    lu.clear_unit_attention(cmd.nexus, ASC.REPORTED_LUNS_DATA_HAS_CHANGED)
    return CommandResult(data=report_luns_data(luns)[: request.allocation_length])


# -- START STOP UNIT (SBC-4 §5.25) -------------------------------------------------------


class PowerCondition(IntEnum):
    """SBC-4 §5.25 table 'POWER CONDITION field' (values not listed are reserved)."""

    START_VALID = 0x0
    ACTIVE = 0x1
    IDLE = 0x2
    STANDBY = 0x3
    LU_CONTROL = 0x7
    FORCE_IDLE_0 = 0xA
    FORCE_STANDBY_0 = 0xB


_START_STOP_CDB = struct.Struct(">BBxBBB")
_IMMED = 0x01
_PCM_MASK = 0x0F
_POWER_CONDITION_SHIFT = 4
_NO_FLUSH = 0x04
_LOEJ = 0x02
_START = 0x01


@dataclass(frozen=True, slots=True)
class StartStopUnitCdb:
    """SBC-4 §5.25 START STOP UNIT CDB."""

    immed: bool
    power_condition_modifier: int
    power_condition: int
    no_flush: bool
    loej: bool
    start: bool

    @classmethod
    def decode(cls, cdb: bytes) -> StartStopUnitCdb:
        _, immed, pcm, flags, _ = _START_STOP_CDB.unpack_from(cdb)
        return cls(
            immed=bool(immed & _IMMED),
            power_condition_modifier=pcm & _PCM_MASK,
            power_condition=flags >> _POWER_CONDITION_SHIFT,
            no_flush=bool(flags & _NO_FLUSH),
            loej=bool(flags & _LOEJ),
            start=bool(flags & _START),
        )

    def encode(self) -> bytes:
        flags = (
            (self.power_condition << _POWER_CONDITION_SHIFT)
            | (_NO_FLUSH if self.no_flush else 0)
            | (_LOEJ if self.loej else 0)
            | (_START if self.start else 0)
        )
        return _START_STOP_CDB.pack(
            Opcode.START_STOP_UNIT,
            _IMMED if self.immed else 0,
            self.power_condition_modifier,
            flags,
            0,
        )


_POWER_CONDITIONS = frozenset(int(p) for p in PowerCondition)


async def start_stop_unit(lu: LogicalUnit, cmd: Command) -> CommandResult:
    """START STOP UNIT (SBC-4 §5.25).

    A power condition other than START_VALID is accepted and changes nothing (there is no
    power to save); START=0 stops the unit, after a cache flush unless NO_FLUSH; START=1
    starts it. IMMED needs no special handling: the command completes at once anyway.
    LOEJ=1 while any nexus prevents removal is refused with MEDIUM REMOVAL PREVENTED, for
    loads as well as ejects, which is what libiscsi's PreventAllow.Eject expects.
    """
    request = StartStopUnitCdb.decode(cmd.cdb)
    if request.power_condition not in _POWER_CONDITIONS:
        raise invalid_field_in_cdb(4, 7)
    if request.power_condition != PowerCondition.START_VALID:
        return CommandResult()
    if request.loej and lu.prevent_removal:
        raise CheckCondition(SenseKey.ILLEGAL_REQUEST, ASC.MEDIUM_REMOVAL_PREVENTED)
    if request.start:
        lu.stopped = False
    else:
        if not request.no_flush and not lu.stopped:
            await lu.device.flush()
        lu.stopped = True
    return CommandResult()


# -- PREVENT ALLOW MEDIUM REMOVAL (SBC-4 §5.15) ------------------------------------------


class Prevent(IntEnum):
    """SBC-4 §5.15 table 'PREVENT field'; 10b and 11b are obsolete for direct-access."""

    ALLOW = 0b00
    PREVENT = 0b01


_PREVENT_ALLOW_CDB = struct.Struct(">B3xBB")
_PREVENT_MASK = 0x03


@dataclass(frozen=True, slots=True)
class PreventAllowCdb:
    """SBC-4 §5.15 PREVENT ALLOW MEDIUM REMOVAL CDB."""

    prevent: int

    @classmethod
    def decode(cls, cdb: bytes) -> PreventAllowCdb:
        _, flags, _ = _PREVENT_ALLOW_CDB.unpack_from(cdb)
        return cls(flags & _PREVENT_MASK)

    def encode(self) -> bytes:
        return _PREVENT_ALLOW_CDB.pack(Opcode.PREVENT_ALLOW_MEDIUM_REMOVAL, self.prevent, 0)


async def prevent_allow_medium_removal(lu: LogicalUnit, cmd: Command) -> CommandResult:
    """PREVENT ALLOW MEDIUM REMOVAL (SBC-4 §5.15): removal stays prevented while any nexus
    that prevented it has not allowed it again (or was reset or lost).
    """
    request = PreventAllowCdb.decode(cmd.cdb)
    if request.prevent == Prevent.PREVENT:
        lu.prevent_removal.add(cmd.nexus)
    elif request.prevent == Prevent.ALLOW:
        lu.prevent_removal.discard(cmd.nexus)
    else:
        raise invalid_field_in_cdb(4, 1)
    return CommandResult()


# -- RESERVE / RELEASE (SPC-2 §7.16, §7.17, §7.21, §7.22) -------------------------------

_RESERVE_6_CDB = struct.Struct(">BBBHB")
_RESERVE_10_CDB = struct.Struct(">BBBB3xHB")
_THIRD_PARTY = 0x10
_LONG_ID = 0x02
_EXTENT = 0x01


@dataclass(frozen=True, slots=True)
class ReserveReleaseCdb:
    """SPC-2 RESERVE(10/6) (§7.21, §7.22) and RELEASE(10/6) (§7.16, §7.17) CDBs.

    ``decode`` refuses what sanstack does not implement: third-party reservations, long
    third-party IDs and (obsolete) extent reservations, each INVALID FIELD IN CDB.
    """

    opcode: Opcode
    third_party: bool = False
    long_id: bool = False
    extent: bool = False

    @classmethod
    def decode(cls, cdb: bytes) -> ReserveReleaseCdb:
        opcode = Opcode(cdb[0])
        flags = cdb[1]
        request = cls(
            opcode,
            third_party=bool(flags & _THIRD_PARTY),
            long_id=bool(flags & _LONG_ID) and opcode in (Opcode.RESERVE_10, Opcode.RELEASE_10),
            extent=bool(flags & _EXTENT),
        )
        if request.third_party:
            raise invalid_field_in_cdb(1, 4)
        if request.long_id:
            raise invalid_field_in_cdb(1, 1)
        if request.extent:
            raise invalid_field_in_cdb(1, 0)
        return request

    def encode(self) -> bytes:
        flags = (
            (_THIRD_PARTY if self.third_party else 0)
            | (_LONG_ID if self.long_id else 0)
            | (_EXTENT if self.extent else 0)
        )
        if self.opcode in (Opcode.RESERVE_10, Opcode.RELEASE_10):
            return _RESERVE_10_CDB.pack(self.opcode, flags, 0, 0, 0, 0)
        return _RESERVE_6_CDB.pack(self.opcode, flags, 0, 0, 0)


async def reserve(lu: LogicalUnit, cmd: Command) -> CommandResult:
    """RESERVE(10)/(6) (SPC-2 §7.21, §7.22): reserve the whole logical unit for this nexus.

    The dispatcher already answered RESERVATION CONFLICT if another nexus holds it; the
    check here keeps the handler correct on its own.
    """
    ReserveReleaseCdb.decode(cmd.cdb)
    legacy = lu.pr.legacy_reservation(cmd.nexus)
    if legacy is LegacyReservation.CONFLICT:
        return CommandResult(status=Status.RESERVATION_CONFLICT)
    if legacy is LegacyReservation.IGNORE:
        return CommandResult()  # SPC-4 §5.13.3: a PR holder's RESERVE is GOOD and changes nothing
    holder = lu.scsi2_reservation
    if holder is not None and holder != cmd.nexus:
        return CommandResult(status=Status.RESERVATION_CONFLICT)
    lu.scsi2_reservation = cmd.nexus
    return CommandResult()


async def release(lu: LogicalUnit, cmd: Command) -> CommandResult:
    """RELEASE(10)/(6) (SPC-2 §7.16, §7.17): GOOD always; only the holder's release counts."""
    ReserveReleaseCdb.decode(cmd.cdb)
    legacy = lu.pr.legacy_reservation(cmd.nexus)
    if legacy is LegacyReservation.CONFLICT:
        return CommandResult(status=Status.RESERVATION_CONFLICT)
    if legacy is LegacyReservation.SPC2 and lu.scsi2_reservation == cmd.nexus:
        lu.scsi2_reservation = None
    return CommandResult()


# -- the table -----------------------------------------------------------------------------


def _usage(*cdb_bits: int) -> bytes:
    """CDB USAGE DATA (SPC-4 §6.35.3): the given bytes, then the control byte."""
    return bytes((*cdb_bits, CONTROL_USAGE))


COMMANDS: list[CommandSpec] = [
    CommandSpec(
        Opcode.TEST_UNIT_READY,
        "TEST UNIT READY",
        handle_test_unit_ready,
        _usage(Opcode.TEST_UNIT_READY, 0x00, 0x00, 0x00, 0x00),
    ),
    CommandSpec(
        Opcode.REQUEST_SENSE,
        "REQUEST SENSE",
        request_sense,
        _usage(Opcode.REQUEST_SENSE, _DESC, 0x00, 0x00, 0xFF),
        direction=DataDirection.IN,
        allowed_with_unit_attention=True,
        allowed_with_scsi2_reservation=True,
    ),
    CommandSpec(
        Opcode.INQUIRY,
        "INQUIRY",
        inquiry,
        # CMDDT is examined only to refuse it.
        _usage(Opcode.INQUIRY, 0x03, 0xFF, 0xFF, 0xFF),
        direction=DataDirection.IN,
        allowed_with_unit_attention=True,
        allowed_with_scsi2_reservation=True,
    ),
    CommandSpec(
        Opcode.MODE_SELECT_6,
        "MODE SELECT(6)",
        mode_select,
        _usage(Opcode.MODE_SELECT_6, 0x11, 0x00, 0x00, 0xFF),
        direction=DataDirection.OUT,
    ),
    CommandSpec(
        Opcode.RESERVE_6,
        "RESERVE(6)",
        reserve,
        _usage(Opcode.RESERVE_6, _THIRD_PARTY | _EXTENT, 0x00, 0x00, 0x00),
    ),
    CommandSpec(
        Opcode.RELEASE_6,
        "RELEASE(6)",
        release,
        _usage(Opcode.RELEASE_6, _THIRD_PARTY | _EXTENT, 0x00, 0x00, 0x00),
        allowed_with_scsi2_reservation=True,
    ),
    CommandSpec(
        Opcode.MODE_SENSE_6,
        "MODE SENSE(6)",
        mode_sense,
        _usage(Opcode.MODE_SENSE_6, 0x08, 0xFF, 0xFF, 0xFF),
        direction=DataDirection.IN,
    ),
    CommandSpec(
        Opcode.START_STOP_UNIT,
        "START STOP UNIT",
        start_stop_unit,
        _usage(Opcode.START_STOP_UNIT, _IMMED, 0x00, 0x00, 0xF0 | _NO_FLUSH | _LOEJ | _START),
    ),
    CommandSpec(
        Opcode.PREVENT_ALLOW_MEDIUM_REMOVAL,
        "PREVENT ALLOW MEDIUM REMOVAL",
        prevent_allow_medium_removal,
        _usage(Opcode.PREVENT_ALLOW_MEDIUM_REMOVAL, 0x00, 0x00, 0x00, _PREVENT_MASK),
    ),
    CommandSpec(
        Opcode.MODE_SELECT_10,
        "MODE SELECT(10)",
        mode_select,
        _usage(Opcode.MODE_SELECT_10, 0x11, 0x00, 0x00, 0x00, 0x00, 0x00, 0xFF, 0xFF),
        direction=DataDirection.OUT,
    ),
    CommandSpec(
        Opcode.RESERVE_10,
        "RESERVE(10)",
        reserve,
        _usage(Opcode.RESERVE_10, _THIRD_PARTY | _LONG_ID | _EXTENT, 0, 0, 0, 0, 0, 0, 0),
    ),
    CommandSpec(
        Opcode.RELEASE_10,
        "RELEASE(10)",
        release,
        _usage(Opcode.RELEASE_10, _THIRD_PARTY | _LONG_ID | _EXTENT, 0, 0, 0, 0, 0, 0, 0),
        allowed_with_scsi2_reservation=True,
    ),
    CommandSpec(
        Opcode.MODE_SENSE_10,
        "MODE SENSE(10)",
        mode_sense,
        _usage(Opcode.MODE_SENSE_10, 0x18, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0xFF, 0xFF),
        direction=DataDirection.IN,
    ),
    CommandSpec(
        Opcode.REPORT_LUNS,
        "REPORT LUNS",
        report_luns,
        _usage(Opcode.REPORT_LUNS, 0x00, 0xFF, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0x00),
        direction=DataDirection.IN,
        allowed_with_unit_attention=True,
        allowed_with_scsi2_reservation=True,
    ),
    CommandSpec(
        Opcode.MAINTENANCE_IN,
        "REPORT SUPPORTED OPERATION CODES",
        report_supported_opcodes,
        _usage(
            Opcode.MAINTENANCE_IN,
            MaintenanceIn.REPORT_SUPPORTED_OPERATION_CODES,
            0x87,
            0xFF,
            0xFF,
            0xFF,
            0xFF,
            0xFF,
            0xFF,
            0xFF,
            0x00,
        ),
        direction=DataDirection.IN,
        service_action=MaintenanceIn.REPORT_SUPPORTED_OPERATION_CODES,
        # Reports that touch no medium, as SPC-4 allows under persistent reservations.
        allowed_with_scsi2_reservation=True,
    ),
    CommandSpec(
        Opcode.MAINTENANCE_IN,
        "REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS",
        report_supported_tmfs,
        _usage(
            Opcode.MAINTENANCE_IN,
            MaintenanceIn.REPORT_SUPPORTED_TASK_MANAGEMENT_FUNCTIONS,
            0x80,
            0x00,
            0x00,
            0x00,
            0xFF,
            0xFF,
            0xFF,
            0xFF,
            0x00,
        ),
        direction=DataDirection.IN,
        service_action=MaintenanceIn.REPORT_SUPPORTED_TASK_MANAGEMENT_FUNCTIONS,
        allowed_with_scsi2_reservation=True,
    ),
]
