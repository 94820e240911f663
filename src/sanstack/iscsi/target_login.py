"""The target end of an iSCSI login, sans-IO (RFC 7143 §6.3, §11.12-§11.13, §12, §13).

:class:`TargetLogin` consumes decoded Login Request fields and returns Login Response
fields, stepping through the shared state table (:mod:`sanstack.iscsi.login`). The first
complete text says who logs in to what (§13.4, §13.5, §13.9); the target is looked up
through a :class:`LoginPolicy` and checked against its access list; the security stage
runs CHAP (§12.1.3) and the operational stage the key negotiation (§13). Every peer error
becomes a login reject with the §11.13.5 status, never an exception.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Protocol

from sanstack.errors import LocalProtocolError, RemoteProtocolError
from sanstack.iscsi.chap import (
    DEFAULT_TARGET_ALGORITHMS,
    ChapAlgorithm,
    ChapCredentials,
    ChapError,
    RandomBytes,
    TargetAuthenticator,
)
from sanstack.iscsi.codes import LoginStage, LoginStatus, LoginStatusClass
from sanstack.iscsi.login import (
    ISCSI_VERSION,
    SECURITY_KEYS,
    LoginInput,
    LoginProtocolError,
    LoginRequestFields,
    LoginResponseFields,
    LoginResult,
    LoginState,
    TargetLoginInfo,
    next_login_state,
)
from sanstack.iscsi.negotiation import NegotiationPreferences, Negotiator, Role, SessionType
from sanstack.iscsi.text import DEFAULT_MAX_TEXT_BYTES, TextAccumulator, encode_text, parse_text

MAX_ISCSI_NAME_LENGTH = 223
"""§4.2.7.1: an iSCSI name is at most 223 bytes."""

_IDENTITY_KEYS = frozenset({"InitiatorName", "InitiatorAlias", "TargetName", "SessionType"})
_I = LoginInput


class LoginError(LoginProtocolError):
    """A login failure to be answered with ``status`` (target side)."""

    def __init__(self, status: LoginStatus, message: str) -> None:
        super().__init__(f"{status.name}: {message}")
        self.status = status


class LoginPolicy(Protocol):
    """The target configuration as the login sees it."""

    def lookup_target(self, target_name: str) -> TargetLoginInfo | None: ...

    @property
    def discovery_auth(self) -> ChapCredentials | None: ...


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
        nxt = next_login_state(self.state, event)
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
            out += authn.process([p for p in rest if p[0] in SECURITY_KEYS], transit=req.transit)
            out += negotiator.process([p for p in rest if p[0] not in SECURITY_KEYS], stage)
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
