"""What both ends of an iSCSI connection share: events out, PDUs out, digests.

Each sans-IO connection core (target and initiator) queues the events the edge must act on
and the encoded PDUs the edge must send; the edge drains both (``next_event``,
``data_to_send``) after every ``receive_data`` or timer. Digests apply to PDUs queued after
the login completes (RFC 7143 §13.1).
"""

from __future__ import annotations

import struct
from collections import deque
from typing import Generic, TypeVar

from sanstack.iscsi import pdu as p
from sanstack.iscsi.digest import crc32c

E = TypeVar("E")
_LE32 = struct.Struct("<I")  # a digest on the wire (RFC 7143 §13.1)


class PDUStream(Generic[E]):
    """Event queue, output buffer and digest settings of one connection core."""

    def __init__(self) -> None:
        self._events: deque[E] = deque()
        self._out: list[bytes | memoryview] = []
        self._header_digest = False
        self._data_digest = False

    def next_event(self) -> E | None:
        return self._events.popleft() if self._events else None

    @property
    def has_data_to_send(self) -> bool:
        return bool(self._out)

    def data_to_send(self) -> list[bytes | memoryview]:
        out, self._out = self._out, []
        return out

    def _send(self, pdu: p.PDU) -> None:
        self._out.extend(pdu.encode_parts(self._header_digest, self._data_digest))

    def _send_packed(self, header: bytes, data: bytes | memoryview) -> None:
        """Queue a PDU from its packed BHS and its data segment: what ``_send`` queues for
        the same PDU, without the object (the target's Data-In of a cached read)."""
        if self._header_digest or self._data_digest:
            self._out.extend(p.assemble(header, data, self._header_digest, self._data_digest))
            return
        out = self._out
        out.append(header)
        if data:
            out.append(data)
            pad = p.PADDING[len(data) & 3]
            if pad:
                out.append(pad)

    def _send_bhs(self, header: bytes) -> None:
        """Queue a PDU that is a Basic Header Segment alone, packed by the caller: the bytes
        ``_send`` would queue for it, without building the PDU object first (the
        initiator's READ commands, one per I/O)."""
        if self._header_digest:
            header += _LE32.pack(crc32c(header))
        self._out.append(header)
