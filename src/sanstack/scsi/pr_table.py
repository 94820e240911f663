"""Which commands a persistent reservation lets through: the access table of SPC-4 and SBC-4.

Theory of operation. SPC-4 §5.13.1 table 'SPC commands that are allowed in the presence of
various reservations', its companion 'PERSISTENT RESERVE OUT service actions that are allowed
in the presence of various reservations', and SBC-4 §4.17 table 'SBC commands that are
allowed in the presence of various reservations' give, per command, 'Allowed' or 'Conflict'
for an I_T nexus that is not the reservation holder, in columns by reservation type and by
whether that I_T nexus is registered. Commands that behave alike form a ``Category``;
``command_category`` maps a CDB to its category (a few commands, such as START STOP UNIT and
PREVENT ALLOW MEDIUM REMOVAL, fall in one or another by a CDB field), and ``ALLOWED`` holds
the verdict for every (category, reservation type, relation) triple. The reservation holder
is allowed everything (§5.13.1); under an all registrants type every registrant is a holder
(§5.13.10), which the engine works out before it asks.

The four type columns are the spec's: Write Exclusive, Exclusive Access, and the registrants
only / all registrants pairs, which the tables treat alike ("RR" below).

The value types the engine keeps its state in (``ITNexus``, ``Registration``,
``Reservation``, ``TargetPort``) live here too, next to the ``Relation`` they decide, with
their JSON forms; ``sanstack.scsi.pr`` re-exports them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final, Self

from sanstack.scsi.codes import MaintenanceIn, MaintenanceOut, Opcode, ServiceActionIn16
from sanstack.scsi.command import Nexus
from sanstack.scsi.pr_codec import PROutServiceAction, PRScope, PRType, TransportID


class Category(Enum):
    """Commands that every reservation type treats the same way."""

    # INQUIRY, LOG SENSE, PERSISTENT RESERVE IN, READ CAPACITY, REPORT LUNS, REQUEST SENSE,
    # TEST UNIT READY, REPORT TARGET PORT GROUPS...: allowed in every column.
    ALLOWED = "allowed"
    # Medium and cache reads and the reports SPC-4 groups with them (MODE SENSE, READ BUFFER,
    # REPORT SUPPORTED OPERATION CODES...): shared under Write Exclusive types.
    READ = "read"
    # Medium and cache writes and state changes (MODE SELECT, SYNCHRONIZE CACHE, UNMAP,
    # SET TARGET PORT GROUPS...): only the holder and, under RR types, registrants.
    WRITE = "write"
    # PERSISTENT RESERVE OUT REGISTER and REGISTER AND IGNORE EXISTING KEY.
    PR_OUT_REGISTER = "pr out register"
    # PERSISTENT RESERVE OUT CLEAR, PREEMPT, PREEMPT AND ABORT, RELEASE.
    PR_OUT_REGISTRANT = "pr out registrant"
    # PERSISTENT RESERVE OUT RESERVE and REGISTER AND MOVE.
    PR_OUT_HOLDER = "pr out holder"
    # RESERVE(6/10) and RELEASE(6/10) under SPC-4 §5.13.3 (CRH=1).
    LEGACY_RESERVE_RELEASE = "legacy reserve/release"


class Relation(Enum):
    """How the I_T nexus sending a command stands to the persistent reservation."""

    HOLDER = "holder"
    REGISTERED = "registered"
    NOT_REGISTERED = "not registered"


class LegacyReservation(Enum):
    """How a RESERVE(6/10) or RELEASE(6/10) proceeds next to persistent reservations."""

    SPC2 = "process as SPC-2"  # no registrations: SPC-2 §5.5 rules alone
    IGNORE = "GOOD, no change"  # §5.13.3 a) and b)
    CONFLICT = "RESERVATION CONFLICT"  # SPC-2 §5.5.1 while registrations exist


A, C = True, False  # Allowed, Conflict
Row = tuple[bool, bool, bool, bool]  # Write Exclusive, Exclusive Access, WE-RR, EA-RR

_EVERYWHERE: Final[Row] = (A, A, A, A)

# Category -> relation -> verdict per type column. The HOLDER row is the same everywhere
# (§5.13.1: "the persistent reservation holder ... is allowed all commands"); it is spelled
# out so that the table is complete on its own.
_ROWS: Final[dict[Category, dict[Relation, Row]]] = {
    # SPC-4 table 'SPC commands ... allowed', rows INQUIRY, LOG SENSE, PERSISTENT RESERVE IN,
    # REPORT LUNS, REPORT TARGET PORT GROUPS, REQUEST SENSE, TEST UNIT READY; SBC-4 §4.17
    # rows READ CAPACITY, PREVENT ALLOW MEDIUM REMOVAL (PREVENT=0), START STOP UNIT (START=1,
    # POWER CONDITION=0): "Allowed" in every column.
    Category.ALLOWED: {
        Relation.HOLDER: _EVERYWHERE,
        Relation.REGISTERED: (A, A, A, A),
        Relation.NOT_REGISTERED: (A, A, A, A),
    },
    # SPC-4 rows MODE SENSE, READ BUFFER, RECEIVE COPY RESULTS, REPORT SUPPORTED OPERATION
    # CODES, REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS; SBC-4 rows READ, VERIFY, PRE-FETCH,
    # GET LBA STATUS: from any I_T nexus Allowed (WE) / Conflict (EA); from a registered I_T
    # nexus (RR) Allowed; from one not registered Allowed (WE-RR) / Conflict (EA-RR).
    Category.READ: {
        Relation.HOLDER: _EVERYWHERE,
        Relation.REGISTERED: (A, C, A, A),
        Relation.NOT_REGISTERED: (A, C, A, C),
    },
    # SPC-4 rows MODE SELECT, LOG SELECT, WRITE BUFFER, SEND DIAGNOSTIC, EXTENDED COPY, SET
    # TARGET PORT GROUPS; SBC-4 rows WRITE, WRITE AND VERIFY, WRITE SAME, ORWRITE, COMPARE AND
    # WRITE, UNMAP, SYNCHRONIZE CACHE, FORMAT UNIT, PREVENT ALLOW MEDIUM REMOVAL (PREVENT<>0),
    # START STOP UNIT (START=0 or POWER CONDITION<>0): Conflict except from a registered
    # I_T nexus under an RR type.
    Category.WRITE: {
        Relation.HOLDER: _EVERYWHERE,
        Relation.REGISTERED: (C, C, A, A),
        Relation.NOT_REGISTERED: (C, C, C, C),
    },
    # SPC-4 table 'PERSISTENT RESERVE OUT service actions ... allowed', rows REGISTER and
    # REGISTER AND IGNORE EXISTING KEY: Allowed from registered and not registered I_T nexuses.
    Category.PR_OUT_REGISTER: {
        Relation.HOLDER: _EVERYWHERE,
        Relation.REGISTERED: (A, A, A, A),
        Relation.NOT_REGISTERED: (A, A, A, A),
    },
    # Same table, rows CLEAR, PREEMPT, PREEMPT AND ABORT, RELEASE: Allowed from a registered
    # I_T nexus (RELEASE from a non-holder then completes GOOD without releasing, §5.13.11.2),
    # Conflict from one not registered.
    Category.PR_OUT_REGISTRANT: {
        Relation.HOLDER: _EVERYWHERE,
        Relation.REGISTERED: (A, A, A, A),
        Relation.NOT_REGISTERED: (C, C, C, C),
    },
    # Same table, rows RESERVE and REGISTER AND MOVE: Conflict from anyone but the holder.
    Category.PR_OUT_HOLDER: {
        Relation.HOLDER: _EVERYWHERE,
        Relation.REGISTERED: (C, C, C, C),
        Relation.NOT_REGISTERED: (C, C, C, C),
    },
    # SPC-4 §5.13.3: RESERVE/RELEASE complete GOOD (and change nothing) from the holder, or
    # from a registered I_T nexus under an RR type; otherwise SPC-2 applies, and SPC-2 §5.5.1
    # makes every RESERVE and RELEASE conflict while any registration exists.
    Category.LEGACY_RESERVE_RELEASE: {
        Relation.HOLDER: _EVERYWHERE,
        Relation.REGISTERED: (C, C, A, A),
        Relation.NOT_REGISTERED: (C, C, C, C),
    },
}

_COLUMN: Final[dict[PRType, int]] = {
    PRType.WRITE_EXCLUSIVE: 0,
    PRType.EXCLUSIVE_ACCESS: 1,
    PRType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY: 2,
    PRType.WRITE_EXCLUSIVE_ALL_REGISTRANTS: 2,
    PRType.EXCLUSIVE_ACCESS_REGISTRANTS_ONLY: 3,
    PRType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS: 3,
}

ALLOWED: Final[dict[tuple[Category, PRType, Relation], bool]] = {
    (category, pr_type, relation): row[_COLUMN[pr_type]]
    for category, rows in _ROWS.items()
    for relation, row in rows.items()
    for pr_type in PRType
}


def allowed(category: Category, pr_type: PRType, relation: Relation) -> bool:
    """Whether a command of ``category`` from an I_T nexus in ``relation`` to a reservation of
    ``pr_type`` proceeds (else it ends with RESERVATION CONFLICT)."""
    return ALLOWED[category, pr_type, relation]


# -- who is registered, who holds the reservation -----------------------------------------


@dataclass(frozen=True, slots=True)
class TargetPort:
    """One target port of this SCSI target device (SAM-5 §4.6.4): for iSCSI the target name
    plus the portal group tag, numbered by its relative target port identifier."""

    relative_target_port_id: int
    target_name: str
    tpgt: int

    @classmethod
    def of(cls, nexus: Nexus) -> Self:
        return cls(nexus.relative_target_port_id, nexus.target_name, nexus.tpgt)


@dataclass(frozen=True, slots=True)
class ITNexus:
    """An I_T nexus as a registration names it. ``isid`` None stands for every initiator port
    of the initiator device (a format 00b TransportID). Names are kept in lower case: the
    iSCSI stringprep profile (RFC 3722) folds case, so two spellings are one node."""

    initiator_name: str
    isid: int | None
    relative_target_port_id: int

    @classmethod
    def of(cls, nexus: Nexus) -> Self:
        return cls(nexus.initiator_name.lower(), nexus.isid, nexus.relative_target_port_id)

    @classmethod
    def at(cls, transport_id: TransportID, relative_target_port_id: int) -> Self:
        return cls(transport_id.iscsi_name.lower(), transport_id.isid, relative_target_port_id)

    def matches(self, nexus: Nexus) -> bool:
        return (
            self.relative_target_port_id == nexus.relative_target_port_id
            and (self.isid is None or self.isid == nexus.isid)
            and self.initiator_name == nexus.initiator_name.lower()
        )

    def overlaps(self, other: ITNexus) -> bool:
        """Whether some live I_T nexus would match both."""
        return (
            self.relative_target_port_id == other.relative_target_port_id
            and self.initiator_name == other.initiator_name
            and (self.isid is None or other.isid is None or self.isid == other.isid)
        )

    @property
    def transport_id(self) -> TransportID:
        return TransportID(self.initiator_name, self.isid)

    def to_dict(self) -> dict[str, Any]:
        return {
            "initiator_port": self.transport_id.text,
            "relative_target_port_id": self.relative_target_port_id,
        }

    @classmethod
    def from_dict(cls, item: dict[str, Any]) -> Self:
        """The inverse of ``to_dict``; raises ``ValueError``, ``KeyError`` or ``TypeError``."""
        transport_id = TransportID.from_text(item["initiator_port"])
        return cls.at(transport_id, _integer(item["relative_target_port_id"]))


@dataclass(frozen=True, slots=True)
class Registration:
    """A registered I_T nexus and its reservation key (§5.13.7); ``all_tg_pt`` records that
    the REGISTER which made it set ALL_TG_PT (READ FULL STATUS reports it)."""

    nexus: ITNexus
    reservation_key: int
    all_tg_pt: bool = False

    def to_dict(self) -> dict[str, Any]:
        # The key as hex text: JSON readers elsewhere lose precision above 2**53.
        return {
            **self.nexus.to_dict(),
            "reservation_key": f"0x{self.reservation_key:016x}",
            "all_tg_pt": self.all_tg_pt,
        }

    @classmethod
    def from_dict(cls, item: dict[str, Any]) -> Self:
        key = int(item["reservation_key"], 16)
        if not 0 < key < 1 << 64:
            raise ValueError(f"reservation key {key:#x} cannot be registered")
        return cls(ITNexus.from_dict(item), key, _boolean(item["all_tg_pt"]))


@dataclass(frozen=True, slots=True)
class Reservation:
    """The persistent reservation (§5.13.9). ``holder`` is None for the all registrants
    types, where every registered I_T nexus holds it (§5.13.10)."""

    holder: ITNexus | None
    pr_type: PRType
    scope: PRScope = PRScope.LU_SCOPE

    def to_dict(self) -> dict[str, Any]:
        return {
            "holder": None if self.holder is None else self.holder.to_dict(),
            "type": int(self.pr_type),
            "scope": int(self.scope),
        }

    @classmethod
    def from_dict(cls, item: dict[str, Any]) -> Self:
        holder = None if item["holder"] is None else ITNexus.from_dict(item["holder"])
        return cls(holder, PRType(_integer(item["type"])), PRScope(_integer(item["scope"])))


def _integer(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"expected an integer, got {value!r}")
    return value


def _boolean(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    return value


# -- command -> category ---------------------------------------------------------------------


def _byte(cdb: bytes | memoryview, index: int) -> int:
    return cdb[index] if index < len(cdb) else 0


def _service_action(cdb: bytes | memoryview) -> int:
    return _byte(cdb, 1) & 0x1F


_PR_OUT: Final[dict[int, Category]] = {
    PROutServiceAction.REGISTER: Category.PR_OUT_REGISTER,
    PROutServiceAction.REGISTER_AND_IGNORE_EXISTING_KEY: Category.PR_OUT_REGISTER,
    PROutServiceAction.CLEAR: Category.PR_OUT_REGISTRANT,
    PROutServiceAction.PREEMPT: Category.PR_OUT_REGISTRANT,
    PROutServiceAction.PREEMPT_AND_ABORT: Category.PR_OUT_REGISTRANT,
    PROutServiceAction.RELEASE: Category.PR_OUT_REGISTRANT,
    PROutServiceAction.RESERVE: Category.PR_OUT_HOLDER,
    PROutServiceAction.REGISTER_AND_MOVE: Category.PR_OUT_HOLDER,
}


def _pr_out(cdb: bytes | memoryview) -> Category:
    # An unknown service action passes, so that the command reports INVALID FIELD IN CDB.
    return _PR_OUT.get(_service_action(cdb), Category.PR_OUT_REGISTER)


def _prevent_allow(cdb: bytes | memoryview) -> Category:
    return Category.WRITE if _byte(cdb, 4) & 0x03 else Category.ALLOWED


def _start_stop(cdb: bytes | memoryview) -> Category:
    flags = _byte(cdb, 4)
    start, power_condition = flags & 0x01, flags >> 4
    return Category.ALLOWED if start and not power_condition else Category.WRITE


_MAINTENANCE_IN: Final[dict[int, Category]] = {
    MaintenanceIn.REPORT_TARGET_PORT_GROUPS: Category.ALLOWED,
    MaintenanceIn.REPORT_SUPPORTED_OPERATION_CODES: Category.READ,
    MaintenanceIn.REPORT_SUPPORTED_TASK_MANAGEMENT_FUNCTIONS: Category.READ,
}


def _maintenance_in(cdb: bytes | memoryview) -> Category:
    return _MAINTENANCE_IN.get(_service_action(cdb), Category.WRITE)


_MAINTENANCE_OUT: Final[dict[int, Category]] = {
    MaintenanceOut.SET_TARGET_PORT_GROUPS: Category.WRITE,
}


def _maintenance_out(cdb: bytes | memoryview) -> Category:
    return _MAINTENANCE_OUT.get(_service_action(cdb), Category.WRITE)


_SERVICE_ACTION_IN_16: Final[dict[int, Category]] = {
    ServiceActionIn16.READ_CAPACITY_16: Category.ALLOWED,
    ServiceActionIn16.GET_LBA_STATUS: Category.READ,
}


def _service_action_in_16(cdb: bytes | memoryview) -> Category:
    return _SERVICE_ACTION_IN_16.get(_service_action(cdb), Category.WRITE)


_BY_OPCODE: Final[dict[int, Category | Callable[[bytes | memoryview], Category]]] = {
    Opcode.TEST_UNIT_READY: Category.ALLOWED,
    Opcode.REQUEST_SENSE: Category.ALLOWED,
    Opcode.INQUIRY: Category.ALLOWED,
    Opcode.REPORT_LUNS: Category.ALLOWED,
    Opcode.LOG_SENSE: Category.ALLOWED,
    Opcode.READ_CAPACITY_10: Category.ALLOWED,
    Opcode.PERSISTENT_RESERVE_IN: Category.ALLOWED,
    Opcode.READ_6: Category.READ,
    Opcode.READ_10: Category.READ,
    Opcode.READ_12: Category.READ,
    Opcode.READ_16: Category.READ,
    Opcode.VERIFY_10: Category.READ,
    Opcode.VERIFY_12: Category.READ,
    Opcode.VERIFY_16: Category.READ,
    Opcode.PRE_FETCH_10: Category.READ,
    Opcode.PRE_FETCH_16: Category.READ,
    Opcode.MODE_SENSE_6: Category.READ,
    Opcode.MODE_SENSE_10: Category.READ,
    Opcode.READ_BUFFER: Category.READ,
    Opcode.RECEIVE_COPY_RESULTS: Category.READ,
    Opcode.WRITE_6: Category.WRITE,
    Opcode.WRITE_10: Category.WRITE,
    Opcode.WRITE_12: Category.WRITE,
    Opcode.WRITE_16: Category.WRITE,
    Opcode.WRITE_AND_VERIFY_10: Category.WRITE,
    Opcode.WRITE_AND_VERIFY_12: Category.WRITE,
    Opcode.WRITE_AND_VERIFY_16: Category.WRITE,
    Opcode.ORWRITE_16: Category.WRITE,
    Opcode.COMPARE_AND_WRITE: Category.WRITE,
    Opcode.WRITE_SAME_10: Category.WRITE,
    Opcode.WRITE_SAME_16: Category.WRITE,
    Opcode.UNMAP: Category.WRITE,
    Opcode.SYNCHRONIZE_CACHE_10: Category.WRITE,
    Opcode.SYNCHRONIZE_CACHE_16: Category.WRITE,
    Opcode.FORMAT_UNIT: Category.WRITE,
    Opcode.MODE_SELECT_6: Category.WRITE,
    Opcode.MODE_SELECT_10: Category.WRITE,
    Opcode.LOG_SELECT: Category.WRITE,
    Opcode.WRITE_BUFFER: Category.WRITE,
    Opcode.SEND_DIAGNOSTIC: Category.WRITE,
    Opcode.EXTENDED_COPY: Category.WRITE,
    Opcode.RESERVE_6: Category.LEGACY_RESERVE_RELEASE,
    Opcode.RESERVE_10: Category.LEGACY_RESERVE_RELEASE,
    Opcode.RELEASE_6: Category.LEGACY_RESERVE_RELEASE,
    Opcode.RELEASE_10: Category.LEGACY_RESERVE_RELEASE,
    Opcode.PERSISTENT_RESERVE_OUT: _pr_out,
    Opcode.PREVENT_ALLOW_MEDIUM_REMOVAL: _prevent_allow,
    Opcode.START_STOP_UNIT: _start_stop,
    Opcode.MAINTENANCE_IN: _maintenance_in,
    Opcode.MAINTENANCE_OUT: _maintenance_out,
    Opcode.SERVICE_ACTION_IN_16: _service_action_in_16,
}


def command_category(cdb: bytes | memoryview) -> Category:
    """The category of the command in ``cdb``. A command missing from the tables is treated
    as a write: refusing an unknown command is the failure that cannot corrupt data."""
    entry = _BY_OPCODE.get(cdb[0], Category.WRITE) if cdb else Category.WRITE
    return entry if isinstance(entry, Category) else entry(cdb)
