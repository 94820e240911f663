"""An in-memory initiator/target pair: a ``TargetConnection`` core and its logical units,
driven without sockets (h11's ``ConnectionPair``, aioquic's ``client_and_server``).

The "initiator" side is the PDU codec plus ``InitiatorLogin``; the test decides which PDUs
to send, so sequencing rules (CmdSN windows, R2T, DataSN) can be broken on purpose.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from sanstack.block.memory import MemoryDevice
from sanstack.iscsi import pdu as p
from sanstack.iscsi.codes import MAX_DATA_SEGMENT_LENGTH, TaskManagementResponseCode
from sanstack.iscsi.initiator_login import InitiatorLogin
from sanstack.iscsi.login import LoginRequestFields
from sanstack.iscsi.login_pdus import request_pdu, response_fields
from sanstack.iscsi.negotiation import NegotiationPreferences, OperationalParameters
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

IQN = "iqn.2026-11.org.sanstack:pair"
INITIATOR = "iqn.2026-11.org.sanstack:pair-initiator"


@dataclass
class Pair:
    """One target connection and what the initiator has received so far."""

    target: Target
    conn: TargetConnection
    now: float = 0.0
    received: list[p.PDU] = field(default_factory=list)
    closed: str | None = None
    params: OperationalParameters | None = None
    held: list[CommandReady] = field(default_factory=list)
    hold_commands: bool = False
    _reader: PDUReader = field(default_factory=lambda: PDUReader(MAX_DATA_SEGMENT_LENGTH))

    # -- driving ---------------------------------------------------------------------------

    def send(self, *pdus: p.PDU, header_digest: bool = False, data_digest: bool = False) -> None:
        data = b"".join(pdu.encode(header_digest, data_digest) for pdu in pdus)
        self.send_bytes(data)

    def send_bytes(self, data: bytes) -> None:
        self.conn.receive_data(data, self.now)
        self.pump()

    def pump(self) -> None:
        """Run every delivered command to completion and collect what the target sent."""
        while True:
            event = self.conn.next_event()
            if event is None:
                break
            if isinstance(event, CommandReady):
                if self.hold_commands:
                    self.held.append(event)
                else:
                    self.run(event)
            elif isinstance(event, TaskManagementRequested):
                self.conn.complete_task_management(
                    event.itt, TaskManagementResponseCode.FUNCTION_COMPLETE
                )
            elif isinstance(event, ConnectionClosed):
                self.closed = event.reason
        for part in self.conn.data_to_send():
            self._reader.feed(bytes(part))
        while (pdu := self._reader.next_pdu()) is not None:
            self.received.append(pdu)

    def run(self, event: CommandReady) -> None:
        lu = self.target.luns[event.command.lun]
        try:
            result = asyncio.run(lu.execute(event.command))
        except TaskAborted as aborted:
            self.conn.abort_command(event.itt, report_status=aborted.report_status)
            return
        self.conn.complete_command(event.itt, result)

    def release_held(self) -> None:
        held, self.held = self.held, []
        for event in held:
            self.run(event)
        self.pump()

    def tick(self, seconds: float) -> None:
        self.now += seconds
        self.conn.handle_timer(self.now)
        self.pump()

    def take(self) -> list[p.PDU]:
        out, self.received = self.received, []
        return out

    # -- login -----------------------------------------------------------------------------

    def login(self, preferences: NegotiationPreferences | None = None, isid: int = 0x4001) -> None:
        login = InitiatorLogin(INITIATOR, IQN, isid=isid, preferences=preferences)
        request: LoginRequestFields | None = login.start()
        while request is not None:
            self.send(request_pdu(request, cmd_sn=request.cmd_sn, exp_stat_sn=request.exp_stat_sn))
            (answer,) = self.take()
            assert isinstance(answer, p.LoginResponse), answer
            request = login.receive(response_fields(answer))
        self.params = login.result.parameters
        self._reader.set_digests(self.params.header_digest, self.params.data_digest)


def make_pair(
    *, blocks: int = 4096, settings: ConnectionSettings | None = None, luns: int = 1
) -> Pair:
    target = Target(IQN, [PortalGroup(1, [Portal("127.0.0.1", 3260)])])
    for n in range(luns):
        target.add_lun(n, MemoryDevice(blocks))
    registry = TargetRegistry([target])
    settings = settings or ConnectionSettings(nop_in_interval=None)
    conn = TargetConnection(
        TargetLoginDriver(
            registry, Portal("127.0.0.1", 3260), command_window=settings.command_window
        ),
        settings,
        0.0,
        send_targets=lambda value, initiator: registry.send_targets(value, initiator, IQN),
    )
    return Pair(target, conn)
