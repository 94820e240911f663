"""One SCSI command as the initiator sees it (RFC 7143 §4.2.4, §11.3, §11.7, §11.8).

A write's data leaves in up to three parts: immediate data in the command PDU (ImmediateData
=Yes), an unsolicited Data-Out sequence up to FirstBurstLength (InitialR2T=No), then one
Data-Out sequence per R2T. A read's Data-In arrives in PDUs numbered by DataSN; they are put
back together by buffer offset.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sanstack.errors import LocalProtocolError, RemoteProtocolError
from sanstack.iscsi import pdu as p
from sanstack.iscsi.codes import Opcode, TaskAttribute
from sanstack.iscsi.negotiation import OperationalParameters

RESERVED_TAG = 0xFFFFFFFF
_BHS_CDB_LENGTH = 16  # longer CDBs continue in an Extended CDB AHS (§11.3.5)
_FINAL, _READ = 0x80, 0x40  # flags of the SCSI Command PDU (§11.3.1)


class CommandQueueFull(LocalProtocolError):
    """More requests are waiting for the CmdSN window than the queue holds."""


class QueuedText:
    """A Text Request (SendTargets, or the fetch of a continued answer) for the window."""

    __slots__ = ("cont_ttt", "itt", "payload")

    def __init__(self, itt: int, payload: bytes, cont_ttt: int = RESERVED_TAG) -> None:
        self.itt = itt
        self.payload = payload
        self.cont_ttt = cont_ttt


class QueuedLogout:
    """A Logout Request: queued last, so every request before it goes out first."""

    __slots__ = ("itt",)

    def __init__(self, itt: int) -> None:
        self.itt = itt


class TaskProtocolError(RemoteProtocolError):
    """A Data-In or R2T does not fit the command it names (fatal at ErrorRecoveryLevel 0)."""


def data_out_pdus(
    *,
    itt: int,
    lun_field: int,
    ttt: int,
    data: memoryview,
    start: int,
    end: int,
    max_segment: int,
    exp_stat_sn: int,
) -> list[p.DataOut]:
    """One Data-Out sequence for ``data[start:end]``: DataSN from 0, F on the last PDU."""
    out: list[p.DataOut] = []
    offset = start
    data_sn = 0
    while offset < end:
        n = min(max_segment, end - offset)
        out.append(
            p.DataOut(
                itt=itt,
                ttt=ttt,
                lun=lun_field,
                exp_stat_sn=exp_stat_sn,
                data_sn=data_sn,
                buffer_offset=offset,
                final=offset + n >= end,
                # DataOut.data is typed bytes; a slice copy keeps the codec's contract.
                data=bytes(data[offset : offset + n]),
            )
        )
        offset += n
        data_sn += 1
    return out


# Compiled (mypyc), a dataclass field's annotation is looked up among the module's globals,
# where no builtin is: this alias is one.
_View = memoryview


@dataclass(slots=True, init=False)
class CommandTask:
    """A SCSI command from ``submit`` until its status arrives."""

    itt: int
    lun_field: int
    cdb: bytes
    attribute: TaskAttribute
    data_out: _View
    read_length: int
    # Progress, kept by the connection: never given at construction.
    cmd_sn: int = field(default=0, init=False)
    sent: bool = field(default=False, init=False)
    next_data_sn: int = field(default=0, init=False)
    next_r2t_sn: int = field(default=0, init=False)
    received_end: int = field(default=0, init=False)
    _pieces: list[bytes | memoryview] = field(default_factory=list, init=False)
    _buffer: bytearray | None = field(default=None, init=False)

    # Written out (the dataclass makes none, init=False): compiled by mypyc, a generated
    # __init__ stays interpreted Python, and this one is made for every command.
    def __init__(  # noqa: PLR0917 - the dataclass's own signature
        self,
        itt: int,
        lun_field: int,
        cdb: bytes,
        attribute: TaskAttribute,
        data_out: _View,
        read_length: int,
    ) -> None:
        self.itt = itt
        self.lun_field = lun_field
        self.cdb = cdb
        self.attribute = attribute
        self.data_out = data_out
        self.read_length = read_length
        self.cmd_sn = 0
        self.sent = False
        self.next_data_sn = 0
        self.next_r2t_sn = 0
        self.received_end = 0
        self._pieces = []
        self._buffer = None

    @property
    def write(self) -> bool:
        return len(self.data_out) > 0

    @property
    def expected_length(self) -> int:
        return len(self.data_out) if self.write else self.read_length

    @property
    def bare(self) -> bool:
        """Whether the SCSI Command PDU is the whole command and its BHS all of that PDU:
        no data out, a CDB that fits the BHS (every READ the block layer sends)."""
        return not self.data_out and len(self.cdb) <= _BHS_CDB_LENGTH

    def bare_command(self, cmd_sn: int, exp_stat_sn: int) -> bytes:
        """The BHS of a ``bare`` command: the bytes ``command_pdus`` would encode, packed
        directly (it runs for every I/O)."""
        self.cmd_sn = cmd_sn
        self.sent = True
        flags = _FINAL | (_READ if self.read_length else 0) | self.attribute
        return p.SCSI_COMMAND_STRUCT.pack(
            Opcode.SCSI_COMMAND,
            flags,
            0,  # TotalAHSLength and DataSegmentLength
            self.lun_field,
            self.itt,
            self.read_length,
            cmd_sn,
            exp_stat_sn,
            self.cdb,
        )

    def command_pdus(
        self, params: OperationalParameters, cmd_sn: int, exp_stat_sn: int
    ) -> list[p.PDU]:
        """The SCSI Command PDU with its immediate data, then any unsolicited Data-Out."""
        self.cmd_sn = cmd_sn
        self.sent = True
        total = len(self.data_out)
        immediate = 0
        unsolicited_end = 0
        if total:
            if params.immediate_data:
                immediate = min(
                    params.first_burst_length, params.max_xmit_data_segment_length, total
                )
            unsolicited_end = immediate
            if not params.initial_r2t:
                unsolicited_end = min(params.first_burst_length, total)
        # F says no unsolicited Data-Out follows the command (§11.3.1).
        final = unsolicited_end <= immediate
        pdus: list[p.PDU] = [
            p.SCSICommand(
                itt=self.itt,
                lun=self.lun_field,
                cdb=self.cdb,
                expected_data_transfer_length=self.expected_length,
                cmd_sn=cmd_sn,
                exp_stat_sn=exp_stat_sn,
                final=final,
                read=self.read_length > 0 and not total,
                write=total > 0,
                attr=self.attribute,
                data=bytes(self.data_out[:immediate]),
            )
        ]
        if not final:
            pdus += data_out_pdus(
                itt=self.itt,
                lun_field=self.lun_field,
                ttt=RESERVED_TAG,
                data=self.data_out,
                start=immediate,
                end=unsolicited_end,
                max_segment=params.max_xmit_data_segment_length,
                exp_stat_sn=exp_stat_sn,
            )
        return pdus

    def answer_r2t(
        self, r2t: p.R2T, params: OperationalParameters, exp_stat_sn: int
    ) -> list[p.DataOut]:
        """The Data-Out sequence an R2T asks for (§11.8)."""
        start = r2t.buffer_offset
        end = start + r2t.desired_data_transfer_length
        if not self.write or end > len(self.data_out) or end <= start:
            raise TaskProtocolError(
                f"R2T for ITT {self.itt:#x} asks for bytes {start}..{end} "
                f"of a {len(self.data_out)}-byte write"
            )
        if r2t.desired_data_transfer_length > params.max_burst_length:
            raise TaskProtocolError("R2T asks for more than MaxBurstLength")
        if r2t.r2t_sn != self.next_r2t_sn:
            raise TaskProtocolError(f"R2TSN {r2t.r2t_sn}, expected {self.next_r2t_sn}")
        self.next_r2t_sn += 1
        return data_out_pdus(
            itt=self.itt,
            lun_field=self.lun_field,
            ttt=r2t.ttt,
            data=self.data_out,
            start=start,
            end=end,
            max_segment=params.max_xmit_data_segment_length,
            exp_stat_sn=exp_stat_sn,
        )

    def add_data_in(self, data_sn: int, offset: int, data: bytes | tuple[memoryview, ...]) -> None:
        """A Data-In PDU's DataSN, BufferOffset and data segment (in pieces, when the
        reader left a large one where it was received)."""
        if data_sn != self.next_data_sn:
            raise TaskProtocolError(f"DataSN {data_sn}, expected {self.next_data_sn}")
        self.next_data_sn += 1
        pieces: tuple[bytes | memoryview, ...]
        if isinstance(data, tuple):
            pieces = data
            n = sum(map(len, data))
        else:
            pieces = (data,)
            n = len(data)
        if self.data_out or offset + n > self.read_length:
            raise TaskProtocolError(
                f"Data-In bytes {offset}..{offset + n} for ITT {self.itt:#x} "
                f"beyond its expected {self.read_length}"
            )
        if not n:
            return
        if self._buffer is None and offset == self.received_end:
            # In order (DataPDUInOrder=Yes, the usual case): keep the pieces as they came.
            self._pieces += pieces
            self.received_end += n
            return
        if self._buffer is None:
            self._buffer = bytearray(b"".join(self._pieces))
            self._pieces.clear()
        if len(self._buffer) < offset:
            self._buffer.extend(bytes(offset - len(self._buffer)))
        self._buffer[offset : offset + n] = b"".join(pieces)
        self.received_end = max(self.received_end, offset + n)

    def first_data_in(self, data: bytes) -> bool:
        """``add_data_in`` of DataSN 0 at offset 0 when that is all the data there is to be
        (a read answered by one Data-In, the usual case): True if it was; False, and nothing
        done, for anything else (``add_data_in`` then checks and takes it)."""
        if (
            self.next_data_sn
            or self.received_end
            or self._buffer is not None
            or self.data_out
            or len(data) > self.read_length
        ):
            return False
        self.next_data_sn = 1
        self.received_end = len(data)
        return True

    def parts(self) -> tuple[bytes | memoryview, ...]:
        """The Data-In in order, as the PDUs brought it: never joined here (a 1 MiB read in
        four segments would cost a fresh 1 MiB buffer), so a caller that only passes the
        data on (an NBD reply) writes the pieces as they are."""
        if self._buffer is not None:
            return (bytes(self._buffer),)  # rare: only a target sending out of order
        return tuple(self._pieces)
