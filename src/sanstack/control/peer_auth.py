"""Signed control requests between the nodes of a cluster (sans-IO; ``control/forward.py``
signs, a ``control/server.py`` guard verifies; docs/cluster-design.md, "Control across
machines").

Every node holds the same secret (the cluster's ``secret_file``). A request carries four
headers: the sending node's name, the time it was signed (whole seconds since the epoch),
a random nonce (16 bytes, hex) and HMAC-SHA256 of the canonical request, which names all of
them with the method, the path and query exactly as sent and the SHA-256 of the body. One
line each, so no field can run into the next (h11 refuses a newline in a method or target;
the node must be a node of the cluster, the time and nonce match their patterns).

The receiver takes a request only when the MAC matches, its time is within ``MAX_SKEW``
of its own clock, and its nonce was not seen before. A nonce is remembered until its time
is stale (then the clock check refuses it anyway), so the cache holds at most the nonces of
a ``2 x MAX_SKEW`` window; it is bounded (``MAX_NONCES``), and a full cache refuses new
requests rather than forget a nonce that could still be replayed. Only requests with a
valid MAC reach the cache, so a stranger cannot fill it.

The answer to a verified request is signed too: HMAC over the status, the request's nonce
and the SHA-256 of the answer's body, so a forged answer (a snapshot list, a pause that
"worked") is not believed. A refusal before verification (401) cannot be signed; the sender
takes an unsigned answer only as a refusal.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

REQUEST_TAG: Final = "sanstack-peer-v1"
ANSWER_TAG: Final = "sanstack-peer-answer-v1"
MAX_SKEW: Final = 30.0  # seconds between the signer's clock and the verifier's
MAX_NONCES: Final = 4096  # signed requests within 2 x MAX_SKEW; peers forward far fewer
MIN_SECRET: Final = 32  # bytes

NODE_HEADER: Final = "x-sanstack-node"
TIME_HEADER: Final = "x-sanstack-time"
NONCE_HEADER: Final = "x-sanstack-nonce"
SIGNATURE_HEADER: Final = "x-sanstack-signature"

_NONCE = re.compile(r"^[0-9a-f]{32}$")
_TIME = re.compile(r"^[0-9]{1,12}$")
_SIGNATURE = re.compile(r"^[0-9a-f]{64}$")


def canonical_request(
    method: str, target: str, *, node: str, timestamp: str, nonce: str, body: bytes
) -> bytes:
    """What a request's MAC covers, one field a line."""
    digest = hashlib.sha256(body).hexdigest()
    return "\n".join((REQUEST_TAG, method, target, node, timestamp, nonce, digest)).encode()


def canonical_answer(status: int, nonce: str, body: bytes) -> bytes:
    """What an answer's MAC covers: its status and body, bound to the request's nonce."""
    digest = hashlib.sha256(body).hexdigest()
    return "\n".join((ANSWER_TAG, str(status), nonce, digest)).encode()


def mac(secret: bytes, message: bytes) -> str:
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class PeerSigner:
    """Signs this node's requests to its peers and checks their answers."""

    secret: bytes = field(repr=False)
    node: str

    def sign(
        self, method: str, target: str, body: bytes, now: float, nonce: str
    ) -> list[tuple[str, str]]:
        """The headers that authenticate one request (``nonce``: 16 random bytes, hex)."""
        timestamp = str(int(now))
        signature = mac(
            self.secret,
            canonical_request(
                method, target, node=self.node, timestamp=timestamp, nonce=nonce, body=body
            ),
        )
        return [
            (NODE_HEADER, self.node),
            (TIME_HEADER, timestamp),
            (NONCE_HEADER, nonce),
            (SIGNATURE_HEADER, signature),
        ]

    def answer_is_authentic(
        self, nonce: str, status: int, body: bytes, signature: str | None
    ) -> bool:
        if signature is None:
            return False
        expected = mac(self.secret, canonical_answer(status, nonce, body))
        return hmac.compare_digest(expected, signature)


@dataclass(frozen=True, slots=True)
class Verified:
    node: str
    nonce: str


@dataclass(frozen=True, slots=True)
class Rejected:
    """Why a request is refused: 401, or 503 when the nonce cache is full."""

    reason: str
    status: int = 401


class RequestVerifier:
    """Checks signed requests from the nodes in ``nodes`` (module docstring); ``now`` is the
    wall clock (seconds since the epoch), as the signers' is."""

    def __init__(
        self,
        secret: bytes,
        nodes: Iterable[str],
        *,
        max_skew: float = MAX_SKEW,
        capacity: int = MAX_NONCES,
    ) -> None:
        self._secret = secret
        self._nodes = frozenset(nodes)
        self.max_skew = max_skew
        self.capacity = capacity
        self._seen: dict[str, float] = {}  # nonce -> when it may be forgotten
        self._expiry: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self._seen)

    def verify(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes, now: float
    ) -> Verified | Rejected:
        node = headers.get(NODE_HEADER)
        timestamp = headers.get(TIME_HEADER)
        nonce = headers.get(NONCE_HEADER)
        signature = headers.get(SIGNATURE_HEADER)
        if node is None or timestamp is None or nonce is None or signature is None:
            return Rejected("not signed (a peer of this cluster signs with its secret_file)")
        if node not in self._nodes:
            return Rejected(f"{node!r} is not a peer of this node in the cluster's config")
        if not _TIME.match(timestamp) or not _NONCE.match(nonce) or not _SIGNATURE.match(signature):
            return Rejected("malformed signature headers")
        expected = mac(
            self._secret,
            canonical_request(
                method, target, node=node, timestamp=timestamp, nonce=nonce, body=body
            ),
        )
        if not hmac.compare_digest(expected, signature):
            return Rejected(
                f"signature from {node} does not match (is secret_file the same on every node?)"
            )
        skew = now - int(timestamp)
        if abs(skew) > self.max_skew:
            return Rejected(
                f"stale: signed by {node} {skew:+.0f} s from this node's clock "
                f"(at most {self.max_skew:g} s; are the clocks synchronised?)"
            )
        self._forget_stale(now)
        if nonce in self._seen:
            return Rejected(f"replayed: nonce {nonce} from {node} was already used")
        if len(self._seen) >= self.capacity:
            return Rejected(
                f"more than {self.capacity} signed requests within {2 * self.max_skew:g} s; "
                "try again",
                503,
            )
        forget_at = int(timestamp) + self.max_skew
        self._seen[nonce] = forget_at
        heapq.heappush(self._expiry, (forget_at, nonce))
        return Verified(node, nonce)

    def _forget_stale(self, now: float) -> None:
        while self._expiry and self._expiry[0][0] < now:
            _at, nonce = heapq.heappop(self._expiry)
            self._seen.pop(nonce, None)

    def sign_answer(self, nonce: str, status: int, body: bytes) -> str:
        return mac(self._secret, canonical_answer(status, nonce, body))
