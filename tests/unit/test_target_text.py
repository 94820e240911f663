"""The target's text exchange (RFC 7143 §11.10, §11.11): continued requests, long answers."""

from __future__ import annotations

import itertools

from sanstack.iscsi import pdu as p
from sanstack.iscsi.codes import RESERVED_TAG, RejectReason
from sanstack.iscsi.target_text import TextExchange, TextReply

TARGETS = b"TargetName=iqn.2026-12.org.sanstack:t\x00TargetAddress=127.0.0.1:3260,1\x00"


def exchange() -> tuple[TextExchange, itertools.count[int]]:
    return TextExchange(lambda value, initiator: TARGETS), itertools.count(0x100)


def receive(
    text: TextExchange, tags: itertools.count[int], pdu: p.TextRequest, max_segment: int = 8192
) -> TextReply | RejectReason:
    return text.receive(
        pdu, initiator_name="iqn.x:i", max_segment=max_segment, take_ttt=lambda: next(tags)
    )


def test_a_continued_request_whose_parts_echo_the_tag_is_answered_whole() -> None:
    text, tags = exchange()
    first = receive(text, tags, p.TextRequest(itt=1, final=False, cont=True, data=b"SendTar"))
    assert isinstance(first, TextReply) and not first.final and first.ttt != RESERVED_TAG
    # §11.10.4: the next part echoes the Target Transfer Tag of the acknowledgement.
    last = receive(text, tags, p.TextRequest(itt=1, ttt=first.ttt, data=b"gets=All\x00"))
    assert last == TextReply(ttt=RESERVED_TAG, final=True, data=TARGETS)


def test_a_long_answer_is_fetched_by_echoing_its_tag() -> None:
    text, tags = exchange()
    head = receive(text, tags, p.TextRequest(itt=2, data=b"SendTargets=All\x00"), max_segment=16)
    assert isinstance(head, TextReply) and head.cont and head.data == TARGETS[:16]
    rest = receive(text, tags, p.TextRequest(itt=2, ttt=head.ttt), max_segment=4096)
    assert rest == TextReply(ttt=RESERVED_TAG, final=True, data=TARGETS[16:])


def test_a_tag_the_target_never_gave_is_rejected() -> None:
    text, tags = exchange()
    assert receive(text, tags, p.TextRequest(itt=3, ttt=0x1234)) is RejectReason.INVALID_PDU_FIELD
