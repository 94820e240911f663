"""A small blocking iSCSI initiator for tests, on sanstack's own codec and login core.

One command at a time, ErrorRecoveryLevel 0, R2T answered, NOP-In pings answered. It exists
to drive the target from tests (the fuzz test's "second session that keeps working");
sanstack's real initiator is the multipath layer's.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

from sanstack.iscsi import pdu as p
from sanstack.iscsi.initiator_login import InitiatorLogin
from sanstack.iscsi.login import LoginRequestFields
from sanstack.iscsi.login_pdus import request_pdu, response_fields
from sanstack.iscsi.pdu_reader import PDUReader
from sanstack.scsi.lun import encode_lun

RESERVED = 0xFFFFFFFF


@dataclass
class Response:
    status: int
    data: bytes
    sense: bytes


class TestInitiator:
    """Logs in on connect; ``command`` runs one SCSI command to completion."""

    __test__ = False  # not a pytest class

    def __init__(
        self,
        host: str,
        port: int,
        target_name: str,
        *,
        initiator_name: str = "iqn.2026-11.org.sanstack:test-client",
        isid: int = 0x80_1234_5678,
        timeout: float = 10.0,
    ) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.reader = PDUReader(max_data_segment_length=1 << 20)
        self.itt = 1
        self.cmd_sn = 0
        self.exp_stat_sn = 0
        self.max_xmit = 8192
        self._login(target_name, initiator_name, isid)

    # -- plumbing ------------------------------------------------------------------------

    def send(self, pdu: p.PDU) -> None:
        self.sock.sendall(pdu.encode())

    def receive(self) -> p.PDU:
        while True:
            pdu = self.reader.next_pdu()
            if pdu is not None:
                stat_sn = getattr(pdu, "stat_sn", None)
                if stat_sn is not None and not isinstance(pdu, p.R2T):
                    self.exp_stat_sn = (stat_sn + 1) & 0xFFFFFFFF
                return pdu
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("target closed the connection")
            self.reader.feed(chunk)

    def _login(self, target_name: str, initiator_name: str, isid: int) -> None:
        login = InitiatorLogin(initiator_name, target_name, isid=isid)
        request: LoginRequestFields | None = login.start()
        while request is not None:
            self.send(request_pdu(request, cmd_sn=self.cmd_sn, exp_stat_sn=self.exp_stat_sn))
            answer = self.receive()
            assert isinstance(answer, p.LoginResponse), answer
            request = login.receive(response_fields(answer))
        params = login.result.parameters
        self.max_xmit = params.max_xmit_data_segment_length
        self.reader.set_digests(params.header_digest, params.data_digest)

    # -- commands ----------------------------------------------------------------------------

    def command(
        self, cdb: bytes, *, data_out: bytes = b"", read_length: int = 0, lun: int = 0
    ) -> Response:
        itt = self.itt
        self.itt += 1
        immediate = data_out[: min(self.max_xmit, 65536)]
        self.send(
            p.SCSICommand(
                itt=itt,
                lun=encode_lun(lun),
                cdb=cdb.ljust(16, b"\x00") if len(cdb) < 16 else cdb,
                expected_data_transfer_length=len(data_out) or read_length,
                cmd_sn=self.cmd_sn,
                exp_stat_sn=self.exp_stat_sn,
                final=True,
                read=read_length > 0,
                write=bool(data_out),
                data=immediate,
            )
        )
        self.cmd_sn = (self.cmd_sn + 1) & 0xFFFFFFFF
        data = bytearray()
        while True:
            pdu = self.receive()
            if isinstance(pdu, p.R2T) and pdu.itt == itt:
                self._answer_r2t(pdu, data_out)
            elif isinstance(pdu, p.DataIn) and pdu.itt == itt:
                data[pdu.buffer_offset : pdu.buffer_offset + len(pdu.data)] = bytes(pdu.data)
                if pdu.status_present:
                    return Response(pdu.status, bytes(data), b"")
            elif isinstance(pdu, p.SCSIResponse) and pdu.itt == itt:
                return Response(pdu.status, bytes(data), pdu.sense)
            elif isinstance(pdu, p.NopIn) and pdu.ttt != RESERVED:
                self.send(p.NopOut(itt=RESERVED, ttt=pdu.ttt, cmd_sn=self.cmd_sn, immediate=True))
            elif isinstance(pdu, p.Reject):
                raise ConnectionError(f"target rejected our PDU: {pdu.reason!r}")

    def _answer_r2t(self, r2t: p.R2T, data_out: bytes) -> None:
        offset = r2t.buffer_offset
        end = offset + r2t.desired_data_transfer_length
        data_sn = 0
        while offset < end:
            n = min(self.max_xmit, end - offset)
            self.send(
                p.DataOut(
                    itt=r2t.itt,
                    ttt=r2t.ttt,
                    lun=r2t.lun,
                    exp_stat_sn=self.exp_stat_sn,
                    data_sn=data_sn,
                    buffer_offset=offset,
                    final=offset + n >= end,
                    data=data_out[offset : offset + n],
                )
            )
            offset += n
            data_sn += 1

    def read(self, lba: int, blocks: int, block_size: int = 512, lun: int = 0) -> bytes:
        cdb = struct.pack(">BBIBHB", 0x28, 0, lba, 0, blocks, 0)
        answer = self.command(cdb, read_length=blocks * block_size, lun=lun)
        if answer.status != 0:
            raise AssertionError(f"READ(10) failed: status {answer.status:#x} {answer.sense.hex()}")
        return answer.data

    def write(self, lba: int, data: bytes, block_size: int = 512, lun: int = 0) -> None:
        cdb = struct.pack(">BBIBHB", 0x2A, 0, lba, 0, len(data) // block_size, 0)
        answer = self.command(cdb, data_out=data, lun=lun)
        if answer.status != 0:
            raise AssertionError(
                f"WRITE(10) failed: status {answer.status:#x} {answer.sense.hex()}"
            )

    def logout(self) -> None:
        self.send(p.LogoutRequest(itt=self.itt, cmd_sn=self.cmd_sn, exp_stat_sn=self.exp_stat_sn))
        while not isinstance(self.receive(), p.LogoutResponse):
            pass
        self.close()

    def close(self) -> None:
        self.sock.close()
