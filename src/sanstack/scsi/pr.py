"""Persistent reservations (SPC-4 §5.13): one logical unit's registrations and reservation.

Theory of operation. ``PersistentReservations`` is a pure state machine, one per logical
unit. The logical unit hands it every PERSISTENT RESERVE OUT and IN command
(``persistent_reserve_out``, ``persistent_reserve_in``) and asks it, before dispatching any
command, whether the command meets a RESERVATION CONFLICT (``conflict``, which reads the
table in ``sanstack.scsi.pr_table``). RESERVE and RELEASE (6/10) ask
``legacy_reservation`` how SPC-4 §5.13.3 (CRH=1) lets them coexist with persistent
reservations. The engine never touches tasks, unit attentions or files: a
``PROutOutcome`` lists the unit attentions to establish, the I_T nexuses whose tasks
PREEMPT AND ABORT aborts, and whether the state changed (to be saved, as ``to_dict``'s
document, through the logical unit's ``ReservationStore``; ``from_dict(...).after_power_on()``
is what a restart keeps of it).

Registrations outlive connections and may name I_T nexuses that have never logged in
(SPEC_I_PT, ALL_TG_PT, REGISTER AND MOVE), so they are keyed by ``ITNexus``: the initiator
name, the ISID (or None for a TransportID naming the whole initiator device) and the relative
target port identifier. ``ITNexus.matches`` tells whether a live ``Nexus`` is one of them.
Every command checks everything before it changes anything, so an error or a conflict
leaves the state as it was.

Section numbers are SPC-4 (T10/BSR INCITS 513, r37).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final

from sanstack.scsi.codes import ASC, SenseKey, Status
from sanstack.scsi.command import Nexus
from sanstack.scsi.pr_codec import (
    ALLOW_COMMANDS_TEST_UNIT_READY,
    BASIC_PARAMETER_LIST_LENGTH,
    MOVE_RELATIVE_TARGET_PORT_BYTE,
    MOVE_TRANSPORT_ID_BYTE,
    SERVICE_ACTION_RESERVATION_KEY_BYTE,
    SPEC_I_PT_BIT,
    SPEC_I_PT_BYTE,
    FullStatusDescriptor,
    PRInCdb,
    PRInServiceAction,
    PROutCdb,
    PROutParameters,
    PROutServiceAction,
    PRType,
    ReadFullStatusData,
    ReadKeysData,
    ReadReservationData,
    RegisterAndMoveParameters,
    ReportCapabilitiesData,
    parameter_list_length_error,
)
from sanstack.scsi.pr_table import (
    Category,
    ITNexus,
    LegacyReservation,
    Registration,
    Relation,
    Reservation,
    TargetPort,
    allowed,
    command_category,
)
from sanstack.scsi.sense import (
    CheckCondition,
    invalid_field_in_parameter_list,
)

__all__ = [
    "DEFAULT_MAX_REGISTRATIONS",
    "ITNexus",
    "LegacyReservation",
    "PROutOutcome",
    "PersistentReservations",
    "Registration",
    "Reservation",
    "TargetPort",
]

JSON_FORMAT: Final = "sanstack-persistent-reservations"
JSON_VERSION: Final = 1
# A registration per I_T nexus: 64 cluster nodes x 16 paths stays well inside this.
DEFAULT_MAX_REGISTRATIONS: Final = 4096
_GENERATION_MASK: Final = 0xFFFF_FFFF


@dataclass(slots=True)
class PROutOutcome:
    """What a PERSISTENT RESERVE OUT did, for the logical unit to carry out.

    ``status`` is GOOD or RESERVATION CONFLICT (field errors raise ``CheckCondition``).
    ``unit_attentions`` are to be established, one I_T nexus each; ``abort_nexuses`` are the
    I_T nexuses whose tasks for this logical unit PREEMPT AND ABORT aborts (§5.13.11.2.7),
    possibly the sender's own, whose PERSISTENT RESERVE OUT itself must complete.
    ``changed`` says the state in ``to_dict`` changed.
    """

    status: Status = Status.GOOD
    unit_attentions: list[tuple[Nexus, ASC]] = field(default_factory=list)
    abort_nexuses: list[Nexus] = field(default_factory=list)
    changed: bool = False


class _Conflict(Exception):
    """Ends a PERSISTENT RESERVE OUT with RESERVATION CONFLICT before anything changed."""


@dataclass(frozen=True, slots=True)
class _Command:
    nexus: Nexus
    port_ids: tuple[int, ...]
    active: tuple[Nexus, ...]


# §6.15.4: what this device server supports, fixed.
_CAPABILITIES: Final = ReportCapabilitiesData(
    crh=True,
    sip_c=True,
    atp_c=True,
    ptpl_c=True,
    tmv=True,
    allow_commands=ALLOW_COMMANDS_TEST_UNIT_READY,
    type_mask=frozenset(PRType),
)


def _invalid_parameter() -> CheckCondition:
    # For a TransportID that names the wrong I_T nexus no single byte is at fault.
    return CheckCondition(SenseKey.ILLEGAL_REQUEST, ASC.INVALID_FIELD_IN_PARAMETER_LIST)


class PersistentReservations:
    """The persistent reservation state of one logical unit and the rules that change it."""

    def __init__(self, *, max_registrations: int = DEFAULT_MAX_REGISTRATIONS) -> None:
        self.max_registrations = max_registrations
        self._registrations: dict[ITNexus, Registration] = {}
        self.reservation: Reservation | None = None
        # PRgeneration (§6.15.2): counts REGISTER, REGISTER AND IGNORE EXISTING KEY,
        # REGISTER AND MOVE, CLEAR, PREEMPT and PREEMPT AND ABORT that complete GOOD.
        self.generation = 0
        # The APTPL bit of the last REGISTER (AND IGNORE EXISTING KEY / AND MOVE) (§6.16.3).
        self.aptpl = False

    # -- queries ---------------------------------------------------------------------------

    @property
    def registrations(self) -> tuple[Registration, ...]:
        """Every registration, oldest first (the order READ KEYS reports)."""
        return tuple(self._registrations.values())

    def registration_of(self, nexus: Nexus) -> Registration | None:
        """The registration ``nexus`` is registered through, if any."""
        if not self._registrations:
            return None
        return self._registrations.get(self._resolve(ITNexus.of(nexus)))

    def is_holder(self, nexus: Nexus) -> bool:
        return self._relation(nexus) is Relation.HOLDER

    def conflict(self, nexus: Nexus, cdb: bytes | memoryview) -> bool:
        """Whether the command in ``cdb`` from ``nexus`` ends with RESERVATION CONFLICT
        (SPC-4 §5.13.1 and SBC-4 §4.17 tables; RESERVE/RELEASE per §5.13.3)."""
        if self.reservation is None and not self._registrations:
            return False
        category = command_category(cdb)
        if category is Category.LEGACY_RESERVE_RELEASE:
            return self.legacy_reservation(nexus) is LegacyReservation.CONFLICT
        reservation = self.reservation
        if reservation is None:
            return False
        return not allowed(category, reservation.pr_type, self._relation(nexus))

    def legacy_reservation(self, nexus: Nexus) -> LegacyReservation:
        """How RESERVE(6/10) and RELEASE(6/10) from ``nexus`` proceed (§5.13.3, CRH=1)."""
        if not self._registrations:
            return LegacyReservation.SPC2
        reservation = self.reservation
        if reservation is None:
            return LegacyReservation.CONFLICT
        relation = self._relation(nexus)
        if allowed(Category.LEGACY_RESERVE_RELEASE, reservation.pr_type, relation):
            return LegacyReservation.IGNORE
        return LegacyReservation.CONFLICT

    def _relation(self, nexus: Nexus) -> Relation:
        registration = self.registration_of(nexus)
        if registration is None:
            return Relation.NOT_REGISTERED
        if self._holds(registration):
            return Relation.HOLDER
        return Relation.REGISTERED

    def _holds(self, registration: Registration) -> bool:
        reservation = self.reservation
        return reservation is not None and (
            reservation.pr_type.all_registrants or reservation.holder == registration.nexus
        )

    def _resolve(self, wanted: ITNexus) -> ITNexus:
        """The registration key that covers ``wanted``: itself, or the initiator device's
        registration on that port, or ``wanted`` again when neither is registered."""
        if wanted not in self._registrations and wanted.isid is not None:
            device = ITNexus(wanted.initiator_name, None, wanted.relative_target_port_id)
            if device in self._registrations:
                return device
        return wanted

    # -- PERSISTENT RESERVE IN (§6.15) -------------------------------------------------------

    def persistent_reserve_in(
        self, cdb: bytes | memoryview, *, target_ports: Sequence[TargetPort] = ()
    ) -> bytes:
        """The parameter data of a PERSISTENT RESERVE IN, cut to its ALLOCATION LENGTH.
        ``target_ports`` lets READ FULL STATUS fold an initiator port registered on every
        target port into one ALL_TG_PT descriptor."""
        request = PRInCdb.decode(cdb)
        match request.service_action:
            case PRInServiceAction.READ_KEYS:
                keys = tuple(r.reservation_key for r in self._registrations.values())
                data = ReadKeysData(self.generation, keys).encode()
            case PRInServiceAction.READ_RESERVATION:
                data = self._read_reservation().encode()
            case PRInServiceAction.REPORT_CAPABILITIES:
                data = replace(_CAPABILITIES, ptpl_a=self.aptpl).encode()
            case PRInServiceAction.READ_FULL_STATUS:
                descriptors = self._full_status(target_ports)
                data = ReadFullStatusData(self.generation, descriptors).encode()
        return data[: request.allocation_length]

    def _read_reservation(self) -> ReadReservationData:
        reservation = self.reservation
        if reservation is None:
            return ReadReservationData(self.generation)
        # §5.13.10: an all registrants reservation reports reservation key zero.
        key = 0
        if reservation.holder is not None:
            key = self._registrations[reservation.holder].reservation_key
        return ReadReservationData(self.generation, key, reservation.scope, reservation.pr_type)

    def _full_status(self, target_ports: Sequence[TargetPort]) -> tuple[FullStatusDescriptor, ...]:
        reservation = self.reservation
        every_port = {p.relative_target_port_id for p in target_ports}
        # §6.15.5: one ALL_TG_PT descriptor may stand for an initiator port registered on
        # every target port with one key and one holder status; otherwise one per I_T nexus.
        groups: dict[tuple[str, int | None, int, bool], list[Registration]] = {}
        for registration in self._registrations.values():
            nexus = registration.nexus
            holder = self._holds(registration)
            group = (nexus.initiator_name, nexus.isid, registration.reservation_key, holder)
            groups.setdefault(group, []).append(registration)
        descriptors: list[FullStatusDescriptor] = []
        for (_, _, key, holder), members in groups.items():
            ports = {r.nexus.relative_target_port_id for r in members}
            folded = bool(every_port) and ports >= every_port and all(r.all_tg_pt for r in members)
            for registration in members[:1] if folded else members:
                descriptors.append(
                    FullStatusDescriptor(
                        key,
                        registration.nexus.transport_id,
                        0 if folded else registration.nexus.relative_target_port_id,
                        all_tg_pt=folded,
                        r_holder=holder,
                        scope=reservation.scope if holder and reservation else 0,
                        pr_type=reservation.pr_type if holder and reservation else 0,
                    )
                )
        return tuple(descriptors)

    # -- PERSISTENT RESERVE OUT (§6.16) ------------------------------------------------------

    def persistent_reserve_out(
        self,
        nexus: Nexus,
        cdb: bytes | memoryview,
        parameters: bytes | memoryview,
        *,
        target_ports: Sequence[TargetPort],
        active_nexuses: Iterable[Nexus] = (),
    ) -> PROutOutcome:
        """Carry out a PERSISTENT RESERVE OUT from ``nexus``.

        ``parameters`` is the Data-Out buffer (at least PARAMETER LIST LENGTH bytes);
        ``target_ports`` are every target port of the target (ALL_TG_PT, SPEC_I_PT and
        REGISTER AND MOVE name them); ``active_nexuses`` are the I_T nexuses that exist now,
        the ones unit attentions and aborts can reach. Raises ``CheckCondition`` for errors
        in the CDB or the parameter list.
        """
        request = PROutCdb.decode(cdb)
        length = request.parameter_list_length
        if len(parameters) < length:
            raise parameter_list_length_error()
        data = bytes(parameters[:length])
        port_ids = tuple(
            dict.fromkeys(
                [nexus.relative_target_port_id, *(p.relative_target_port_id for p in target_ports)]
            )
        )
        command = _Command(nexus, port_ids, tuple(active_nexuses))
        before = self._snapshot()
        outcome = PROutOutcome()
        try:
            self._dispatch(command, request, data, outcome)
        except _Conflict:
            return PROutOutcome(Status.RESERVATION_CONFLICT)
        outcome.changed = self._snapshot() != before
        return outcome

    def _dispatch(
        self, command: _Command, request: PROutCdb, data: bytes, outcome: PROutOutcome
    ) -> None:
        action = request.service_action
        if action is PROutServiceAction.REGISTER_AND_MOVE:
            self._register_and_move(command, RegisterAndMoveParameters.decode(data))
            return
        if len(data) < BASIC_PARAMETER_LIST_LENGTH:
            raise parameter_list_length_error()
        spec_i_pt = bool(data[SPEC_I_PT_BYTE] & (1 << SPEC_I_PT_BIT))
        if spec_i_pt and action is not PROutServiceAction.REGISTER:
            raise invalid_field_in_parameter_list(SPEC_I_PT_BYTE, SPEC_I_PT_BIT)
        if not spec_i_pt and len(data) != BASIC_PARAMETER_LIST_LENGTH:
            raise parameter_list_length_error()
        parameters = PROutParameters.decode(data)
        match action:
            case PROutServiceAction.REGISTER:
                self._register(command, parameters, outcome, ignore_existing_key=False)
            case PROutServiceAction.REGISTER_AND_IGNORE_EXISTING_KEY:
                self._register(command, parameters, outcome, ignore_existing_key=True)
            case PROutServiceAction.RESERVE:
                self._reserve(command, request.reservation_type(), parameters)
            case PROutServiceAction.RELEASE:
                self._release(command, request.reservation_type(), parameters, outcome)
            case PROutServiceAction.CLEAR:
                self._clear(command, parameters, outcome)
            case PROutServiceAction.PREEMPT | PROutServiceAction.PREEMPT_AND_ABORT:
                abort = action is PROutServiceAction.PREEMPT_AND_ABORT
                self._preempt(command, request.reservation_type(), parameters, outcome, abort)

    def _registered(self, command: _Command, reservation_key: int) -> Registration:
        """The sender's registration; RESERVATION CONFLICT when it is not registered or
        names another RESERVATION KEY (§5.13.7 onwards, every action but the REGISTERs)."""
        registration = self.registration_of(command.nexus)
        if registration is None or registration.reservation_key != reservation_key:
            raise _Conflict
        return registration

    def _register(
        self,
        command: _Command,
        parameters: PROutParameters,
        outcome: PROutOutcome,
        *,
        ignore_existing_key: bool,
    ) -> None:
        """REGISTER and REGISTER AND IGNORE EXISTING KEY (§5.13.7, table 'Register
        behaviors'). ALL_TG_PT=1 does on every target port what the command does on its own
        (T10 reflector 2008-04: "a shortcut for issuing multiple commands"); the key check is
        made on the receiving I_T nexus, and the other ports follow its outcome."""
        new_key = parameters.service_action_reservation_key
        registration = self.registration_of(command.nexus)
        if registration is None:
            if not ignore_existing_key and parameters.reservation_key != 0:
                raise _Conflict
            if new_key:
                mine = ITNexus.of(command.nexus)
                targets = self._on_ports(mine, command.port_ids, parameters.all_tg_pt)
                if parameters.spec_i_pt:
                    targets += self._specified(command, parameters, mine)
                self._set_keys(targets, new_key, parameters.all_tg_pt)
            # An unregistered I_T nexus registering key zero changes nothing but completes
            # GOOD, and as a REGISTER it still counts in PRgeneration (§6.15.2).
        else:
            if (
                not ignore_existing_key
                and parameters.reservation_key != registration.reservation_key
            ):
                raise _Conflict
            if parameters.spec_i_pt:
                # §6.16.3: SPEC_I_PT through an already registered I_T nexus is refused.
                raise invalid_field_in_parameter_list(SPEC_I_PT_BYTE, SPEC_I_PT_BIT)
            targets = [registration.nexus]
            if parameters.all_tg_pt:
                mine = ITNexus.of(command.nexus)
                targets += self._on_ports(mine, command.port_ids, all_ports=True)
            targets = list(dict.fromkeys(targets))
            if new_key:
                self._set_keys(targets, new_key, parameters.all_tg_pt)
            else:
                self._unregister(command, [t for t in targets if t in self._registrations], outcome)
        self.aptpl = parameters.aptpl
        self._count()

    def _on_ports(self, mine: ITNexus, port_ids: tuple[int, ...], all_ports: bool) -> list[ITNexus]:
        """The registration keys of the sender's initiator port on its own target port, or on
        every target port with ALL_TG_PT."""
        ports = port_ids if all_ports else port_ids[:1]
        return [self._resolve(ITNexus(mine.initiator_name, mine.isid, port)) for port in ports]

    def _specified(
        self, command: _Command, parameters: PROutParameters, mine: ITNexus
    ) -> list[ITNexus]:
        """The I_T nexuses the SPEC_I_PT TransportIDs name (§6.16.3): on the receiving
        target port, or on every target port with ALL_TG_PT. Naming one that is already
        registered is INVALID FIELD IN PARAMETER LIST, as is naming one ambiguously."""
        ports = command.port_ids if parameters.all_tg_pt else command.port_ids[:1]
        targets: list[ITNexus] = []
        for transport_id in parameters.transport_ids:
            for port in ports:
                target = ITNexus.at(transport_id, port)
                if target == mine or target in targets:
                    continue
                if self._resolve(target) in self._registrations or any(
                    target.overlaps(other) for other in (*self._registrations, *targets, mine)
                ):
                    raise _invalid_parameter()
                targets.append(target)
        return targets

    def _set_keys(self, targets: Sequence[ITNexus], key: int, all_tg_pt: bool) -> None:
        new = [t for t in dict.fromkeys(targets) if t not in self._registrations]
        if len(self._registrations) + len(new) > self.max_registrations:
            raise CheckCondition(SenseKey.ILLEGAL_REQUEST, ASC.INSUFFICIENT_REGISTRATION_RESOURCES)
        for target in targets:
            self._registrations[target] = Registration(target, key, all_tg_pt)

    def _unregister(
        self, command: _Command, targets: Sequence[ITNexus], outcome: PROutOutcome
    ) -> None:
        """Unregistering (§5.13.11.3). The holder of a reservation that is not an all
        registrants type releases it, and under a registrants only type every other
        registrant hears RESERVATIONS RELEASED. An all registrants reservation lives on while
        any registrant remains (LIO: "Avoid dropping AllRegistrants reservation during
        unregister")."""
        reservation = self.reservation
        for target in targets:
            del self._registrations[target]
        if reservation is None:
            return
        if reservation.holder is not None and reservation.holder in targets:
            self.reservation = None
            if reservation.pr_type.registrants_only:
                self._attention(command, outcome, self._registrations, ASC.RESERVATIONS_RELEASED)
        elif reservation.holder is None and not self._registrations:
            self.reservation = None

    def _reserve(self, command: _Command, pr_type: PRType, parameters: PROutParameters) -> None:
        """RESERVE (§5.13.9): a holder repeating its type and scope changes nothing; anyone
        else facing a reservation, and a holder asking for another type, conflicts."""
        registration = self._registered(command, parameters.reservation_key)
        reservation = self.reservation
        if reservation is None:
            holder = None if pr_type.all_registrants else registration.nexus
            self.reservation = Reservation(holder, pr_type)
        elif not self._holds(registration) or reservation.pr_type != pr_type:
            raise _Conflict

    def _release(
        self,
        command: _Command,
        pr_type: PRType,
        parameters: PROutParameters,
        outcome: PROutOutcome,
    ) -> None:
        """RELEASE (§5.13.11.2): GOOD without effect unless the sender holds the reservation;
        the holder must name its type. Registrants hear RESERVATIONS RELEASED when the type
        was a registrants only or all registrants one."""
        registration = self._registered(command, parameters.reservation_key)
        reservation = self.reservation
        if reservation is None or not self._holds(registration):
            return
        if reservation.pr_type != pr_type:
            raise CheckCondition(
                SenseKey.ILLEGAL_REQUEST, ASC.INVALID_RELEASE_OF_PERSISTENT_RESERVATION
            )
        self.reservation = None
        if reservation.pr_type.registrants_only or reservation.pr_type.all_registrants:
            self._attention(command, outcome, self._registrations, ASC.RESERVATIONS_RELEASED)

    def _clear(self, command: _Command, parameters: PROutParameters, outcome: PROutOutcome) -> None:
        """CLEAR (§5.13.11.2.6): release the reservation, remove every registration, and tell
        every other registrant RESERVATIONS PREEMPTED."""
        self._registered(command, parameters.reservation_key)
        cleared = list(self._registrations)
        self._registrations.clear()
        self.reservation = None
        self._attention(command, outcome, cleared, ASC.RESERVATIONS_PREEMPTED)
        self._count()

    def _preempt(
        self,
        command: _Command,
        pr_type: PRType,
        parameters: PROutParameters,
        outcome: PROutOutcome,
        abort: bool,
    ) -> None:
        """PREEMPT and PREEMPT AND ABORT (§5.13.11.4, figure 'Device server interpretation of
        PREEMPT service action').

        With a SERVICE ACTION RESERVATION KEY that names the holder (or zero under an all
        registrants type) the sender takes the reservation with the CDB's type: the other
        I_T nexuses with that key (every other one, for zero) lose their registrations, and
        if the type changed the remaining registrants hear RESERVATIONS RELEASED. Any other
        non-zero key only removes the registrations holding it (the sender's own too); a
        key nobody holds conflicts. Zero otherwise is INVALID FIELD IN PARAMETER LIST.
        """
        mine = self._registered(command, parameters.reservation_key).nexus
        victim_key = parameters.service_action_reservation_key
        reservation = self.reservation
        keys = {nexus: r.reservation_key for nexus, r in self._registrations.items()}
        if reservation is not None and reservation.holder is None and victim_key == 0:
            removed = [nexus for nexus in keys if nexus != mine]
            takes_reservation = True
        elif (
            reservation is not None
            and reservation.holder is not None
            and (keys[reservation.holder] == victim_key)
        ):
            removed = [n for n, key in keys.items() if key == victim_key and n != mine]
            takes_reservation = True
        else:
            if victim_key == 0:
                raise invalid_field_in_parameter_list(SERVICE_ACTION_RESERVATION_KEY_BYTE)
            removed = [n for n, key in keys.items() if key == victim_key]
            if not removed:
                raise _Conflict
            takes_reservation = False
        if abort:
            # §5.13.11.2.7: tasks of every I_T nexus registered with the key are aborted,
            # holder or not; with key zero, those of every registered I_T nexus.
            aborted = [n for n, key in keys.items() if victim_key in (0, key)]
            outcome.abort_nexuses = self._live(aborted, command.active)
        for nexus in removed:
            del self._registrations[nexus]
        if takes_reservation and reservation is not None:
            holder = None if pr_type.all_registrants else mine
            self.reservation = Reservation(holder, pr_type)
            if reservation.pr_type != pr_type:
                self._attention(command, outcome, self._registrations, ASC.RESERVATIONS_RELEASED)
        elif reservation is not None and reservation.holder is None and not self._registrations:
            self.reservation = None
        self._attention(command, outcome, removed, ASC.REGISTRATIONS_PREEMPTED)
        self._count()

    def _register_and_move(self, command: _Command, parameters: RegisterAndMoveParameters) -> None:
        """REGISTER AND MOVE (§5.13.8, table 'Register behaviors for a REGISTER AND MOVE
        service action'): the holder registers the I_T nexus the TransportID and RELATIVE
        TARGET PORT IDENTIFIER name with the SERVICE ACTION RESERVATION KEY (replacing its key
        if registered), hands it the reservation with unchanged type and scope, and with UNREG
        unregisters itself. No unit attention is established."""
        registration = self._registered(command, parameters.reservation_key)
        reservation = self.reservation
        if reservation is None or reservation.holder != registration.nexus:
            # Not the holder, or an all registrants reservation, which cannot move.
            raise _Conflict
        new_key = parameters.service_action_reservation_key
        if new_key == 0:
            raise invalid_field_in_parameter_list(SERVICE_ACTION_RESERVATION_KEY_BYTE)
        if parameters.relative_target_port_id not in command.port_ids:
            raise invalid_field_in_parameter_list(MOVE_RELATIVE_TARGET_PORT_BYTE)
        transport_id = parameters.transport_id
        sender = command.nexus
        if transport_id.iscsi_name.lower() == sender.initiator_name.lower() and (
            transport_id.isid in (None, sender.isid)
        ):
            # §6.16.4: the TransportID names the sender's own initiator port.
            raise invalid_field_in_parameter_list(MOVE_TRANSPORT_ID_BYTE)
        target = self._resolve(ITNexus.at(transport_id, parameters.relative_target_port_id))
        if target == registration.nexus or (
            target not in self._registrations
            and any(target.overlaps(other) for other in self._registrations)
        ):
            raise invalid_field_in_parameter_list(MOVE_TRANSPORT_ID_BYTE)
        self._set_keys([target], new_key, all_tg_pt=False)
        self.reservation = Reservation(target, reservation.pr_type, reservation.scope)
        if parameters.unreg:
            del self._registrations[registration.nexus]
        self.aptpl = parameters.aptpl
        self._count()

    # -- effects -------------------------------------------------------------------------

    def _count(self) -> None:
        self.generation = (self.generation + 1) & _GENERATION_MASK

    @staticmethod
    def _live(targets: Iterable[ITNexus], active: Iterable[Nexus]) -> list[Nexus]:
        wanted = list(targets)
        return [n for n in dict.fromkeys(active) if any(t.matches(n) for t in wanted)]

    def _attention(
        self,
        command: _Command,
        outcome: PROutOutcome,
        targets: Iterable[ITNexus],
        asc: ASC,
    ) -> None:
        """Queue ``asc`` for the live I_T nexuses of ``targets`` other than the sender's."""
        for nexus in self._live(targets, command.active):
            if nexus != command.nexus:
                outcome.unit_attentions.append((nexus, asc))

    def _snapshot(self) -> tuple[object, ...]:
        return (self.generation, self.aptpl, self.reservation, self.registrations)

    # -- persistence -----------------------------------------------------------------------

    def after_power_on(self) -> PersistentReservations:
        """This state as a power cycle leaves it (§5.13.5): kept when the last APTPL was one,
        gone otherwise; PRgeneration restarts at zero either way (§6.15.2)."""
        restored = PersistentReservations(max_registrations=self.max_registrations)
        if self.aptpl:
            restored._registrations = dict(self._registrations)
            restored.reservation = self.reservation
            restored.aptpl = True
        return restored

    def to_dict(self) -> dict[str, Any]:
        """The whole state as a versioned JSON-able document (what a store saves)."""
        reservation = self.reservation
        return {
            "format": JSON_FORMAT,
            "version": JSON_VERSION,
            "generation": self.generation,
            "aptpl": self.aptpl,
            "registrations": [r.to_dict() for r in self._registrations.values()],
            "reservation": None if reservation is None else reservation.to_dict(),
        }

    @classmethod
    def from_dict(
        cls, document: object, *, max_registrations: int = DEFAULT_MAX_REGISTRATIONS
    ) -> PersistentReservations:
        """The state ``to_dict`` made; raises ``ValueError`` for anything else."""
        try:
            if not isinstance(document, dict):
                raise TypeError("the document is not an object")
            if document.get("format") != JSON_FORMAT or document.get("version") != JSON_VERSION:
                raise ValueError("not a version 1 sanstack persistent reservations document")
            state = cls(max_registrations=max_registrations)
            generation, aptpl = document["generation"], document["aptpl"]
            if type(generation) is not int or type(aptpl) is not bool:
                raise TypeError("generation or aptpl has the wrong type")
            state.generation, state.aptpl = generation & _GENERATION_MASK, aptpl
            for item in document["registrations"]:
                registration = Registration.from_dict(item)
                if registration.nexus in state._registrations:
                    raise ValueError(f"{registration.nexus} is registered twice")
                state._registrations[registration.nexus] = registration
            if document["reservation"] is not None:
                state.reservation = Reservation.from_dict(document["reservation"])
        except (KeyError, TypeError, AttributeError) as error:
            raise ValueError(f"malformed persistent reservations document: {error!r}") from None
        problem = state.invariant_violation()
        if problem:
            raise ValueError(problem)
        return state

    def invariant_violation(self) -> str | None:
        """What is wrong with the state, if anything: a reservation's holder must be
        registered, and an all registrants reservation needs a registrant."""
        reservation = self.reservation
        if reservation is None:
            return None
        if reservation.pr_type.all_registrants != (reservation.holder is None):
            return "the holder does not suit the reservation type"
        if reservation.holder is not None and reservation.holder not in self._registrations:
            return "the reservation holder is not registered"
        if reservation.holder is None and not self._registrations:
            return "an all registrants reservation without registrants"
        return None
