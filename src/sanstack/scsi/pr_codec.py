"""Wire formats of persistent reservations: PERSISTENT RESERVE IN/OUT CDBs, their parameter
lists and parameter data, and the iSCSI TransportID.

Each format is a frozen dataclass with ``encode() -> bytes`` and ``decode(...) -> Self``.
Decoders of what an initiator sends (the CDBs, the PERSISTENT RESERVE OUT parameter lists,
TransportIDs inside them) raise ``CheckCondition`` with the sense SPC-4 requires and a field
pointer; decoders of what the device server sends (the PERSISTENT RESERVE IN parameter data)
serve tests and tools and raise ``ValueError``. Encoders raise ``ValueError`` for values their
field cannot carry.

Section numbers are SPC-4 (T10/BSR INCITS 513, r37): §6.15 PERSISTENT RESERVE IN, §6.16
PERSISTENT RESERVE OUT, §7.6.4.6 the iSCSI TransportID (§7.5.4.6 in earlier drafts).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Final, Self

from sanstack.scsi.codes import ASC, Opcode, SenseKey
from sanstack.scsi.sense import (
    CheckCondition,
    invalid_field_in_cdb,
    invalid_field_in_parameter_list,
)

# -- codes -------------------------------------------------------------------------------


class PRType(IntEnum):
    """§6.15.3.4 table 'Persistent reservation TYPE field'."""

    WRITE_EXCLUSIVE = 0x1
    EXCLUSIVE_ACCESS = 0x3
    WRITE_EXCLUSIVE_REGISTRANTS_ONLY = 0x5
    EXCLUSIVE_ACCESS_REGISTRANTS_ONLY = 0x6
    WRITE_EXCLUSIVE_ALL_REGISTRANTS = 0x7
    EXCLUSIVE_ACCESS_ALL_REGISTRANTS = 0x8

    @property
    def all_registrants(self) -> bool:
        """Every registered I_T nexus is a reservation holder (§5.13.10)."""
        return self in _ALL_REGISTRANTS

    @property
    def registrants_only(self) -> bool:
        return self in _REGISTRANTS_ONLY

    @property
    def write_exclusive(self) -> bool:
        """Reads stay shared with I_T nexuses the reservation does not admit."""
        return self in _WRITE_EXCLUSIVE

    @property
    def mask_bit(self) -> int:
        """This type's bit in the PERSISTENT RESERVATION TYPE MASK (§6.15.4, big-endian
        16 bits): type 1..7 sit at bit 8+type, EXCLUSIVE ACCESS ALL REGISTRANTS at bit 0."""
        return 1 << ((self.value + 8) & 0xF)


_ALL_REGISTRANTS: Final = frozenset(
    {PRType.WRITE_EXCLUSIVE_ALL_REGISTRANTS, PRType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS}
)
_REGISTRANTS_ONLY: Final = frozenset(
    {PRType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY, PRType.EXCLUSIVE_ACCESS_REGISTRANTS_ONLY}
)
_WRITE_EXCLUSIVE: Final = frozenset(
    {
        PRType.WRITE_EXCLUSIVE,
        PRType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY,
        PRType.WRITE_EXCLUSIVE_ALL_REGISTRANTS,
    }
)


class PRScope(IntEnum):
    """§6.15.3.3 table 'Persistent reservation SCOPE field' (the others are obsolete)."""

    LU_SCOPE = 0x0


class PROutServiceAction(IntEnum):
    """§6.16.2 table 'PERSISTENT RESERVE OUT service action codes' (REPLACE LOST
    RESERVATION, 08h, is not served: persistent reservation information is never lost)."""

    REGISTER = 0x00
    RESERVE = 0x01
    RELEASE = 0x02
    CLEAR = 0x03
    PREEMPT = 0x04
    PREEMPT_AND_ABORT = 0x05
    REGISTER_AND_IGNORE_EXISTING_KEY = 0x06
    REGISTER_AND_MOVE = 0x07


class PRInServiceAction(IntEnum):
    """§6.15.1 table 'PERSISTENT RESERVE IN service action codes'."""

    READ_KEYS = 0x00
    READ_RESERVATION = 0x01
    REPORT_CAPABILITIES = 0x02
    READ_FULL_STATUS = 0x03


class ProtocolIdentifier(IntEnum):
    """§7.6.1 table 'PROTOCOL IDENTIFIER values' (the one sanstack speaks)."""

    ISCSI = 0x5


class TransportIDFormat(IntEnum):
    """§7.6.4.6 table 'iSCSI TransportID formats'."""

    INITIATOR_DEVICE = 0b00  # iSCSI name only
    INITIATOR_PORT = 0b01  # iSCSI name, ",i,0x", ISID


# §6.15.4 ALLOW COMMANDS 001b: TEST UNIT READY passes Write Exclusive and Exclusive Access
# reservations; nothing is promised about the other commands SPC-4 lists (LIO reports it too).
ALLOW_COMMANDS_TEST_UNIT_READY: Final = 0b001

# §6.16.3: without SPEC_I_PT (and outside REGISTER AND MOVE) the list is exactly 24 bytes.
BASIC_PARAMETER_LIST_LENGTH: Final = 24
_SPEC_I_PT_HEADER_LENGTH: Final = 28

_U16: Final = 0xFFFF
_U32: Final = 0xFFFF_FFFF
_U64: Final = 0xFFFF_FFFF_FFFF_FFFF
_SERVICE_ACTION_MASK: Final = 0x1F
_SCOPE_SHIFT: Final = 4
_NIBBLE: Final = 0x0F
_ISID_DIGITS: Final = 12
_ISID_MAX: Final = (1 << 48) - 1


def _check(value: int, limit: int, name: str) -> None:
    if not 0 <= value <= limit:
        raise ValueError(f"{name} {value} does not fit its field (max {limit:#x})")


def parameter_list_length_error() -> CheckCondition:
    return CheckCondition(SenseKey.ILLEGAL_REQUEST, ASC.PARAMETER_LIST_LENGTH_ERROR)


def _scope_type(scope: int, pr_type: int) -> int:
    _check(scope, _NIBBLE, "SCOPE")
    _check(pr_type, _NIBBLE, "TYPE")
    return (scope << _SCOPE_SHIFT) | pr_type


# -- TransportID (§7.6.4.6) ---------------------------------------------------------------

_TRANSPORT_ID_HEADER: Final = struct.Struct(">BxH")  # format|protocol, reserved, length
# §7.6.4.6: ADDITIONAL LENGTH is at least 20 and a multiple of four.
_MIN_TRANSPORT_ID_ADDITIONAL_LENGTH: Final = 20
_FORMAT_SHIFT: Final = 6
_SEPARATOR: Final = ",i,0x"
# iSCSI names never contain a comma (RFC 3720 §3.2.6.2), so the first comma starts the
# separator; the decoder takes either case of its letters and of the ISID's hex digits.
_PORT_NAME: Final = re.compile(r"([^,]+),[iI],0[xX]([0-9A-Fa-f]{1,12})")


@dataclass(frozen=True, slots=True)
class TransportID:
    """An iSCSI TransportID (§7.6.4.6): the initiator device (``isid`` None, format 00b) or
    one initiator port, its name plus ",i,0x" plus the ISID in hex (format 01b)."""

    iscsi_name: str
    isid: int | None = None

    @property
    def format_code(self) -> TransportIDFormat:
        if self.isid is None:
            return TransportIDFormat.INITIATOR_DEVICE
        return TransportIDFormat.INITIATOR_PORT

    @property
    def text(self) -> str:
        """The iSCSI NAME field's text: the initiator's name, or its SCSI initiator port name."""
        if self.isid is None:
            return self.iscsi_name
        return f"{self.iscsi_name}{_SEPARATOR}{self.isid:0{_ISID_DIGITS}x}"

    @classmethod
    def from_text(cls, text: str) -> Self:
        """The inverse of ``text``; raises ``ValueError`` for a malformed port name."""
        if "," not in text:
            if not text:
                raise ValueError("empty iSCSI name")
            return cls(text)
        match = _PORT_NAME.fullmatch(text)
        if match is None:
            raise ValueError(f"not an iSCSI initiator port name: {text!r}")
        return cls(match[1], int(match[2], 16))

    def encode(self) -> bytes:
        if not self.iscsi_name or "," in self.iscsi_name or "\x00" in self.iscsi_name:
            raise ValueError(f"not an iSCSI name: {self.iscsi_name!r}")
        if self.isid is not None:
            _check(self.isid, _ISID_MAX, "ISID")
        name = self.text.encode() + b"\x00"
        length = max(_MIN_TRANSPORT_ID_ADDITIONAL_LENGTH, (len(name) + 3) & ~3)
        _check(length, _U16, "ADDITIONAL LENGTH")
        first = (self.format_code << _FORMAT_SHIFT) | ProtocolIdentifier.ISCSI
        return _TRANSPORT_ID_HEADER.pack(first, length) + name.ljust(length, b"\x00")

    @classmethod
    def decode_from(cls, buf: bytes | memoryview, offset: int, end: int) -> tuple[Self, int]:
        """Decode the TransportID at ``offset`` of a parameter list whose TransportIDs end at
        ``end``; returns it and its length. Errors point into the parameter list: a TransportID
        running past ``end`` is PARAMETER LIST LENGTH ERROR (§6.16.3), a bad field is INVALID
        FIELD IN PARAMETER LIST. Padding and the 20-byte minimum are not insisted on: only
        the terminating NUL (or the length) bounds the name.
        """
        header_end = offset + _TRANSPORT_ID_HEADER.size
        if header_end > end:
            raise parameter_list_length_error()
        first, length = _TRANSPORT_ID_HEADER.unpack_from(buf, offset)
        if first & _NIBBLE != ProtocolIdentifier.ISCSI:
            raise invalid_field_in_parameter_list(offset, 3)
        form = first >> _FORMAT_SHIFT
        if form not in (TransportIDFormat.INITIATOR_DEVICE, TransportIDFormat.INITIATOR_PORT):
            raise invalid_field_in_parameter_list(offset, 7)
        if header_end + length > end:
            raise parameter_list_length_error()
        raw = bytes(buf[header_end : header_end + length]).split(b"\x00", 1)[0]
        try:
            text = raw.decode()
            transport_id = cls.from_text(text)
        except (UnicodeDecodeError, ValueError):
            raise invalid_field_in_parameter_list(header_end) from None
        if transport_id.format_code != form:
            raise invalid_field_in_parameter_list(offset, 7)
        return transport_id, _TRANSPORT_ID_HEADER.size + length

    @classmethod
    def decode(cls, data: bytes | memoryview) -> Self:
        transport_id, _ = cls.decode_from(data, 0, len(data))
        return transport_id


# -- PERSISTENT RESERVE OUT (§6.16) -------------------------------------------------------

_PR_OUT_CDB: Final = struct.Struct(">BBB2xIB")  # opcode, SA, scope|type, length, control


@dataclass(frozen=True, slots=True)
class PROutCdb:
    """§6.16.1 PERSISTENT RESERVE OUT CDB.

    ``scope`` and ``pr_type`` stay raw numbers: REGISTER, REGISTER AND IGNORE EXISTING KEY,
    CLEAR and REGISTER AND MOVE ignore them, so only the engine can tell when they are wrong.
    """

    service_action: PROutServiceAction
    scope: int
    pr_type: int
    parameter_list_length: int
    control: int = 0

    @classmethod
    def decode(cls, cdb: bytes | memoryview) -> Self:
        if len(cdb) < _PR_OUT_CDB.size:
            raise ValueError(f"PERSISTENT RESERVE OUT CDB needs 10 bytes, got {len(cdb)}")
        _, action, scope_type, length, control = _PR_OUT_CDB.unpack_from(cdb)
        try:
            service_action = PROutServiceAction(action & _SERVICE_ACTION_MASK)
        except ValueError:
            raise invalid_field_in_cdb(1, 4) from None
        return cls(
            service_action, scope_type >> _SCOPE_SHIFT, scope_type & _NIBBLE, length, control
        )

    def reservation_type(self) -> PRType:
        """TYPE as RESERVE, RELEASE and PREEMPT (AND ABORT) need it: only LU_SCOPE (§6.15.3.3)
        and the six types of §6.15.3.4 are valid there, else INVALID FIELD IN CDB."""
        if self.scope != PRScope.LU_SCOPE:
            raise invalid_field_in_cdb(2, 7)
        try:
            return PRType(self.pr_type)
        except ValueError:
            raise invalid_field_in_cdb(2, 3) from None

    def encode(self) -> bytes:
        _check(self.parameter_list_length, _U32, "PARAMETER LIST LENGTH")
        return _PR_OUT_CDB.pack(
            Opcode.PERSISTENT_RESERVE_OUT,
            self.service_action,
            _scope_type(self.scope, self.pr_type),
            self.parameter_list_length,
            self.control,
        )


_BASIC_PARAMETERS: Final = struct.Struct(">QQ4xB3x")  # keys, obsolete, flags, reserved
_TRANSPORT_ID_PARAMETER_DATA_LENGTH: Final = struct.Struct(">I")
_SPEC_I_PT: Final = 0x08
_ALL_TG_PT: Final = 0x04
_APTPL: Final = 0x01
SPEC_I_PT_BYTE: Final = 20
SPEC_I_PT_BIT: Final = 3
SERVICE_ACTION_RESERVATION_KEY_BYTE: Final = 8


def _transport_ids(buf: bytes | memoryview, offset: int, end: int) -> tuple[TransportID, ...]:
    found: list[TransportID] = []
    while offset < end:
        transport_id, length = TransportID.decode_from(buf, offset, end)
        found.append(transport_id)
        offset += length
    return tuple(found)


@dataclass(frozen=True, slots=True)
class PROutParameters:
    """§6.16.3 basic PERSISTENT RESERVE OUT parameter list (every service action but
    REGISTER AND MOVE). ``transport_ids`` is the additional parameter data that SPEC_I_PT=1
    brings: the TRANSPORTID PARAMETER DATA LENGTH, then the TransportIDs."""

    reservation_key: int = 0
    service_action_reservation_key: int = 0
    spec_i_pt: bool = False
    all_tg_pt: bool = False
    aptpl: bool = False
    transport_ids: tuple[TransportID, ...] = ()

    @classmethod
    def decode(cls, data: bytes | memoryview) -> Self:
        """Decode a whole parameter list (PARAMETER LIST LENGTH bytes). Whether its length
        suits the service action is the engine's check; this one only refuses a list too
        short for its own fields."""
        if len(data) < BASIC_PARAMETER_LIST_LENGTH:
            raise parameter_list_length_error()
        key, sa_key, flags = _BASIC_PARAMETERS.unpack_from(data)
        spec_i_pt = bool(flags & _SPEC_I_PT)
        transport_ids: tuple[TransportID, ...] = ()
        if spec_i_pt:
            if len(data) < _SPEC_I_PT_HEADER_LENGTH:
                raise parameter_list_length_error()
            (length,) = _TRANSPORT_ID_PARAMETER_DATA_LENGTH.unpack_from(
                data, BASIC_PARAMETER_LIST_LENGTH
            )
            end = _SPEC_I_PT_HEADER_LENGTH + length
            if end > len(data):
                raise parameter_list_length_error()
            transport_ids = _transport_ids(data, _SPEC_I_PT_HEADER_LENGTH, end)
        return cls(
            key,
            sa_key,
            spec_i_pt=spec_i_pt,
            all_tg_pt=bool(flags & _ALL_TG_PT),
            aptpl=bool(flags & _APTPL),
            transport_ids=transport_ids,
        )

    def encode(self) -> bytes:
        _check(self.reservation_key, _U64, "RESERVATION KEY")
        _check(self.service_action_reservation_key, _U64, "SERVICE ACTION RESERVATION KEY")
        if self.transport_ids and not self.spec_i_pt:
            raise ValueError("TransportIDs travel only with SPEC_I_PT=1")
        flags = (
            (_SPEC_I_PT if self.spec_i_pt else 0)
            | (_ALL_TG_PT if self.all_tg_pt else 0)
            | (_APTPL if self.aptpl else 0)
        )
        data = _BASIC_PARAMETERS.pack(
            self.reservation_key, self.service_action_reservation_key, flags
        )
        if not self.spec_i_pt:
            return data
        ids = b"".join(t.encode() for t in self.transport_ids)
        return data + _TRANSPORT_ID_PARAMETER_DATA_LENGTH.pack(len(ids)) + ids


_MOVE_PARAMETERS: Final = struct.Struct(">QQxBHI")  # keys, reserved, flags, RTPI, length
_UNREG: Final = 0x02
MOVE_RELATIVE_TARGET_PORT_BYTE: Final = 18
MOVE_TRANSPORT_ID_BYTE: Final = 24


@dataclass(frozen=True, slots=True)
class RegisterAndMoveParameters:
    """§6.16.4 parameter list of PERSISTENT RESERVE OUT with REGISTER AND MOVE."""

    reservation_key: int
    service_action_reservation_key: int
    relative_target_port_id: int
    transport_id: TransportID
    unreg: bool = False
    aptpl: bool = False

    @classmethod
    def decode(cls, data: bytes | memoryview) -> Self:
        if len(data) < _MOVE_PARAMETERS.size:
            raise parameter_list_length_error()
        key, sa_key, flags, port, length = _MOVE_PARAMETERS.unpack_from(data)
        end = _MOVE_PARAMETERS.size + length
        if end > len(data):
            raise parameter_list_length_error()
        transport_id, _ = TransportID.decode_from(data, _MOVE_PARAMETERS.size, end)
        return cls(
            key,
            sa_key,
            port,
            transport_id,
            unreg=bool(flags & _UNREG),
            aptpl=bool(flags & _APTPL),
        )

    def encode(self) -> bytes:
        _check(self.reservation_key, _U64, "RESERVATION KEY")
        _check(self.service_action_reservation_key, _U64, "SERVICE ACTION RESERVATION KEY")
        _check(self.relative_target_port_id, _U16, "RELATIVE TARGET PORT IDENTIFIER")
        transport_id = self.transport_id.encode()
        flags = (_UNREG if self.unreg else 0) | (_APTPL if self.aptpl else 0)
        return (
            _MOVE_PARAMETERS.pack(
                self.reservation_key,
                self.service_action_reservation_key,
                flags,
                self.relative_target_port_id,
                len(transport_id),
            )
            + transport_id
        )


# -- PERSISTENT RESERVE IN (§6.15) --------------------------------------------------------

_PR_IN_CDB: Final = struct.Struct(">BB5xHB")  # opcode, SA, reserved, allocation, control
_HEADER: Final = struct.Struct(">II")  # PRGENERATION, ADDITIONAL LENGTH
_KEY: Final = struct.Struct(">Q")


@dataclass(frozen=True, slots=True)
class PRInCdb:
    """§6.15.1 PERSISTENT RESERVE IN CDB."""

    service_action: PRInServiceAction
    allocation_length: int
    control: int = 0

    @classmethod
    def decode(cls, cdb: bytes | memoryview) -> Self:
        if len(cdb) < _PR_IN_CDB.size:
            raise ValueError(f"PERSISTENT RESERVE IN CDB needs 10 bytes, got {len(cdb)}")
        _, action, length, control = _PR_IN_CDB.unpack_from(cdb)
        try:
            service_action = PRInServiceAction(action & _SERVICE_ACTION_MASK)
        except ValueError:
            raise invalid_field_in_cdb(1, 4) from None
        return cls(service_action, length, control)

    def encode(self) -> bytes:
        _check(self.allocation_length, _U16, "ALLOCATION LENGTH")
        return _PR_IN_CDB.pack(
            Opcode.PERSISTENT_RESERVE_IN, self.service_action, self.allocation_length, self.control
        )


def _body(data: bytes | memoryview, what: str) -> tuple[int, bytes]:
    if len(data) < _HEADER.size:
        raise ValueError(f"{what} parameter data needs 8 bytes, got {len(data)}")
    generation, length = _HEADER.unpack_from(data)
    body = bytes(data[_HEADER.size : _HEADER.size + length])
    if len(body) != length:
        raise ValueError(f"{what} parameter data is truncated")
    return generation, body


@dataclass(frozen=True, slots=True)
class ReadKeysData:
    """§6.15.2 READ KEYS parameter data: one reservation key per registered I_T nexus."""

    prgeneration: int
    reservation_keys: tuple[int, ...] = ()

    def encode(self) -> bytes:
        _check(self.prgeneration, _U32, "PRGENERATION")
        keys = b"".join(_KEY.pack(key) for key in self.reservation_keys)
        return _HEADER.pack(self.prgeneration, len(keys)) + keys

    @classmethod
    def decode(cls, data: bytes | memoryview) -> Self:
        generation, body = _body(data, "READ KEYS")
        if len(body) % _KEY.size:
            raise ValueError("READ KEYS ADDITIONAL LENGTH is not a multiple of 8")
        return cls(generation, tuple(k for (k,) in _KEY.iter_unpack(body)))


_RESERVATION: Final = struct.Struct(">Q4xxB2x")  # key, obsolete, reserved, scope|type, obsolete


@dataclass(frozen=True, slots=True)
class ReadReservationData:
    """§6.15.3 READ RESERVATION parameter data. ``pr_type`` None means no reservation (an
    ADDITIONAL LENGTH of zero); an all registrants reservation reports key zero."""

    prgeneration: int
    reservation_key: int = 0
    scope: int = PRScope.LU_SCOPE
    pr_type: PRType | None = None

    def encode(self) -> bytes:
        _check(self.prgeneration, _U32, "PRGENERATION")
        if self.pr_type is None:
            return _HEADER.pack(self.prgeneration, 0)
        _check(self.reservation_key, _U64, "RESERVATION KEY")
        body = _RESERVATION.pack(self.reservation_key, _scope_type(self.scope, self.pr_type))
        return _HEADER.pack(self.prgeneration, len(body)) + body

    @classmethod
    def decode(cls, data: bytes | memoryview) -> Self:
        generation, body = _body(data, "READ RESERVATION")
        if not body:
            return cls(generation)
        if len(body) != _RESERVATION.size:
            raise ValueError(f"READ RESERVATION ADDITIONAL LENGTH {len(body)} is not 16")
        key, scope_type = _RESERVATION.unpack(body)
        return cls(generation, key, scope_type >> _SCOPE_SHIFT, PRType(scope_type & _NIBBLE))


_CAPABILITIES: Final = struct.Struct(">HBBH2x")  # LENGTH, flags, flags, type mask, reserved
_CRH: Final = 0x10
_SIP_C: Final = 0x08
_ATP_C: Final = 0x04
_PTPL_C: Final = 0x01
_TMV: Final = 0x80
_ALLOW_COMMANDS_SHIFT: Final = 4
_ALLOW_COMMANDS_MASK: Final = 0x7
_PTPL_A: Final = 0x01


@dataclass(frozen=True, slots=True)
class ReportCapabilitiesData:
    """§6.15.4 REPORT CAPABILITIES parameter data (LENGTH is always 8)."""

    crh: bool = False
    sip_c: bool = False
    atp_c: bool = False
    ptpl_c: bool = False
    tmv: bool = False
    allow_commands: int = 0
    ptpl_a: bool = False
    type_mask: frozenset[PRType] = frozenset()

    def encode(self) -> bytes:
        _check(self.allow_commands, _ALLOW_COMMANDS_MASK, "ALLOW COMMANDS")
        first = (
            (_CRH if self.crh else 0)
            | (_SIP_C if self.sip_c else 0)
            | (_ATP_C if self.atp_c else 0)
            | (_PTPL_C if self.ptpl_c else 0)
        )
        second = (
            (_TMV if self.tmv else 0)
            | (self.allow_commands << _ALLOW_COMMANDS_SHIFT)
            | (_PTPL_A if self.ptpl_a else 0)
        )
        mask = sum(t.mask_bit for t in self.type_mask)
        return _CAPABILITIES.pack(_CAPABILITIES.size, first, second, mask)

    @classmethod
    def decode(cls, data: bytes | memoryview) -> Self:
        if len(data) < _CAPABILITIES.size:
            raise ValueError(f"REPORT CAPABILITIES needs 8 bytes, got {len(data)}")
        length, first, second, mask = _CAPABILITIES.unpack_from(data)
        if length != _CAPABILITIES.size:
            raise ValueError(f"REPORT CAPABILITIES LENGTH {length} is not 8")
        return cls(
            crh=bool(first & _CRH),
            sip_c=bool(first & _SIP_C),
            atp_c=bool(first & _ATP_C),
            ptpl_c=bool(first & _PTPL_C),
            tmv=bool(second & _TMV),
            allow_commands=(second >> _ALLOW_COMMANDS_SHIFT) & _ALLOW_COMMANDS_MASK,
            ptpl_a=bool(second & _PTPL_A),
            type_mask=frozenset(t for t in PRType if mask & t.mask_bit),
        )


_FULL_STATUS: Final = struct.Struct(">Q4xBB4xHI")  # key, flags, scope|type, RTPI, length
_DESCRIPTOR_ALL_TG_PT: Final = 0x02
_R_HOLDER: Final = 0x01


@dataclass(frozen=True, slots=True)
class FullStatusDescriptor:
    """§6.15.5 table 'PERSISTENT RESERVE IN full status descriptor format'. SCOPE and TYPE
    mean something only with ``r_holder``; with ``all_tg_pt`` the descriptor stands for the
    initiator port on every target port and RELATIVE TARGET PORT IDENTIFIER is undefined."""

    reservation_key: int
    transport_id: TransportID
    relative_target_port_id: int = 0
    all_tg_pt: bool = False
    r_holder: bool = False
    scope: int = PRScope.LU_SCOPE
    pr_type: int = 0

    def encode(self) -> bytes:
        _check(self.reservation_key, _U64, "RESERVATION KEY")
        _check(self.relative_target_port_id, _U16, "RELATIVE TARGET PORT IDENTIFIER")
        transport_id = self.transport_id.encode()
        flags = (_DESCRIPTOR_ALL_TG_PT if self.all_tg_pt else 0) | (
            _R_HOLDER if self.r_holder else 0
        )
        return (
            _FULL_STATUS.pack(
                self.reservation_key,
                flags,
                _scope_type(self.scope, self.pr_type),
                self.relative_target_port_id,
                len(transport_id),
            )
            + transport_id
        )

    @classmethod
    def decode_from(cls, data: bytes, offset: int) -> tuple[Self, int]:
        if offset + _FULL_STATUS.size > len(data):
            raise ValueError("full status descriptor is truncated")
        key, flags, scope_type, port, length = _FULL_STATUS.unpack_from(data, offset)
        start = offset + _FULL_STATUS.size
        if start + length > len(data):
            raise ValueError("full status descriptor TransportID is truncated")
        try:
            transport_id = TransportID.decode(data[start : start + length])
        except CheckCondition as error:
            raise ValueError(f"bad TransportID in full status descriptor: {error}") from None
        descriptor = cls(
            key,
            transport_id,
            port,
            all_tg_pt=bool(flags & _DESCRIPTOR_ALL_TG_PT),
            r_holder=bool(flags & _R_HOLDER),
            scope=scope_type >> _SCOPE_SHIFT,
            pr_type=scope_type & _NIBBLE,
        )
        return descriptor, _FULL_STATUS.size + length


@dataclass(frozen=True, slots=True)
class ReadFullStatusData:
    """§6.15.5 READ FULL STATUS parameter data."""

    prgeneration: int
    descriptors: tuple[FullStatusDescriptor, ...] = ()

    def encode(self) -> bytes:
        _check(self.prgeneration, _U32, "PRGENERATION")
        body = b"".join(d.encode() for d in self.descriptors)
        return _HEADER.pack(self.prgeneration, len(body)) + body

    @classmethod
    def decode(cls, data: bytes | memoryview) -> Self:
        generation, body = _body(data, "READ FULL STATUS")
        descriptors: list[FullStatusDescriptor] = []
        offset = 0
        while offset < len(body):
            descriptor, length = FullStatusDescriptor.decode_from(body, offset)
            descriptors.append(descriptor)
            offset += length
        return cls(generation, tuple(descriptors))
