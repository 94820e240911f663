"""iSCSI key negotiation (RFC 7143 §6.2 rules, §13 key definitions, §12.1 AuthMethod/CHAP).

:data:`KEYS` describes every key of RFC 7143 §13 (plus the security keys of §12 and
iSCSIProtocolLevel of RFC 7144): its result function, where it may be used, who may
send it, its default and range. :class:`Negotiator` applies those rules for one side
of one negotiation; the same class answers a peer's offers (as responder) and checks
the peer's answers to our own offers (as originator), so a target and an initiator
share it.

Responder rules (§6.2): an unknown key is answered ``NotUnderstood``; a bad value
``Reject``; a key that does not apply (e.g. a burst length in a discovery session)
``Irrelevant``. A key offered twice in one negotiation is a protocol error (§6.2.1),
which the login layer turns into a login reject.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from sanstack.errors import ConfigError, LocalProtocolError, RemoteProtocolError
from sanstack.iscsi.codes import LoginStage
from sanstack.iscsi.text import (
    RESERVED_VALUES,
    InvalidValueError,
    encode_boolean,
    parse_boolean,
    parse_numerical,
    split_list,
)


class NegotiationError(RemoteProtocolError):
    """The peer broke a negotiation rule (duplicate key, wrong stage, bad answer)."""


class Role(StrEnum):
    INITIATOR = "initiator"
    TARGET = "target"

    @property
    def peer(self) -> Role:
        return Role.TARGET if self is Role.INITIATOR else Role.INITIATOR


class SessionType(StrEnum):
    NORMAL = "Normal"
    DISCOVERY = "Discovery"


class Digest(StrEnum):
    NONE = "None"
    CRC32C = "CRC32C"


class KeyKind(StrEnum):
    """The result function of a key (§6.2.2, §6.2.3, §13)."""

    BOOLEAN_AND = "boolean-and"
    BOOLEAN_OR = "boolean-or"
    NUMERICAL_MIN = "numerical-min"
    NUMERICAL_MAX = "numerical-max"
    LIST = "list"
    DECLARATIVE = "declarative"
    NUMERICAL_RANGE = "numerical-range"  # only the obsolete *MarkInt keys of RFC 3720


class KeyUse(StrEnum):
    """§13 'Use': LO = leading connection only (implies login only), IO = login only."""

    LEADING_ONLY = "LO"
    INITIALIZE_ONLY = "IO"
    FULL_FEATURE_ONLY = "FFP"
    ALL = "ALL"


class KeyScope(StrEnum):
    SESSION_WIDE = "SW"
    CONNECTION_ONLY = "CO"


class KeyPhase(StrEnum):
    """Which login stage may carry the key; identity keys may appear in either."""

    SECURITY = "security"
    OPERATIONAL = "operational"
    ANY = "any"


@dataclass(frozen=True, slots=True)
class KeyDefinition:
    name: str
    kind: KeyKind
    use: KeyUse
    scope: KeyScope
    phase: KeyPhase
    senders: frozenset[Role]
    default: str | None
    section: str
    minimum: int = 0
    maximum: int = 2**64 - 1
    values: frozenset[str] = frozenset()
    irrelevant_in_discovery: bool = False
    obsolete_answer: str | None = None
    numeric: bool = False  # a declarative key whose value is a numerical-value

    @property
    def is_numeric(self) -> bool:
        return self.numeric or self.kind in (KeyKind.NUMERICAL_MIN, KeyKind.NUMERICAL_MAX)

    @property
    def leading_only(self) -> bool:
        return self.use is KeyUse.LEADING_ONLY

    @property
    def allowed_in_login(self) -> bool:
        return self.use is not KeyUse.FULL_FEATURE_ONLY

    @property
    def allowed_in_full_feature(self) -> bool:
        return self.use in (KeyUse.FULL_FEATURE_ONLY, KeyUse.ALL)


_BOTH = frozenset(Role)
_INI = frozenset({Role.INITIATOR})
_TGT = frozenset({Role.TARGET})
_MAX_24 = 2**24 - 1
_K = KeyKind
_LO = KeyUse.LEADING_ONLY
_IO = KeyUse.INITIALIZE_ONLY
_SW = KeyScope.SESSION_WIDE
_CO = KeyScope.CONNECTION_ONLY
_SEC = KeyPhase.SECURITY
_OP = KeyPhase.OPERATIONAL
_ANY = KeyPhase.ANY
_DIGESTS = frozenset(Digest)
_D = KeyDefinition

_TABLE = (
    _D("HeaderDigest", _K.LIST, _IO, _CO, _OP, _BOTH, "None", "13.1", values=_DIGESTS),
    _D("DataDigest", _K.LIST, _IO, _CO, _OP, _BOTH, "None", "13.1", values=_DIGESTS),
    _D("MaxConnections", _K.NUMERICAL_MIN, _LO, _SW, _OP, _BOTH, "1", "13.2",
       minimum=1, maximum=65535, irrelevant_in_discovery=True),
    _D("SendTargets", _K.DECLARATIVE, KeyUse.FULL_FEATURE_ONLY, _SW, _OP, _INI, None, "13.3"),
    _D("TargetName", _K.DECLARATIVE, _IO, _SW, _ANY, _BOTH, None, "13.4"),
    _D("InitiatorName", _K.DECLARATIVE, _IO, _SW, _ANY, _INI, None, "13.5"),
    _D("TargetAlias", _K.DECLARATIVE, KeyUse.ALL, _SW, _ANY, _TGT, None, "13.6"),
    _D("InitiatorAlias", _K.DECLARATIVE, KeyUse.ALL, _SW, _ANY, _INI, None, "13.7"),
    _D("TargetAddress", _K.DECLARATIVE, KeyUse.ALL, _SW, _ANY, _TGT, None, "13.8"),
    _D("TargetPortalGroupTag", _K.DECLARATIVE, _IO, _SW, _ANY, _TGT, None, "13.9",
       maximum=65535, numeric=True),
    _D("InitialR2T", _K.BOOLEAN_OR, _LO, _SW, _OP, _BOTH, "Yes", "13.10",
       irrelevant_in_discovery=True),
    _D("ImmediateData", _K.BOOLEAN_AND, _LO, _SW, _OP, _BOTH, "Yes", "13.11",
       irrelevant_in_discovery=True),
    _D("MaxRecvDataSegmentLength", _K.DECLARATIVE, KeyUse.ALL, _CO, _OP, _BOTH, "8192",
       "13.12", minimum=512, maximum=_MAX_24, numeric=True),
    _D("MaxBurstLength", _K.NUMERICAL_MIN, _LO, _SW, _OP, _BOTH, "262144", "13.13",
       minimum=512, maximum=_MAX_24, irrelevant_in_discovery=True),
    _D("FirstBurstLength", _K.NUMERICAL_MIN, _LO, _SW, _OP, _BOTH, "65536", "13.14",
       minimum=512, maximum=_MAX_24, irrelevant_in_discovery=True),
    _D("DefaultTime2Wait", _K.NUMERICAL_MAX, _LO, _SW, _OP, _BOTH, "2", "13.15",
       maximum=3600),
    _D("DefaultTime2Retain", _K.NUMERICAL_MIN, _LO, _SW, _OP, _BOTH, "20", "13.16",
       maximum=3600),
    _D("MaxOutstandingR2T", _K.NUMERICAL_MIN, _LO, _SW, _OP, _BOTH, "1", "13.17",
       minimum=1, maximum=65535, irrelevant_in_discovery=True),
    _D("DataPDUInOrder", _K.BOOLEAN_OR, _LO, _SW, _OP, _BOTH, "Yes", "13.18",
       irrelevant_in_discovery=True),
    _D("DataSequenceInOrder", _K.BOOLEAN_OR, _LO, _SW, _OP, _BOTH, "Yes", "13.19",
       irrelevant_in_discovery=True),
    _D("ErrorRecoveryLevel", _K.NUMERICAL_MIN, _LO, _SW, _OP, _BOTH, "0", "13.20",
       maximum=2),
    _D("SessionType", _K.DECLARATIVE, _LO, _SW, _ANY, _INI, "Normal", "13.21",
       values=frozenset(SessionType)),
    _D("TaskReporting", _K.LIST, _LO, _SW, _OP, _BOTH, "RFC3720", "13.23",
       values=frozenset({"RFC3720", "ResponseFence", "FastAbort"}),
       irrelevant_in_discovery=True),
    _D("iSCSIProtocolLevel", _K.NUMERICAL_MIN, _LO, _SW, _OP, _BOTH, "1",
       "13.24, RFC 7144", maximum=31),
    # §13.25 obsoleted keys: Reject (the markers may be answered No), never NotUnderstood.
    # We answer the markers No because RFC 3720 initiators treat Reject as a failure.
    _D("IFMarker", _K.BOOLEAN_AND, _IO, _CO, _OP, _BOTH, "No", "13.25", obsolete_answer="No"),
    _D("OFMarker", _K.BOOLEAN_AND, _IO, _CO, _OP, _BOTH, "No", "13.25", obsolete_answer="No"),
    _D("IFMarkInt", _K.NUMERICAL_RANGE, _IO, _CO, _OP, _BOTH, None, "13.25",
       obsolete_answer="Reject"),
    _D("OFMarkInt", _K.NUMERICAL_RANGE, _IO, _CO, _OP, _BOTH, None, "13.25",
       obsolete_answer="Reject"),
    _D("X#NodeArchitecture", _K.DECLARATIVE, _LO, _SW, _OP, _BOTH, None, "13.26"),
    _D("AuthMethod", _K.LIST, _IO, _CO, _SEC, _BOTH, "None", "12.1",
       values=frozenset({"KRB5", "SPKM1", "SPKM2", "SRP", "CHAP", "None"})),
    _D("CHAP_A", _K.LIST, _IO, _CO, _SEC, _BOTH, None, "12.1.3"),
    _D("CHAP_I", _K.DECLARATIVE, _IO, _CO, _SEC, _BOTH, None, "12.1.3", maximum=255,
       numeric=True),
    _D("CHAP_C", _K.DECLARATIVE, _IO, _CO, _SEC, _BOTH, None, "12.1.3"),
    _D("CHAP_N", _K.DECLARATIVE, _IO, _CO, _SEC, _BOTH, None, "12.1.3"),
    _D("CHAP_R", _K.DECLARATIVE, _IO, _CO, _SEC, _BOTH, None, "12.1.3"),
)  # fmt: skip

KEYS: Mapping[str, KeyDefinition] = MappingProxyType({d.name: d for d in _TABLE})
"""Every key of RFC 7143 §13 and §12, by name."""

OPERATIONAL_OFFER_KEYS: tuple[str, ...] = (
    "HeaderDigest",
    "DataDigest",
    "MaxConnections",
    "InitialR2T",
    "ImmediateData",
    "MaxRecvDataSegmentLength",
    "MaxBurstLength",
    "FirstBurstLength",
    "DefaultTime2Wait",
    "DefaultTime2Retain",
    "MaxOutstandingR2T",
    "DataPDUInOrder",
    "DataSequenceInOrder",
    "ErrorRecoveryLevel",
)
"""What an initiator offers in its first operational PDU (as libiscsi and open-iscsi do)."""

# FirstBurstLength is capped by MaxBurstLength, so the latter is settled first.
_PRIORITY = {"MaxBurstLength": -1}

_PREFERENCE_FIELDS: Mapping[str, str] = MappingProxyType({
    "HeaderDigest": "header_digest",
    "DataDigest": "data_digest",
    "MaxConnections": "max_connections",
    "InitialR2T": "initial_r2t",
    "ImmediateData": "immediate_data",
    "MaxRecvDataSegmentLength": "max_recv_data_segment_length",
    "MaxBurstLength": "max_burst_length",
    "FirstBurstLength": "first_burst_length",
    "DefaultTime2Wait": "default_time2wait",
    "DefaultTime2Retain": "default_time2retain",
    "MaxOutstandingR2T": "max_outstanding_r2t",
    "DataPDUInOrder": "data_pdu_in_order",
    "DataSequenceInOrder": "data_sequence_in_order",
    "ErrorRecoveryLevel": "error_recovery_level",
    "TaskReporting": "task_reporting",
    "iSCSIProtocolLevel": "iscsi_protocol_level",
})  # fmt: skip


@dataclass(frozen=True)
class NegotiationPreferences:
    """What one side would pick if it chose alone; the defaults suit our target.

    Digest tuples list what we allow; as initiator their order is our offer's order of
    preference, as target we take the initiator's first choice that we allow.
    """

    header_digest: tuple[Digest, ...] = (Digest.NONE, Digest.CRC32C)
    data_digest: tuple[Digest, ...] = (Digest.NONE, Digest.CRC32C)
    max_connections: int = 1
    initial_r2t: bool = False
    immediate_data: bool = True
    max_recv_data_segment_length: int = 262144
    max_burst_length: int = 1048576
    first_burst_length: int = 65536
    default_time2wait: int = 2
    default_time2retain: int = 20
    max_outstanding_r2t: int = 1
    data_pdu_in_order: bool = True
    data_sequence_in_order: bool = True
    error_recovery_level: int = 0
    iscsi_protocol_level: int = 1
    task_reporting: tuple[str, ...] = ("RFC3720",)

    def __post_init__(self) -> None:
        for key, attr in _PREFERENCE_FIELDS.items():
            defn = KEYS[key]
            value = getattr(self, attr)
            if isinstance(value, tuple):
                if not value or any(v not in defn.values for v in value):
                    raise ConfigError(attr, f"must be a non-empty subset of {sorted(defn.values)}")
            elif not isinstance(value, bool) and not defn.minimum <= value <= defn.maximum:
                raise ConfigError(attr, f"must be in {defn.minimum}..{defn.maximum}")
        if self.first_burst_length > self.max_burst_length:
            raise ConfigError("first_burst_length", "must not exceed max_burst_length (§13.14)")

    def value_for(self, key: str) -> str:
        """This side's preferred value of ``key`` in wire syntax."""
        value: object = getattr(self, _PREFERENCE_FIELDS[key])
        if isinstance(value, bool):
            return encode_boolean(value)
        if isinstance(value, tuple):
            return ",".join(value)
        return str(value)


@dataclass(frozen=True)
class OperationalParameters:
    """The negotiated session/connection parameters; every default is the RFC default.

    ``max_recv_data_segment_length`` is what we declared we can receive;
    ``max_xmit_data_segment_length`` is what the peer declared it can receive, i.e. the
    largest data segment we may send (§13.12 is declared per direction).
    """

    header_digest: bool = False
    data_digest: bool = False
    max_connections: int = 1
    initial_r2t: bool = True
    immediate_data: bool = True
    max_recv_data_segment_length: int = 8192
    max_xmit_data_segment_length: int = 8192
    max_burst_length: int = 262144
    first_burst_length: int = 65536
    default_time2wait: int = 2
    default_time2retain: int = 20
    max_outstanding_r2t: int = 1
    data_pdu_in_order: bool = True
    data_sequence_in_order: bool = True
    error_recovery_level: int = 0
    session_type: SessionType = SessionType.NORMAL
    initiator_name: str = ""
    initiator_alias: str | None = None
    target_name: str | None = None
    target_alias: str | None = None
    target_portal_group_tag: int | None = None


class Negotiator:
    """One side's negotiation state for one login (or one FFP text exchange)."""

    def __init__(
        self,
        role: Role,
        preferences: NegotiationPreferences,
        *,
        session_type: SessionType = SessionType.NORMAL,
        leading: bool = True,
    ) -> None:
        self.role = role
        self.preferences = preferences
        self.session_type = session_type
        self.leading = leading
        self._values: dict[str, str] = {}  # settled results, wire syntax
        self._offered: dict[str, str] = {}  # our offers still awaiting an answer
        self._declared: dict[str, str] = {}  # our declarations
        self._received: set[str] = set()
        self.peer_declarations: dict[str, str] = {}

    # -- originator side ----------------------------------------------------------

    def offer(self, keys: Iterable[str]) -> list[tuple[str, str]]:
        """Our offers (or declarations) for ``keys``, remembered until answered."""
        out: list[tuple[str, str]] = []
        for key in keys:
            defn = KEYS.get(key)
            if defn is None or key not in _PREFERENCE_FIELDS:
                raise LocalProtocolError(f"cannot offer {key}")
            if key in self._offered or key in self._values or key in self._declared:
                raise LocalProtocolError(f"{key} already negotiated (§6.2.1)")
            value = self.preferences.value_for(key)
            if defn.kind is KeyKind.DECLARATIVE:
                self._declared[key] = value
            else:
                self._offered[key] = value
            out.append((key, value))
        return out

    def initial_offer_keys(self) -> list[str]:
        """The operational keys worth offering for this session type."""
        discovery = self.session_type is SessionType.DISCOVERY
        return [
            k for k in OPERATIONAL_OFFER_KEYS if not (discovery and KEYS[k].irrelevant_in_discovery)
        ]

    def declared(self, key: str) -> bool:
        return key in self._declared

    @property
    def pending(self) -> frozenset[str]:
        """Our offers the peer has not answered yet."""
        return frozenset(self._offered)

    def finish(self) -> None:
        """Settle unanswered offers at the end of the negotiation (§6.2.2).

        A responder may omit the answer when our offer alone decides the result (AND
        with No, OR with Yes); any other unanswered key keeps its default.
        """
        for key, offered in self._offered.items():
            kind = KEYS[key].kind
            if (kind is KeyKind.BOOLEAN_AND and offered == "No") or (
                kind is KeyKind.BOOLEAN_OR and offered == "Yes"
            ):
                self._values[key] = offered
        self._offered.clear()

    def check_digests(self) -> None:
        """Refuse to finish with a digest setting we do not allow.

        A Reject leaves a digest at its default, None, which a side that requires
        CRC32C cannot accept; the login must fail instead (§6.2: "fail the login").
        """
        for key in ("HeaderDigest", "DataDigest"):
            value = self._values.get(key, Digest.NONE.value)
            if value not in self.preferences.value_for(key).split(","):
                raise NegotiationError(f"{key} would be {value}, which we do not allow")

    # -- responder side -----------------------------------------------------------

    def process(self, pairs: Sequence[tuple[str, str]], stage: LoginStage) -> list[tuple[str, str]]:
        """Handle the peer's keys: answers to our offers, its offers and declarations.

        Returns our answers, in the order the peer sent the keys.
        """
        answers: dict[int, tuple[str, str]] = {}
        order = sorted(range(len(pairs)), key=lambda i: _PRIORITY.get(pairs[i][0], 0))
        for index in order:
            key, value = pairs[index]
            if key in self._received:
                raise NegotiationError(f"{key} sent twice in one negotiation (§6.2.1)")
            self._received.add(key)
            answer = self._handle(key, value, stage)
            if answer is not None:
                answers[index] = (key, answer)
        return [answers[i] for i in sorted(answers)]

    def _handle(self, key: str, value: str, stage: LoginStage) -> str | None:
        defn = KEYS.get(key)
        if defn is not None and key in self._offered:
            self._accept(defn, self._offered.pop(key), value)
            return None
        if value in RESERVED_VALUES:
            if key in self._declared:
                # The peer refused our declaration: the default stands for it.
                del self._declared[key]
                return None
            raise NegotiationError(f"{key}={value} answers nothing we offered")
        # §13.22: we implement no extension keys, public (X#) or private (X-).
        if defn is None or key.startswith(("X-", "X#")):
            return "NotUnderstood"
        if self.role.peer not in defn.senders:
            raise NegotiationError(f"{key} may not be sent by the {self.role.peer}")
        if defn.phase is KeyPhase.SECURITY:
            raise NegotiationError(f"security key {key} outside the security exchange")
        if stage is LoginStage.SECURITY_NEGOTIATION and defn.phase is KeyPhase.OPERATIONAL:
            raise NegotiationError(f"operational key {key} in the security stage")
        in_ffp = stage is LoginStage.FULL_FEATURE_PHASE
        if (in_ffp and not defn.allowed_in_full_feature) or (
            not in_ffp and not defn.allowed_in_login
        ):
            return "Reject"
        if defn.obsolete_answer is not None:
            return defn.obsolete_answer
        if (defn.leading_only and not self.leading) or (
            self.session_type is SessionType.DISCOVERY and defn.irrelevant_in_discovery
        ):
            return "Irrelevant"
        try:
            if defn.kind is KeyKind.DECLARATIVE:
                self._declaration(defn, value)
                return None
            return self._respond(defn, value)
        except InvalidValueError:
            return "Reject"

    def _declaration(self, defn: KeyDefinition, value: str) -> None:
        if defn.is_numeric:
            value = str(parse_numerical(value, defn.minimum, defn.maximum))
        if defn.values and value not in defn.values:
            raise InvalidValueError(f"{defn.name}={value!r}")
        self.peer_declarations[defn.name] = value

    def _respond(self, defn: KeyDefinition, value: str) -> str:
        ours = self.preferences.value_for(defn.name)
        result: str
        if defn.kind in (KeyKind.BOOLEAN_AND, KeyKind.BOOLEAN_OR):
            offer, mine = parse_boolean(value), parse_boolean(ours)
            both = offer and mine if defn.kind is KeyKind.BOOLEAN_AND else offer or mine
            result = encode_boolean(both)
        elif defn.kind in (KeyKind.NUMERICAL_MIN, KeyKind.NUMERICAL_MAX):
            number = parse_numerical(value, defn.minimum, defn.maximum)
            pick = min if defn.kind is KeyKind.NUMERICAL_MIN else max
            chosen = pick(number, int(ours))
            if defn.name == "FirstBurstLength":
                chosen = min(chosen, self._value_int("MaxBurstLength"))
            result = str(chosen)
        else:  # LIST: the first value of the offer that we support (§6.2.3)
            supported = ours.split(",")
            choice = next((v for v in split_list(value) if v in supported), None)
            if choice is None:
                return "Reject"
            result = choice
        self._values[defn.name] = result
        return result

    def _accept(self, defn: KeyDefinition, offered: str, answer: str) -> None:
        """Check the peer's answer to our offer and record the outcome (§6.2)."""
        if answer in RESERVED_VALUES:
            return  # not negotiated: the default applies
        try:
            if defn.obsolete_answer is not None:
                return
            if defn.kind in (KeyKind.BOOLEAN_AND, KeyKind.BOOLEAN_OR):
                got, sent = parse_boolean(answer), parse_boolean(offered)
                # AND can only turn Yes into No; OR only No into Yes.
                if (defn.kind is KeyKind.BOOLEAN_AND and got and not sent) or (
                    defn.kind is KeyKind.BOOLEAN_OR and not got and sent
                ):
                    raise NegotiationError(f"{defn.name}={answer} contradicts our {offered}")
            elif defn.kind in (KeyKind.NUMERICAL_MIN, KeyKind.NUMERICAL_MAX):
                got_n = parse_numerical(answer, defn.minimum, defn.maximum)
                sent_n = int(offered)
                if (defn.kind is KeyKind.NUMERICAL_MIN and got_n > sent_n) or (
                    defn.kind is KeyKind.NUMERICAL_MAX and got_n < sent_n
                ):
                    raise NegotiationError(f"{defn.name}={answer} breaks its result function")
                answer = str(got_n)
            elif defn.kind is KeyKind.LIST and answer not in offered.split(","):
                raise NegotiationError(f"{defn.name}={answer} was not offered")
        except InvalidValueError as exc:
            raise NegotiationError(f"bad answer for {defn.name}: {exc}") from exc
        self._values[defn.name] = answer

    # -- results ------------------------------------------------------------------

    def value(self, key: str) -> str | None:
        """The settled value of ``key`` (``None`` when it was never negotiated)."""
        return self._values.get(key)

    def _value_int(self, key: str) -> int:
        default = KEYS[key].default
        assert default is not None
        return int(self._values.get(key, default))

    def _value_bool(self, key: str) -> bool:
        default = KEYS[key].default
        assert default is not None
        return self._values.get(key, default) == "Yes"

    def parameters(
        self,
        *,
        initiator_name: str = "",
        initiator_alias: str | None = None,
        target_name: str | None = None,
        target_alias: str | None = None,
        target_portal_group_tag: int | None = None,
    ) -> OperationalParameters:
        """The outcome, with RFC defaults for every key that was not negotiated."""
        max_burst = self._value_int("MaxBurstLength")
        return OperationalParameters(
            header_digest=self._values.get("HeaderDigest") == Digest.CRC32C,
            data_digest=self._values.get("DataDigest") == Digest.CRC32C,
            max_connections=self._value_int("MaxConnections"),
            initial_r2t=self._value_bool("InitialR2T"),
            immediate_data=self._value_bool("ImmediateData"),
            max_recv_data_segment_length=int(self._declared.get("MaxRecvDataSegmentLength", 8192)),
            max_xmit_data_segment_length=int(
                self.peer_declarations.get("MaxRecvDataSegmentLength", 8192)
            ),
            max_burst_length=max_burst,
            # §13.14: FirstBurstLength never exceeds MaxBurstLength, even when the two
            # were settled in different PDUs or one of them kept its default.
            first_burst_length=min(self._value_int("FirstBurstLength"), max_burst),
            default_time2wait=self._value_int("DefaultTime2Wait"),
            default_time2retain=self._value_int("DefaultTime2Retain"),
            max_outstanding_r2t=self._value_int("MaxOutstandingR2T"),
            data_pdu_in_order=self._value_bool("DataPDUInOrder"),
            data_sequence_in_order=self._value_bool("DataSequenceInOrder"),
            error_recovery_level=self._value_int("ErrorRecoveryLevel"),
            session_type=self.session_type,
            initiator_name=initiator_name,
            initiator_alias=initiator_alias,
            target_name=target_name,
            target_alias=target_alias,
            target_portal_group_tag=target_portal_group_tag,
        )
