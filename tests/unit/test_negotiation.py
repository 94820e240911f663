"""Key definitions and negotiation rules (RFC 7143 §6.2, §13; RFC 7144)."""

from __future__ import annotations

import pytest

from sanstack.errors import ConfigError, LocalProtocolError
from sanstack.iscsi.codes import LoginStage
from sanstack.iscsi.negotiation import (
    KEYS,
    Digest,
    KeyKind,
    KeyPhase,
    KeyScope,
    KeyUse,
    NegotiationError,
    NegotiationPreferences,
    Negotiator,
    OperationalParameters,
    Role,
    SessionType,
)

OP = LoginStage.LOGIN_OPERATIONAL_NEGOTIATION
SEC = LoginStage.SECURITY_NEGOTIATION
FFP = LoginStage.FULL_FEATURE_PHASE


def target(prefs: NegotiationPreferences | None = None, **kw: object) -> Negotiator:
    return Negotiator(Role.TARGET, prefs or NegotiationPreferences(), **kw)  # type: ignore[arg-type]


def answer(key: str, value: str, prefs: NegotiationPreferences | None = None) -> str | None:
    out = target(prefs).process([(key, value)], OP)
    return out[0][1] if out else None


RFC_7143_KEYS = [
    "HeaderDigest", "DataDigest", "MaxConnections", "SendTargets", "TargetName",
    "InitiatorName", "TargetAlias", "InitiatorAlias", "TargetAddress", "TargetPortalGroupTag",
    "InitialR2T", "ImmediateData", "MaxRecvDataSegmentLength", "MaxBurstLength",
    "FirstBurstLength", "DefaultTime2Wait", "DefaultTime2Retain", "MaxOutstandingR2T",
    "DataPDUInOrder", "DataSequenceInOrder", "ErrorRecoveryLevel", "SessionType",
    "TaskReporting", "iSCSIProtocolLevel", "IFMarker", "OFMarker", "IFMarkInt", "OFMarkInt",
    "X#NodeArchitecture", "AuthMethod", "CHAP_A", "CHAP_I", "CHAP_C", "CHAP_N", "CHAP_R",
]  # fmt: skip


def test_table_covers_every_key() -> None:
    assert set(RFC_7143_KEYS) == set(KEYS)
    assert all(d.name == name and d.section for name, d in KEYS.items())


@pytest.mark.parametrize(
    ("key", "kind", "use", "scope", "default"),
    [
        ("HeaderDigest", KeyKind.LIST, KeyUse.INITIALIZE_ONLY, KeyScope.CONNECTION_ONLY, "None"),
        ("MaxConnections", KeyKind.NUMERICAL_MIN, KeyUse.LEADING_ONLY, KeyScope.SESSION_WIDE, "1"),
        ("InitialR2T", KeyKind.BOOLEAN_OR, KeyUse.LEADING_ONLY, KeyScope.SESSION_WIDE, "Yes"),
        ("ImmediateData", KeyKind.BOOLEAN_AND, KeyUse.LEADING_ONLY, KeyScope.SESSION_WIDE, "Yes"),
        ("MaxRecvDataSegmentLength", KeyKind.DECLARATIVE, KeyUse.ALL, KeyScope.CONNECTION_ONLY,
         "8192"),
        ("MaxBurstLength", KeyKind.NUMERICAL_MIN, KeyUse.LEADING_ONLY, KeyScope.SESSION_WIDE,
         "262144"),
        ("FirstBurstLength", KeyKind.NUMERICAL_MIN, KeyUse.LEADING_ONLY, KeyScope.SESSION_WIDE,
         "65536"),
        ("DefaultTime2Wait", KeyKind.NUMERICAL_MAX, KeyUse.LEADING_ONLY, KeyScope.SESSION_WIDE,
         "2"),
        ("DefaultTime2Retain", KeyKind.NUMERICAL_MIN, KeyUse.LEADING_ONLY,
         KeyScope.SESSION_WIDE, "20"),
        ("ErrorRecoveryLevel", KeyKind.NUMERICAL_MIN, KeyUse.LEADING_ONLY,
         KeyScope.SESSION_WIDE, "0"),
        ("SendTargets", KeyKind.DECLARATIVE, KeyUse.FULL_FEATURE_ONLY, KeyScope.SESSION_WIDE,
         None),
        ("iSCSIProtocolLevel", KeyKind.NUMERICAL_MIN, KeyUse.LEADING_ONLY,
         KeyScope.SESSION_WIDE, "1"),
    ],
)  # fmt: skip
def test_key_properties(
    key: str, kind: KeyKind, use: KeyUse, scope: KeyScope, default: str | None
) -> None:
    d = KEYS[key]
    assert (d.kind, d.use, d.scope, d.default) == (kind, use, scope, default)


def test_phases() -> None:
    assert KEYS["AuthMethod"].phase is KeyPhase.SECURITY
    assert KEYS["CHAP_R"].phase is KeyPhase.SECURITY
    assert KEYS["InitiatorName"].phase is KeyPhase.ANY
    assert KEYS["MaxBurstLength"].phase is KeyPhase.OPERATIONAL
    assert KEYS["MaxBurstLength"].leading_only
    assert not KEYS["SendTargets"].allowed_in_login
    assert KEYS["MaxRecvDataSegmentLength"].allowed_in_full_feature


# (key, offered value, expected answer of our target with default preferences)
TARGET_VECTORS = [
    ("HeaderDigest", "None,CRC32C", "None"),
    ("HeaderDigest", "CRC32C,None", "CRC32C"),
    ("HeaderDigest", "CRC32C", "CRC32C"),
    ("HeaderDigest", "X-vendor,None", "None"),
    ("HeaderDigest", "X-vendor", "Reject"),
    ("HeaderDigest", "None,,CRC32C", "Reject"),
    ("DataDigest", "CRC32C,None", "CRC32C"),
    ("DataDigest", "None", "None"),
    ("MaxConnections", "4", "1"),
    ("MaxConnections", "1", "1"),
    ("MaxConnections", "0", "Reject"),
    ("MaxConnections", "65536", "Reject"),
    ("InitialR2T", "Yes", "Yes"),
    ("InitialR2T", "No", "No"),
    ("InitialR2T", "yes", "Reject"),
    ("ImmediateData", "Yes", "Yes"),
    ("ImmediateData", "No", "No"),
    ("MaxBurstLength", "262144", "262144"),
    ("MaxBurstLength", "16777215", "1048576"),
    ("MaxBurstLength", "0x40000", "262144"),
    ("MaxBurstLength", "511", "Reject"),
    ("MaxBurstLength", "16777216", "Reject"),
    ("FirstBurstLength", "262144", "65536"),
    ("FirstBurstLength", "4096", "4096"),
    ("DefaultTime2Wait", "0", "2"),
    ("DefaultTime2Wait", "10", "10"),
    ("DefaultTime2Wait", "3601", "Reject"),
    ("DefaultTime2Retain", "0", "0"),
    ("DefaultTime2Retain", "60", "20"),
    ("MaxOutstandingR2T", "8", "1"),
    ("MaxOutstandingR2T", "0", "Reject"),
    ("DataPDUInOrder", "No", "Yes"),
    ("DataPDUInOrder", "Yes", "Yes"),
    ("DataSequenceInOrder", "No", "Yes"),
    ("ErrorRecoveryLevel", "2", "0"),
    ("ErrorRecoveryLevel", "0", "0"),
    ("ErrorRecoveryLevel", "3", "Reject"),
    ("TaskReporting", "RFC3720", "RFC3720"),
    ("TaskReporting", "FastAbort,RFC3720", "RFC3720"),
    ("TaskReporting", "FastAbort", "Reject"),
    ("iSCSIProtocolLevel", "2", "1"),
    ("iSCSIProtocolLevel", "0", "0"),
    ("iSCSIProtocolLevel", "32", "Reject"),
    ("IFMarker", "No", "No"),
    ("OFMarker", "Yes", "No"),
    ("IFMarkInt", "1~65535", "Reject"),
    ("OFMarkInt", "2048", "Reject"),
    ("X-com.example.feature", "on", "NotUnderstood"),
    ("X#NodeArchitecture", "linux/6.1", "NotUnderstood"),
    ("Y-Unknown", "1", "NotUnderstood"),
    ("SendTargets", "All", "Reject"),  # a full feature phase key during login
    ("MaxRecvDataSegmentLength", "8192", None),  # declarative: no answer
    ("MaxRecvDataSegmentLength", "100", "Reject"),
]


@pytest.mark.parametrize(("key", "offer", "expected"), TARGET_VECTORS)
def test_target_answers(key: str, offer: str, expected: str | None) -> None:
    assert answer(key, offer) == expected


@pytest.mark.parametrize(
    ("prefs", "key", "offer", "expected"),
    [
        (NegotiationPreferences(header_digest=(Digest.CRC32C,)), "HeaderDigest", "None",
         "Reject"),
        (NegotiationPreferences(header_digest=(Digest.CRC32C,)), "HeaderDigest",
         "None,CRC32C", "CRC32C"),
        (NegotiationPreferences(data_digest=(Digest.NONE,)), "DataDigest", "CRC32C,None",
         "None"),
        (NegotiationPreferences(initial_r2t=True), "InitialR2T", "No", "Yes"),
        (NegotiationPreferences(immediate_data=False), "ImmediateData", "Yes", "No"),
        (NegotiationPreferences(default_time2wait=20), "DefaultTime2Wait", "5", "20"),
        (NegotiationPreferences(max_outstanding_r2t=16), "MaxOutstandingR2T", "8", "8"),
        (NegotiationPreferences(data_pdu_in_order=False), "DataPDUInOrder", "No", "No"),
        (NegotiationPreferences(error_recovery_level=2), "ErrorRecoveryLevel", "1", "1"),
    ],
)  # fmt: skip
def test_target_answers_follow_preferences(
    prefs: NegotiationPreferences, key: str, offer: str, expected: str
) -> None:
    assert answer(key, offer, prefs) == expected


def test_answers_keep_the_offer_order_and_first_burst_is_capped() -> None:
    neg = target()
    out = neg.process(
        [("FirstBurstLength", "65536"), ("HeaderDigest", "CRC32C"), ("MaxBurstLength", "8192")],
        OP,
    )
    assert out == [
        ("FirstBurstLength", "8192"),
        ("HeaderDigest", "CRC32C"),
        ("MaxBurstLength", "8192"),
    ]
    params = neg.parameters()
    assert (params.max_burst_length, params.first_burst_length) == (8192, 8192)
    assert params.header_digest and not params.data_digest


def test_first_burst_is_clamped_when_max_burst_comes_later() -> None:
    neg = target()
    neg.process([("FirstBurstLength", "65536")], OP)
    neg.process([("MaxBurstLength", "4096")], OP)
    assert neg.parameters().first_burst_length == 4096


def test_discovery_session_irrelevant_keys() -> None:
    neg = target(session_type=SessionType.DISCOVERY)
    irrelevant = [k for k, d in KEYS.items() if d.irrelevant_in_discovery]
    assert set(irrelevant) >= {"MaxConnections", "InitialR2T", "ImmediateData", "MaxBurstLength",
                               "FirstBurstLength", "MaxOutstandingR2T", "DataPDUInOrder",
                               "DataSequenceInOrder"}  # fmt: skip
    offers = {"MaxConnections": "1", "InitialR2T": "No", "ImmediateData": "Yes",
              "MaxBurstLength": "512", "FirstBurstLength": "512", "MaxOutstandingR2T": "1",
              "DataPDUInOrder": "Yes", "DataSequenceInOrder": "Yes",
              "TaskReporting": "RFC3720"}  # fmt: skip
    out = dict(neg.process([*offers.items(), ("HeaderDigest", "CRC32C")], OP))
    assert out.pop("HeaderDigest") == "CRC32C"
    assert set(out.values()) == {"Irrelevant"}
    assert neg.parameters().max_burst_length == 262144  # untouched default


def test_leading_only_keys_on_a_secondary_connection() -> None:
    neg = target(leading=False)
    assert neg.process([("MaxBurstLength", "512"), ("HeaderDigest", "None")], OP) == [
        ("MaxBurstLength", "Irrelevant"),
        ("HeaderDigest", "None"),
    ]


def test_full_feature_phase_text_negotiation() -> None:
    neg = target()
    out = neg.process([("MaxRecvDataSegmentLength", "65536"), ("HeaderDigest", "CRC32C")], FFP)
    assert out == [("HeaderDigest", "Reject")]  # login-only key
    assert neg.peer_declarations["MaxRecvDataSegmentLength"] == "65536"


@pytest.mark.parametrize(
    ("pairs", "stage"),
    [
        ([("MaxBurstLength", "512"), ("MaxBurstLength", "512")], OP),  # offered twice
        ([("HeaderDigest", "None")], SEC),  # operational key in the security stage
        ([("AuthMethod", "None")], OP),  # security key in the operational stage
        ([("TargetAlias", "x")], OP),  # a target-only key from the initiator
        ([("TargetPortalGroupTag", "1")], OP),
        ([("MaxBurstLength", "Reject")], OP),  # an answer to something never offered
        ([("X-foo", "NotUnderstood")], OP),
    ],
)
def test_protocol_errors(pairs: list[tuple[str, str]], stage: LoginStage) -> None:
    with pytest.raises(NegotiationError):
        target().process(pairs, stage)


def test_duplicate_across_pdus() -> None:
    neg = target()
    neg.process([("ImmediateData", "Yes")], OP)
    with pytest.raises(NegotiationError):
        neg.process([("ImmediateData", "Yes")], OP)


def test_identity_and_unknown_keys_are_fine_in_the_security_stage() -> None:
    neg = target()
    assert neg.process([("X-foo", "1"), ("InitiatorAlias", "host")], SEC) == [
        ("X-foo", "NotUnderstood")
    ]


# -- originator side ------------------------------------------------------------------


def initiator(prefs: NegotiationPreferences | None = None) -> Negotiator:
    return Negotiator(Role.INITIATOR, prefs or NegotiationPreferences())


@pytest.mark.parametrize(
    ("key", "reply", "value"),
    [
        ("HeaderDigest", "CRC32C", "CRC32C"),
        ("MaxBurstLength", "262144", "262144"),
        ("MaxBurstLength", "0x200", "512"),
        ("DefaultTime2Wait", "5", "5"),
        ("ImmediateData", "No", "No"),
        ("InitialR2T", "Yes", "Yes"),
        ("MaxBurstLength", "Reject", None),
        ("MaxBurstLength", "NotUnderstood", None),
        ("MaxBurstLength", "Irrelevant", None),
    ],
)
def test_originator_accepts_valid_answers(key: str, reply: str, value: str | None) -> None:
    neg = initiator(NegotiationPreferences(header_digest=(Digest.CRC32C, Digest.NONE)))
    neg.offer([key])
    assert neg.process([(key, reply)], OP) == []
    assert neg.value(key) == value
    assert key not in neg.pending


@pytest.mark.parametrize(
    ("key", "reply"),
    [
        ("HeaderDigest", "Unknown"),  # not in our list
        ("HeaderDigest", "None,CRC32C"),  # a list is not an answer
        ("MaxBurstLength", "2097152"),  # above our offer of a minimum
        ("MaxBurstLength", "big"),
        ("DefaultTime2Wait", "1"),  # below our offer of a maximum
        ("ImmediateData", "Maybe"),
        ("ImmediateData", "Yes"),  # we offered No: AND can never answer Yes
        ("InitialR2T", "No"),  # we offered Yes: OR can never answer No
    ],
)
def test_originator_rejects_bad_answers(key: str, reply: str) -> None:
    neg = initiator(NegotiationPreferences(immediate_data=False, initial_r2t=True))
    neg.offer([key])
    with pytest.raises(NegotiationError):
        neg.process([(key, reply)], OP)


def test_finish_settles_optional_answers() -> None:
    neg = initiator(NegotiationPreferences(immediate_data=False, initial_r2t=True))
    neg.offer(["ImmediateData", "InitialR2T", "MaxBurstLength"])
    assert neg.pending == {"ImmediateData", "InitialR2T", "MaxBurstLength"}
    neg.finish()
    params = neg.parameters()
    assert (params.immediate_data, params.initial_r2t) == (False, True)
    assert params.max_burst_length == 262144  # unanswered: the default applies
    assert not neg.pending


def test_offer_misuse() -> None:
    neg = initiator()
    neg.offer(["MaxBurstLength"])
    with pytest.raises(LocalProtocolError):
        neg.offer(["MaxBurstLength"])
    with pytest.raises(LocalProtocolError):
        neg.offer(["TargetAlias"])


def test_declarations_in_both_directions() -> None:
    ours = initiator(NegotiationPreferences(max_recv_data_segment_length=65536))
    assert ours.offer(["MaxRecvDataSegmentLength"]) == [("MaxRecvDataSegmentLength", "65536")]
    assert ours.declared("MaxRecvDataSegmentLength")
    # The target declares its own value; that is not an answer to ours.
    assert ours.process([("MaxRecvDataSegmentLength", "0x2000")], OP) == []
    params = ours.parameters()
    assert (params.max_recv_data_segment_length, params.max_xmit_data_segment_length) == (
        65536,
        8192,
    )


def test_refused_declaration_falls_back_to_the_default() -> None:
    ours = initiator()
    ours.offer(["MaxRecvDataSegmentLength"])
    ours.process([("MaxRecvDataSegmentLength", "Reject")], OP)
    assert ours.parameters().max_recv_data_segment_length == 8192


def test_initiator_answers_target_originated_offers() -> None:
    ours = initiator(NegotiationPreferences(max_burst_length=65536))
    assert ours.process([("MaxBurstLength", "262144"), ("TargetAlias", "disk")], OP) == [
        ("MaxBurstLength", "65536")
    ]
    assert ours.peer_declarations["TargetAlias"] == "disk"
    with pytest.raises(NegotiationError):
        ours.process([("InitiatorName", "iqn.x")], OP)  # an initiator-only key


def test_initial_offer_keys() -> None:
    assert "MaxBurstLength" in initiator().initial_offer_keys()
    discovery = Negotiator(
        Role.INITIATOR, NegotiationPreferences(), session_type=SessionType.DISCOVERY
    )
    keys = discovery.initial_offer_keys()
    assert "MaxBurstLength" not in keys and "HeaderDigest" in keys


def test_parameters_defaults_are_the_rfc_defaults() -> None:
    assert target().parameters() == OperationalParameters()
    p = OperationalParameters()
    assert (p.initial_r2t, p.immediate_data, p.max_burst_length, p.first_burst_length) == (
        True,
        True,
        262144,
        65536,
    )
    assert (p.max_recv_data_segment_length, p.max_xmit_data_segment_length) == (8192, 8192)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_connections": 0},
        {"max_recv_data_segment_length": 511},
        {"max_burst_length": 2**24},
        {"first_burst_length": 2**20 + 1},  # above the default max_burst_length
        {"error_recovery_level": 3},
        {"default_time2wait": -1},
        {"header_digest": ()},
        {"data_digest": ("MD5",)},
        {"task_reporting": ("Bogus",)},
    ],
)
def test_preference_validation(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        NegotiationPreferences(**kwargs)  # type: ignore[arg-type]


def test_value_for_wire_syntax() -> None:
    prefs = NegotiationPreferences()
    assert prefs.value_for("HeaderDigest") == "None,CRC32C"
    assert prefs.value_for("InitialR2T") == "No"
    assert prefs.value_for("MaxRecvDataSegmentLength") == "262144"
