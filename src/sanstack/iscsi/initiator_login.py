"""The initiator end of an iSCSI login, sans-IO (RFC 7143 §6.3, §11.12-§11.13, §12, §13).

:class:`InitiatorLogin` builds Login Request fields and reads the target's Login Response
fields, stepping through the shared state table (:mod:`sanstack.iscsi.login`): it
declares who logs in to what, runs CHAP in the security stage when it has credentials
(§12.1.3), offers its operational keys (§13) and splits or joins texts longer than one PDU
with the C bit (§11.12.2, §11.13.2). A non-zero status from the target, a redirection
included (§11.13.5), raises :class:`LoginRejected`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace

from sanstack.errors import LocalProtocolError, RemoteProtocolError
from sanstack.iscsi.chap import (
    DEFAULT_INITIATOR_ALGORITHMS,
    ChapAlgorithm,
    ChapCredentials,
    InitiatorAuthenticator,
    RandomBytes,
)
from sanstack.iscsi.codes import LoginStage, LoginStatus, LoginStatusClass
from sanstack.iscsi.login import (
    ISCSI_VERSION,
    LOGIN_MAX_DATA_SEGMENT_LENGTH,
    SECURITY_KEYS,
    LoginInput,
    LoginProtocolError,
    LoginRequestFields,
    LoginResponseFields,
    LoginResult,
    LoginState,
    next_login_state,
)
from sanstack.iscsi.negotiation import NegotiationPreferences, Negotiator, Role, SessionType
from sanstack.iscsi.text import (
    TextAccumulator,
    TextFormatError,
    encode_text,
    parse_numerical,
    parse_text,
)

_I = LoginInput


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
        nxt = next_login_state(
            self.state, _I.SECURITY_REQUEST if security else _I.OPERATIONAL_REQUEST
        )
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
        nxt = next_login_state(self.state, event)
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
        security = {k: v for k, v in pairs if k in SECURITY_KEYS}
        if len(security) != sum(1 for k, _ in pairs if k in SECURITY_KEYS):
            raise LoginProtocolError("security key repeated")
        stage = LoginStage.SECURITY_NEGOTIATION
        replies = self._neg.process([p for p in pairs if p[0] not in SECURITY_KEYS], stage)
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
