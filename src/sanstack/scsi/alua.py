"""Asymmetric logical unit access (SPC-4 §5.16): target port groups, what each target port
asymmetric access state lets through a port, and REPORT / SET TARGET PORT GROUPS.

Theory of operation. Every iSCSI portal group is one SCSI target port whose relative target
port identifier is its TPGT (ARCHITECTURE.md), and by default each port is its own target
port group with the same id (``ALUAGroups.one_per_port``). One ``ALUAGroups`` serves every
logical unit of a target: ``TargetInfo.alua`` holds it and every ``LogicalUnit`` refers
to it as ``lu.alua``.

A group's state changes implicitly when the operator calls ``ALUAGroups.set_state(...,
explicit=False)`` (SPC-4 §5.16.2.7) or explicitly through SET TARGET PORT GROUPS (§5.16.2.8).
Either way SPC-4 asks for ASYMMETRIC ACCESS STATE CHANGED (2Ah/06h) on every I_T nexus, except
the one that sent the STPG; ``set_state`` returns the relative target ports of the group it
changed (empty when nothing changed) and ``announce_state_change`` establishes the attention.

Before a command runs, ``access_check`` looks up (state of the port it came through, command
category) in ``ACCESS_TABLE`` (§5.16.2.4, §5.16.2.5) and answers NOT READY with the state's
ASC when the state refuses it. The dispatcher runs that after the unit attention check and
before the reservation checks, in LIO's order (target_cmd_parse_cdb): a standby path must say
"standby" rather than RESERVATION CONFLICT, which dm-multipath does not treat as a path error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import Enum, auto
from typing import TYPE_CHECKING

from sanstack.scsi.alua_codec import (
    SUPPORT_BIT,
    ALUAState,
    ALUAStatus,
    ParameterDataFormat,
    ReportTargetPortGroupsCdb,
    ReportTargetPortGroupsData,
    SetTargetPortGroupsCdb,
    SetTargetPortGroupsParameters,
    SupportedStates,
    TargetPortGroupDescriptor,
)
from sanstack.scsi.codes import (
    ASC,
    MaintenanceIn,
    MaintenanceOut,
    Opcode,
    SenseKey,
    ServiceActionIn16,
)
from sanstack.scsi.command import Command, CommandResult, CommandSpec, DataDirection, Nexus
from sanstack.scsi.inquiry import Tpgs
from sanstack.scsi.sense import CheckCondition, invalid_field_in_parameter_list

if TYPE_CHECKING:
    from sanstack.scsi.logical_unit import LogicalUnit

__all__ = [
    "ACCESS_TABLE",
    "COMMANDS",
    "DEFAULT_SUPPORTED_STATES",
    "INACCESSIBLE_ASC",
    "SETTABLE_STATES",
    "ALUAGroups",
    "AccessCategory",
    "TargetPortGroup",
    "TransitionRefused",
    "access_check",
    "announce_state_change",
    "attach_groups",
    "command_category",
    "groups_of",
    "report_target_port_groups",
    "set_target_port_groups",
]

# Every state an operator can move a group to by default. LBD_SUP stays clear: sanstack has no
# LBA map (REPORT REFERRALS). O_SUP stays clear because sanstack keeps no per-port secondary
# state for STPG to set; taking a port off the network is the portal group's `enabled` flag.
DEFAULT_SUPPORTED_STATES = (
    SupportedStates.T_SUP
    | SupportedStates.U_SUP
    | SupportedStates.S_SUP
    | SupportedStates.AN_SUP
    | SupportedStates.AO_SUP
)

# What SET TARGET PORT GROUPS may request (SPC-4 §6.45): the primary states. Transitioning and
# LBD are reserved codes there; offline is a per-port secondary state sanstack does not model.
SETTABLE_STATES = frozenset(
    {
        ALUAState.ACTIVE_OPTIMIZED,
        ALUAState.ACTIVE_NON_OPTIMIZED,
        ALUAState.STANDBY,
        ALUAState.UNAVAILABLE,
    }
)

_MAX_ID = 0xFFFF
_MAX_PORTS_PER_GROUP = 0xFF


class TransitionRefused(ValueError):
    """``set_state`` was asked for something SPC-4 or this group does not allow."""

    def __init__(self, message: str, *, unknown_group: bool = False) -> None:
        super().__init__(message)
        self.unknown_group = unknown_group


@dataclass(slots=True)
class TargetPortGroup:
    """One target port group (SPC-4 §5.16.2.2): ports that are always in the same state.

    Change ``state`` and ``preferred`` through ``ALUAGroups`` so the change is validated and
    reported; the fields are plain so RTPG can read them without copying.
    """

    group_id: int
    relative_target_port_ids: tuple[int, ...]
    state: ALUAState = ALUAState.ACTIVE_OPTIMIZED
    status: ALUAStatus = ALUAStatus.NO_STATUS
    preferred: bool = False
    supported_states: SupportedStates = DEFAULT_SUPPORTED_STATES

    def __post_init__(self) -> None:
        if not 0 <= self.group_id <= _MAX_ID:
            raise ValueError(f"target port group {self.group_id} is outside 0..{_MAX_ID}")
        ports = self.relative_target_port_ids
        # SPC-4 §7.8.6.5: relative target port identifier 0 is reserved.
        if any(not 1 <= port <= _MAX_ID for port in ports):
            raise ValueError(f"relative target port ids {ports} must be in 1..{_MAX_ID}")
        if len(set(ports)) != len(ports):
            raise ValueError(f"target port group {self.group_id} lists a port twice")
        if len(ports) > _MAX_PORTS_PER_GROUP:
            raise ValueError(f"target port group {self.group_id} has more than 255 ports")
        if self.supported_states & SupportedStates.LBD_SUP:
            raise ValueError("logical block dependent access needs an LBA map sanstack lacks")
        if not self.supports(self.state):
            raise ValueError(f"target port group {self.group_id} does not support {self.state}")

    def supports(self, state: ALUAState) -> bool:
        return bool(self.supported_states & SUPPORT_BIT[state])

    def descriptor(self) -> TargetPortGroupDescriptor:
        """This group as a REPORT TARGET PORT GROUPS descriptor (SPC-4 §6.37)."""
        return TargetPortGroupDescriptor(
            target_port_group=self.group_id,
            asymmetric_access_state=self.state,
            supported_states=self.supported_states,
            relative_target_port_ids=self.relative_target_port_ids,
            preferred=self.preferred,
            status_code=self.status,
        )


class ALUAGroups:
    """All target port groups of one target, shared by its logical units.

    ``tpgs`` is what standard INQUIRY reports (SPC-4 §6.6.2); SET TARGET PORT GROUPS is only
    served when it includes explicit access. ``on_change``, when set, is called with the I_T
    nexus of a SET TARGET PORT GROUPS that changed something, so the target can announce the
    change on all of its logical units instead of only the addressed one.
    """

    def __init__(
        self,
        groups: Iterable[TargetPortGroup],
        *,
        tpgs: Tpgs = Tpgs.BOTH,
        implicit_transition_time: int = 0,
        on_change: Callable[[Nexus | None], None] | None = None,
    ) -> None:
        if tpgs == Tpgs.NOT_SUPPORTED:
            raise ValueError("target port groups need TPGS implicit, explicit or both")
        if not 0 <= implicit_transition_time <= 0xFF:
            raise ValueError("IMPLICIT TRANSITION TIME is one byte of seconds")
        self.tpgs = tpgs
        self.implicit_transition_time = implicit_transition_time
        self.on_change = on_change
        self._groups: dict[int, TargetPortGroup] = {}
        self._by_port: dict[int, TargetPortGroup] = {}
        for group in groups:
            self.add_group(group)

    @classmethod
    def one_per_port(
        cls,
        relative_target_port_ids: Iterable[int],
        *,
        states: Mapping[int, ALUAState] | None = None,
        preferred: Iterable[int] = (),
        supported_states: SupportedStates = DEFAULT_SUPPORTED_STATES,
        tpgs: Tpgs = Tpgs.BOTH,
        implicit_transition_time: int = 0,
    ) -> ALUAGroups:
        """sanstack's default layout: group id = relative target port id = TPGT.

        ``states`` and ``preferred`` are keyed by that id; unlisted groups start active/optimized
        and not preferred. PREF defaults to clear because libiscsi reads the descriptor's first
        byte through little-endian bitfields and sees PREF=1 as state 8 (test_rtpg_simple.c).
        """
        states = states or {}
        favourite = set(preferred)
        return cls(
            (
                TargetPortGroup(
                    port,
                    (port,),
                    state=states.get(port, ALUAState.ACTIVE_OPTIMIZED),
                    preferred=port in favourite,
                    supported_states=supported_states,
                )
                for port in relative_target_port_ids
            ),
            tpgs=tpgs,
            implicit_transition_time=implicit_transition_time,
        )

    # -- membership ----------------------------------------------------------------------

    @property
    def groups(self) -> tuple[TargetPortGroup, ...]:
        """Every group in ascending id order, the order RTPG reports them in every time."""
        return tuple(self._groups[gid] for gid in sorted(self._groups))

    @property
    def explicit_supported(self) -> bool:
        return bool(self.tpgs & Tpgs.EXPLICIT)

    def add_group(self, group: TargetPortGroup) -> None:
        """Add a group; a port belongs to exactly one primary group (SPC-4 §5.16.2.2)."""
        if group.group_id in self._groups:
            raise ValueError(f"target port group {group.group_id} is defined twice")
        taken = [port for port in group.relative_target_port_ids if port in self._by_port]
        if taken:
            raise ValueError(f"relative target ports {taken} are already in a group")
        self._groups[group.group_id] = group
        for port in group.relative_target_port_ids:
            self._by_port[port] = group

    def remove_group(self, group_id: int) -> TargetPortGroup:
        group = self._groups.pop(group_id)
        for port in group.relative_target_port_ids:
            del self._by_port[port]
        return group

    def group(self, group_id: int) -> TargetPortGroup:
        """The group with this id; KeyError if there is none."""
        return self._groups[group_id]

    def group_of_port(self, relative_target_port_id: int) -> TargetPortGroup | None:
        return self._by_port.get(relative_target_port_id)

    def group_id_of_port(self, relative_target_port_id: int) -> int:
        """The TARGET PORT GROUP that VPD page 83h must report for this port (it has to match
        RTPG, or Linux scsi_dh_alua cannot find the port's group); KeyError if ungrouped.
        """
        return self._by_port[relative_target_port_id].group_id

    def state_of_port(self, relative_target_port_id: int) -> ALUAState:
        """The port's state; a port in no group is active/optimized, so that a portal group
        added without a target port group cannot take its paths down.
        """
        group = self._by_port.get(relative_target_port_id)
        return ALUAState.ACTIVE_OPTIMIZED if group is None else group.state

    # -- transitions -----------------------------------------------------------------------

    def validate_transition(
        self, group_id: int, state: ALUAState, *, explicit: bool
    ) -> TargetPortGroup:
        """The group ``set_state`` would change, or TransitionRefused saying why not.

        Explicit (STPG) requests are limited to the primary states (SPC-4 §6.45). Implicit
        (operator) requests may also enter transitioning or offline. Either way the group must
        advertise the state in its supported-states bits, which is what RTPG told initiators.
        """
        group = self._groups.get(group_id)
        if group is None:
            raise TransitionRefused(f"no target port group {group_id}", unknown_group=True)
        if explicit and state not in SETTABLE_STATES:
            raise TransitionRefused(f"SET TARGET PORT GROUPS cannot request {state.name}")
        if state == ALUAState.LOGICAL_BLOCK_DEPENDENT or not group.supports(state):
            raise TransitionRefused(f"target port group {group_id} does not support {state.name}")
        return group

    def set_state(self, group_id: int, state: ALUAState, *, explicit: bool) -> list[int]:
        """Move a group to ``state``; the relative target ports whose state changed.

        Re-entering the current state changes nothing, not even STATUS CODE, and returns [] so
        no unit attention is raised (LIO behaves the same). The caller establishes ASYMMETRIC
        ACCESS STATE CHANGED on a non-empty result (``announce_state_change``).
        """
        group = self.validate_transition(group_id, state, explicit=explicit)
        if group.state == state:
            return []
        group.state = state
        group.status = ALUAStatus.CHANGED_BY_STPG if explicit else ALUAStatus.CHANGED_IMPLICITLY
        return sorted(group.relative_target_port_ids)

    def set_preferred(self, group_id: int, preferred: bool) -> list[int]:
        """Set the PREF bit; the group's ports if it changed.

        SPC-4 does not require a unit attention for this; SCST raises one anyway, because
        initiators stop retrying STPG once they see ASYMMETRIC ACCESS STATE CHANGED.
        """
        group = self.group(group_id)
        if group.preferred == preferred:
            return []
        group.preferred = preferred
        return sorted(group.relative_target_port_ids)

    # -- reports and checks ----------------------------------------------------------------

    def report(
        self, parameter_data_format: ParameterDataFormat = ParameterDataFormat.LENGTH_ONLY
    ) -> ReportTargetPortGroupsData:
        """REPORT TARGET PORT GROUPS parameter data (SPC-4 §6.37), untruncated."""
        extended = parameter_data_format == ParameterDataFormat.EXTENDED
        return ReportTargetPortGroupsData(
            tuple(group.descriptor() for group in self.groups),
            parameter_data_format,
            self.implicit_transition_time if extended else 0,
        )

    def access_check(
        self, relative_target_port_id: int, spec: CommandSpec, cdb: bytes
    ) -> CheckCondition | None:
        """``access_check`` for a command that arrived through this relative target port."""
        return access_check(self.state_of_port(relative_target_port_id), spec, cdb)


# -- what each state lets through (SPC-4 §5.16.2.4, §5.16.2.5) ------------------------------


class AccessCategory(Enum):
    """What a command is, as far as the target port asymmetric access states care."""

    INQUIRY_AND_REPORT_LUNS = auto()
    REQUEST_SENSE = auto()
    REPORT_TARGET_PORT_GROUPS = auto()
    SET_TARGET_PORT_GROUPS = auto()
    ECHO_BUFFER = auto()
    SUPPORT_REPORTS = auto()
    MODE_AND_LOG = auto()
    DIAGNOSTICS = auto()
    PERSISTENT_RESERVATIONS = auto()
    RESERVE_RELEASE = auto()
    READ_CAPACITY = auto()
    MEDIA_ACCESS = auto()
    OTHER = auto()


# The ASC a refused command gets, with sense key NOT READY. SPC-4 has no "target port in offline
# state" code; 04h/12h LOGICAL UNIT NOT READY, OFFLINE is what LIO answers through an offline
# port. LBD without an LBA map leaves no block accessible: LIO's 04h/0Ch.
INACCESSIBLE_ASC: dict[ALUAState, ASC] = {
    ALUAState.STANDBY: ASC.LOGICAL_UNIT_NOT_ACCESSIBLE_TARGET_PORT_IN_STANDBY_STATE,
    ALUAState.UNAVAILABLE: ASC.LOGICAL_UNIT_NOT_ACCESSIBLE_TARGET_PORT_IN_UNAVAILABLE_STATE,
    ALUAState.LOGICAL_BLOCK_DEPENDENT: (
        ASC.LOGICAL_UNIT_NOT_ACCESSIBLE_TARGET_PORT_IN_UNAVAILABLE_STATE
    ),
    ALUAState.OFFLINE: ASC.LOGICAL_UNIT_NOT_READY_OFFLINE,
    ALUAState.TRANSITIONING: ASC.LOGICAL_UNIT_NOT_ACCESSIBLE_ASYMMETRIC_ACCESS_STATE_TRANSITION,
}

_Y, _N = True, False
_COLUMNS = (
    ALUAState.ACTIVE_OPTIMIZED,
    ALUAState.ACTIVE_NON_OPTIMIZED,
    ALUAState.STANDBY,
    ALUAState.UNAVAILABLE,
    ALUAState.LOGICAL_BLOCK_DEPENDENT,
    ALUAState.OFFLINE,
    ALUAState.TRANSITIONING,
)
# Columns as in _COLUMNS: AO, ANO, standby, unavailable, LBD, offline, transitioning.
# Standby (§5.16.2.4.4) must serve INQUIRY, LOG SELECT/SENSE, MODE SELECT/SENSE, REPORT LUNS,
# RECEIVE DIAGNOSTIC RESULTS, SEND DIAGNOSTIC, RTPG, STPG, REQUEST SENSE, PERSISTENT RESERVE
# IN/OUT and the echo buffer modes of READ/WRITE BUFFER. Unavailable (§5.16.2.4.5) serves
# INQUIRY, REPORT LUNS, RTPG, STPG, REQUEST SENSE and the echo buffers. Transitioning
# (§5.16.2.5) serves INQUIRY, REPORT LUNS, RTPG, REQUEST SENSE and the echo buffers. These are
# LIO's lists (core_alua_state_standby/_unavailable/_transition, citing spc4r17 5.9.2.4.4,
# 5.9.2.4.5, 5.9.2.5). SPC-4 lets a device server serve more; sanstack adds, as LIO does, READ
# CAPACITY on standby: Linux sd sizes every path with it, and multipathd gives a new map the
# size of the first path it finds (add_map_with_path), so a standby path must not read as 0
# blocks. As FreeBSD CTL does, it adds RESERVE/RELEASE on standby (the SPC-2 counterpart of
# the persistent reservation commands) and REPORT SUPPORTED OPERATION CODES / TASK MANAGEMENT
# FUNCTIONS on standby and unavailable (static reports). TEST UNIT READY stays refused on
# standby: multipathd's tur checker calls a path answering 04h/0Bh "ghost" (a standby path),
# 04h/0Ah "pending" and any other NOT READY "down". An offline port refuses everything, as in
# LIO. LBD refuses only media access, like LIO without an LBA map.
_GRID: tuple[tuple[bool, bool, bool, bool, bool, bool, bool, AccessCategory], ...] = (
    (_Y, _Y, _Y, _Y, _Y, _N, _Y, AccessCategory.INQUIRY_AND_REPORT_LUNS),
    (_Y, _Y, _Y, _Y, _Y, _N, _Y, AccessCategory.REQUEST_SENSE),
    (_Y, _Y, _Y, _Y, _Y, _N, _Y, AccessCategory.REPORT_TARGET_PORT_GROUPS),
    (_Y, _Y, _Y, _Y, _Y, _N, _N, AccessCategory.SET_TARGET_PORT_GROUPS),
    (_Y, _Y, _Y, _Y, _Y, _N, _Y, AccessCategory.ECHO_BUFFER),
    (_Y, _Y, _Y, _Y, _Y, _N, _N, AccessCategory.SUPPORT_REPORTS),
    (_Y, _Y, _Y, _N, _Y, _N, _N, AccessCategory.MODE_AND_LOG),
    (_Y, _Y, _Y, _N, _Y, _N, _N, AccessCategory.DIAGNOSTICS),
    (_Y, _Y, _Y, _N, _Y, _N, _N, AccessCategory.PERSISTENT_RESERVATIONS),
    (_Y, _Y, _Y, _N, _Y, _N, _N, AccessCategory.RESERVE_RELEASE),
    (_Y, _Y, _Y, _N, _Y, _N, _N, AccessCategory.READ_CAPACITY),
    (_Y, _Y, _N, _N, _N, _N, _N, AccessCategory.MEDIA_ACCESS),
    (_Y, _Y, _N, _N, _Y, _N, _N, AccessCategory.OTHER),
)


def _build_table() -> dict[tuple[ALUAState, AccessCategory], ASC | None]:
    table: dict[tuple[ALUAState, AccessCategory], ASC | None] = {}
    for *allowed, category in _GRID:
        for state, ok in zip(_COLUMNS, allowed, strict=True):
            table[(state, category)] = None if ok else INACCESSIBLE_ASC[state]
    return table


# (state, category) -> None when the command runs, else the NOT READY ASC it ends with.
ACCESS_TABLE: Mapping[tuple[ALUAState, AccessCategory], ASC | None] = _build_table()

# RECEIVE DIAGNOSTIC RESULTS is not in the shared Opcode enum: sanstack does not serve it.
_RECEIVE_DIAGNOSTIC_RESULTS = 0x1C
_BY_SERVICE_ACTION: dict[tuple[int, int], AccessCategory] = {
    (Opcode.MAINTENANCE_IN, MaintenanceIn.REPORT_TARGET_PORT_GROUPS): (
        AccessCategory.REPORT_TARGET_PORT_GROUPS
    ),
    (Opcode.MAINTENANCE_OUT, MaintenanceOut.SET_TARGET_PORT_GROUPS): (
        AccessCategory.SET_TARGET_PORT_GROUPS
    ),
    (Opcode.MAINTENANCE_IN, MaintenanceIn.REPORT_SUPPORTED_OPERATION_CODES): (
        AccessCategory.SUPPORT_REPORTS
    ),
    (Opcode.MAINTENANCE_IN, MaintenanceIn.REPORT_SUPPORTED_TASK_MANAGEMENT_FUNCTIONS): (
        AccessCategory.SUPPORT_REPORTS
    ),
    (Opcode.SERVICE_ACTION_IN_16, ServiceActionIn16.READ_CAPACITY_16): (
        AccessCategory.READ_CAPACITY
    ),
}
_BY_OPCODE: dict[int, AccessCategory] = {
    Opcode.INQUIRY: AccessCategory.INQUIRY_AND_REPORT_LUNS,
    Opcode.REPORT_LUNS: AccessCategory.INQUIRY_AND_REPORT_LUNS,
    Opcode.REQUEST_SENSE: AccessCategory.REQUEST_SENSE,
    Opcode.MODE_SENSE_6: AccessCategory.MODE_AND_LOG,
    Opcode.MODE_SENSE_10: AccessCategory.MODE_AND_LOG,
    Opcode.MODE_SELECT_6: AccessCategory.MODE_AND_LOG,
    Opcode.MODE_SELECT_10: AccessCategory.MODE_AND_LOG,
    Opcode.LOG_SENSE: AccessCategory.MODE_AND_LOG,
    Opcode.LOG_SELECT: AccessCategory.MODE_AND_LOG,
    Opcode.SEND_DIAGNOSTIC: AccessCategory.DIAGNOSTICS,
    _RECEIVE_DIAGNOSTIC_RESULTS: AccessCategory.DIAGNOSTICS,
    # Every service action: PR IN only reports and PR OUT is how a standby path registers.
    Opcode.PERSISTENT_RESERVE_IN: AccessCategory.PERSISTENT_RESERVATIONS,
    Opcode.PERSISTENT_RESERVE_OUT: AccessCategory.PERSISTENT_RESERVATIONS,
    Opcode.RESERVE_6: AccessCategory.RESERVE_RELEASE,
    Opcode.RESERVE_10: AccessCategory.RESERVE_RELEASE,
    Opcode.RELEASE_6: AccessCategory.RESERVE_RELEASE,
    Opcode.RELEASE_10: AccessCategory.RESERVE_RELEASE,
    Opcode.READ_CAPACITY_10: AccessCategory.READ_CAPACITY,
}
# SPC-4 §6.18 / §6.49 MODE field: only the echo buffer modes are state-independent.
_ECHO_MODES: dict[int, frozenset[int]] = {
    Opcode.READ_BUFFER: frozenset({0x0A, 0x0B}),
    Opcode.WRITE_BUFFER: frozenset({0x0A}),
}
_BUFFER_MODE_MASK = 0x1F


def command_category(spec: CommandSpec, cdb: bytes) -> AccessCategory:
    """The ``ACCESS_TABLE`` column a command falls in; the CDB only matters for buffer modes."""
    if spec.service_action is not None:
        category = _BY_SERVICE_ACTION.get((spec.opcode, spec.service_action))
        if category is not None:
            return category
    category = _BY_OPCODE.get(spec.opcode)
    if category is not None:
        return category
    echo_modes = _ECHO_MODES.get(spec.opcode)
    if echo_modes is not None and len(cdb) > 1 and cdb[1] & _BUFFER_MODE_MASK in echo_modes:
        return AccessCategory.ECHO_BUFFER
    return AccessCategory.MEDIA_ACCESS if spec.media_access else AccessCategory.OTHER


def access_check(state: ALUAState, spec: CommandSpec, cdb: bytes) -> CheckCondition | None:
    """None if a command may run through a port in ``state``; else its NOT READY condition."""
    asc = ACCESS_TABLE[(state, command_category(spec, cdb))]
    return None if asc is None else CheckCondition(SenseKey.NOT_READY, asc)


# -- where the groups live -------------------------------------------------------------------


def attach_groups(lu: LogicalUnit, groups: ALUAGroups) -> None:
    """Give ``lu`` its target's groups (the same object for every LU of the target)."""
    lu.alua = groups


def groups_of(lu: LogicalUnit) -> ALUAGroups:
    """The target port groups serving ``lu``."""
    return lu.alua


def announce_state_change(lus: Iterable[LogicalUnit], *, requester: Nexus | None = None) -> None:
    """ASYMMETRIC ACCESS STATE CHANGED for every I_T nexus of ``lus`` but ``requester``.

    SPC-4 §5.16.2.7/§5.16.2.8 address every I_T nexus, not only those of the changed ports: an
    initiator on another path must re-read RTPG to learn where to send I/O now. ``requester``
    is the nexus of an STPG, which already knows (None after an implicit change).
    """
    for lu in lus:
        lu.establish_unit_attention(ASC.ASYMMETRIC_ACCESS_STATE_CHANGED, exclude=requester)


# -- REPORT TARGET PORT GROUPS (SPC-4 §6.37) --------------------------------------------------


async def report_target_port_groups(lu: LogicalUnit, cmd: Command) -> CommandResult:
    """REPORT TARGET PORT GROUPS: every group, cut to ALLOCATION LENGTH.

    Any allocation length is accepted, 0 and 4 included (SPC-4 §4.2.5.6); libiscsi's RTPG
    tests read the 4-byte header first and then cut descriptors at every boundary.
    """
    request = ReportTargetPortGroupsCdb.decode(cmd.cdb)
    data = groups_of(lu).report(request.parameter_data_format).encode()
    return CommandResult(data=data[: request.allocation_length])


# -- SET TARGET PORT GROUPS (SPC-4 §6.45) -----------------------------------------------------


def _parameter_list_length_error() -> CheckCondition:
    return CheckCondition(SenseKey.ILLEGAL_REQUEST, ASC.PARAMETER_LIST_LENGTH_ERROR)


def _plan(groups: ALUAGroups, parameters: SetTargetPortGroupsParameters) -> dict[int, ALUAState]:
    """Validate every descriptor before changing anything, so a refused STPG changes nothing.

    A refusal is INVALID FIELD IN PARAMETER LIST pointing at the descriptor's state field, or
    at its group field for a group that does not exist. Naming one group twice with different
    states is an invalid combination (SPC-4 §6.45) reported at the second descriptor.
    """
    plan: dict[int, ALUAState] = {}
    for index, descriptor in enumerate(parameters.descriptors):
        offset = SetTargetPortGroupsParameters.descriptor_offset(index)
        group_id = descriptor.target_port_group_or_target_port
        state = descriptor.asymmetric_access_state
        try:
            groups.validate_transition(group_id, state, explicit=True)
        except TransitionRefused as refused:
            if refused.unknown_group:
                raise invalid_field_in_parameter_list(offset + 2) from None
            raise invalid_field_in_parameter_list(offset, 3) from None
        if plan.setdefault(group_id, state) != state:
            raise invalid_field_in_parameter_list(offset, 3)
    return plan


async def set_target_port_groups(lu: LogicalUnit, cmd: Command) -> CommandResult:
    """SET TARGET PORT GROUPS: explicit transitions, all or nothing.

    A PARAMETER LIST LENGTH of zero is not an error and changes nothing. When something did
    change, every other I_T nexus gets ASYMMETRIC ACCESS STATE CHANGED (SPC-4 §5.16.2.8):
    through ``ALUAGroups.on_change`` for all of the target's LUs, else on this LU.
    """
    request = SetTargetPortGroupsCdb.decode(cmd.cdb)
    groups = groups_of(lu)
    if not groups.explicit_supported:
        # TPGS 01b promises that STPG is not supported (SPC-4 §6.6.2).
        raise CheckCondition(SenseKey.ILLEGAL_REQUEST, ASC.INVALID_COMMAND_OPERATION_CODE)
    needed = request.parameter_list_length
    if needed == 0:
        return CommandResult(data_out_used=0)
    data = bytes(cmd.data_out[:needed])
    if len(data) < needed:
        raise _parameter_list_length_error()
    plan = _plan(groups, SetTargetPortGroupsParameters.decode(data))
    changed = False
    for group_id, state in plan.items():
        changed |= bool(groups.set_state(group_id, state, explicit=True))
    if changed:
        if groups.on_change is not None:
            groups.on_change(cmd.nexus)
        else:
            announce_state_change((lu,), requester=cmd.nexus)
    return CommandResult(data_out_used=needed)


# -- the table ---------------------------------------------------------------------------------

# As in sanstack.scsi.spc: NACA, FLAG and LINK are not examined, so the control byte reads 00h.
_CONTROL_USAGE = 0x00
_ALL = 0xFF


def _usage(opcode: int, byte1: int) -> bytes:
    """CDB USAGE DATA (SPC-4 §6.35.3) of a 12-byte RTPG/STPG CDB: opcode, byte 1, four
    reserved bytes, the 4-byte length, a reserved byte and CONTROL.
    """
    return bytes((opcode, byte1, 0, 0, 0, 0, _ALL, _ALL, _ALL, _ALL, 0, _CONTROL_USAGE))


COMMANDS: list[CommandSpec] = [
    CommandSpec(
        Opcode.MAINTENANCE_IN,
        "REPORT TARGET PORT GROUPS",
        report_target_port_groups,
        # The service action sits in its own field of the usage data; PARAMETER DATA FORMAT
        # (bits 7-5) is the only other bit of byte 1 RTPG examines.
        _usage(Opcode.MAINTENANCE_IN, 0xE0 | MaintenanceIn.REPORT_TARGET_PORT_GROUPS),
        direction=DataDirection.IN,
        service_action=MaintenanceIn.REPORT_TARGET_PORT_GROUPS,
        # Allowed under every reservation type, as in LIO's copy of SPC-4's reservation table
        # (core_scsi3_pr_seq_non_holder): path checkers poll it on every path of a reserved disk.
        allowed_with_scsi2_reservation=True,
    ),
    CommandSpec(
        Opcode.MAINTENANCE_OUT,
        "SET TARGET PORT GROUPS",
        set_target_port_groups,
        _usage(Opcode.MAINTENANCE_OUT, MaintenanceOut.SET_TARGET_PORT_GROUPS),
        direction=DataDirection.OUT,
        service_action=MaintenanceOut.SET_TARGET_PORT_GROUPS,
        # Not in that allowed list (LIO conflicts it like any Data-Out command): it would change
        # the reservation holder's access.
    ),
]
