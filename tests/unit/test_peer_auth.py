"""Signed control requests between nodes (``control/peer_auth.py``), sans-IO: the canonical
string byte for byte, the HMAC against a vector computed independently here, every field
bound by the MAC, the clock skew bound, replays, the bounded nonce cache, and signed
answers."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from sanstack.control.peer_auth import (
    MAX_SKEW,
    NODE_HEADER,
    NONCE_HEADER,
    SIGNATURE_HEADER,
    TIME_HEADER,
    PeerSigner,
    Rejected,
    RequestVerifier,
    Verified,
    canonical_answer,
    canonical_request,
)

SECRET = b"k" * 32
NOW = 1_800_000_000.0
NONCE = "00112233445566778899aabbccddeeff"
TARGET = "/v1/cluster/volumes/snapshots?volume=g1%2Fd1&via=n2"
BODY = b'{"name": "nightly"}'


def nonce(i: int) -> str:
    return f"{i:032x}"


N2 = PeerSigner(SECRET, "n2")


def signed(
    signer: PeerSigner = N2,
    *,
    method: str = "POST",
    target: str = TARGET,
    body: bytes = BODY,
    now: float = NOW,
    nonce_: str = NONCE,
) -> dict[str, str]:
    return dict(signer.sign(method, target, body, now, nonce_))


def status_request(i: int, now: float = NOW) -> dict[str, str]:
    return signed(method="GET", target="/v1/cluster/status", body=b"", nonce_=nonce(i), now=now)


def verifier(**kwargs: int) -> RequestVerifier:
    return RequestVerifier(SECRET, ["n1", "n2", "n3"], **kwargs)


def test_the_canonical_request_is_one_field_a_line() -> None:
    body_digest = hashlib.sha256(BODY).hexdigest()
    assert canonical_request(
        "POST", TARGET, node="n2", timestamp="1800000000", nonce=NONCE, body=BODY
    ) == (
        b"sanstack-peer-v1\nPOST\n/v1/cluster/volumes/snapshots?volume=g1%2Fd1&via=n2\nn2\n"
        b"1800000000\n00112233445566778899aabbccddeeff\n" + body_digest.encode()
    )
    assert canonical_answer(200, NONCE, b"{}\n") == (
        b"sanstack-peer-answer-v1\n200\n" + NONCE.encode() + b"\n"
        + hashlib.sha256(b"{}\n").hexdigest().encode()
    )  # fmt: skip


def test_the_headers_carry_node_whole_seconds_nonce_and_the_hmac() -> None:
    headers = signed()
    assert set(headers) == {NODE_HEADER, TIME_HEADER, NONCE_HEADER, SIGNATURE_HEADER}
    assert (headers[NODE_HEADER], headers[TIME_HEADER], headers[NONCE_HEADER]) == (
        "n2",
        "1800000000",
        NONCE,
    )
    message = canonical_request(
        "POST", TARGET, node="n2", timestamp="1800000000", nonce=NONCE, body=BODY
    )
    assert headers[SIGNATURE_HEADER] == hmac.new(SECRET, message, hashlib.sha256).hexdigest()


def test_a_signed_request_is_verified_once() -> None:
    check = verifier()
    assert check.verify("POST", TARGET, signed(), BODY, NOW) == Verified("n2", NONCE)
    again = check.verify("POST", TARGET, signed(), BODY, NOW + 1)
    assert isinstance(again, Rejected) and again.status == 401
    assert again.reason == f"replayed: nonce {NONCE} from n2 was already used"


@pytest.mark.parametrize(
    ("method", "target", "body"),
    [
        ("PUT", TARGET, BODY),
        ("POST", TARGET.replace("via=n2", "via=n3"), BODY),
        ("POST", "/v1/cluster/volumes/snapshots?volume=g1%2Fd2&via=n2", BODY),
        ("POST", TARGET, b'{"name": "nightlz"}'),
        ("POST", TARGET, b""),
    ],
    ids=["method", "query", "volume", "body", "no body"],
)
def test_every_part_of_the_request_is_bound_by_the_mac(
    method: str, target: str, body: bytes
) -> None:
    verdict = verifier().verify(method, target, signed(), body, NOW)
    assert isinstance(verdict, Rejected) and "does not match" in verdict.reason


@pytest.mark.parametrize(
    ("header", "value"),
    [(NODE_HEADER, "n3"), (TIME_HEADER, "1800000001"), (NONCE_HEADER, nonce(7))],
)
def test_the_headers_are_bound_by_the_mac_too(header: str, value: str) -> None:
    headers = {**signed(), header: value}
    verdict = verifier().verify("POST", TARGET, headers, BODY, NOW)
    assert isinstance(verdict, Rejected) and "does not match" in verdict.reason


def test_another_secret_is_refused_naming_the_likely_cause() -> None:
    other = PeerSigner(b"x" * 32, "n2")
    verdict = verifier().verify("POST", TARGET, signed(other), BODY, NOW)
    assert verdict == Rejected(
        "signature from n2 does not match (is secret_file the same on every node?)"
    )


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "not signed (a peer of this cluster signs with its secret_file)"),
        (
            {**signed(), NODE_HEADER: "n9"},
            "'n9' is not a peer of this node in the cluster's config",
        ),
        ({**signed(), TIME_HEADER: "-5"}, "malformed signature headers"),
        ({**signed(), TIME_HEADER: "1e9"}, "malformed signature headers"),
        ({**signed(), NONCE_HEADER: "X" * 32}, "malformed signature headers"),
        ({**signed(), NONCE_HEADER: "ab"}, "malformed signature headers"),
        ({**signed(), SIGNATURE_HEADER: "00"}, "malformed signature headers"),
    ],
    ids=["unsigned", "unknown node", "negative time", "float time", "nonce", "short", "mac"],
)
def test_malformed_or_missing_headers_are_refused(headers: dict[str, str], reason: str) -> None:
    assert verifier().verify("POST", TARGET, headers, BODY, NOW) == Rejected(reason)


@pytest.mark.parametrize("offset", [-MAX_SKEW, MAX_SKEW, 0.0, 0.75])
def test_a_request_within_the_skew_is_taken(offset: float) -> None:
    verdict = verifier().verify("POST", TARGET, signed(now=NOW + offset), BODY, NOW)
    assert isinstance(verdict, Verified)


@pytest.mark.parametrize("offset", [-MAX_SKEW - 1, MAX_SKEW + 1, -3600.0])
def test_a_stale_or_future_request_is_refused(offset: float) -> None:
    verdict = verifier().verify("POST", TARGET, signed(now=NOW + offset), BODY, NOW)
    assert isinstance(verdict, Rejected) and verdict.status == 401
    assert verdict.reason.startswith(f"stale: signed by n2 {-offset:+.0f} s from this node")


def test_a_nonce_is_forgotten_only_once_its_time_is_stale() -> None:
    check = verifier()
    assert isinstance(check.verify("POST", TARGET, signed(), BODY, NOW), Verified)
    # Until its time is stale the nonce is remembered, so a replay is refused as one ...
    replay = check.verify("POST", TARGET, signed(), BODY, NOW + MAX_SKEW - 1)
    assert isinstance(replay, Rejected) and replay.reason.startswith("replayed")
    # ... then the clock check refuses it, and the cache forgets it.
    late = check.verify("POST", TARGET, signed(nonce_=nonce(1), now=NOW + 40), BODY, NOW + 40)
    assert isinstance(late, Verified)
    assert len(check) == 1  # only the new one
    stale = check.verify("POST", TARGET, signed(), BODY, NOW + 40)
    assert isinstance(stale, Rejected) and stale.reason.startswith("stale")


def test_a_full_nonce_cache_refuses_rather_than_forgets() -> None:
    check = verifier(capacity=3)

    def verify(i: int, now: float = NOW) -> Verified | Rejected:
        return check.verify("GET", "/v1/cluster/status", status_request(i, now), b"", now)

    for i in range(3):
        assert isinstance(verify(i), Verified)
    full = verify(3)
    assert isinstance(full, Rejected) and full.status == 503
    replay = verify(0)  # the remembered ones are still refused as replays
    assert isinstance(replay, Rejected) and replay.reason.startswith("replayed")
    verdict = verify(3, NOW + MAX_SKEW + 1)
    assert isinstance(verdict, Verified) and len(check) == 1


def test_bad_requests_never_fill_the_nonce_cache() -> None:
    check = verifier(capacity=2)
    stranger = PeerSigner(b"s" * 32, "n2")
    for i in range(10):
        check.verify("POST", TARGET, signed(stranger, nonce_=nonce(i)), BODY, NOW)
        check.verify("POST", TARGET, signed(nonce_=nonce(i), now=NOW - 99), BODY, NOW)
    assert len(check) == 0


def test_answers_are_signed_for_the_request_they_answer() -> None:
    signer = PeerSigner(SECRET, "n2")
    check = verifier()
    body = b'{"node": "n1", "paused": true}\n'
    signature = check.sign_answer(NONCE, 200, body)
    assert signer.answer_is_authentic(NONCE, 200, body, signature)
    assert not signer.answer_is_authentic(NONCE, 200, body, None)
    assert not signer.answer_is_authentic(nonce(1), 200, body, signature)  # another request's
    assert not signer.answer_is_authentic(NONCE, 409, body, signature)
    assert not signer.answer_is_authentic(NONCE, 200, body.replace(b"true", b"false"), signature)
    assert not PeerSigner(b"x" * 32, "n2").answer_is_authentic(NONCE, 200, body, signature)


def test_the_secret_is_not_in_the_signers_repr() -> None:
    assert "k" * 32 not in repr(PeerSigner(SECRET, "n2"))


def test_a_node_does_not_take_requests_signed_in_its_own_name() -> None:
    n1 = RequestVerifier(SECRET, ["n2", "n3"])  # n1's: its peers
    verdict = n1.verify("POST", TARGET, signed(PeerSigner(SECRET, "n1")), BODY, NOW)
    assert verdict == Rejected("'n1' is not a peer of this node in the cluster's config")
