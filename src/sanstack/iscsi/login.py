"""The iSCSI login phase, sans-IO, for both ends (RFC 7143 §6.3, §11.12-§11.13, §12).

A login walks through stages: SecurityNegotiation (0), LoginOperationalNegotiation (1),
FullFeaturePhase (3). The initiator may skip security when the target needs no
authentication. :data:`_TRANSITIONS` is the whole state machine; a (state, input) pair
missing from it is a protocol error.

:class:`TargetLogin` consumes decoded Login Request fields and returns Login Response
fields; every peer error becomes a login reject with the §11.13.5 status, never an
exception. :class:`InitiatorLogin` is the mirror image for our initiator. Both talk in
:class:`LoginRequestFields`/:class:`LoginResponseFields`, so the PDU codec and the
connection layer stay separate: the connection layer fills in StatSN/ExpCmdSN/MaxCmdSN,
the ITT echo and the TSIH of the final response.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Protocol

from sanstack.errors import ConfigError, LocalProtocolError, RemoteProtocolError
from sanstack.iscsi.chap import (
    DEFAULT_INITIATOR_ALGORITHMS,
    DEFAULT_TARGET_ALGORITHMS,
    ChapAlgorithm,
    ChapCredentials,
    ChapError,
    InitiatorAuthenticator,
    RandomBytes,
    TargetAuthenticator,
)
from sanstack.iscsi.codes import LoginStage, LoginStatus, LoginStatusClass
from sanstack.iscsi.negotiation import (
    NegotiationPreferences,
    Negotiator,
    OperationalParameters,
    Role,
    SessionType,
)
from sanstack.iscsi.text import (
    DEFAULT_MAX_TEXT_BYTES,
    TextAccumulator,
    TextFormatError,
    encode_text,
    parse_numerical,
    parse_text,
)

ISCSI_VERSION = 0x00
"""§11.12.4: the only version defined so far."""

LOGIN_MAX_DATA_SEGMENT_LENGTH = 8192
"""§13.12: login PDUs use the default MaxRecvDataSegmentLength."""

MAX_ISCSI_NAME_LENGTH = 223
"""§4.2.7.1: an iSCSI name is at most 223 bytes."""

_IDENTITY_KEYS = frozenset({"InitiatorName", "InitiatorAlias", "TargetName", "SessionType"})
_SECURITY_KEYS = frozenset({"AuthMethod", "CHAP_A", "CHAP_I", "CHAP_C", "CHAP_N", "CHAP_R"})


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


class LoginError(LoginProtocolError):
    """A login failure to be answered with ``status`` (target side)."""

    def __init__(self, status: LoginStatus, message: str) -> None:
        super().__init__(f"{status.name}: {message}")
        self.status = status


class LoginRejected(RemoteProtocolError):
    """The target ended the login with a non-zero status (initiator side)."""

    def __init__(self, status_class: int, status_detail: int, target_address: str | None) -> None:
        code = status_class << 8 | status_detail
        try:
            name = LoginStatus(code).name
        except ValueError:
            name = f"0x{code:04x}"
        super().__init__(f"login rejected: {name}")
        self.status = code
        self.target_address = target_address  # where a redirection points


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


class LoginPolicy(Protocol):
    """The target configuration as the login sees it."""

    def lookup_target(self, target_name: str) -> TargetLoginInfo | None: ...

    @property
    def discovery_auth(self) -> ChapCredentials | None: ...


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


def _step(state: LoginState, event: LoginInput) -> LoginState | None:
    return _TRANSITIONS.get((state, event))


def _response(
    stage: int, *, transit: bool = False, nsg: int = 0, data: bytes = b"",
    status: LoginStatus = LoginStatus.SUCCESS,
) -> LoginResponseFields:  # fmt: skip
    return LoginResponseFields(
        transit=transit,
        cont=False,
        csg=stage,
        nsg=nsg if transit else 0,  # NSG is reserved unless T is set
        version_max=ISCSI_VERSION,
        version_active=ISCSI_VERSION,
        status_class=status.status_class,
        status_detail=status.status_detail,
        data=data,
    )


class TargetLogin:
    """The target end of one connection's login.

    Drive it with :meth:`receive` for each Login Request and send back what it
    returns; stop when :attr:`complete` (enter full feature phase with :attr:`result`)
    or :attr:`failed` (send the reject, then close the connection).
    """

    def __init__(
        self,
        policy: LoginPolicy,
        *,
        random_bytes: RandomBytes = os.urandom,
        chap_algorithms: Sequence[ChapAlgorithm] = DEFAULT_TARGET_ALGORITHMS,
        discovery_parameters: NegotiationPreferences | None = None,
        session_exists: Callable[[int, int], bool] | None = None,
        max_text_bytes: int = DEFAULT_MAX_TEXT_BYTES,
        max_pdus: int = 64,
    ) -> None:
        self.state = LoginState.INITIAL
        self.failure: LoginStatus | None = None
        self.failure_reason = ""
        self._policy = policy
        self._random_bytes = random_bytes
        self._chap_algorithms = tuple(chap_algorithms)
        self._discovery_parameters = discovery_parameters or NegotiationPreferences()
        self._session_exists = session_exists
        self._max_pdus = max_pdus
        self._pdus = 0
        self._texts = TextAccumulator(max_text_bytes)
        self._text_stage = 0
        self._first: LoginRequestFields | None = None
        self._identity: dict[str, str] = {}
        self._info: TargetLoginInfo | None = None
        self._negotiator: Negotiator | None = None
        self._authn: TargetAuthenticator | None = None
        self._result: LoginResult | None = None

    @property
    def complete(self) -> bool:
        return self.state is LoginState.FULL_FEATURE_PHASE

    @property
    def failed(self) -> bool:
        return self.state is LoginState.FAILED

    @property
    def result(self) -> LoginResult:
        if self._result is None:
            raise LocalProtocolError("login has not completed")
        return self._result

    def receive(self, request: LoginRequestFields) -> LoginResponseFields:
        """Handle one Login Request; the answer is a reject when the request was bad."""
        if self.complete or self.failed:
            raise LocalProtocolError(f"login already ended ({self.state})")
        try:
            return self._receive(request)
        except LoginError as exc:
            return self._fail(exc.status, str(exc), request.csg)
        except ChapError as exc:
            return self._fail(LoginStatus.AUTHENTICATION_FAILURE, str(exc), request.csg)
        except RemoteProtocolError as exc:
            return self._fail(LoginStatus.INITIATOR_ERROR, str(exc), request.csg)

    def fail(
        self, status: LoginStatus, reason: str = "", *, target_address: str | None = None
    ) -> LoginResponseFields:
        """Reject (or redirect to ``target_address``) for reasons only the caller knows,
        e.g. a non-login PDU during login (INVALID_DURING_LOGIN) or a full target."""
        if self.complete or self.failed:
            raise LocalProtocolError(f"login already ended ({self.state})")
        if status is LoginStatus.SUCCESS:
            raise LocalProtocolError("fail() needs a failure status")
        if (status.status_class == LoginStatusClass.REDIRECTION) != (target_address is not None):
            raise LocalProtocolError("a redirection, and only a redirection, has a TargetAddress")
        stage = 1 if self.state is LoginState.OPERATIONAL_NEGOTIATION else 0
        data = encode_text([("TargetAddress", target_address)]) if target_address else b""
        return self._fail(status, reason, stage, data)

    def _fail(
        self, status: LoginStatus, reason: str, csg: int, data: bytes = b""
    ) -> LoginResponseFields:
        self.state = LoginState.FAILED
        self.failure = status
        self.failure_reason = reason
        return _response(csg if csg in (0, 1) else 0, status=status, data=data)

    def _advance(self, event: LoginInput) -> None:
        nxt = _step(self.state, event)
        if nxt is None:
            raise LoginError(LoginStatus.INITIATOR_ERROR, f"{event} not allowed in {self.state}")
        self.state = nxt

    def _receive(self, req: LoginRequestFields) -> LoginResponseFields:
        self._pdus += 1
        if self._pdus > self._max_pdus:
            raise LoginError(LoginStatus.INITIATOR_ERROR, "too many login PDUs")
        if req.version_min > ISCSI_VERSION:
            raise LoginError(LoginStatus.UNSUPPORTED_VERSION, f"version_min {req.version_min}")
        self._check_connection_ids(req)
        if req.cont and req.transit:
            raise LoginError(LoginStatus.INITIATOR_ERROR, "C and T both set (§11.12.2)")
        if req.csg not in (0, 1):
            raise LoginError(LoginStatus.INITIATOR_ERROR, f"invalid CSG {req.csg}")
        if req.transit and (req.nsg not in (1, 3) or req.nsg <= req.csg):
            raise LoginError(LoginStatus.INITIATOR_ERROR, f"invalid NSG {req.nsg}")
        stage = LoginStage(req.csg)
        security = stage is LoginStage.SECURITY_NEGOTIATION
        self._advance(_I.SECURITY_REQUEST if security else _I.OPERATIONAL_REQUEST)
        if self._texts.pending and self._text_stage != req.csg:
            raise LoginError(LoginStatus.INITIATOR_ERROR, "stage changed inside a continued text")
        text = self._texts.feed(req.data, cont=req.cont)
        if text is None:
            # §6.2: acknowledge each continued part with an empty response.
            self._text_stage = req.csg
            self._advance(_I.STAY)
            return _response(req.csg)
        out: list[tuple[str, str]] = []
        rest = self._identity_keys(parse_text(text), out)
        negotiator, authn = self._negotiator, self._authn
        assert negotiator is not None and authn is not None
        if security:
            out += authn.process([p for p in rest if p[0] in _SECURITY_KEYS], transit=req.transit)
            out += negotiator.process([p for p in rest if p[0] not in _SECURITY_KEYS], stage)
            transit = req.transit and authn.authenticated
        else:
            authn.skip()
            out += negotiator.process(rest, stage)
            # §13.12: each side declares what it can receive, asked or not.
            if not negotiator.declared("MaxRecvDataSegmentLength"):
                out += negotiator.offer(["MaxRecvDataSegmentLength"])
            transit = req.transit
        if not transit:
            event = _I.STAY
        elif req.nsg == LoginStage.FULL_FEATURE_PHASE:
            negotiator.check_digests()
            event = _I.TRANSIT_TO_FULL_FEATURE
        else:
            event = _I.TRANSIT_TO_OPERATIONAL
        self._advance(event)
        if self.complete:
            self._result = self._build_result()
        return _response(req.csg, transit=transit, nsg=req.nsg, data=encode_text(out))

    def _check_connection_ids(self, req: LoginRequestFields) -> None:
        first = self._first
        if first is not None:
            if (req.isid, req.tsih, req.cid) != (first.isid, first.tsih, first.cid):
                raise LoginError(LoginStatus.INITIATOR_ERROR, "ISID/TSIH/CID changed in login")
            return
        self._first = req
        if req.tsih != 0:
            # We negotiate MaxConnections=1 and ErrorRecoveryLevel=0: no connection is
            # ever added to an existing session.
            exists = self._session_exists is not None and self._session_exists(req.isid, req.tsih)
            status = (
                LoginStatus.TOO_MANY_CONNECTIONS if exists else LoginStatus.SESSION_DOES_NOT_EXIST
            )
            raise LoginError(status, f"TSIH {req.tsih}")

    def _identity_keys(
        self, pairs: list[tuple[str, str]], out: list[tuple[str, str]]
    ) -> list[tuple[str, str]]:
        """Split off InitiatorName/TargetName/SessionType/InitiatorAlias; return the rest."""
        seen: dict[str, str] = {}
        rest: list[tuple[str, str]] = []
        for key, value in pairs:
            if key not in _IDENTITY_KEYS:
                rest.append((key, value))
            elif key in seen:
                raise LoginError(LoginStatus.INITIATOR_ERROR, f"{key} sent twice (§6.2.1)")
            else:
                seen[key] = value
        if self._negotiator is None:
            self._identify(seen, out)
            return rest
        for key, value in seen.items():
            old = self._identity.get(key)
            if old is None and key == "InitiatorAlias":
                self._identity[key] = value
            elif old != value:
                raise LoginError(LoginStatus.INITIATOR_ERROR, f"{key} redeclared (§6.2.1)")
            # An identical re-declaration is tolerated: libiscsi repeats InitiatorName,
            # TargetName and SessionType when the target answers AuthMethod=None.
        return rest

    def _identify(self, seen: dict[str, str], out: list[tuple[str, str]]) -> None:
        """The first complete text: who is logging in, to what, and is it allowed."""
        name = seen.get("InitiatorName")
        if not name:
            raise LoginError(LoginStatus.MISSING_PARAMETER, "no InitiatorName (§13.5)")
        if len(name.encode()) > MAX_ISCSI_NAME_LENGTH:
            raise LoginError(LoginStatus.INITIATOR_ERROR, "InitiatorName too long")
        raw_type = seen.get("SessionType", SessionType.NORMAL.value)
        if raw_type not in {t.value for t in SessionType}:
            raise LoginError(LoginStatus.SESSION_TYPE_NOT_SUPPORTED, raw_type[:40])
        session_type = SessionType(raw_type)
        self._identity = dict(seen)
        self._identity["SessionType"] = session_type.value
        if session_type is SessionType.NORMAL:
            target_name = seen.get("TargetName")
            if not target_name:
                raise LoginError(LoginStatus.MISSING_PARAMETER, "no TargetName (§13.4)")
            info = self._policy.lookup_target(target_name)
            if info is None:
                raise LoginError(LoginStatus.NOT_FOUND, f"no target {target_name[:80]!r}")
            if not info.allows(name):
                raise LoginError(LoginStatus.AUTHORIZATION_FAILURE, f"{name[:80]!r} not in ACL")
            self._info = info
            credentials = info.auth
            preferences = info.parameters
            # §13.9: the first response of a Normal session carries the portal group tag.
            out.append(("TargetPortalGroupTag", str(info.portal_group_tag)))
            if info.alias:
                out.append(("TargetAlias", info.alias))
        else:
            credentials = self._policy.discovery_auth
            preferences = self._discovery_parameters
        self._negotiator = Negotiator(Role.TARGET, preferences, session_type=session_type)
        self._authn = TargetAuthenticator(
            credentials, random_bytes=self._random_bytes, algorithms=self._chap_algorithms
        )

    def _build_result(self) -> LoginResult:
        assert self._negotiator is not None and self._authn is not None and self._first
        info = self._info
        initiator_name = self._identity["InitiatorName"]
        parameters = self._negotiator.parameters(
            initiator_name=initiator_name,
            initiator_alias=self._identity.get("InitiatorAlias"),
            target_name=info.target_name if info else None,
            target_alias=info.alias if info else None,
            target_portal_group_tag=info.portal_group_tag if info else None,
        )
        return LoginResult(
            parameters=parameters,
            session_type=self._negotiator.session_type,
            initiator_name=initiator_name,
            target_name=info.target_name if info else None,
            target=info,
            isid=self._first.isid,
            tsih=self._first.tsih,
            cid=self._first.cid,
            auth_method=self._authn.method or "None",
        )


class InitiatorLogin:
    """The initiator end of one connection's login.

    ``start()`` gives the first request; feed every response to :meth:`receive`, which
    returns the next request or ``None`` once in full feature phase (then read
    :attr:`result`). A reject raises :class:`LoginRejected`; a misbehaving target
    raises :class:`LoginProtocolError` (or a CHAP/negotiation error). The requests keep
    the ``cmd_sn``/``exp_stat_sn`` given here; the connection layer may update them.
    """

    def __init__(
        self,
        initiator_name: str,
        target_name: str | None = None,
        *,
        isid: int,
        tsih: int = 0,
        cid: int = 0,
        itt: int = 0,
        cmd_sn: int = 0,
        exp_stat_sn: int = 0,
        session_type: SessionType = SessionType.NORMAL,
        initiator_alias: str | None = None,
        chap: ChapCredentials | None = None,
        chap_algorithms: Sequence[ChapAlgorithm] = DEFAULT_INITIATOR_ALGORITHMS,
        preferences: NegotiationPreferences | None = None,
        random_bytes: RandomBytes = os.urandom,
        security_stage: bool | None = None,
        max_data_segment_length: int = LOGIN_MAX_DATA_SEGMENT_LENGTH,
        max_exchanges: int = 32,
    ) -> None:
        if session_type is SessionType.NORMAL and not target_name:
            raise LocalProtocolError("a Normal session needs a target name")
        use_security = chap is not None if security_stage is None else security_stage
        if chap is not None and not use_security:
            raise LocalProtocolError("CHAP happens in the security stage")
        self.state = LoginState.INITIAL
        self._initiator_name = initiator_name
        self._initiator_alias = initiator_alias
        self._target_name = target_name if session_type is SessionType.NORMAL else None
        self._template = LoginRequestFields(
            isid=isid, tsih=tsih, itt=itt, cid=cid, cmd_sn=cmd_sn, exp_stat_sn=exp_stat_sn,
            transit=False, cont=False, csg=0, nsg=0, version_max=ISCSI_VERSION,
            version_min=ISCSI_VERSION, data=b"",
        )  # fmt: skip
        self._session_type = session_type
        self._security = use_security
        self._authn = InitiatorAuthenticator(
            chap, random_bytes=random_bytes, algorithms=chap_algorithms
        )
        self._neg = Negotiator(
            Role.INITIATOR, preferences or NegotiationPreferences(), session_type=session_type
        )
        self._max_segment = max_data_segment_length
        self._max_exchanges = max_exchanges
        self._exchanges = 0
        self._stage = LoginStage.SECURITY_NEGOTIATION
        self._outgoing = b""
        self._want_transit = False
        self._want_nsg = 0
        self._incoming = TextAccumulator()
        self._result: LoginResult | None = None

    @property
    def complete(self) -> bool:
        return self.state is LoginState.FULL_FEATURE_PHASE

    @property
    def failed(self) -> bool:
        return self.state is LoginState.FAILED

    @property
    def result(self) -> LoginResult:
        if self._result is None:
            raise LocalProtocolError("login has not completed")
        return self._result

    def start(self) -> LoginRequestFields:
        if self.state is not LoginState.INITIAL:
            raise LocalProtocolError("login already started")
        pairs = [("InitiatorName", self._initiator_name)]
        if self._initiator_alias:
            pairs.append(("InitiatorAlias", self._initiator_alias))
        if self._target_name:
            pairs.append(("TargetName", self._target_name))
        pairs.append(("SessionType", self._session_type.value))
        if not self._security:
            return self._send(
                LoginStage.LOGIN_OPERATIONAL_NEGOTIATION, pairs + self._offers(), transit=True
            )
        security, transit = self._authn.offer()
        return self._send(LoginStage.SECURITY_NEGOTIATION, pairs + security, transit=transit)

    def receive(self, response: LoginResponseFields) -> LoginRequestFields | None:
        if self.state in (LoginState.INITIAL, LoginState.FULL_FEATURE_PHASE, LoginState.FAILED):
            raise LocalProtocolError(f"no request outstanding ({self.state})")
        try:
            return self._receive(response)
        except RemoteProtocolError:
            self.state = LoginState.FAILED
            raise

    def _offers(self) -> list[tuple[str, str]]:
        return self._neg.offer(self._neg.initial_offer_keys())

    def _send(
        self, stage: LoginStage, pairs: list[tuple[str, str]], *, transit: bool
    ) -> LoginRequestFields:
        self._stage = stage
        self._outgoing = encode_text(pairs)
        self._want_transit = transit
        # From security we go to the operational stage so that our offers get made.
        self._want_nsg = 1 if stage is LoginStage.SECURITY_NEGOTIATION else 3
        return self._next_chunk()

    def _next_chunk(self) -> LoginRequestFields:
        security = self._stage is LoginStage.SECURITY_NEGOTIATION
        nxt = _step(self.state, _I.SECURITY_REQUEST if security else _I.OPERATIONAL_REQUEST)
        if nxt is None:
            raise LocalProtocolError(f"cannot send a request in {self.state}")
        self.state = nxt
        chunk = self._outgoing[: self._max_segment]
        self._outgoing = self._outgoing[self._max_segment :]
        cont = bool(self._outgoing)
        transit = self._want_transit and not cont
        nsg = self._want_nsg if transit else 0
        return replace(
            self._template, transit=transit, cont=cont, csg=int(self._stage), nsg=nsg, data=chunk
        )

    def _advance(self, event: LoginInput) -> None:
        nxt = _step(self.state, event)
        if nxt is None:
            raise LoginProtocolError(f"target answered {event} in {self.state}")
        self.state = nxt

    def _receive(self, resp: LoginResponseFields) -> LoginRequestFields | None:
        self._exchanges += 1
        if self._exchanges > self._max_exchanges:
            raise LoginProtocolError("login does not converge")
        if resp.status_class != LoginStatusClass.SUCCESS:
            self._advance(_I.FAIL)
            address = None
            if resp.status_class == LoginStatusClass.REDIRECTION:
                try:
                    address = dict(parse_text(resp.data)).get("TargetAddress")
                except TextFormatError:
                    address = None
            raise LoginRejected(resp.status_class, resp.status_detail, address)
        if resp.version_active != ISCSI_VERSION:
            raise LoginProtocolError(f"target chose version {resp.version_active}")
        if resp.csg != self._stage or (resp.cont and resp.transit):
            raise LoginProtocolError(f"bad response flags csg={resp.csg} T={resp.transit}")
        if self._outgoing:
            # Each part of our continued text is acknowledged by an empty response.
            if resp.transit or resp.cont or resp.data:
                raise LoginProtocolError("continued request answered with data")
            self._advance(_I.STAY)
            return self._next_chunk()
        text = self._incoming.feed(resp.data, cont=resp.cont)
        if text is None:
            self._advance(_I.STAY)
            # Fetch the rest with an empty request that keeps our wish to transit.
            return self._send(self._stage, [], transit=self._want_transit)
        if resp.transit and (
            not self._want_transit
            or resp.nsg not in (1, 3)
            or not resp.csg < resp.nsg <= self._want_nsg
        ):
            raise LoginProtocolError(f"target transited to stage {resp.nsg} unasked")
        pairs = parse_text(text)
        if self._stage is LoginStage.SECURITY_NEGOTIATION:
            replies = self._security_reply(pairs, resp.transit)
        else:
            replies = self._neg.process(pairs, self._stage)
        if not resp.transit:
            self._advance(_I.STAY)
            if self._stage is LoginStage.SECURITY_NEGOTIATION:
                security, transit = self._authn.next_request()
                return self._send(self._stage, replies + security, transit=transit)
            return self._send(self._stage, replies, transit=True)
        if resp.nsg == LoginStage.LOGIN_OPERATIONAL_NEGOTIATION:
            self._advance(_I.TRANSIT_TO_OPERATIONAL)
            stage = LoginStage.LOGIN_OPERATIONAL_NEGOTIATION
            return self._send(stage, replies + self._offers(), transit=True)
        if replies:
            raise LoginProtocolError("target finished the login with keys left to answer")
        self._advance(_I.TRANSIT_TO_FULL_FEATURE)
        self._finish()
        return None

    def _security_reply(self, pairs: list[tuple[str, str]], transit: bool) -> list[tuple[str, str]]:
        security = {k: v for k, v in pairs if k in _SECURITY_KEYS}
        if len(security) != sum(1 for k, _ in pairs if k in _SECURITY_KEYS):
            raise LoginProtocolError("security key repeated")
        stage = LoginStage.SECURITY_NEGOTIATION
        replies = self._neg.process([p for p in pairs if p[0] not in _SECURITY_KEYS], stage)
        self._authn.process(security, transit=transit)
        return replies

    def _finish(self) -> None:
        self._neg.finish()
        self._neg.check_digests()
        declared = self._neg.peer_declarations
        tag = declared.get("TargetPortalGroupTag")
        parameters = self._neg.parameters(
            initiator_name=self._initiator_name,
            initiator_alias=self._initiator_alias,
            target_name=self._target_name,
            target_alias=declared.get("TargetAlias"),
            target_portal_group_tag=None if tag is None else parse_numerical(tag, 0, 65535),
        )
        self._result = LoginResult(
            parameters=parameters,
            session_type=self._session_type,
            initiator_name=self._initiator_name,
            target_name=self._target_name,
            target=None,
            isid=self._template.isid,
            tsih=self._template.tsih,
            cid=self._template.cid,
            auth_method=self._authn.method,
        )
