"""The login phase (RFC 7143 §6.3, §11.12-§11.13, §12): TargetLogin against InitiatorLogin
and against hand-made requests shaped like libiscsi's and open-iscsi's."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import pytest

from sanstack.errors import ConfigError, LocalProtocolError, RemoteProtocolError
from sanstack.iscsi.chap import ChapAlgorithm, ChapCredentials, ChapError, chap_response
from sanstack.iscsi.codes import LoginStatus
from sanstack.iscsi.discovery import parse_send_targets, send_targets_response
from sanstack.iscsi.initiator_login import InitiatorLogin, LoginRejected
from sanstack.iscsi.login import (
    _TRANSITIONS,
    LoginInput,
    LoginProtocolError,
    LoginRequestFields,
    LoginResponseFields,
    LoginState,
    TargetLoginInfo,
)
from sanstack.iscsi.negotiation import Digest, NegotiationError, NegotiationPreferences, SessionType
from sanstack.iscsi.target_login import TargetLogin
from sanstack.iscsi.text import decode_binary, encode_binary, encode_text, parse_text

TARGET = "iqn.2024-01.org.sanstack:disk1"
INITIATOR = "iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-test"
INITIATOR2 = "iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-test-2"
ISID = 0x23D000000001
ONE_WAY = ChapCredentials("alice", "alicesecret12")
MUTUAL = ChapCredentials("alice", "alicesecret12", "disk1", "targetsecret12")


@dataclass
class Policy:
    targets: list[TargetLoginInfo] = field(default_factory=list)
    discovery: ChapCredentials | None = None

    def lookup_target(self, target_name: str) -> TargetLoginInfo | None:
        return next((t for t in self.targets if t.target_name == target_name), None)

    @property
    def discovery_auth(self) -> ChapCredentials | None:
        return self.discovery


def counter(start: int) -> Callable[[int], bytes]:
    numbers = itertools.count(start)
    return lambda n: bytes(next(numbers) & 0xFF for _ in range(n))


def make_target(info: TargetLoginInfo | None = None, **kw: object) -> TargetLogin:
    policy = Policy([info or TargetLoginInfo(TARGET)])
    return TargetLogin(policy, random_bytes=counter(0), **kw)  # type: ignore[arg-type]


def make_initiator(**kw: object) -> InitiatorLogin:
    kw.setdefault("random_bytes", counter(100))
    return InitiatorLogin(INITIATOR, TARGET, isid=ISID, **kw)  # type: ignore[arg-type]


Exchange = tuple[LoginRequestFields, LoginResponseFields]


def drive(initiator: InitiatorLogin, target: TargetLogin) -> list[Exchange]:
    """Run both ends in memory until the login ends either way."""
    log: list[Exchange] = []
    request: LoginRequestFields | None = initiator.start()
    while request is not None:
        response = target.receive(request)
        log.append((request, response))
        request = initiator.receive(response)
    return log


def rejected(initiator: InitiatorLogin, target: TargetLogin) -> LoginRejected:
    with pytest.raises(LoginRejected) as info:
        drive(initiator, target)
    assert target.failed and initiator.state is LoginState.FAILED
    assert info.value.status == target.failure
    return info.value


def request(
    pairs: list[tuple[str, str]] | bytes = b"", *, csg: int = 1, nsg: int = 3,
    transit: bool = True, cont: bool = False, **kw: int,
) -> LoginRequestFields:  # fmt: skip
    data = pairs if isinstance(pairs, bytes) else encode_text(pairs)
    fields = {"isid": ISID, "tsih": 0, "itt": 7, "cid": 0, "cmd_sn": 1, "exp_stat_sn": 0,
              "version_max": 0, "version_min": 0} | kw  # fmt: skip
    return LoginRequestFields(
        transit=transit, cont=cont, csg=csg, nsg=nsg if transit else 0, data=data, **fields
    )


FIRST = [("InitiatorName", INITIATOR), ("TargetName", TARGET), ("SessionType", "Normal")]


def keys(response: LoginResponseFields) -> dict[str, str]:
    return dict(parse_text(response.data))


# -- complete logins ------------------------------------------------------------------


def test_no_auth_login_in_one_exchange_like_libiscsi() -> None:
    initiator = make_initiator(
        preferences=NegotiationPreferences(max_recv_data_segment_length=65536)
    )
    target = make_target()
    log = drive(initiator, target)
    assert len(log) == 1
    req, resp = log[0]
    assert (req.csg, req.transit, req.nsg) == (1, True, 3)
    assert (resp.csg, resp.transit, resp.nsg, resp.status) == (1, True, 3, 0)
    answer = keys(resp)
    assert answer["TargetPortalGroupTag"] == "1"
    assert answer["MaxRecvDataSegmentLength"] == "262144"  # declared unasked
    assert target.complete and initiator.complete
    ours, theirs = target.result.parameters, initiator.result.parameters
    assert (ours.max_recv_data_segment_length, ours.max_xmit_data_segment_length) == (262144, 65536)
    assert (theirs.max_recv_data_segment_length, theirs.max_xmit_data_segment_length) == (
        65536,
        262144,
    )
    assert (
        replace(theirs, max_recv_data_segment_length=262144, max_xmit_data_segment_length=65536)
        == ours
    )
    assert target.result.auth_method == "None"
    assert target.result.target is not None and target.result.target.target_name == TARGET
    assert (target.result.isid, target.result.tsih, target.result.cid) == (ISID, 0, 0)
    assert theirs.target_portal_group_tag == 1


def test_no_auth_through_the_security_stage() -> None:
    initiator = make_initiator(security_stage=True)
    target = make_target()
    log = drive(initiator, target)
    assert [(q.csg, q.transit, q.nsg) for q, _ in log] == [(0, True, 1), (1, True, 3)]
    assert keys(log[0][1]) == {"TargetPortalGroupTag": "1", "AuthMethod": "None"}
    assert target.result.auth_method == initiator.result.auth_method == "None"


def test_one_way_chap() -> None:
    initiator = make_initiator(chap=ONE_WAY)
    target = make_target(TargetLoginInfo(TARGET, auth=ONE_WAY, alias="disk one"))
    log = drive(initiator, target)
    assert [(q.csg, q.transit) for q, _ in log] == [(0, False), (0, False), (0, True), (1, True)]
    assert keys(log[0][1]) == {"TargetPortalGroupTag": "1", "TargetAlias": "disk one",
                               "AuthMethod": "CHAP"}  # fmt: skip
    assert log[0][1].transit is False
    assert set(keys(log[1][1])) == {"CHAP_A", "CHAP_I", "CHAP_C"}
    assert keys(log[2][1]) == {}  # one-way: the target has nothing to prove
    assert target.result.auth_method == "CHAP"
    assert initiator.result.parameters.target_alias == "disk one"


def test_mutual_chap() -> None:
    initiator = make_initiator(chap=MUTUAL)
    target = make_target(TargetLoginInfo(TARGET, auth=MUTUAL))
    log = drive(initiator, target)
    assert set(keys(log[2][1])) == {"CHAP_N", "CHAP_R"}
    assert keys(log[2][1])["CHAP_N"] == "disk1"
    assert initiator.complete and target.complete


@pytest.mark.parametrize("algorithm", list(ChapAlgorithm))
def test_chap_algorithms(algorithm: ChapAlgorithm) -> None:
    initiator = make_initiator(chap=MUTUAL, chap_algorithms=[algorithm])
    target = make_target(TargetLoginInfo(TARGET, auth=MUTUAL))
    log = drive(initiator, target)
    assert keys(log[1][1])["CHAP_A"] == str(int(algorithm))


def test_wrong_secret() -> None:
    initiator = make_initiator(chap=ChapCredentials("alice", "wrongsecret12"))
    target = make_target(TargetLoginInfo(TARGET, auth=ONE_WAY))
    assert rejected(initiator, target).status == LoginStatus.AUTHENTICATION_FAILURE


def test_target_that_cannot_prove_itself() -> None:
    initiator = make_initiator(chap=MUTUAL)
    target = make_target(TargetLoginInfo(TARGET, auth=ONE_WAY))
    assert rejected(initiator, target).status == LoginStatus.AUTHENTICATION_FAILURE


def test_initiator_detects_an_impostor_target() -> None:
    expected = ChapCredentials("alice", "alicesecret12", "disk1", "othersecret12")
    initiator = make_initiator(chap=expected)
    target = make_target(TargetLoginInfo(TARGET, auth=MUTUAL))
    with pytest.raises(ChapError):
        drive(initiator, target)


@pytest.mark.parametrize("security_stage", [True, False])
def test_chap_target_refuses_unauthenticated_initiators(security_stage: bool) -> None:
    initiator = make_initiator(security_stage=security_stage)
    target = make_target(TargetLoginInfo(TARGET, auth=ONE_WAY))
    assert rejected(initiator, target).status == LoginStatus.AUTHENTICATION_FAILURE


def test_our_initiator_does_not_downgrade_from_chap() -> None:
    initiator = make_initiator(chap=ONE_WAY)
    assert rejected(initiator, make_target()).status == LoginStatus.AUTHENTICATION_FAILURE


def test_acl_refusal_and_case_insensitive_match() -> None:
    info = TargetLoginInfo(TARGET, allowed_initiators=frozenset({INITIATOR2.upper()}))
    assert rejected(make_initiator(), make_target(info)).status == LoginStatus.AUTHORIZATION_FAILURE
    other = InitiatorLogin(INITIATOR2, TARGET, isid=ISID)
    drive(other, make_target(info))
    assert other.complete


def test_unknown_target() -> None:
    initiator = InitiatorLogin(INITIATOR, "iqn.2024-01.org.sanstack:nope", isid=ISID)
    assert rejected(initiator, make_target()).status == LoginStatus.NOT_FOUND


def test_discovery_session_then_send_targets() -> None:
    initiator = InitiatorLogin(INITIATOR, isid=ISID, session_type=SessionType.DISCOVERY)
    target = TargetLogin(Policy([TargetLoginInfo(TARGET)]))
    log = drive(initiator, target)
    sent = parse_text(log[0][0].data)
    assert ("SessionType", "Discovery") in sent
    assert "TargetName" not in dict(sent) and "MaxBurstLength" not in dict(sent)
    assert "TargetPortalGroupTag" not in keys(log[0][1])
    result = target.result
    assert result.session_type is SessionType.DISCOVERY and result.target is None
    assert result.parameters.session_type == "Discovery"
    answer = send_targets_response("All", [(TARGET, ["192.0.2.1:3260,1"])], lambda _: True)
    assert parse_send_targets(answer) == [(TARGET, ["192.0.2.1:3260,1"])]


def test_discovery_session_with_chap() -> None:
    target = TargetLogin(Policy(discovery=MUTUAL), random_bytes=counter(0))
    plain = InitiatorLogin(INITIATOR, isid=ISID, session_type=SessionType.DISCOVERY)
    with pytest.raises(LoginRejected):
        drive(plain, target)
    target = TargetLogin(Policy(discovery=MUTUAL), random_bytes=counter(0))
    chap = InitiatorLogin(INITIATOR, isid=ISID, session_type=SessionType.DISCOVERY, chap=MUTUAL,
                          random_bytes=counter(50))  # fmt: skip
    drive(chap, target)
    assert target.result.auth_method == "CHAP"


def test_multi_pdu_text_both_ways() -> None:
    initiator = make_initiator(chap=MUTUAL, max_data_segment_length=48)
    target = make_target(TargetLoginInfo(TARGET, auth=MUTUAL))
    log = drive(initiator, target)
    continued = [(q, r) for q, r in log if q.cont]
    assert len(continued) > 5
    for q, r in continued:
        assert not q.transit and len(q.data) == 48
        assert (r.transit, r.cont, r.data, r.status) == (False, False, b"", 0)
    assert target.complete and initiator.complete


def test_initiator_reassembles_a_continued_response() -> None:
    initiator = make_initiator()
    first = initiator.start()
    data = encode_text([("TargetPortalGroupTag", "1"), ("MaxRecvDataSegmentLength", "8192")])
    part = LoginResponseFields(False, True, 1, 0, 0, 0, 0, 0, data[:10])
    follow = initiator.receive(part)
    assert follow is not None and follow.data == b"" and follow.transit and follow.csg == 1
    last = LoginResponseFields(True, False, 1, 3, 0, 0, 0, 0, data[10:])
    assert first.transit and initiator.receive(last) is None
    assert initiator.result.parameters.target_portal_group_tag == 1


@pytest.mark.parametrize(
    ("offer", "allowed", "expected"),
    [
        ((Digest.CRC32C, Digest.NONE), (Digest.NONE, Digest.CRC32C), True),
        ((Digest.NONE, Digest.CRC32C), (Digest.NONE, Digest.CRC32C), False),
        ((Digest.NONE, Digest.CRC32C), (Digest.CRC32C,), True),
        ((Digest.CRC32C,), (Digest.NONE, Digest.CRC32C), True),
        ((Digest.CRC32C, Digest.NONE), (Digest.NONE,), False),
    ],
)
def test_digest_negotiation(
    offer: tuple[Digest, ...], allowed: tuple[Digest, ...], expected: bool
) -> None:
    initiator = make_initiator(
        preferences=NegotiationPreferences(header_digest=offer, data_digest=offer)
    )
    prefs = NegotiationPreferences(header_digest=allowed, data_digest=allowed)
    target = make_target(TargetLoginInfo(TARGET, parameters=prefs))
    drive(initiator, target)
    for params in (initiator.result.parameters, target.result.parameters):
        assert params.header_digest is expected and params.data_digest is expected


def test_required_digest_that_the_initiator_refuses() -> None:
    initiator = make_initiator(preferences=NegotiationPreferences(header_digest=(Digest.NONE,)))
    prefs = NegotiationPreferences(header_digest=(Digest.CRC32C,))
    target = make_target(TargetLoginInfo(TARGET, parameters=prefs))
    assert rejected(initiator, target).status == LoginStatus.INITIATOR_ERROR


def test_initiator_refuses_to_finish_without_its_required_digest() -> None:
    initiator = make_initiator(preferences=NegotiationPreferences(data_digest=(Digest.CRC32C,)))
    initiator.start()
    response = LoginResponseFields(True, False, 1, 3, 0, 0, 0, 0, b"DataDigest=Reject\x00")
    with pytest.raises(NegotiationError):
        initiator.receive(response)


def test_every_operational_key_end_to_end() -> None:
    mine = NegotiationPreferences(
        initial_r2t=True, immediate_data=False, max_recv_data_segment_length=16384,
        max_burst_length=131072, first_burst_length=16384, default_time2wait=10,
        default_time2retain=5, max_outstanding_r2t=4, data_pdu_in_order=False,
        data_sequence_in_order=False, error_recovery_level=2, max_connections=4,
    )  # fmt: skip
    initiator = make_initiator(preferences=mine)
    target = make_target()
    drive(initiator, target)
    p = target.result.parameters
    assert initiator.result.parameters == replace(
        p, max_recv_data_segment_length=16384, max_xmit_data_segment_length=262144
    )
    assert (p.initial_r2t, p.immediate_data) == (True, False)
    assert (p.max_burst_length, p.first_burst_length) == (131072, 16384)
    assert (p.default_time2wait, p.default_time2retain) == (10, 5)
    assert (p.max_outstanding_r2t, p.error_recovery_level, p.max_connections) == (1, 0, 1)
    assert (p.data_pdu_in_order, p.data_sequence_in_order) == (True, True)
    assert (p.max_recv_data_segment_length, p.max_xmit_data_segment_length) == (262144, 16384)


# -- hand-made requests ---------------------------------------------------------------


def test_libiscsi_chap_flow_with_resent_nsg_bits() -> None:
    target = make_target(TargetLoginInfo(TARGET, auth=ONE_WAY))
    auth = [("AuthMethod", "CHAP,None")]
    r1 = target.receive(request([*FIRST, *auth], csg=0, nsg=1))
    assert (r1.transit, keys(r1)["AuthMethod"]) == (False, "CHAP")
    # libiscsi sends NSG with T=0; NSG is reserved then and must be ignored.
    r2 = target.receive(replace(request([("CHAP_A", "5")], csg=0, transit=False), nsg=1))
    challenge = keys(r2)
    digest = chap_response(
        ChapAlgorithm.MD5, int(challenge["CHAP_I"]), b"alicesecret12",
        decode_binary(challenge["CHAP_C"]),
    )  # fmt: skip
    reply = [("CHAP_N", "alice"), ("CHAP_R", encode_binary(digest))]
    r3 = target.receive(request(reply, csg=0, nsg=1))
    assert (r3.transit, r3.nsg, r3.status) == (True, 1, 0)
    r4 = target.receive(request([("HeaderDigest", "None,CRC32C"), ("IFMarker", "No")]))
    assert r4.transit and keys(r4)["IFMarker"] == "No" and target.complete


def test_libiscsi_with_chap_against_an_open_target_repeats_identity_keys() -> None:
    target = make_target()
    r1 = target.receive(request([*FIRST, ("AuthMethod", "CHAP,None")], csg=0, nsg=1))
    assert (r1.transit, r1.nsg, keys(r1)["AuthMethod"]) == (True, 1, "None")
    r2 = target.receive(request([*FIRST, ("MaxRecvDataSegmentLength", "262144")]))
    assert r2.status == 0 and target.complete


def test_open_iscsi_discovery_straight_to_full_feature() -> None:
    target = make_target()
    first = [("InitiatorName", INITIATOR), ("SessionType", "Discovery"), ("AuthMethod", "None")]
    response = target.receive(request(first, csg=0, nsg=3))
    assert (response.transit, response.nsg, response.status) == (True, 3, 0)
    assert target.result.parameters.max_recv_data_segment_length == 8192  # never declared


def test_unknown_keys_get_not_understood() -> None:
    target = make_target()
    response = target.receive(request([*FIRST, ("X-com.example.opt", "1"), ("Foo", "bar")]))
    assert keys(response)["X-com.example.opt"] == "NotUnderstood"
    assert keys(response)["Foo"] == "NotUnderstood"


def test_target_waits_for_chap_before_transit() -> None:
    target = make_target(TargetLoginInfo(TARGET, auth=ONE_WAY))
    response = target.receive(request([*FIRST, ("AuthMethod", "CHAP"), ("CHAP_A", "5")], csg=0,
                                      nsg=1))  # fmt: skip
    assert not response.transit
    assert set(keys(response)) == {"TargetPortalGroupTag", "AuthMethod", "CHAP_A", "CHAP_I",
                                   "CHAP_C"}  # fmt: skip


OPEN = TargetLoginInfo(TARGET)
CHAP = TargetLoginInfo(TARGET, auth=ONE_WAY)


@pytest.mark.parametrize(
    ("info", "requests", "status"),
    [
        (OPEN, [request(FIRST, version_min=1)], LoginStatus.UNSUPPORTED_VERSION),
        (OPEN, [request(FIRST[1:])], LoginStatus.MISSING_PARAMETER),
        (OPEN, [request(FIRST[:1])], LoginStatus.MISSING_PARAMETER),
        (OPEN, [request([*FIRST[:2], ("SessionType", "Bogus")])],
         LoginStatus.SESSION_TYPE_NOT_SUPPORTED),
        (OPEN, [request([("InitiatorName", "iqn." + "x" * 220), *FIRST[1:]])],
         LoginStatus.INITIATOR_ERROR),
        (OPEN, [request(FIRST, csg=2)], LoginStatus.INITIATOR_ERROR),
        (OPEN, [request(FIRST, csg=3)], LoginStatus.INITIATOR_ERROR),
        (OPEN, [request(FIRST, nsg=2)], LoginStatus.INITIATOR_ERROR),
        (OPEN, [request(FIRST, nsg=1)], LoginStatus.INITIATOR_ERROR),
        (OPEN, [request(FIRST, cont=True)], LoginStatus.INITIATOR_ERROR),
        (OPEN, [request(FIRST, tsih=5)], LoginStatus.SESSION_DOES_NOT_EXIST),
        (OPEN, [request(FIRST, transit=False), request([], isid=1)], LoginStatus.INITIATOR_ERROR),
        (OPEN, [request(FIRST, transit=False), request([], cid=1)], LoginStatus.INITIATOR_ERROR),
        (OPEN, [request([*FIRST, *FIRST[:1]])], LoginStatus.INITIATOR_ERROR),
        (OPEN, [request(FIRST, transit=False), request([("TargetName", TARGET + "x")])],
         LoginStatus.INITIATOR_ERROR),
        (OPEN, [request([*FIRST, ("ImmediateData", "Yes")], transit=False),
                request([("ImmediateData", "Yes")])], LoginStatus.INITIATOR_ERROR),
        (OPEN, [request([*FIRST, ("MaxBurstLength", "512")], csg=0, nsg=1)],
         LoginStatus.INITIATOR_ERROR),
        (OPEN, [request([*FIRST, ("AuthMethod", "None")])], LoginStatus.INITIATOR_ERROR),
        (OPEN, [request([*FIRST, ("AuthMethod", "CHAP")], csg=0, nsg=1)],
         LoginStatus.AUTHENTICATION_FAILURE),
        (OPEN, [request([*FIRST, ("AuthMethod", "None,,CHAP")], csg=0, nsg=1)],
         LoginStatus.INITIATOR_ERROR),
        (OPEN, [request([*FIRST, ("TargetAlias", "x")])], LoginStatus.INITIATOR_ERROR),
        (OPEN, [request(b"InitiatorName\x00")], LoginStatus.INITIATOR_ERROR),
        (OPEN, [request(FIRST, csg=0, transit=False), request([])], LoginStatus.INITIATOR_ERROR),
        (OPEN, [request(FIRST, transit=False), request([], csg=0, nsg=1)],
         LoginStatus.INITIATOR_ERROR),
        (OPEN, [request(FIRST, csg=0, transit=False, cont=True), request(b"", csg=1)],
         LoginStatus.INITIATOR_ERROR),
        (CHAP, [request([*FIRST, ("CHAP_A", "5")], csg=0, nsg=1)],
         LoginStatus.AUTHENTICATION_FAILURE),
        (CHAP, [request([*FIRST, ("AuthMethod", "None")], csg=0, nsg=1)],
         LoginStatus.AUTHENTICATION_FAILURE),
        (CHAP, [request(FIRST, csg=0, nsg=1)], LoginStatus.AUTHENTICATION_FAILURE),
        (CHAP, [request([*FIRST, ("AuthMethod", "CHAP"), ("CHAP_A", "1,2")], csg=0, nsg=1)],
         LoginStatus.AUTHENTICATION_FAILURE),
        (CHAP, [request([*FIRST, ("AuthMethod", "CHAP"), ("CHAP_A", "5"),
                         ("CHAP_N", "alice"), ("CHAP_R", "0x00")], csg=0, nsg=1)],
         LoginStatus.AUTHENTICATION_FAILURE),
    ],
)  # fmt: skip
def test_bad_requests_get_the_right_reject(
    info: TargetLoginInfo, requests: list[LoginRequestFields], status: LoginStatus
) -> None:
    target = make_target(info)
    responses = [target.receive(r) for r in requests]
    last = responses[-1]
    assert (last.status_class, last.status_detail) == (status.status_class, status.status_detail)
    assert target.failed and target.failure is status
    assert (last.transit, last.data) == (False, b"")
    with pytest.raises(LocalProtocolError):
        target.receive(requests[-1])


def test_existing_session_means_too_many_connections() -> None:
    target = make_target(session_exists=lambda isid, tsih: (isid, tsih) == (ISID, 5))
    assert target.receive(request(FIRST, tsih=5)).status == LoginStatus.TOO_MANY_CONNECTIONS


def test_too_many_pdus_and_too_much_text() -> None:
    target = make_target(max_pdus=3)
    for _ in range(3):
        assert target.receive(request(FIRST[:1], transit=False, cont=True)).status == 0
    assert target.receive(request(b"", transit=False)).status == LoginStatus.INITIATOR_ERROR
    target = make_target(max_text_bytes=100)
    chunk = request(b"x" * 60, transit=False, cont=True)
    assert target.receive(chunk).status == 0
    assert target.receive(chunk).status == LoginStatus.INITIATOR_ERROR


def test_connection_layer_failures_and_redirects() -> None:
    target = make_target()
    target.receive(request(FIRST, transit=False))
    response = target.fail(LoginStatus.INVALID_DURING_LOGIN, "SCSI command during login")
    assert (response.status_class, response.status_detail, response.csg) == (2, 0x0B, 1)
    assert target.failure_reason == "SCSI command during login"
    initiator = make_initiator(chap=ONE_WAY)
    target = make_target(CHAP)
    assert not target.receive(initiator.start()).transit
    moved = target.fail(LoginStatus.TARGET_MOVED_TEMPORARILY, target_address="192.0.2.9:3260,1")
    with pytest.raises(LoginRejected) as info:
        initiator.receive(moved)
    assert info.value.status == 0x0101 and info.value.target_address == "192.0.2.9:3260,1"
    for status, address in [(LoginStatus.SUCCESS, None), (LoginStatus.NOT_FOUND, "h:1,1"),
                            (LoginStatus.TARGET_MOVED_PERMANENTLY, None)]:  # fmt: skip
        with pytest.raises(LocalProtocolError):
            make_target().fail(status, target_address=address)
    with pytest.raises(LocalProtocolError):
        target.fail(LoginStatus.NOT_FOUND)


def test_results_are_unavailable_until_complete() -> None:
    with pytest.raises(LocalProtocolError):
        _ = make_target().result
    initiator = make_initiator()
    with pytest.raises(LocalProtocolError):
        _ = initiator.result
    initiator.start()
    with pytest.raises(LocalProtocolError):
        initiator.start()


def test_initiator_construction_rules() -> None:
    with pytest.raises(LocalProtocolError):
        InitiatorLogin(INITIATOR, isid=ISID)
    with pytest.raises(LocalProtocolError):
        InitiatorLogin(INITIATOR, TARGET, isid=ISID, chap=ONE_WAY, security_stage=False)


OK_FINAL = LoginResponseFields(True, False, 1, 3, 0, 0, 0, 0, b"")


@pytest.mark.parametrize(
    "response",
    [
        replace(OK_FINAL, csg=0),  # wrong stage
        replace(OK_FINAL, version_active=1),
        replace(OK_FINAL, cont=True),
        replace(OK_FINAL, nsg=1),  # backwards
        replace(OK_FINAL, data=b"InitiatorName=iqn.x\x00"),  # an initiator-only key
        replace(OK_FINAL, data=b"MaxBurstLength=16777215\x00"),  # above our minimum offer
        replace(OK_FINAL, data=b"MaxBurstLength=4096\x00MaxBurstLength=4096\x00"),
        replace(OK_FINAL, data=b"AuthMethod=None\x00"),  # a security key out of stage
        replace(OK_FINAL, data=b"no-equals\x00"),
    ],
)
def test_initiator_catches_misbehaving_targets(response: LoginResponseFields) -> None:
    initiator = make_initiator()
    initiator.start()
    with pytest.raises(RemoteProtocolError):
        initiator.receive(response)
    assert initiator.state is LoginState.FAILED
    with pytest.raises(LocalProtocolError):
        initiator.receive(OK_FINAL)


def sec(transit: bool, data: bytes) -> LoginResponseFields:
    return LoginResponseFields(transit, False, 0, 1 if transit else 0, 0, 0, 0, 0, data)


def test_initiator_security_stage_checks() -> None:
    initiator = make_initiator(chap=ONE_WAY)
    initiator.start()
    with pytest.raises(LoginProtocolError, match="unasked"):
        initiator.receive(sec(True, b"AuthMethod=CHAP\x00"))  # CHAP not done yet
    initiator = make_initiator(chap=ONE_WAY)
    initiator.start()
    with pytest.raises(ChapError):
        initiator.receive(sec(False, b"AuthMethod=None\x00"))  # we insisted on CHAP
    initiator = make_initiator(chap=ONE_WAY)
    initiator.start()
    with pytest.raises(ChapError, match="stalled"):
        initiator.receive(sec(False, b""))


def test_initiator_requires_the_mutual_answer() -> None:
    initiator = make_initiator(chap=MUTUAL)
    initiator.start()
    chap_a = initiator.receive(sec(False, b"AuthMethod=CHAP\x00"))
    assert chap_a is not None and parse_text(chap_a.data) == [("CHAP_A", "5")]
    challenge = encode_text([("CHAP_A", "5"), ("CHAP_I", "1"), ("CHAP_C", "0x" + "ab" * 16)])
    answer = initiator.receive(sec(False, challenge))
    assert answer is not None and answer.transit
    assert [k for k, _ in parse_text(answer.data)] == ["CHAP_N", "CHAP_R", "CHAP_I", "CHAP_C"]
    with pytest.raises(ChapError, match="did not answer"):
        initiator.receive(sec(True, b""))


def test_initiator_retries_transit_when_the_target_lingers() -> None:
    initiator = make_initiator()
    initiator.start()
    linger = LoginResponseFields(False, False, 1, 0, 0, 0, 0, 0, b"X-vendor=1\x00")
    again = initiator.receive(linger)
    assert (
        again is not None
        and again.transit
        and parse_text(again.data) == [("X-vendor", "NotUnderstood")]
    )
    assert initiator.receive(OK_FINAL) is None


def test_transition_table() -> None:
    for state in LoginState:
        if state in (LoginState.FULL_FEATURE_PHASE, LoginState.FAILED):
            assert not any(s is state for s, _ in _TRANSITIONS)
        else:
            assert _TRANSITIONS[(state, LoginInput.FAIL)] is LoginState.FAILED
    assert (LoginState.SECURITY_NEGOTIATION, LoginInput.OPERATIONAL_REQUEST) not in _TRANSITIONS
    assert (LoginState.OPERATIONAL_NEGOTIATION, LoginInput.SECURITY_REQUEST) not in _TRANSITIONS
    assert (
        LoginState.OPERATIONAL_NEGOTIATION,
        LoginInput.TRANSIT_TO_OPERATIONAL,
    ) not in _TRANSITIONS


def test_status_codes() -> None:
    assert LoginStatus.AUTHORIZATION_FAILURE.status_class == 2
    assert LoginStatus.AUTHORIZATION_FAILURE.status_detail == 2
    assert int(LoginStatus.OUT_OF_RESOURCES) == 0x0302
    assert LoginResponseFields(False, False, 0, 0, 0, 0, 3, 1, b"").status == 0x0301


def test_target_info_validation_and_receive_before_start() -> None:
    with pytest.raises(ConfigError):
        TargetLoginInfo(TARGET, portal_group_tag=65536)
    with pytest.raises(LocalProtocolError):
        make_initiator().receive(OK_FINAL)
