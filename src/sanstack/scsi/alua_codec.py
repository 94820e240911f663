"""REPORT TARGET PORT GROUPS (SPC-4 §6.37) and SET TARGET PORT GROUPS (SPC-4 §6.45) codecs.

Both are 12-byte MAINTENANCE IN / MAINTENANCE OUT CDBs with service action 0Ah. REPORT TARGET
PORT GROUPS returns one target port group descriptor per group, behind either the length-only
header (PARAMETER DATA FORMAT 000b) or the extended header (001b), which adds FORMAT TYPE and
IMPLICIT TRANSITION TIME. SET TARGET PORT GROUPS sends a 4-byte reserved header and one 4-byte
set target port group descriptor per group whose state the application client wants changed.

The state, status and supported-states codes named here are what the rest of the ALUA model
(``sanstack.scsi.alua``) speaks.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum, IntFlag
from typing import ClassVar, Self

from sanstack.scsi.codes import ASC, MaintenanceIn, MaintenanceOut, Opcode, SenseKey
from sanstack.scsi.sense import (
    CheckCondition,
    invalid_field_in_cdb,
    invalid_field_in_parameter_list,
)


class ALUAState(IntEnum):
    """SPC-4 §6.37 table 'ASYMMETRIC ACCESS STATE field' (the states of SPC-4 §5.16.2.4)."""

    ACTIVE_OPTIMIZED = 0x0
    ACTIVE_NON_OPTIMIZED = 0x1
    STANDBY = 0x2
    UNAVAILABLE = 0x3
    LOGICAL_BLOCK_DEPENDENT = 0x4
    OFFLINE = 0xE
    TRANSITIONING = 0xF


class ALUAStatus(IntEnum):
    """SPC-4 §6.37 table 'STATUS CODE field': why a group is in its current state."""

    NO_STATUS = 0x00
    CHANGED_BY_STPG = 0x01
    CHANGED_IMPLICITLY = 0x02


class SupportedStates(IntFlag):
    """Byte 1 of a target port group descriptor (SPC-4 §6.37): the states the group supports."""

    AO_SUP = 0x01
    AN_SUP = 0x02
    S_SUP = 0x04
    U_SUP = 0x08
    LBD_SUP = 0x10
    O_SUP = 0x40
    T_SUP = 0x80


SUPPORT_BIT: dict[ALUAState, SupportedStates] = {
    ALUAState.ACTIVE_OPTIMIZED: SupportedStates.AO_SUP,
    ALUAState.ACTIVE_NON_OPTIMIZED: SupportedStates.AN_SUP,
    ALUAState.STANDBY: SupportedStates.S_SUP,
    ALUAState.UNAVAILABLE: SupportedStates.U_SUP,
    ALUAState.LOGICAL_BLOCK_DEPENDENT: SupportedStates.LBD_SUP,
    ALUAState.OFFLINE: SupportedStates.O_SUP,
    ALUAState.TRANSITIONING: SupportedStates.T_SUP,
}


class ParameterDataFormat(IntEnum):
    """SPC-4 §6.37 table 'PARAMETER DATA FORMAT field' of the REPORT TARGET PORT GROUPS CDB.

    The same code is the FORMAT TYPE of the extended header, which is how an application
    client tells which header it got back (Linux scsi_dh_alua tests ``buf[4] & 0x70``).
    """

    LENGTH_ONLY = 0b000
    EXTENDED = 0b001


_U16 = 0xFFFF
_U32 = 0xFFFFFFFF
_SERVICE_ACTION_MASK = 0x1F
_FORMAT_SHIFT = 5
_FORMAT_TYPE_SHIFT = 4
_FORMAT_TYPE_MASK = 0x07
_STATE_MASK = 0x0F
_PREF = 0x80
# Bit 5 of byte 1 is reserved between O_SUP and LBD_SUP.
_SUPPORT_MASK = sum(int(bit) for bit in SupportedStates)

# Both CDBs (SPC-4 §6.37, §6.45): opcode, byte 1, 4 reserved, a 4-byte length, reserved, CONTROL.
_MAINTENANCE_CDB = struct.Struct(">BB4xIxB")
_RETURN_DATA_LENGTH = struct.Struct(">I")
# Extended header bytes 4-7: FORMAT TYPE, IMPLICIT TRANSITION TIME, two reserved bytes.
_EXTENDED_HEADER = struct.Struct(">BB2x")
# PREF|state, supported states, TARGET PORT GROUP, reserved, STATUS CODE, vendor, TARGET PORT COUNT.
_GROUP_DESCRIPTOR = struct.Struct(">BBHxBBB")
# Target port descriptor: two obsolete bytes, then RELATIVE TARGET PORT IDENTIFIER.
_PORT_DESCRIPTOR = struct.Struct(">2xH")
# Set target port group descriptor: state in the low nibble, reserved, TPG or target port.
_SET_DESCRIPTOR = struct.Struct(">BxH")
_MAX_TARGET_PORT_COUNT = 0xFF


def _check(value: int, limit: int, name: str) -> None:
    if not 0 <= value <= limit:
        raise ValueError(f"{name} {value} is outside 0..{limit}")


# -- REPORT TARGET PORT GROUPS (SPC-4 §6.37) ------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReportTargetPortGroupsCdb:
    """SPC-4 §6.37 table 'REPORT TARGET PORT GROUPS command'."""

    allocation_length: int
    parameter_data_format: ParameterDataFormat = ParameterDataFormat.LENGTH_ONLY
    control: int = 0

    SERVICE_ACTION: ClassVar[int] = MaintenanceIn.REPORT_TARGET_PORT_GROUPS

    @classmethod
    def decode(cls, cdb: bytes | memoryview) -> Self:
        """Parse a CDB the dispatcher routed here; a reserved PARAMETER DATA FORMAT is INVALID
        FIELD IN CDB pointing at bit 7 of byte 1, which Linux scsi_dh_alua takes as "no
        extended header here" and retries with 000b.
        """
        if len(cdb) < _MAINTENANCE_CDB.size or cdb[0] != Opcode.MAINTENANCE_IN:
            raise ValueError("not a MAINTENANCE IN CDB")
        _, byte1, length, control = _MAINTENANCE_CDB.unpack_from(cdb)
        if byte1 & _SERVICE_ACTION_MASK != cls.SERVICE_ACTION:
            raise ValueError("not a REPORT TARGET PORT GROUPS CDB")
        try:
            data_format = ParameterDataFormat(byte1 >> _FORMAT_SHIFT)
        except ValueError:
            raise invalid_field_in_cdb(1, 7) from None
        return cls(length, data_format, control)

    def encode(self) -> bytes:
        _check(self.allocation_length, _U32, "ALLOCATION LENGTH")
        _check(self.control, 0xFF, "CONTROL")
        byte1 = (self.parameter_data_format << _FORMAT_SHIFT) | self.SERVICE_ACTION
        return _MAINTENANCE_CDB.pack(
            Opcode.MAINTENANCE_IN, byte1, self.allocation_length, self.control
        )


@dataclass(frozen=True, slots=True)
class TargetPortGroupDescriptor:
    """SPC-4 §6.37 table 'Target port group descriptor format' with its target port
    descriptors (table 'Target port descriptor format'), one per relative target port.
    """

    target_port_group: int
    asymmetric_access_state: ALUAState
    supported_states: SupportedStates
    relative_target_port_ids: tuple[int, ...]
    preferred: bool = False
    status_code: ALUAStatus = ALUAStatus.NO_STATUS
    vendor_specific: int = 0

    @property
    def length(self) -> int:
        return _GROUP_DESCRIPTOR.size + _PORT_DESCRIPTOR.size * len(self.relative_target_port_ids)

    def encode(self) -> bytes:
        _check(self.target_port_group, _U16, "TARGET PORT GROUP")
        _check(self.vendor_specific, 0xFF, "VENDOR SPECIFIC")
        count = len(self.relative_target_port_ids)
        if count > _MAX_TARGET_PORT_COUNT:
            raise ValueError(f"{count} target ports do not fit TARGET PORT COUNT")
        header = _GROUP_DESCRIPTOR.pack(
            (_PREF if self.preferred else 0) | self.asymmetric_access_state,
            self.supported_states,
            self.target_port_group,
            self.status_code,
            self.vendor_specific,
            count,
        )
        ports = b""
        for port in self.relative_target_port_ids:
            _check(port, _U16, "RELATIVE TARGET PORT IDENTIFIER")
            ports += _PORT_DESCRIPTOR.pack(port)
        return header + ports

    @classmethod
    def decode_from(cls, data: bytes | memoryview, offset: int) -> Self:
        """The descriptor at ``offset``; ValueError if it runs past the end of ``data``."""
        if offset + _GROUP_DESCRIPTOR.size > len(data):
            raise ValueError("target port group descriptor is truncated")
        byte0, support, group, status, vendor, count = _GROUP_DESCRIPTOR.unpack_from(data, offset)
        start = offset + _GROUP_DESCRIPTOR.size
        if start + count * _PORT_DESCRIPTOR.size > len(data):
            raise ValueError("target port descriptors are truncated")
        ports = tuple(
            int(_PORT_DESCRIPTOR.unpack_from(data, start + i * _PORT_DESCRIPTOR.size)[0])
            for i in range(count)
        )
        return cls(
            target_port_group=group,
            asymmetric_access_state=ALUAState(byte0 & _STATE_MASK),
            supported_states=SupportedStates(support & _SUPPORT_MASK),
            relative_target_port_ids=ports,
            preferred=bool(byte0 & _PREF),
            status_code=ALUAStatus(status),
            vendor_specific=vendor,
        )


@dataclass(frozen=True, slots=True)
class ReportTargetPortGroupsData:
    """SPC-4 §6.37 parameter data: the length-only or the extended header, then descriptors.

    RETURN DATA LENGTH counts every byte after itself (n - 3 in both header tables), so in the
    extended format it includes bytes 4-7. sg3_utils and `dt` parse it that way; LIO counts only
    the descriptors, which Linux tolerates because it stops at the last descriptor it can read.
    """

    descriptors: tuple[TargetPortGroupDescriptor, ...]
    parameter_data_format: ParameterDataFormat = ParameterDataFormat.LENGTH_ONLY
    implicit_transition_time: int = 0

    def encode(self) -> bytes:
        body = b"".join(d.encode() for d in self.descriptors)
        if self.parameter_data_format == ParameterDataFormat.EXTENDED:
            _check(self.implicit_transition_time, 0xFF, "IMPLICIT TRANSITION TIME")
            body = (
                _EXTENDED_HEADER.pack(
                    ParameterDataFormat.EXTENDED << _FORMAT_TYPE_SHIFT,
                    self.implicit_transition_time,
                )
                + body
            )
        return _RETURN_DATA_LENGTH.pack(len(body)) + body

    @classmethod
    def decode(cls, data: bytes | memoryview) -> Self:
        """Parse complete parameter data (not cut by ALLOCATION LENGTH).

        The header is recognised as Linux scsi_dh_alua does: FORMAT TYPE 001b in bits 6-4 of
        byte 4, which are reserved (zero) in the first descriptor of length-only data.
        """
        if len(data) < _RETURN_DATA_LENGTH.size:
            raise ValueError("REPORT TARGET PORT GROUPS data shorter than its header")
        (length,) = _RETURN_DATA_LENGTH.unpack_from(data)
        end = _RETURN_DATA_LENGTH.size + length
        if end > len(data):
            raise ValueError("REPORT TARGET PORT GROUPS data is truncated")
        offset = _RETURN_DATA_LENGTH.size
        format_type = data[offset] >> _FORMAT_TYPE_SHIFT & _FORMAT_TYPE_MASK if end > offset else 0
        data_format = ParameterDataFormat(format_type)
        transition_time = 0
        if data_format == ParameterDataFormat.EXTENDED:
            if offset + _EXTENDED_HEADER.size > end:
                raise ValueError("extended header is truncated")
            transition_time = data[offset + 1]
            offset += _EXTENDED_HEADER.size
        descriptors: list[TargetPortGroupDescriptor] = []
        view = memoryview(data)[:end]
        while offset < end:
            descriptor = TargetPortGroupDescriptor.decode_from(view, offset)
            descriptors.append(descriptor)
            offset += descriptor.length
        return cls(tuple(descriptors), data_format, transition_time)


# -- SET TARGET PORT GROUPS (SPC-4 §6.45) ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class SetTargetPortGroupsCdb:
    """SPC-4 §6.45 table 'SET TARGET PORT GROUPS command'."""

    parameter_list_length: int
    control: int = 0

    SERVICE_ACTION: ClassVar[int] = MaintenanceOut.SET_TARGET_PORT_GROUPS

    @classmethod
    def decode(cls, cdb: bytes | memoryview) -> Self:
        if len(cdb) < _MAINTENANCE_CDB.size or cdb[0] != Opcode.MAINTENANCE_OUT:
            raise ValueError("not a MAINTENANCE OUT CDB")
        _, byte1, length, control = _MAINTENANCE_CDB.unpack_from(cdb)
        if byte1 & _SERVICE_ACTION_MASK != cls.SERVICE_ACTION:
            raise ValueError("not a SET TARGET PORT GROUPS CDB")
        return cls(length, control)

    def encode(self) -> bytes:
        _check(self.parameter_list_length, _U32, "PARAMETER LIST LENGTH")
        _check(self.control, 0xFF, "CONTROL")
        return _MAINTENANCE_CDB.pack(
            Opcode.MAINTENANCE_OUT, self.SERVICE_ACTION, self.parameter_list_length, self.control
        )


@dataclass(frozen=True, slots=True)
class SetTargetPortGroupDescriptor:
    """SPC-4 §6.45 table 'Set target port group descriptor format'.

    For a primary state the last field is a TARGET PORT GROUP; for the secondary state
    (offline) it is a RELATIVE TARGET PORT IDENTIFIER.
    """

    asymmetric_access_state: ALUAState
    target_port_group_or_target_port: int

    def encode(self) -> bytes:
        _check(self.target_port_group_or_target_port, _U16, "TARGET PORT GROUP OR TARGET PORT")
        return _SET_DESCRIPTOR.pack(
            self.asymmetric_access_state, self.target_port_group_or_target_port
        )


@dataclass(frozen=True, slots=True)
class SetTargetPortGroupsParameters:
    """SPC-4 §6.45 parameter list: 4 reserved bytes, then set target port group descriptors."""

    descriptors: tuple[SetTargetPortGroupDescriptor, ...]

    HEADER_LENGTH: ClassVar[int] = 4
    DESCRIPTOR_LENGTH: ClassVar[int] = _SET_DESCRIPTOR.size

    @staticmethod
    def descriptor_offset(index: int) -> int:
        """Byte offset of descriptor ``index`` in the list (for sense FIELD POINTERs)."""
        return SetTargetPortGroupsParameters.HEADER_LENGTH + index * _SET_DESCRIPTOR.size

    @classmethod
    def decode(cls, data: bytes | memoryview) -> Self:
        """Parse a non-empty list cut to PARAMETER LIST LENGTH.

        A length that truncates the header or a descriptor is PARAMETER LIST LENGTH ERROR. A
        state code the STPG table leaves reserved (4h-Dh and Fh: LBD and transitioning cannot be
        requested) is INVALID FIELD IN PARAMETER LIST at that descriptor's state field.
        """
        body = len(data) - cls.HEADER_LENGTH
        if body < 0 or body % cls.DESCRIPTOR_LENGTH:
            raise CheckCondition(SenseKey.ILLEGAL_REQUEST, ASC.PARAMETER_LIST_LENGTH_ERROR)
        descriptors: list[SetTargetPortGroupDescriptor] = []
        for index in range(body // cls.DESCRIPTOR_LENGTH):
            offset = cls.descriptor_offset(index)
            byte0, target = _SET_DESCRIPTOR.unpack_from(data, offset)
            code = byte0 & _STATE_MASK
            if code not in _SETTABLE_CODES:
                raise invalid_field_in_parameter_list(offset, 3)
            descriptors.append(SetTargetPortGroupDescriptor(ALUAState(code), target))
        return cls(tuple(descriptors))

    def encode(self) -> bytes:
        return bytes(self.HEADER_LENGTH) + b"".join(d.encode() for d in self.descriptors)


# SPC-4 §6.45 table 'ASYMMETRIC ACCESS STATE field' of STPG: the four primary states and offline.
_SETTABLE_CODES = frozenset(
    {
        ALUAState.ACTIVE_OPTIMIZED,
        ALUAState.ACTIVE_NON_OPTIMIZED,
        ALUAState.STANDBY,
        ALUAState.UNAVAILABLE,
        ALUAState.OFFLINE,
    }
)
