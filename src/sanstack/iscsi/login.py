"""What both ends of an iSCSI login share (RFC 7143 §6.3, §11.12-§11.13).

A login walks through stages: SecurityNegotiation (0), LoginOperationalNegotiation (1),
FullFeaturePhase (3). The initiator may skip security when the target needs no
authentication. :data:`_TRANSITIONS` is the whole state machine; a (state, input) pair
missing from it is a protocol error.

Both ends talk in :class:`LoginRequestFields`/:class:`LoginResponseFields`, so the PDU
codec and the connection layer stay separate: the connection layer fills in
StatSN/ExpCmdSN/MaxCmdSN, the ITT echo and the TSIH of the final response. The target end
is :class:`~sanstack.iscsi.target_login.TargetLogin`, the initiator end
:class:`~sanstack.iscsi.initiator_login.InitiatorLogin`; each ends with a
:class:`LoginResult`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from sanstack.errors import ConfigError, RemoteProtocolError
from sanstack.iscsi.chap import ChapCredentials
from sanstack.iscsi.negotiation import NegotiationPreferences, OperationalParameters, SessionType

ISCSI_VERSION = 0x00
"""§11.12.4: the only version defined so far."""

LOGIN_MAX_DATA_SEGMENT_LENGTH = 8192
"""§13.12: login PDUs use the default MaxRecvDataSegmentLength."""

SECURITY_KEYS = frozenset({"AuthMethod", "CHAP_A", "CHAP_I", "CHAP_C", "CHAP_N", "CHAP_R"})
"""The keys of the security stage that CHAP handles; the rest go to the negotiator."""


class LoginState(StrEnum):
    """The stage the next Login Request must be in, plus the two terminal states."""

    INITIAL = "INITIAL"
    SECURITY_NEGOTIATION = "SECURITY_NEGOTIATION"
    OPERATIONAL_NEGOTIATION = "OPERATIONAL_NEGOTIATION"
    FULL_FEATURE_PHASE = "FULL_FEATURE_PHASE"
    FAILED = "FAILED"


class LoginInput(StrEnum):
    """A request in some stage, or the target's answer to it."""

    SECURITY_REQUEST = "SECURITY_REQUEST"
    OPERATIONAL_REQUEST = "OPERATIONAL_REQUEST"
    STAY = "STAY"
    TRANSIT_TO_OPERATIONAL = "TRANSIT_TO_OPERATIONAL"
    TRANSIT_TO_FULL_FEATURE = "TRANSIT_TO_FULL_FEATURE"
    FAIL = "FAIL"


_S = LoginState
_I = LoginInput
_TRANSITIONS: dict[tuple[LoginState, LoginInput], LoginState] = {
    (_S.INITIAL, _I.SECURITY_REQUEST): _S.SECURITY_NEGOTIATION,
    (_S.INITIAL, _I.OPERATIONAL_REQUEST): _S.OPERATIONAL_NEGOTIATION,
    (_S.INITIAL, _I.FAIL): _S.FAILED,
    (_S.SECURITY_NEGOTIATION, _I.SECURITY_REQUEST): _S.SECURITY_NEGOTIATION,
    (_S.SECURITY_NEGOTIATION, _I.STAY): _S.SECURITY_NEGOTIATION,
    (_S.SECURITY_NEGOTIATION, _I.TRANSIT_TO_OPERATIONAL): _S.OPERATIONAL_NEGOTIATION,
    (_S.SECURITY_NEGOTIATION, _I.TRANSIT_TO_FULL_FEATURE): _S.FULL_FEATURE_PHASE,
    (_S.SECURITY_NEGOTIATION, _I.FAIL): _S.FAILED,
    (_S.OPERATIONAL_NEGOTIATION, _I.OPERATIONAL_REQUEST): _S.OPERATIONAL_NEGOTIATION,
    (_S.OPERATIONAL_NEGOTIATION, _I.STAY): _S.OPERATIONAL_NEGOTIATION,
    (_S.OPERATIONAL_NEGOTIATION, _I.TRANSIT_TO_FULL_FEATURE): _S.FULL_FEATURE_PHASE,
    (_S.OPERATIONAL_NEGOTIATION, _I.FAIL): _S.FAILED,
}


def next_login_state(state: LoginState, event: LoginInput) -> LoginState | None:
    """Where ``event`` leads from ``state``; ``None`` when the table has no such step."""
    return _TRANSITIONS.get((state, event))


@dataclass(frozen=True, slots=True)
class LoginRequestFields:
    """The Login Request (§11.12) fields the login logic needs; the codec maps the rest."""

    isid: int
    tsih: int
    itt: int
    cid: int
    cmd_sn: int
    exp_stat_sn: int
    transit: bool
    cont: bool
    csg: int
    nsg: int
    version_max: int
    version_min: int
    data: bytes


@dataclass(frozen=True, slots=True)
class LoginResponseFields:
    """The Login Response (§11.13) fields the login logic decides."""

    transit: bool
    cont: bool
    csg: int
    nsg: int
    version_max: int
    version_active: int
    status_class: int
    status_detail: int
    data: bytes

    @property
    def status(self) -> int:
        return self.status_class << 8 | self.status_detail


class LoginProtocolError(RemoteProtocolError):
    """The peer broke the login protocol."""


@dataclass(frozen=True)
class TargetLoginInfo:
    """What the login needs to know about one target (from the configuration)."""

    target_name: str
    portal_group_tag: int = 1
    alias: str | None = None
    auth: ChapCredentials | None = None
    allowed_initiators: frozenset[str] | None = None  # None: every initiator
    parameters: NegotiationPreferences = field(default_factory=NegotiationPreferences)

    def __post_init__(self) -> None:
        if not 0 <= self.portal_group_tag <= 65535:
            raise ConfigError("portal_group_tag", "must be in 0..65535 (§13.9)")

    def allows(self, initiator_name: str) -> bool:
        # iSCSI names compare case-insensitively (RFC 3722 stringprep folds case).
        if self.allowed_initiators is None:
            return True
        return initiator_name.lower() in {n.lower() for n in self.allowed_initiators}


@dataclass(frozen=True)
class LoginResult:
    """What a completed login settled, from the point of view of the side that ran it."""

    parameters: OperationalParameters
    session_type: SessionType
    initiator_name: str
    target_name: str | None
    target: TargetLoginInfo | None  # target side, Normal sessions only
    isid: int
    tsih: int  # as requested: 0 asks for a new session
    cid: int
    auth_method: str  # "None" or "CHAP"
