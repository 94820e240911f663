"""Properties of the login core: a peer can make TargetLogin reject, never crash, and any
two well-configured ends agree on what they negotiated."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, replace

from hypothesis import given
from hypothesis import strategies as st

from sanstack.iscsi.chap import ChapCredentials
from sanstack.iscsi.initiator_login import InitiatorLogin
from sanstack.iscsi.login import LoginRequestFields, LoginResponseFields, TargetLoginInfo
from sanstack.iscsi.negotiation import KEYS, Digest, NegotiationError, NegotiationPreferences
from sanstack.iscsi.target_login import TargetLogin
from sanstack.iscsi.text import parse_text

OPEN = "iqn.2024-01.org.sanstack:open"
LOCKED = "iqn.2024-01.org.sanstack:locked"
INITIATOR = "iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-test"
CREDS = ChapCredentials("alice", "alicesecret12", "target", "targetsecret12")


@dataclass
class Policy:
    def lookup_target(self, target_name: str) -> TargetLoginInfo | None:
        return {
            OPEN: TargetLoginInfo(OPEN),
            LOCKED: TargetLoginInfo(LOCKED, auth=CREDS, alias="locked"),
        }.get(target_name)

    @property
    def discovery_auth(self) -> ChapCredentials | None:
        return None


def counter(start: int) -> Callable[[int], bytes]:
    numbers = itertools.count(start)
    return lambda n: bytes(next(numbers) & 0xFF for _ in range(n))


VALUES = [
    "Yes", "No", "None", "CRC32C", "None,CRC32C", "CHAP", "CHAP,None", "5", "7,5", "0", "1",
    "512", "8192", "65536", "16777216", "0x10", "Reject", "NotUnderstood", "Irrelevant", "",
    "Normal", "Discovery", OPEN, LOCKED, INITIATOR, "alice", "0x00", "0b", "1~2", "0x" + "ab" * 16,
]  # fmt: skip
keys = st.sampled_from([*KEYS, "X-vendor.key", "Unknown"]) | st.text(max_size=12)
values = st.sampled_from(VALUES) | st.text(max_size=20)
pair_bytes = st.tuples(keys, values).map(lambda kv: f"{kv[0]}={kv[1]}".encode() + b"\x00")
identity = st.sampled_from(
    [
        [("InitiatorName", INITIATOR), ("TargetName", OPEN)],
        [("InitiatorName", INITIATOR), ("TargetName", LOCKED), ("AuthMethod", "CHAP,None")],
        [("InitiatorName", INITIATOR), ("SessionType", "Discovery")],
        [],
    ]
)


@st.composite
def data(draw: st.DrawFn) -> bytes:
    head = b"".join(f"{k}={v}".encode() + b"\x00" for k, v in draw(identity))
    body = b"".join(draw(st.lists(pair_bytes, max_size=8)))
    if draw(st.booleans()):
        body += draw(st.binary(max_size=16))
    return head + body


requests = st.builds(
    LoginRequestFields,
    isid=st.sampled_from([1, 1, 1, 2]),
    tsih=st.sampled_from([0, 0, 0, 9]),
    itt=st.integers(0, 2**32 - 1),
    cid=st.sampled_from([0, 0, 1]),
    cmd_sn=st.integers(0, 2**32 - 1),
    exp_stat_sn=st.integers(0, 2**32 - 1),
    transit=st.booleans(),
    cont=st.sampled_from([False, False, True]),
    csg=st.sampled_from([0, 1, 1, 0, 2, 3]),
    nsg=st.sampled_from([0, 1, 3, 3, 2]),
    version_max=st.sampled_from([0, 0, 1]),
    version_min=st.sampled_from([0, 0, 0, 1]),
    data=data(),
)


@given(st.lists(requests, min_size=1, max_size=6))
def test_target_login_only_answers_or_rejects(batch: list[LoginRequestFields]) -> None:
    target = TargetLogin(Policy(), random_bytes=counter(0))
    for request in batch:
        response = target.receive(request)
        assert isinstance(response, LoginResponseFields)
        assert response.cont is False and response.version_active == 0
        if response.status_class:
            assert response.status_class in (2, 3)
            assert target.failed and target.failure is not None
            assert (response.transit, response.data) == (False, b"")
            return
        parse_text(response.data)  # whatever we send is well formed
        assert response.csg == request.csg
        if response.transit:
            assert request.transit and response.nsg in (1, 3) and response.nsg <= request.nsg
        if target.complete:
            assert target.result.initiator_name
            return


digest_sets = st.sampled_from(
    [(Digest.NONE,), (Digest.CRC32C,), (Digest.NONE, Digest.CRC32C), (Digest.CRC32C, Digest.NONE)]
)


@st.composite
def preferences(draw: st.DrawFn) -> NegotiationPreferences:
    max_burst = draw(st.integers(512, 2**24 - 1))
    return NegotiationPreferences(
        header_digest=draw(digest_sets),
        data_digest=draw(digest_sets),
        initial_r2t=draw(st.booleans()),
        immediate_data=draw(st.booleans()),
        max_recv_data_segment_length=draw(st.integers(512, 2**24 - 1)),
        max_burst_length=max_burst,
        first_burst_length=draw(st.integers(512, max_burst)),
        default_time2wait=draw(st.integers(0, 3600)),
        default_time2retain=draw(st.integers(0, 3600)),
        max_outstanding_r2t=draw(st.integers(1, 65535)),
        data_pdu_in_order=draw(st.booleans()),
        error_recovery_level=draw(st.integers(0, 2)),
    )


@given(preferences(), preferences(), st.booleans(), st.integers(24, 8192))
def test_both_ends_agree(
    ours: NegotiationPreferences, theirs: NegotiationPreferences, chap: bool, segment: int
) -> None:
    name = LOCKED if chap else OPEN

    @dataclass
    class Configured(Policy):
        def lookup_target(self, target_name: str) -> TargetLoginInfo | None:
            info = super().lookup_target(target_name)
            return None if info is None else replace(info, parameters=ours)

    target = TargetLogin(Configured(), random_bytes=counter(0))
    initiator = InitiatorLogin(
        INITIATOR, name, isid=1, chap=CREDS if chap else None, preferences=theirs,
        random_bytes=counter(77), max_data_segment_length=segment,
    )  # fmt: skip
    request: LoginRequestFields | None = initiator.start()
    refused = False
    while request is not None:
        response = target.receive(request)
        if response.status_class:
            refused = True
            break
        try:
            request = initiator.receive(response)
        except NegotiationError:  # the initiator may be the side that cannot accept
            refused = True
            break
    digests_clash = any(
        not any(d in getattr(theirs, key) for d in getattr(ours, key))
        for key in ("header_digest", "data_digest")
    )
    assert refused == digests_clash
    if refused:
        return
    mine, peer = target.result.parameters, initiator.result.parameters
    assert peer == replace(
        mine,
        max_recv_data_segment_length=mine.max_xmit_data_segment_length,
        max_xmit_data_segment_length=mine.max_recv_data_segment_length,
    )
    assert mine.first_burst_length <= mine.max_burst_length
    assert mine.error_recovery_level == min(ours.error_recovery_level, theirs.error_recovery_level)
