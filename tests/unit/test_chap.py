"""CHAP (RFC 7143 §12.1.3, RFC 1994) for both ends of the login."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest

from sanstack.errors import ConfigError, LocalProtocolError
from sanstack.iscsi.chap import (
    RFC_MIN_SECRET_LENGTH,
    ChapAlgorithm,
    ChapCredentials,
    ChapError,
    ChapInitiator,
    ChapResponder,
    InitiatorAuthenticator,
    TargetAuthenticator,
    chap_response,
)
from sanstack.iscsi.negotiation import NegotiationError
from sanstack.iscsi.text import decode_binary, encode_binary

CHALLENGE = bytes(range(16))
ONE_WAY_CREDS = ChapCredentials("alice", "secretsecret")


def counter(start: int) -> Callable[[int], bytes]:
    """A deterministic stand-in for os.urandom."""
    numbers = itertools.count(start)
    return lambda n: bytes(next(numbers) & 0xFF for _ in range(n))


def fixed(*chunks: bytes) -> Callable[[int], bytes]:
    queue = list(chunks)

    def take(n: int) -> bytes:
        chunk = queue.pop(0)
        assert len(chunk) == n
        return chunk

    return take


# Independent vectors: openssl dgst over 0x01 || "secretsecret" || 00..0f.
@pytest.mark.parametrize(
    ("algorithm", "digest"),
    [
        (ChapAlgorithm.MD5, "226dc576c33f04ff9c3a200ffe35f442"),
        (ChapAlgorithm.SHA1, "ae35ac1694de2cf7e68e790fbface9a28501fed7"),
        (
            ChapAlgorithm.SHA256,
            "024aef34e176668b34ec2bf7f5525e3bf7f0e94d7cec77cb07d08c3d5a8e23ca",
        ),
        (
            ChapAlgorithm.SHA3_256,
            "e2bd0aba5f885a39aa4fbebccc63203c2f728f034cbaf009b44c2f0c5544f172",
        ),
    ],
)
def test_chap_response_vectors(algorithm: ChapAlgorithm, digest: str) -> None:
    assert chap_response(algorithm, 1, b"secretsecret", CHALLENGE).hex() == digest


def one_way() -> ChapCredentials:
    return ChapCredentials("alice", "secretsecret")


def mutual() -> ChapCredentials:
    return ChapCredentials("alice", "secretsecret", "target", "targetsecret")


def test_responder_challenge_and_verify() -> None:
    responder = ChapResponder(one_way(), random_bytes=fixed(b"\x01", CHALLENGE))
    assert responder.challenge("5") == [
        ("CHAP_A", "5"),
        ("CHAP_I", "1"),
        ("CHAP_C", "0x000102030405060708090a0b0c0d0e0f"),
    ]
    answer = responder.verify({"CHAP_N": "alice", "CHAP_R": "0x226dc576c33f04ff9c3a200ffe35f442"})
    assert answer == []
    assert responder.done


def test_responder_accepts_base64_response() -> None:
    responder = ChapResponder(one_way(), random_bytes=fixed(b"\x01", CHALLENGE))
    responder.challenge("5")
    digest = bytes.fromhex("226dc576c33f04ff9c3a200ffe35f442")
    assert (
        responder.verify({"CHAP_N": "alice", "CHAP_R": encode_binary(digest, use_base64=True)})
        == []
    )


@pytest.mark.parametrize(
    ("offer", "chosen"),
    [("5", 5), ("7,5", 7), ("99,6", 6), ("0x5", 5), ("foo,8", 8)],
)
def test_responder_takes_the_first_supported_algorithm(offer: str, chosen: int) -> None:
    responder = ChapResponder(one_way(), random_bytes=counter(0))
    pairs = dict(responder.challenge(offer))
    assert pairs["CHAP_A"] == str(chosen)
    # The challenge is never shorter than the hash output.
    assert len(decode_binary(pairs["CHAP_C"])) >= 16


def test_responder_algorithm_subset() -> None:
    responder = ChapResponder(one_way(), random_bytes=counter(0), algorithms=[ChapAlgorithm.MD5])
    with pytest.raises(ChapError):
        responder.challenge("7,6")


@pytest.mark.parametrize(
    "keys",
    [
        {"CHAP_N": "mallory", "CHAP_R": "0x226dc576c33f04ff9c3a200ffe35f442"},
        {"CHAP_N": "alice", "CHAP_R": "0x226dc576c33f04ff9c3a200ffe35f443"},
        {"CHAP_N": "alice", "CHAP_R": "0x226d"},
        {"CHAP_N": "alice", "CHAP_R": "not-binary"},
        {"CHAP_N": "alice"},
        {"CHAP_R": "0x226dc576c33f04ff9c3a200ffe35f442"},
    ],
)
def test_responder_rejects_bad_responses(keys: dict[str, str]) -> None:
    responder = ChapResponder(one_way(), random_bytes=fixed(b"\x01", CHALLENGE))
    responder.challenge("5")
    with pytest.raises(ChapError):
        responder.verify(keys)
    assert not responder.done


def test_responder_sequence_errors() -> None:
    responder = ChapResponder(one_way(), random_bytes=counter(0))
    with pytest.raises(ChapError):
        responder.verify({"CHAP_N": "alice", "CHAP_R": "0x00"})
    responder.challenge("5")
    with pytest.raises(ChapError):
        responder.challenge("5")


def _answered(responder: ChapResponder, creds: ChapCredentials) -> dict[str, str]:
    pairs = dict(responder.challenge("5"))
    digest = chap_response(
        ChapAlgorithm.MD5, int(pairs["CHAP_I"]), creds.secret_bytes, decode_binary(pairs["CHAP_C"])
    )
    return {"CHAP_N": creds.user, "CHAP_R": encode_binary(digest), "_C": pairs["CHAP_C"]}


def test_responder_answers_a_mutual_challenge() -> None:
    creds = mutual()
    responder = ChapResponder(creds, random_bytes=counter(0))
    keys = _answered(responder, creds)
    keys.pop("_C")
    their_challenge = bytes(range(100, 116))
    answer = responder.verify({**keys, "CHAP_I": "7", "CHAP_C": encode_binary(their_challenge)})
    expected = chap_response(ChapAlgorithm.MD5, 7, b"targetsecret", their_challenge)
    assert answer == [("CHAP_N", "target"), ("CHAP_R", encode_binary(expected))]


def test_responder_rejects_a_reflected_challenge() -> None:
    creds = mutual()
    responder = ChapResponder(creds, random_bytes=counter(0))
    keys = _answered(responder, creds)
    ours = keys.pop("_C")
    with pytest.raises(ChapError, match="reflected"):
        responder.verify({**keys, "CHAP_I": "7", "CHAP_C": ours})


@pytest.mark.parametrize(
    "extra",
    [{"CHAP_I": "7"}, {"CHAP_C": "0x0102"}, {"CHAP_I": "256", "CHAP_C": "0x01"},
     {"CHAP_I": "1", "CHAP_C": "0x" + "00" * 1025}],
)  # fmt: skip
def test_responder_rejects_broken_mutual_requests(extra: dict[str, str]) -> None:
    creds = mutual()
    responder = ChapResponder(creds, random_bytes=counter(0))
    keys = _answered(responder, creds)
    keys.pop("_C")
    with pytest.raises(ChapError):
        responder.verify({**keys, **extra})


def test_responder_without_mutual_secret_refuses_mutual_request() -> None:
    creds = one_way()
    responder = ChapResponder(creds, random_bytes=counter(0))
    keys = _answered(responder, creds)
    keys.pop("_C")
    with pytest.raises(ChapError, match="mutual"):
        responder.verify({**keys, "CHAP_I": "1", "CHAP_C": "0x0102030405"})


def test_initiator_and_responder_mutual_round_trip() -> None:
    creds = mutual()
    responder = ChapResponder(creds, random_bytes=counter(0))
    initiator = ChapInitiator(creds, random_bytes=counter(200))
    assert initiator.offer() == [("CHAP_A", "5")]
    reply = initiator.respond(dict(responder.challenge("5")))
    assert [k for k, _ in reply] == ["CHAP_N", "CHAP_R", "CHAP_I", "CHAP_C"]
    answer = responder.verify(dict(reply))
    initiator.verify(dict(answer))
    assert initiator.verified and initiator.mutual


def test_initiator_one_way() -> None:
    initiator = ChapInitiator(one_way(), algorithms=[ChapAlgorithm.SHA256, ChapAlgorithm.MD5])
    assert initiator.offer() == [("CHAP_A", "7,5")]
    reply = initiator.respond({"CHAP_A": "5", "CHAP_I": "1", "CHAP_C": encode_binary(CHALLENGE)})
    assert reply == [("CHAP_N", "alice"), ("CHAP_R", "0x226dc576c33f04ff9c3a200ffe35f442")]
    assert not initiator.mutual


@pytest.mark.parametrize(
    "keys",
    [
        {"CHAP_A": "7", "CHAP_I": "1", "CHAP_C": "0x01"},  # not offered
        {"CHAP_A": "5", "CHAP_C": "0x01"},
        {"CHAP_A": "5", "CHAP_I": "x", "CHAP_C": "0x01"},
        {"CHAP_A": "x", "CHAP_I": "1", "CHAP_C": "0x01"},
        {"CHAP_A": "5", "CHAP_I": "1", "CHAP_C": "0x" + "00" * 1025},
    ],
)
def test_initiator_rejects_bad_challenges(keys: dict[str, str]) -> None:
    with pytest.raises(ChapError):
        ChapInitiator(one_way()).respond(keys)


def test_initiator_detects_a_bad_or_reflected_target_answer() -> None:
    creds = mutual()
    initiator = ChapInitiator(creds, random_bytes=fixed(b"\x09", bytes(range(50, 66))))
    initiator.respond({"CHAP_A": "5", "CHAP_I": "1", "CHAP_C": encode_binary(CHALLENGE)})
    challenge = bytes(range(50, 66))
    own = chap_response(ChapAlgorithm.MD5, 9, b"secretsecret", challenge)
    with pytest.raises(ChapError, match="own secret"):
        initiator.verify({"CHAP_N": "target", "CHAP_R": encode_binary(own)})
    good = chap_response(ChapAlgorithm.MD5, 9, b"targetsecret", challenge)
    with pytest.raises(ChapError):
        initiator.verify({"CHAP_N": "impostor", "CHAP_R": encode_binary(good)})
    with pytest.raises(ChapError):
        initiator.verify({"CHAP_N": "target"})
    initiator.verify({"CHAP_N": "target", "CHAP_R": encode_binary(good)})
    assert initiator.verified


def test_initiator_never_reuses_the_target_challenge() -> None:
    initiator = ChapInitiator(mutual(), random_bytes=fixed(b"\x02", CHALLENGE))
    with pytest.raises(LocalProtocolError):
        initiator.respond({"CHAP_A": "5", "CHAP_I": "1", "CHAP_C": encode_binary(CHALLENGE)})


def test_initiator_verify_needs_an_outstanding_challenge() -> None:
    with pytest.raises(LocalProtocolError):
        ChapInitiator(one_way()).verify({"CHAP_N": "x", "CHAP_R": "0x00"})


def test_credential_validation() -> None:
    assert "secret" not in repr(mutual()).replace("mutual_secret", "")
    with pytest.raises(ConfigError):
        ChapCredentials("", "secretsecret")
    with pytest.raises(ConfigError):
        ChapCredentials("alice", "")
    with pytest.raises(ConfigError):
        ChapCredentials("alice", "x" * 256)
    with pytest.raises(ConfigError):
        ChapCredentials("alice", "secretsecret", "target", None)
    with pytest.raises(ConfigError, match="differ"):
        ChapCredentials("alice", "secretsecret", "target", b"secretsecret")
    # Short secrets are allowed by default (test suites use them) ...
    assert ChapCredentials("alice", "pw").secret_bytes == b"pw"
    # ... and refused when the RFC's 96-bit recommendation is enforced.
    with pytest.raises(ConfigError):
        ChapCredentials("alice", "short", min_secret_length=RFC_MIN_SECRET_LENGTH)
    with pytest.raises(ConfigError):
        ChapCredentials("a", "secretsecret12", "t", "short", min_secret_length=12)
    assert ChapCredentials("a", b"\x00" * 12, min_secret_length=12).secret_bytes == b"\x00" * 12


def test_challenge_length_bounds() -> None:
    with pytest.raises(ConfigError):
        ChapResponder(one_way(), challenge_length=8)
    with pytest.raises(ConfigError):
        ChapInitiator(one_way(), challenge_length=2048)
    with pytest.raises(ConfigError):
        ChapInitiator(one_way(), algorithms=[])


def test_short_random_source_is_a_local_error() -> None:
    responder = ChapResponder(one_way(), random_bytes=lambda n: b"")
    with pytest.raises(LocalProtocolError):
        responder.challenge("5")


# -- the security stage sequencing ----------------------------------------------------


def test_target_authenticator_without_credentials() -> None:
    auth = TargetAuthenticator(None)
    assert auth.process([("AuthMethod", "CHAP,None")], transit=False) == [("AuthMethod", "None")]
    assert auth.authenticated and auth.method == "None"
    with pytest.raises(ChapError):
        TargetAuthenticator(None).process([("AuthMethod", "CHAP")], transit=False)
    with pytest.raises(ChapError):
        TargetAuthenticator(None).process([("CHAP_A", "5")], transit=False)
    silent = TargetAuthenticator(None)
    assert silent.process([], transit=True) == []  # leaving without AuthMethod: None
    assert silent.authenticated
    skipped = TargetAuthenticator(None)
    skipped.skip()
    assert skipped.method == "None"


def test_target_authenticator_with_chap() -> None:
    auth = TargetAuthenticator(ONE_WAY_CREDS, random_bytes=fixed(b"\x01", CHALLENGE))
    with pytest.raises(ChapError):
        TargetAuthenticator(ONE_WAY_CREDS).skip()
    with pytest.raises(ChapError):
        TargetAuthenticator(ONE_WAY_CREDS).process([], transit=True)
    with pytest.raises(ChapError):
        TargetAuthenticator(ONE_WAY_CREDS).process([("AuthMethod", "None,SRP")], transit=False)
    out = auth.process([("AuthMethod", "SRP,CHAP"), ("CHAP_A", "5")], transit=True)
    assert [k for k, _ in out] == ["AuthMethod", "CHAP_A", "CHAP_I", "CHAP_C"]
    assert not bool(auth.authenticated)
    with pytest.raises(ChapError):
        auth.skip()
    response = [("CHAP_N", "alice"), ("CHAP_R", "0x226dc576c33f04ff9c3a200ffe35f442")]
    assert auth.process(response, transit=True) == []
    assert auth.authenticated and auth.method == "CHAP"
    auth.skip()  # already authenticated: moving on is fine


def test_target_authenticator_protocol_errors() -> None:
    auth = TargetAuthenticator(ONE_WAY_CREDS)
    auth.process([("AuthMethod", "CHAP")], transit=False)
    with pytest.raises(NegotiationError):
        auth.process([("AuthMethod", "CHAP")], transit=False)
    with pytest.raises(NegotiationError):
        TargetAuthenticator(None).process([("AuthMethod", "None,")], transit=False)


def test_initiator_authenticator_sequence() -> None:
    auth = InitiatorAuthenticator(ONE_WAY_CREDS)
    assert auth.offer() == ([("AuthMethod", "CHAP")], False)
    auth.process({"AuthMethod": "CHAP"}, transit=False)
    assert auth.next_request() == ([("CHAP_A", "5")], False)
    auth.process({"CHAP_A": "5", "CHAP_I": "1", "CHAP_C": encode_binary(CHALLENGE)}, transit=False)
    keys, transit = auth.next_request()
    assert transit and dict(keys)["CHAP_R"] == "0x226dc576c33f04ff9c3a200ffe35f442"
    auth.process({}, transit=True)
    assert auth.next_request() == ([], True)
    plain = InitiatorAuthenticator(None)
    assert plain.offer() == ([("AuthMethod", "None")], True)
    plain.process({}, transit=True)  # the target kept the default
    assert plain.method == "None"
