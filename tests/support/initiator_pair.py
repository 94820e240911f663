"""sanstack's sans-IO initiator core against its sans-IO target core, in memory.

Bytes move between ``InitiatorConnection`` and ``TargetConnection`` until neither has more
to say; commands run on ``MemoryDevice`` logical units (or are held, to keep them in
flight). Every PDU the initiator sends is decoded into ``sent`` for assertions. A fake clock
drives both cores' timers, and ``blackhole`` drops every byte both ways (a dead path).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TypeVar

from sanstack.block.memory import MemoryDevice
from sanstack.iscsi import pdu as p
from sanstack.iscsi.chap import ChapCredentials
from sanstack.iscsi.codes import MAX_DATA_SEGMENT_LENGTH, TaskManagementResponseCode
from sanstack.iscsi.initiator_connection import InitiatorConnection
from sanstack.iscsi.initiator_events import Event, LoginCompleted
from sanstack.iscsi.negotiation import NegotiationPreferences, SessionType
from sanstack.iscsi.pdu_reader import PDUReader
from sanstack.iscsi.target_connection import TargetConnection
from sanstack.iscsi.target_events import (
    CommandReady,
    ConnectionClosed,
    ConnectionSettings,
    TaskManagementRequested,
)
from sanstack.scsi.logical_unit import TaskAborted
from sanstack.target.login_policy import TargetLoginDriver
from sanstack.target.model import Portal, PortalGroup, Target
from sanstack.target.registry import TargetRegistry

IQN = "iqn.2026-11.org.sanstack:ipair"
INITIATOR = "iqn.2026-11.org.sanstack:ipair-initiator"
PORTAL = Portal("127.0.0.1", 3260)
_P = TypeVar("_P", bound=p.PDU)


@dataclass
class InitiatorPair:
    target: Target
    target_conn: TargetConnection
    initiator: InitiatorConnection
    now: float = 0.0
    events: list[Event] = field(default_factory=list)
    sent: list[p.PDU] = field(default_factory=list)
    target_closed: str | None = None
    hold_commands: bool = False
    held: list[CommandReady] = field(default_factory=list)
    tmf_seen: list[TaskManagementRequested] = field(default_factory=list)
    blackhole: bool = False
    _tap: PDUReader = field(default_factory=lambda: PDUReader(MAX_DATA_SEGMENT_LENGTH))

    def pump(self) -> None:
        """Move bytes both ways until both cores are quiet."""
        for _ in range(100_000):
            moved = False
            out = self.initiator.data_to_send()
            if out and not self.blackhole:
                data = b"".join(bytes(x) for x in out)
                self._record(data)
                self.target_conn.receive_data(data, self.now)
                moved = True
            self._target_events()
            back = self.target_conn.data_to_send()
            if back and not self.blackhole:
                self.initiator.receive_data(b"".join(bytes(x) for x in back), self.now)
                moved = True
            if self.target_closed is not None and not self.initiator.closed:
                self.initiator.connection_lost()
                moved = True
            self._initiator_events()
            if not moved:
                return
        raise AssertionError("the pair never went quiet")

    def _record(self, data: bytes) -> None:
        self._tap.feed(data)
        while (pdu := self._tap.next_pdu()) is not None:
            self.sent.append(pdu)

    def _initiator_events(self) -> None:
        while (event := self.initiator.next_event()) is not None:
            self.events.append(event)
            if isinstance(event, LoginCompleted):
                params = event.parameters
                self._tap.set_digests(params.header_digest, params.data_digest)

    def _target_events(self) -> None:
        while (event := self.target_conn.next_event()) is not None:
            if isinstance(event, CommandReady):
                if self.hold_commands:
                    self.held.append(event)
                else:
                    self.run(event)
            elif isinstance(event, TaskManagementRequested):
                self.tmf_seen.append(event)
                self.target_conn.complete_task_management(
                    event.itt, TaskManagementResponseCode.FUNCTION_COMPLETE
                )
            elif isinstance(event, ConnectionClosed):
                self.target_closed = event.reason

    def run(self, event: CommandReady) -> None:
        lu = self.target.luns[event.command.lun]
        try:
            result = asyncio.run(lu.execute(event.command))
        except TaskAborted as aborted:
            self.target_conn.abort_command(event.itt, report_status=aborted.report_status)
            return
        self.target_conn.complete_command(event.itt, result)

    def release_held(self) -> None:
        held, self.held = self.held, []
        for event in held:
            self.run(event)
        self.pump()

    def tick(self, seconds: float) -> None:
        self.now += seconds
        self.initiator.handle_timer(self.now)
        self.target_conn.handle_timer(self.now)
        self.pump()

    def take(self) -> list[Event]:
        out, self.events = self.events, []
        return out

    def sent_of(self, kind: type[_P]) -> list[_P]:
        return [x for x in self.sent if isinstance(x, kind)]

    @property
    def device(self) -> MemoryDevice:
        device = self.target.luns[0].device
        assert isinstance(device, MemoryDevice)
        return device


def make_initiator_pair(
    *,
    blocks: int = 8192,
    settings: ConnectionSettings | None = None,
    target_preferences: NegotiationPreferences | None = None,
    preferences: NegotiationPreferences | None = None,
    target_chap: ChapCredentials | None = None,
    chap: ChapCredentials | None = None,
    session_type: SessionType = SessionType.NORMAL,
    nop_interval: float | None = None,
    nop_timeout: float = 3.0,
    initial_cmd_sn: int = 1,
    login: bool = True,
) -> InitiatorPair:
    target = Target(IQN, [PortalGroup(1, [PORTAL])], chap=target_chap)
    target.add_lun(0, MemoryDevice(blocks))
    registry = TargetRegistry([target])
    settings = settings or ConnectionSettings(nop_in_interval=None)
    target_conn = TargetConnection(
        TargetLoginDriver(
            registry,
            PORTAL,
            command_window=settings.command_window,
            preferences=target_preferences,
        ),
        settings,
        0.0,
        send_targets=lambda value, initiator: registry.send_targets(value, initiator, None),
    )
    initiator = InitiatorConnection(
        INITIATOR,
        IQN if session_type is SessionType.NORMAL else None,
        isid=0x80_0000_4242,
        now=0.0,
        session_type=session_type,
        chap=chap,
        preferences=preferences,
        nop_interval=nop_interval,
        nop_timeout=nop_timeout,
        initial_cmd_sn=initial_cmd_sn,
    )
    pair = InitiatorPair(target, target_conn, initiator)
    if login:
        pair.pump()
    return pair
