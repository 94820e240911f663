"""Events, the login seam and settings of the sans-IO target connection.

What :mod:`sanstack.iscsi.target_connection` hands its edge (``target/server.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from sanstack.iscsi import pdu as p
from sanstack.iscsi.codes import TaskManagementFunction
from sanstack.scsi.command import Command, Nexus

# -- events ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LoginSucceeded:
    """The connection reached the full feature phase."""

    initiator_name: str
    isid: int
    tsih: int
    target_name: str
    discovery: bool
    nexus: Nexus | None


# Not frozen: one per command, and a frozen __init__ costs twice as much.
@dataclass(slots=True, init=False)
class CommandReady:
    """A SCSI command is in CmdSN order and has all its Data-Out: run it."""

    itt: int
    command: Command

    # Written out (the dataclass makes none, init=False): compiled by mypyc, a generated
    # __init__ stays interpreted Python, and this one is made for every command.
    def __init__(self, itt: int, command: Command) -> None:
        self.itt = itt
        self.command = command


@dataclass(frozen=True, slots=True)
class TaskManagementRequested:
    """RFC 7143 §11.5: the edge acts on logical units, then calls ``complete_task_management``."""

    itt: int
    function: TaskManagementFunction
    lun: int
    referenced_task_tag: int


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The connection is over; send what is queued, then close the transport."""

    reason: str


Event = LoginSucceeded | CommandReady | TaskManagementRequested | ConnectionClosed


# -- the login seam ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LoginOutcome:
    """What a completed login settled (RFC 7143 §6, §13)."""

    initiator_name: str
    target_name: str
    isid: int
    tsih: int
    discovery: bool
    tpgt: int
    header_digest: bool
    data_digest: bool
    max_recv_data_segment_length: int
    max_xmit_data_segment_length: int
    max_burst_length: int
    first_burst_length: int
    initial_r2t: bool
    immediate_data: bool
    max_outstanding_r2t: int


class LoginDriver(Protocol):
    """Runs the login phase: one response per request; ``outcome`` is set once it succeeds."""

    outcome: LoginOutcome | None
    failed: bool

    def handle(self, request: p.LoginRequest) -> p.LoginResponse: ...


# -- configuration ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConnectionSettings:
    """Target-side limits of one connection."""

    command_window: int = 128
    login_timeout: float = 15.0
    nop_in_interval: float | None = 5.0
    nop_in_timeout: float = 15.0
