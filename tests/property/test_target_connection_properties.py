"""The sans-IO target connection never raises on anything a peer can send."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sanstack.block.memory import MemoryDevice
from sanstack.iscsi import pdu as p
from sanstack.iscsi.codes import LoginStage
from sanstack.iscsi.target_connection import TargetConnection
from sanstack.iscsi.target_events import ConnectionSettings
from sanstack.target.login_policy import TargetLoginDriver
from sanstack.target.model import Portal, PortalGroup, Target
from sanstack.target.registry import TargetRegistry

IQN = "iqn.2026-11.org.sanstack:prop"


def _connection() -> TargetConnection:
    target = Target(IQN, [PortalGroup(1, [Portal("127.0.0.1", 3260)])])
    target.add_lun(0, MemoryDevice(64))
    registry = TargetRegistry([target])
    return TargetConnection(
        TargetLoginDriver(registry, Portal("127.0.0.1", 3260)), ConnectionSettings(), 0.0
    )


def _login_bytes() -> bytes:
    text = (
        f"InitiatorName=iqn.2026-11.org.sanstack:i\0TargetName={IQN}\0SessionType=Normal\0"
        "HeaderDigest=None\0DataDigest=None\0"
    ).encode()
    return p.LoginRequest(
        isid=1, transit=True, csg=LoginStage(1), nsg=LoginStage(3), data=text
    ).encode()


@given(st.lists(st.binary(max_size=300), max_size=8), st.booleans())
def test_random_bytes_never_raise(chunks: list[bytes], logged_in: bool) -> None:
    conn = _connection()
    if logged_in:
        conn.receive_data(_login_bytes(), 0.0)
    for i, chunk in enumerate(chunks):
        conn.receive_data(chunk, float(i))
        conn.handle_timer(float(i))
        conn.data_to_send()
        while conn.next_event() is not None:
            pass


@given(st.binary(min_size=48, max_size=48), st.binary(max_size=200))
def test_random_headers_after_login_never_raise(header: bytes, tail: bytes) -> None:
    conn = _connection()
    conn.receive_data(_login_bytes(), 0.0)
    assert conn.outcome is not None
    conn.receive_data(header + tail, 1.0)
    conn.data_to_send()
