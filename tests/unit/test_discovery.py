"""SendTargets discovery (RFC 7143 §13.3, Appendix C)."""

from __future__ import annotations

import pytest

from sanstack.errors import LocalProtocolError
from sanstack.iscsi.discovery import (
    DiscoveryError,
    format_target_address,
    normalize_target_address,
    parse_send_targets,
    send_targets_request,
    send_targets_response,
)
from sanstack.iscsi.negotiation import SessionType
from sanstack.iscsi.text import TextFormatError, parse_text

DISK1 = "iqn.2024-01.org.sanstack:disk1"
DISK2 = "iqn.2024-01.org.sanstack:disk2"
SECRET = "iqn.2024-01.org.sanstack:secret"
TARGETS = [
    (DISK1, ["192.0.2.10:3260,1", "fd00::10:3260,2"]),
    (DISK2, ["[2001:db8::1]:3260,1"]),
    (SECRET, ["192.0.2.10:3260,1"]),
]


def visible(name: str) -> bool:
    return name != SECRET


def test_all_lists_every_visible_target_with_every_address() -> None:
    data = send_targets_response("All", TARGETS, visible)
    assert parse_text(data) == [
        ("TargetName", DISK1),
        ("TargetAddress", "192.0.2.10:3260,1"),
        ("TargetAddress", "[fd00::10]:3260,2"),
        ("TargetName", DISK2),
        ("TargetAddress", "[2001:db8::1]:3260,1"),
    ]
    assert parse_send_targets(data) == [
        (DISK1, ["192.0.2.10:3260,1", "[fd00::10]:3260,2"]),
        (DISK2, ["[2001:db8::1]:3260,1"]),
    ]


def test_a_named_target_lists_only_it() -> None:
    data = send_targets_response(DISK2.upper(), TARGETS, visible)
    assert parse_send_targets(data) == [(DISK2, ["[2001:db8::1]:3260,1"])]


def test_hidden_or_unknown_targets_give_an_empty_answer() -> None:
    assert send_targets_response(SECRET, TARGETS, visible) == b""
    assert send_targets_response("iqn.2024-01.org.sanstack:none", TARGETS, visible) == b""
    assert parse_send_targets(b"") == []


def test_empty_value_in_a_normal_session_is_the_current_target() -> None:
    data = send_targets_response(
        "", TARGETS, visible, session_type=SessionType.NORMAL, current_target=DISK1
    )
    assert [name for name, _ in parse_send_targets(data)] == [DISK1]


@pytest.mark.parametrize(
    ("value", "session_type", "current"),
    [
        ("", SessionType.DISCOVERY, None),  # empty is for normal sessions
        ("", SessionType.NORMAL, None),
    ],
)
def test_misplaced_requests_are_rejected(
    value: str, session_type: SessionType, current: str | None
) -> None:
    data = send_targets_response(
        value, TARGETS, visible, session_type=session_type, current_target=current
    )
    assert data == b"SendTargets=Reject\x00"
    with pytest.raises(DiscoveryError):
        parse_send_targets(data)


def test_all_in_a_normal_session_lists_every_visible_target() -> None:
    # libiscsi's iSCSISendTargets.Simple (and so QEMU) sends All in a normal session.
    data = send_targets_response(
        "All", TARGETS, visible, session_type=SessionType.NORMAL, current_target=DISK1
    )
    assert [name for name, _ in parse_send_targets(data)] == [
        name for name, _ in parse_send_targets(send_targets_response("All", TARGETS, visible))
    ]


def test_request_encoding() -> None:
    assert send_targets_request() == b"SendTargets=All\x00"
    assert send_targets_request(DISK1) == f"SendTargets={DISK1}\x00".encode()


@pytest.mark.parametrize(
    ("host", "port", "tag", "expected"),
    [
        ("192.0.2.1", 3260, 1, "192.0.2.1:3260,1"),
        ("::1", 3260, 7, "[::1]:3260,7"),
        ("san.example.com", None, 2, "san.example.com,2"),
        ("fe80::1", None, 1, "[fe80::1],1"),
    ],
)
def test_format_target_address(host: str, port: int | None, tag: int, expected: str) -> None:
    assert format_target_address(host, port, tag) == expected


@pytest.mark.parametrize(
    ("portal", "expected"),
    [
        ("host.example:3260,1", "host.example:3260,1"),
        ("fe80::1,1", "[fe80::1],1"),
        ("fe80::1:3260,1", "[fe80::1]:3260,1"),
        ("[::1]:3260,1", "[::1]:3260,1"),
        ("2001:db8::1,3", "[2001:db8::1],3"),
        ("192.0.2.1:3260,1", "192.0.2.1:3260,1"),
    ],
)
def test_normalize_target_address(portal: str, expected: str) -> None:
    assert normalize_target_address(portal) == expected


def test_address_errors() -> None:
    with pytest.raises(LocalProtocolError):
        normalize_target_address("192.0.2.1:3260")
    with pytest.raises(LocalProtocolError):
        format_target_address("192.0.2.1", 3260, 70000)


@pytest.mark.parametrize("data", [b"TargetAddress=1.2.3.4:3260,1\x00", b"TargetName=\x00"])
def test_parse_errors(data: bytes) -> None:
    with pytest.raises(DiscoveryError):
        parse_send_targets(data)
    with pytest.raises(TextFormatError):
        parse_send_targets(b"garbage")


def test_parse_ignores_extra_keys() -> None:
    data = b"TargetName=iqn.x\x00TargetAlias=disk\x00TargetAddress=h:1,1\x00"
    assert parse_send_targets(data) == [("iqn.x", ["h:1,1"])]
