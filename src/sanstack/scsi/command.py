"""What passes between the transport (iSCSI) and the SCSI device server.

A transport turns its PDUs into a ``Command`` (CDB, the Data-Out buffer, the expected
Data-In length) and turns the ``CommandResult`` back into PDUs, computing residuals from
``CommandResult.data`` (Data-In) and ``CommandResult.data_out_used`` (Data-Out).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING

from sanstack.scsi.codes import Status, TaskAttribute

if TYPE_CHECKING:
    from sanstack.scsi.logical_unit import LogicalUnit


@dataclass(frozen=True, slots=True)
class Nexus:
    """An I_T nexus (SAM-5 §4.7): one initiator port times one target port.

    For iSCSI (RFC 7143 §4.4.2) the initiator port is the initiator name plus the ISID, and the
    target port is the target name plus the portal group tag. A re-login with a new ISID is a
    new nexus: persistent reservations and unit attentions are kept per nexus.
    """

    initiator_name: str
    isid: int
    target_name: str
    tpgt: int
    relative_target_port_id: int = 1
    # A nexus keys several dicts per command; hash it once.
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        key = (self.initiator_name, self.isid, self.target_name, self.tpgt)
        object.__setattr__(self, "_hash", hash(key))

    def __hash__(self) -> int:
        return self._hash

    @property
    def initiator_port(self) -> str:
        """The SCSI initiator port name (RFC 7143 §4.4.2): name + ``,i,0x`` + ISID in hex."""
        return f"{self.initiator_name},i,0x{self.isid:012x}"

    @property
    def target_port(self) -> str:
        """The SCSI target port name: target name + ``,t,0x`` + TPGT in hex."""
        return f"{self.target_name},t,0x{self.tpgt:04x}"


class DataDirection(IntEnum):
    """Which way a command moves data (SAM-5 §5.4)."""

    NONE = 0
    IN = 1
    OUT = 2


@dataclass(slots=True, init=False)
class Command:
    """One SCSI command as the device server sees it.

    ``data_out`` holds the whole Data-Out buffer the initiator sent (its expected data transfer
    length); ``data_in_length`` is how many Data-In bytes the initiator can take.
    """

    nexus: Nexus
    lun: int
    cdb: bytes
    tag: int = 0
    attribute: TaskAttribute = TaskAttribute.SIMPLE
    data_out: bytes | memoryview = b""
    data_in_length: int = 0

    # Written out (the dataclass makes none, init=False): compiled by mypyc, a generated
    # __init__ stays interpreted Python, and this one is made for every command.
    def __init__(  # noqa: PLR0917 - the dataclass's own signature
        self,
        nexus: Nexus,
        lun: int,
        cdb: bytes,
        tag: int = 0,
        attribute: TaskAttribute = TaskAttribute.SIMPLE,
        data_out: bytes | memoryview = b"",
        data_in_length: int = 0,
    ) -> None:
        self.nexus = nexus
        self.lun = lun
        self.cdb = cdb
        self.tag = tag
        self.attribute = attribute
        self.data_out = data_out
        self.data_in_length = data_in_length


@dataclass(slots=True, init=False)
class CommandResult:
    """The outcome of a command: status, Data-In, sense, and how much Data-Out it needed."""

    status: Status = Status.GOOD
    data: bytes | memoryview = b""
    sense: bytes = b""
    data_out_used: int | None = None

    # Written out (the dataclass makes none, init=False): compiled by mypyc, a generated
    # __init__ stays interpreted Python, and this one is made for every command.
    def __init__(
        self,
        status: Status = Status.GOOD,
        data: bytes | memoryview = b"",
        sense: bytes = b"",
        data_out_used: int | None = None,
    ) -> None:
        self.status = status
        self.data = data
        self.sense = sense
        self.data_out_used = data_out_used


Handler = Callable[["LogicalUnit", Command], Awaitable[CommandResult]]


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """One row of the device server's command table.

    ``usage_data`` is the CDB USAGE DATA of REPORT SUPPORTED OPERATION CODES (SPC-4 §6.35.3):
    the opcode byte, then a bit mask per CDB byte of the bits the server looks at; its length
    is the CDB length. ``media_access`` marks commands that touch the medium (ALUA standby and
    reservation rules depend on it). ``allowed_with_unit_attention`` marks INQUIRY, REPORT LUNS
    and REQUEST SENSE, which SAM-5 §5.14 lets through a pending unit attention.
    ``allowed_with_scsi2_reservation`` marks commands another nexus may send to a unit reserved
    with RESERVE(6/10) (SPC-2 §5.5.1 table 'commands allowed in the presence of reservations').
    """

    opcode: int
    name: str
    handler: Handler
    usage_data: bytes
    direction: DataDirection = DataDirection.NONE
    service_action: int | None = None
    media_access: bool = False
    allowed_with_unit_attention: bool = False
    allowed_with_scsi2_reservation: bool = False

    @property
    def cdb_length(self) -> int:
        return len(self.usage_data)
