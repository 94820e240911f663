"""The iSCSI security stage: AuthMethod and CHAP (RFC 7143 §12.1, §12.1.3, RFC 1994).

The exchange, one key set per login PDU::

    I->T  AuthMethod=CHAP,...          T->I  AuthMethod=CHAP
    I->T  CHAP_A=<A1,A2,...>           T->I  CHAP_A=<A> CHAP_I=<I> CHAP_C=<C>
    I->T  CHAP_N=<N> CHAP_R=<R> [CHAP_I=<I'> CHAP_C=<C'>]   (bracketed: mutual CHAP)
                                       T->I  [CHAP_N=<N'> CHAP_R=<R'>]

``R = H(I || secret || C)`` with H chosen by CHAP_A. RFC 7143 defines only MD5 (5);
SHA-1 (6), SHA-256 (7) and SHA3-256 (8) are the IANA PPP algorithm numbers that
libiscsi and LIO also accept, and cost nothing extra with :mod:`hashlib`.

:class:`ChapResponder`/:class:`ChapInitiator` do the CHAP arithmetic of one exchange;
:class:`TargetAuthenticator`/:class:`InitiatorAuthenticator` sequence the whole security
stage (AuthMethod choice, then CHAP) for the login state machine. Randomness comes from
an injected ``random_bytes`` callable so tests are repeatable.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum

from sanstack.config_checks import no_unknown_keys, table_at
from sanstack.errors import ConfigError, LocalProtocolError, RemoteProtocolError
from sanstack.iscsi.negotiation import NegotiationError
from sanstack.iscsi.text import (
    InvalidValueError,
    decode_binary,
    encode_binary,
    parse_numerical,
    split_list,
)

RandomBytes = Callable[[int], bytes]

RFC_MIN_SECRET_LENGTH = 12
"""§12.1.3 / §9.2.1: secrets SHOULD carry at least 96 bits; enforce with min_secret_length."""

MAX_CHALLENGE_LENGTH = 1024
"""§12.1.3: a CHAP challenge is at most 1024 bytes."""

DEFAULT_CHALLENGE_LENGTH = 16


class ChapAlgorithm(IntEnum):
    """CHAP_A values (IANA PPP authentication algorithms)."""

    MD5 = 5
    SHA1 = 6
    SHA256 = 7
    SHA3_256 = 8


_HASH_NAMES = {
    ChapAlgorithm.MD5: "md5",
    ChapAlgorithm.SHA1: "sha1",
    ChapAlgorithm.SHA256: "sha256",
    ChapAlgorithm.SHA3_256: "sha3_256",
}
_DIGEST_SIZES = {
    ChapAlgorithm.MD5: 16,
    ChapAlgorithm.SHA1: 20,
    ChapAlgorithm.SHA256: 32,
    ChapAlgorithm.SHA3_256: 32,
}

DEFAULT_TARGET_ALGORITHMS: tuple[ChapAlgorithm, ...] = tuple(ChapAlgorithm)
DEFAULT_INITIATOR_ALGORITHMS: tuple[ChapAlgorithm, ...] = (ChapAlgorithm.MD5,)


class ChapError(RemoteProtocolError):
    """Authentication failed or the peer broke the CHAP exchange (login status 0x0201)."""


class _ChapState(StrEnum):
    AWAIT_ALGORITHM = "AWAIT_ALGORITHM"
    AWAIT_RESPONSE = "AWAIT_RESPONSE"
    DONE = "DONE"


def chap_response(
    algorithm: ChapAlgorithm, identifier: int, secret: bytes, challenge: bytes
) -> bytes:
    """RFC 1994 §4.1: the hash of the identifier octet, the secret and the challenge."""
    # usedforsecurity=False keeps MD5 available on FIPS-mode Pythons; CHAP mandates it.
    digest = hashlib.new(_HASH_NAMES[algorithm], usedforsecurity=False)
    digest.update(bytes((identifier,)))
    digest.update(secret)
    digest.update(challenge)
    return digest.digest()


def _as_bytes(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else value


@dataclass(frozen=True)
class ChapCredentials:
    """CHAP secrets of one login: ``user``/``secret`` authenticate the initiator,
    ``mutual_user``/``mutual_secret`` (optional) authenticate the target.

    The same object shape serves both ends: a target checks the initiator against
    ``user``/``secret`` and answers a mutual challenge with the ``mutual_*`` pair; an
    initiator presents ``user``/``secret`` and expects the target to prove ``mutual_*``.
    """

    user: str
    secret: str | bytes = field(repr=False)
    mutual_user: str | None = None
    mutual_secret: str | bytes | None = field(default=None, repr=False)
    min_secret_length: int = field(default=1, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.user or "\x00" in self.user or len(self.user.encode()) > 255:
            raise ConfigError("chap.user", "must be 1..255 bytes without NUL")
        self._check_secret("chap.secret", self.secret)
        if (self.mutual_user is None) != (self.mutual_secret is None):
            raise ConfigError("chap.mutual_user", "mutual user and secret go together")
        if self.mutual_user is not None and self.mutual_secret is not None:
            if not self.mutual_user or len(self.mutual_user.encode()) > 255:
                raise ConfigError("chap.mutual_user", "must be 1..255 bytes")
            self._check_secret("chap.mutual_secret", self.mutual_secret)
            # §12.1.3: one secret in both directions lets a peer reflect our own answer.
            if _as_bytes(self.mutual_secret) == _as_bytes(self.secret):
                raise ConfigError("chap.mutual_secret", "must differ from chap.secret")

    def _check_secret(self, name: str, secret: str | bytes) -> None:
        length = len(_as_bytes(secret))
        if length < max(1, self.min_secret_length):
            raise ConfigError(name, f"must be at least {max(1, self.min_secret_length)} bytes")
        if length > 255:
            raise ConfigError(name, "must be at most 255 bytes")

    @property
    def secret_bytes(self) -> bytes:
        return _as_bytes(self.secret)

    @property
    def mutual_secret_bytes(self) -> bytes | None:
        return None if self.mutual_secret is None else _as_bytes(self.mutual_secret)

    @property
    def has_mutual(self) -> bool:
        return self.mutual_user is not None


def chap_from_table(value: object, where: str) -> ChapCredentials:
    """A ``chap`` table of a config file (the target's, the host's): ``user`` and ``secret``,
    and ``mutual_user``/``mutual_secret`` together or not at all. Errors name ``where``."""
    table = table_at(value, where)
    no_unknown_keys(table, {"user", "secret", "mutual_user", "mutual_secret"}, where)
    for key in ("user", "secret"):
        if not isinstance(table.get(key), str) or not table[key]:
            raise ConfigError(f"{where}.{key}", "is required and must be a non-empty string")
    mutual = (table.get("mutual_user"), table.get("mutual_secret"))
    if (mutual[0] is None) != (mutual[1] is None):
        raise ConfigError(f"{where}.mutual_secret", "mutual_user and mutual_secret go together")
    for key, text in zip(("mutual_user", "mutual_secret"), mutual, strict=True):
        if text is not None and (not isinstance(text, str) or not text):
            raise ConfigError(f"{where}.{key}", "must be a non-empty string")
    if mutual[1] is not None and mutual[1] == table["secret"]:
        raise ConfigError(f"{where}.mutual_secret", "must differ from secret (RFC 7143 §12.1.3)")
    try:
        return ChapCredentials(table["user"], table["secret"], mutual[0], mutual[1])
    except ConfigError as exc:  # its fields are named chap.*: name them where they are
        raise ConfigError(f"{where}.{exc.field.rpartition('.')[2]}", exc.problem) from None


def _pick_algorithm(offer: str, supported: Sequence[ChapAlgorithm]) -> ChapAlgorithm:
    """The first algorithm of the initiator's list that we support (§12.1.3)."""
    for item in offer.split(","):
        try:
            number = parse_numerical(item, 0, 255)
        except InvalidValueError:
            # Unknown spellings are other vendors' algorithms, not an error by themselves.
            continue
        if number in _HASH_NAMES and ChapAlgorithm(number) in supported:
            return ChapAlgorithm(number)
    raise ChapError(f"no supported CHAP algorithm in CHAP_A={offer[:60]!r}")


def _decode(key: str, keys: Mapping[str, str]) -> bytes:
    try:
        return decode_binary(keys[key])
    except InvalidValueError as exc:
        raise ChapError(f"{key}: {exc}") from exc


def _identifier(keys: Mapping[str, str]) -> int:
    try:
        return parse_numerical(keys["CHAP_I"], 0, 255)
    except InvalidValueError as exc:
        raise ChapError(f"CHAP_I: {exc}") from exc


def _challenge(random_bytes: RandomBytes, length: int) -> tuple[int, bytes]:
    ident = random_bytes(1)
    challenge = random_bytes(length)
    if len(ident) != 1 or len(challenge) != length:
        raise LocalProtocolError("random_bytes returned the wrong number of bytes")
    return ident[0], challenge


class ChapResponder:
    """The target's side: issue the challenge, check the answer, answer a mutual challenge."""

    def __init__(
        self,
        credentials: ChapCredentials,
        *,
        random_bytes: RandomBytes = os.urandom,
        algorithms: Sequence[ChapAlgorithm] = DEFAULT_TARGET_ALGORITHMS,
        challenge_length: int = DEFAULT_CHALLENGE_LENGTH,
    ) -> None:
        if not 16 <= challenge_length <= MAX_CHALLENGE_LENGTH:
            raise ConfigError("chap.challenge_length", "must be 16..1024")
        self._credentials = credentials
        self._random_bytes = random_bytes
        self._algorithms = tuple(algorithms)
        self._challenge_length = challenge_length
        self._state = _ChapState.AWAIT_ALGORITHM
        self._algorithm = ChapAlgorithm.MD5
        self._identifier = 0
        self._challenge = b""

    @property
    def done(self) -> bool:
        return self._state is _ChapState.DONE

    @property
    def algorithm(self) -> ChapAlgorithm:
        return self._algorithm

    def challenge(self, chap_a: str) -> list[tuple[str, str]]:
        """Answer the initiator's CHAP_A list with CHAP_A, CHAP_I and CHAP_C."""
        if self._state is not _ChapState.AWAIT_ALGORITHM:
            raise ChapError("CHAP_A sent twice")
        self._algorithm = _pick_algorithm(chap_a, self._algorithms)
        # A challenge shorter than the hash would waste the hash's strength.
        length = max(self._challenge_length, _DIGEST_SIZES[self._algorithm])
        self._identifier, self._challenge = _challenge(self._random_bytes, length)
        self._state = _ChapState.AWAIT_RESPONSE
        return [
            ("CHAP_A", str(int(self._algorithm))),
            ("CHAP_I", str(self._identifier)),
            ("CHAP_C", encode_binary(self._challenge)),
        ]

    def verify(self, keys: Mapping[str, str]) -> list[tuple[str, str]]:
        """Check CHAP_N/CHAP_R; answer a mutual CHAP_I/CHAP_C with our CHAP_N/CHAP_R."""
        if self._state is not _ChapState.AWAIT_RESPONSE:
            raise ChapError("CHAP response before the challenge")
        if "CHAP_N" not in keys or "CHAP_R" not in keys:
            raise ChapError("CHAP_N and CHAP_R are required")
        creds = self._credentials
        received = _decode("CHAP_R", keys)
        expected = chap_response(
            self._algorithm, self._identifier, creds.secret_bytes, self._challenge
        )
        name_ok = hmac.compare_digest(keys["CHAP_N"].encode(), creds.user.encode())
        if not (hmac.compare_digest(received, expected) and name_ok):
            raise ChapError("CHAP response does not match")
        answer: list[tuple[str, str]] = []
        if "CHAP_I" in keys or "CHAP_C" in keys:
            answer = self._answer_mutual(keys)
        self._state = _ChapState.DONE
        return answer

    def _answer_mutual(self, keys: Mapping[str, str]) -> list[tuple[str, str]]:
        creds = self._credentials
        if "CHAP_I" not in keys or "CHAP_C" not in keys:
            raise ChapError("mutual CHAP needs both CHAP_I and CHAP_C")
        if creds.mutual_user is None or creds.mutual_secret_bytes is None:
            raise ChapError("initiator asked for mutual CHAP but none is configured")
        identifier = _identifier(keys)
        challenge = _decode("CHAP_C", keys)
        if not 1 <= len(challenge) <= MAX_CHALLENGE_LENGTH:
            raise ChapError("CHAP_C length outside 1..1024 bytes")
        # §12.1.3: a reflected challenge would make us compute the initiator's answer.
        if challenge == self._challenge:
            raise ChapError("initiator reflected the target's challenge")
        response = chap_response(self._algorithm, identifier, creds.mutual_secret_bytes, challenge)
        return [("CHAP_N", creds.mutual_user), ("CHAP_R", encode_binary(response))]


class ChapInitiator:
    """The initiator's side: offer algorithms, answer the challenge, verify the target."""

    def __init__(
        self,
        credentials: ChapCredentials,
        *,
        random_bytes: RandomBytes = os.urandom,
        algorithms: Sequence[ChapAlgorithm] = DEFAULT_INITIATOR_ALGORITHMS,
        challenge_length: int = DEFAULT_CHALLENGE_LENGTH,
    ) -> None:
        if not algorithms:
            raise ConfigError("chap.algorithms", "must not be empty")
        if not 16 <= challenge_length <= MAX_CHALLENGE_LENGTH:
            raise ConfigError("chap.challenge_length", "must be 16..1024")
        self._credentials = credentials
        self._random_bytes = random_bytes
        self._algorithms = tuple(algorithms)
        self._challenge_length = challenge_length
        self._algorithm = self._algorithms[0]
        self._identifier = 0
        self._challenge = b""
        self._target_challenge = b""
        self._verified = False

    @property
    def mutual(self) -> bool:
        return self._credentials.has_mutual

    @property
    def verified(self) -> bool:
        """Whether the target proved itself (always False without mutual CHAP)."""
        return self._verified

    def offer(self) -> list[tuple[str, str]]:
        return [("CHAP_A", ",".join(str(int(a)) for a in self._algorithms))]

    def respond(self, keys: Mapping[str, str]) -> list[tuple[str, str]]:
        """Answer the target's CHAP_A/CHAP_I/CHAP_C; add our challenge for mutual CHAP."""
        if not all(k in keys for k in ("CHAP_A", "CHAP_I", "CHAP_C")):
            raise ChapError("target must send CHAP_A, CHAP_I and CHAP_C together")
        try:
            chosen = parse_numerical(keys["CHAP_A"], 0, 255)
        except InvalidValueError as exc:
            raise ChapError(f"CHAP_A: {exc}") from exc
        if chosen not in _HASH_NAMES or ChapAlgorithm(chosen) not in self._algorithms:
            raise ChapError(f"target chose CHAP_A={chosen}, which we did not offer")
        self._algorithm = ChapAlgorithm(chosen)
        identifier = _identifier(keys)
        self._target_challenge = _decode("CHAP_C", keys)
        if not 1 <= len(self._target_challenge) <= MAX_CHALLENGE_LENGTH:
            raise ChapError("CHAP_C length outside 1..1024 bytes")
        creds = self._credentials
        response = chap_response(
            self._algorithm, identifier, creds.secret_bytes, self._target_challenge
        )
        answer = [("CHAP_N", creds.user), ("CHAP_R", encode_binary(response))]
        if creds.has_mutual:
            self._identifier, self._challenge = _challenge(
                self._random_bytes, self._challenge_length
            )
            if self._challenge == self._target_challenge:
                # §12.1.3: never reuse the target's challenge for the other direction.
                raise LocalProtocolError("random_bytes repeated the target's challenge")
            answer += [
                ("CHAP_I", str(self._identifier)),
                ("CHAP_C", encode_binary(self._challenge)),
            ]
        return answer

    def verify(self, keys: Mapping[str, str]) -> None:
        """Check the target's CHAP_N/CHAP_R answer to our mutual challenge."""
        creds = self._credentials
        if creds.mutual_user is None or creds.mutual_secret_bytes is None or not self._challenge:
            raise LocalProtocolError("no mutual CHAP challenge outstanding")
        if "CHAP_N" not in keys or "CHAP_R" not in keys:
            raise ChapError("target did not answer the mutual CHAP challenge")
        received = _decode("CHAP_R", keys)
        expected = chap_response(
            self._algorithm, self._identifier, creds.mutual_secret_bytes, self._challenge
        )
        own = chap_response(self._algorithm, self._identifier, creds.secret_bytes, self._challenge)
        if hmac.compare_digest(received, own):
            raise ChapError("target answered with the initiator's own secret")
        name_ok = hmac.compare_digest(keys["CHAP_N"].encode(), creds.mutual_user.encode())
        if not (hmac.compare_digest(received, expected) and name_ok):
            raise ChapError("target's CHAP response does not match")
        self._verified = True


class TargetAuthenticator:
    """The target's half of the security stage (§12.1): choose AuthMethod, run CHAP.

    With credentials configured CHAP is required; without, only AuthMethod=None is
    accepted. Authentication failures raise :class:`ChapError` (login status 0x0201);
    a key sent twice or a malformed AuthMethod list raises :class:`NegotiationError`.
    """

    def __init__(
        self,
        credentials: ChapCredentials | None,
        *,
        random_bytes: RandomBytes = os.urandom,
        algorithms: Sequence[ChapAlgorithm] = DEFAULT_TARGET_ALGORITHMS,
    ) -> None:
        self._credentials = credentials
        self._random_bytes = random_bytes
        self._algorithms = tuple(algorithms)
        self._chap: ChapResponder | None = None
        self._seen: set[str] = set()
        self.method: str | None = None  # "None" or "CHAP" once chosen
        self.authenticated = False

    def process(self, pairs: Sequence[tuple[str, str]], *, transit: bool) -> list[tuple[str, str]]:
        """Answer one request's security keys; ``transit`` is the initiator's T bit."""
        keys: dict[str, str] = {}
        for key, value in pairs:
            if key in self._seen:
                raise NegotiationError(f"{key} sent twice (§6.2.1)")
            self._seen.add(key)
            keys[key] = value
        out: list[tuple[str, str]] = []
        if "AuthMethod" in keys:
            try:
                offered = split_list(keys.pop("AuthMethod"))
            except InvalidValueError as exc:
                raise NegotiationError(f"AuthMethod: {exc}") from exc
            if self._credentials is not None:
                if "CHAP" not in offered:
                    raise ChapError("this target requires CHAP")
                self.method = "CHAP"
                self._chap = ChapResponder(
                    self._credentials, random_bytes=self._random_bytes, algorithms=self._algorithms
                )
            elif "None" in offered:
                self.method = "None"
                self.authenticated = True
            else:
                raise ChapError("this target offers only AuthMethod=None")
            out.append(("AuthMethod", self.method))
        if keys:
            if self._chap is None:
                raise ChapError("CHAP keys without AuthMethod=CHAP")
            if "CHAP_A" in keys:
                out += self._chap.challenge(keys.pop("CHAP_A"))
            if keys:
                out += self._chap.verify(keys)
                self.authenticated = True
        if transit and self.method is None:
            # Leaving the stage without AuthMethod means its default, None (§12.1).
            self.skip()
        return out

    def skip(self) -> None:
        """The initiator moves on (or started in the operational stage): allowed only
        when no authentication is required or it already succeeded."""
        if self.authenticated:
            return
        if self._credentials is not None or self.method is not None:
            raise ChapError("authentication skipped")
        self.method = "None"
        self.authenticated = True


class _Step(StrEnum):
    """Where the initiator is in the security exchange."""

    METHOD = "METHOD"  # AuthMethod offered
    ALGORITHM = "ALGORITHM"  # CHAP agreed, CHAP_A to send
    CHALLENGE = "CHALLENGE"  # CHAP_A sent, awaiting CHAP_A/CHAP_I/CHAP_C
    RESPONSE = "RESPONSE"  # challenge received, CHAP_N/CHAP_R to send
    VERIFY = "VERIFY"  # CHAP_N/CHAP_R sent
    DONE = "DONE"


class InitiatorAuthenticator:
    """The initiator's half of the security stage: offer CHAP (or None), answer the
    challenge, check the target's answer to ours. Never accepts a downgrade to None
    once credentials are configured. Target misbehaviour raises :class:`ChapError`."""

    def __init__(
        self,
        credentials: ChapCredentials | None,
        *,
        random_bytes: RandomBytes = os.urandom,
        algorithms: Sequence[ChapAlgorithm] = DEFAULT_INITIATOR_ALGORITHMS,
    ) -> None:
        self._chap = (
            ChapInitiator(credentials, random_bytes=random_bytes, algorithms=algorithms)
            if credentials is not None
            else None
        )
        self._step = _Step.METHOD
        self._reply: list[tuple[str, str]] = []

    @property
    def method(self) -> str:
        return "None" if self._chap is None else "CHAP"

    def offer(self) -> tuple[list[tuple[str, str]], bool]:
        """The first request's security keys, and whether to ask for transit at once."""
        return [("AuthMethod", self.method)], self._chap is None

    def process(self, keys: Mapping[str, str], *, transit: bool) -> None:
        """Take one response's security keys; ``transit`` is the target's T bit."""
        rest = dict(keys)
        if "AuthMethod" in rest:
            if self._step is not _Step.METHOD or rest.pop("AuthMethod") != self.method:
                raise ChapError("unexpected AuthMethod answer")
            self._step = _Step.DONE if self._chap is None else _Step.ALGORITHM
        elif self._step is _Step.METHOD and transit and self._chap is None:
            self._step = _Step.DONE  # the target kept the default, None
        if rest:
            if self._chap is None or self._step not in (_Step.CHALLENGE, _Step.VERIFY):
                raise ChapError(f"unexpected CHAP keys {sorted(rest)}")
            if self._step is _Step.CHALLENGE:
                self._reply = self._chap.respond(rest)
                self._step = _Step.RESPONSE
            else:
                self._chap.verify(rest)
                self._step = _Step.DONE
        if self._step is _Step.VERIFY:
            if self._chap is not None and self._chap.mutual:
                raise ChapError("target did not answer our CHAP challenge")
            self._step = _Step.DONE
        if transit and self._step is not _Step.DONE:
            raise ChapError("target left the security stage before authentication")

    def next_request(self) -> tuple[list[tuple[str, str]], bool]:
        """After a response that stayed in the stage: the keys to send and our T bit."""
        if self._step is _Step.ALGORITHM and self._chap is not None:
            self._step = _Step.CHALLENGE
            return self._chap.offer(), False
        if self._step is _Step.RESPONSE:
            self._step = _Step.VERIFY
            return self._reply, True
        if self._step is _Step.DONE:
            return [], True
        raise ChapError(f"target stalled the security exchange at {self._step}")
