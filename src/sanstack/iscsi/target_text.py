"""Text requests in the full feature phase, target side (RFC 7143 §11.10, §11.11, §13.3).

An initiator's Text Request may span several PDUs: each one with the C bit set (§11.10.2)
is acknowledged with an empty, non-final Text Response, and the parts are joined until
the last one. The joined text is answered key by key: ``SendTargets`` by the
configured discovery callback (§13.3, Appendix C), any other key with ``NotUnderstood``.
An answer longer than the initiator's MaxRecvDataSegmentLength leaves in parts: each
non-final part carries the C bit and a Target Transfer Tag that the initiator echoes to
fetch the next one (§11.11.2, §11.11.4).

:class:`TextExchange` decides the fields of each Text Response; the connection adds the
sequence numbers and sends it, so the CmdSN window stays in one place.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sanstack.iscsi import pdu as p
from sanstack.iscsi.codes import RESERVED_TAG, RejectReason

MAX_TEXT_REQUEST = 64 * 1024


@dataclass(frozen=True, slots=True)
class TextReply:
    """The fields of one Text Response that the text exchange decides."""

    ttt: int
    final: bool
    cont: bool = False
    data: bytes = b""


class TextExchange:
    """One connection's text requests: joins continued requests, splits long answers."""

    def __init__(self, send_targets: Callable[[str, str], bytes] | None) -> None:
        # send_targets(value of SendTargets=, initiator name) gives the encoded answer.
        self._send_targets = send_targets
        self._request = bytearray()
        self._continuation: tuple[int, bytes] | None = None
        # The tag that acknowledged the last part of a continued request: the initiator
        # echoes it in the next part (§11.10.4), which is not a fetch of an answer.
        self._request_ttt = RESERVED_TAG

    def receive(
        self,
        pdu: p.TextRequest,
        *,
        initiator_name: str,
        max_segment: int,
        take_ttt: Callable[[], int],
    ) -> TextReply | RejectReason:
        """The reply to one Text Request, or why to reject it (§11.17)."""
        if pdu.ttt != RESERVED_TAG and pdu.ttt == self._request_ttt:
            self._request_ttt = RESERVED_TAG
        elif pdu.ttt != RESERVED_TAG:
            continuation = self._continuation
            if continuation is None or continuation[0] != pdu.ttt:
                return RejectReason.INVALID_PDU_FIELD
            self._continuation = None
            return self._answer(continuation[1], max_segment, take_ttt)
        self._request += pdu.data
        if len(self._request) > MAX_TEXT_REQUEST:
            self._request.clear()
            return RejectReason.PROTOCOL_ERROR
        if pdu.cont:
            self._request_ttt = take_ttt()
            return TextReply(ttt=self._request_ttt, final=False)
        text = bytes(self._request)
        self._request.clear()
        answer = bytearray()
        for item in text.split(b"\x00"):
            if not item:
                continue
            key, sep, value = item.decode("utf-8", "replace").partition("=")
            if key == "SendTargets" and sep and self._send_targets is not None:
                answer += self._send_targets(value, initiator_name)
            elif sep:
                answer += f"{key}=NotUnderstood\x00".encode()
        return self._answer(bytes(answer), max_segment, take_ttt)

    def _answer(self, payload: bytes, max_segment: int, take_ttt: Callable[[], int]) -> TextReply:
        more = len(payload) > max_segment
        ttt = take_ttt() if more else RESERVED_TAG
        if more:
            self._continuation = (ttt, payload[max_segment:])
        return TextReply(ttt=ttt, final=not more, cont=more, data=payload[:max_segment])
