"""Whole Data-In PDUs framed straight from the bytes received (the initiator's reads).

The initiator's connection answers nearly every read with one Data-In PDU carrying its
status (RFC 7143 §11.7.4, phase collapse). ``PDUReader`` frames any PDU from any split of
the stream, at the price of a memoryview per step and a few calls per PDU; this framer
takes the usual case alone: a run of Data-In PDUs without AHS or digests, each unpacked
in one call where it lies in the segment received, its data copied out once (as
``PDUReader`` copies a segment this small). The first byte that is anything else, and
everything after it, goes back to the caller for ``PDUReader``: a framer that is given up
on never holds bytes the reader would need. A Data-In cut by the end of a segment is
kept (``carry``) and completed from the next segment, so one partial PDU does not send
every later segment down the general path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from sanstack.iscsi.codes import BHS_LENGTH, Opcode
from sanstack.iscsi.pdu import DATA_IN_STRUCT

# The Data-In's fields as DATA_IN_STRUCT unpacks them, and its data segment.
DataInHandler = Callable[[tuple[int, ...], bytes], None]

_DATA_IN: Final = int(Opcode.DATA_IN)
_HEAD: Final = BHS_LENGTH


class DataInFramer:
    """Frames Data-In PDUs of at most ``max_segment`` data bytes (0: none, the framer is
    off) and no AHS; the connection sets the limit once the login has settled digests
    (none) and MaxRecvDataSegmentLength."""

    __slots__ = ("carry", "max_segment")

    def __init__(self) -> None:
        self.carry = b""  # the start of a Data-In the last segment ended inside
        self.max_segment = 0

    def take_carry(self) -> bytes:
        """The bytes held (for the general reader, when the framer is turned off)."""
        carry, self.carry = self.carry, b""
        return carry

    def _length(self, data: bytes, pos: int) -> int:
        """The whole length of the Data-In whose BHS starts at ``data[pos]`` (at least 8
        bytes there), or 0 if the framer does not take it."""
        if data[pos] & 0x3F != _DATA_IN or data[pos + 4]:  # not a Data-In, or an AHS
            return 0
        dsl = int.from_bytes(data[pos + 5 : pos + 8], "big")
        if dsl > self.max_segment:
            return 0
        return _HEAD + dsl + (-dsl & 3)

    def frame(self, data: bytes, handle: DataInHandler) -> bytes:
        """Hand each whole Data-In at the start of what was held and ``data`` to
        ``handle``, in order; the bytes from the first PDU it does not take on (b"" when
        it took everything, a trailing partial Data-In held for the next segment).
        ``handle`` may raise: the bytes not yet framed are then dropped with the
        connection it fails."""
        pos = 0
        end = len(data)
        carry = self.carry
        if carry:
            self.carry = b""
            have = len(carry)
            if have < 8:  # not enough to know the PDU's length yet
                take = min(8 - have, end)
                carry += data[:take]
                pos = take
                have = len(carry)
                if have < 8:
                    self.carry = carry
                    return b""
            total = self._length(carry, 0)
            if not total:
                return carry + data[pos:]
            need = total - have
            if end - pos < need:
                self.carry = carry + data[pos:]
                return b""
            whole = carry + data[pos : pos + need]
            pos += need
            fields = DATA_IN_STRUCT.unpack_from(whole)
            handle(fields, whole[_HEAD : _HEAD + (fields[3] & 0xFFFFFF)])
        unpack = DATA_IN_STRUCT.unpack_from
        max_segment = self.max_segment
        while pos < end:
            if data[pos] & 0x3F != _DATA_IN:
                return data[pos:]
            if end - pos < _HEAD:
                self.carry = data[pos:]
                return b""
            fields = unpack(data, pos)
            word = fields[3]  # TotalAHSLength and DataSegmentLength
            dsl = word & 0xFFFFFF
            if word >> 24 or dsl > max_segment:
                return data[pos:]
            total = _HEAD + dsl + (-dsl & 3)
            if end - pos < total:
                self.carry = data[pos:]
                return b""
            start = pos + _HEAD
            handle(fields, data[start : start + dsl])
            pos += total
        return b""
