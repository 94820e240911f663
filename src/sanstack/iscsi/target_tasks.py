"""Per-task Data-Out collection for the target (RFC 7143 §4.2.4, §11.7 Data-Out, §11.8 R2T).

A write-type command's data arrives in up to three parts: immediate data in the command PDU,
an unsolicited Data-Out sequence (when InitialR2T=No) up to FirstBurstLength, and solicited
sequences, one per R2T, each at most MaxBurstLength. sanstack negotiates DataPDUInOrder=Yes
and DataSequenceInOrder=Yes, so every PDU must continue exactly where the previous one ended;
anything else is the initiator's protocol error.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sanstack.errors import RemoteProtocolError
from sanstack.iscsi import pdu as p
from sanstack.iscsi.codes import RESERVED_TAG
from sanstack.scsi.codes import TaskAttribute


class DataOutError(RemoteProtocolError):
    """A Data-Out PDU does not fit the task it names."""


@dataclass(slots=True)
class PendingR2T:
    ttt: int
    r2t_sn: int
    buffer_offset: int
    length: int
    received: int = 0
    next_data_sn: int = 0


@dataclass(slots=True, init=False)
class WriteTask:
    """A write command whose Data-Out buffer is still being filled."""

    itt: int
    lun: int
    cdb: bytes
    cmd_sn: int
    attribute: TaskAttribute
    expected_length: int
    # Immediate plus unsolicited Data-Out end here; R2Ts solicit the rest (RFC 7143 §13.11).
    unsolicited_limit: int
    # Progress, kept as Data-Out arrives: never given at construction.
    chunks: list[bytes | memoryview] = field(default_factory=list, init=False)
    received: int = field(default=0, init=False)
    next_r2t_offset: int = field(default=0, init=False)
    r2t_sn: int = field(default=0, init=False)
    unsolicited_data_sn: int = field(default=0, init=False)
    r2ts: dict[int, PendingR2T] = field(default_factory=dict, init=False)
    delivered: bool = field(default=False, init=False)

    # Written out (the dataclass makes none, init=False): compiled by mypyc, a generated
    # __init__ stays interpreted Python, and a write that waits for Data-Out makes one.
    def __init__(  # noqa: PLR0917 - the dataclass's own signature
        self,
        itt: int,
        lun: int,
        cdb: bytes,
        cmd_sn: int,
        attribute: TaskAttribute,
        expected_length: int,
        unsolicited_limit: int,
    ) -> None:
        self.itt = itt
        self.lun = lun
        self.cdb = cdb
        self.cmd_sn = cmd_sn
        self.attribute = attribute
        self.expected_length = expected_length
        self.unsolicited_limit = unsolicited_limit
        self.chunks = []
        self.received = 0
        self.next_r2t_offset = 0
        self.r2t_sn = 0
        self.unsolicited_data_sn = 0
        self.r2ts = {}
        self.delivered = False

    @property
    def complete(self) -> bool:
        return self.received >= self.expected_length

    def buffer(self) -> bytes | memoryview:
        if len(self.chunks) == 1:
            return self.chunks[0]
        return b"".join(self.chunks)

    def add_immediate(self, data: bytes) -> None:
        """Take the command PDU's immediate data; R2Ts start after the unsolicited part."""
        if len(data) > self.unsolicited_limit:
            raise DataOutError("immediate data exceeds FirstBurstLength")
        if data:
            self.chunks.append(data)
            self.received = len(data)
        self.next_r2t_offset = self.unsolicited_limit

    def add_data_out(self, ttt: int, data_sn: int, buffer_offset: int, data: bytes) -> None:
        """Account one Data-Out PDU; raises ``DataOutError`` if it breaks the sequence rules."""
        if buffer_offset != self.received:
            raise DataOutError(f"Data-Out buffer offset {buffer_offset}, expected {self.received}")
        if ttt == RESERVED_TAG:
            if data_sn != self.unsolicited_data_sn:
                raise DataOutError(
                    f"unsolicited DataSN {data_sn}, expected {self.unsolicited_data_sn}"
                )
            if buffer_offset + len(data) > self.unsolicited_limit:
                raise DataOutError("unsolicited data exceeds FirstBurstLength")
            self.unsolicited_data_sn += 1
        else:
            r2t = self.r2ts.get(ttt)
            if r2t is None:
                raise DataOutError(f"Data-Out names unknown target transfer tag {ttt:#x}")
            if data_sn != r2t.next_data_sn:
                raise DataOutError(f"DataSN {data_sn}, expected {r2t.next_data_sn}")
            if r2t.received + len(data) > r2t.length:
                raise DataOutError("Data-Out exceeds the R2T's desired data transfer length")
            r2t.next_data_sn += 1
            r2t.received += len(data)
            if r2t.received == r2t.length:
                del self.r2ts[ttt]
        if self.received + len(data) > self.expected_length:
            raise DataOutError("Data-Out exceeds the expected data transfer length")
        if data:
            self.chunks.append(data)
            self.received += len(data)

    def next_r2ts(self, max_burst: int, max_outstanding: int, next_ttt: int) -> list[PendingR2T]:
        """R2Ts to send now so at most ``max_outstanding`` are open (RFC 7143 §11.8)."""
        out: list[PendingR2T] = []
        ttt = next_ttt
        while len(self.r2ts) < max_outstanding and self.next_r2t_offset < self.expected_length:
            length = min(max_burst, self.expected_length - self.next_r2t_offset)
            r2t = PendingR2T(ttt, self.r2t_sn, self.next_r2t_offset, length)
            self.r2ts[ttt] = r2t
            self.r2t_sn += 1
            self.next_r2t_offset += length
            out.append(r2t)
            ttt = (ttt + 1) & 0x7FFFFFFF
        return out


def data_in_pdus(
    *,
    itt: int,
    lun_field: int,
    data: bytes | memoryview,
    max_segment: int,
    max_burst: int,
    status_stat_sn: int | None,
    exp_cmd_sn: int,
    max_cmd_sn: int,
    overflow: bool,
    underflow: bool,
    residual: int,
) -> list[p.DataIn]:
    """Split Data-In into PDUs (RFC 7143 §11.7) as ``memoryview`` slices, without copying.

    A sequence ends (F bit) at every MaxBurstLength boundary (§13.14). With
    ``status_stat_sn`` set the last PDU carries the status and residuals (phase collapse,
    §11.7.4), which only a GOOD status without sense may do.
    """
    view = memoryview(data)
    total = len(view)
    out: list[p.DataIn] = []
    offset = 0
    data_sn = 0
    while offset < total:
        in_burst = offset % max_burst
        n = min(max_segment, total - offset, max_burst - in_burst)
        last = offset + n >= total
        status_here = last and status_stat_sn is not None
        out.append(
            p.DataIn(
                itt=itt,
                lun=0 if status_here else lun_field,
                stat_sn=status_stat_sn if status_here and status_stat_sn is not None else 0,
                exp_cmd_sn=exp_cmd_sn,
                max_cmd_sn=max_cmd_sn,
                data_sn=data_sn,
                buffer_offset=offset,
                residual_count=residual if status_here else 0,
                final=last or in_burst + n >= max_burst,
                residual_overflow=overflow and status_here,
                residual_underflow=underflow and status_here,
                status_present=status_here,
                data=view[offset : offset + n],
            )
        )
        offset += n
        data_sn += 1
    return out
