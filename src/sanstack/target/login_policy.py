"""The target's login: the registry as a ``LoginPolicy``, and PDUs in and out of ``TargetLogin``.

Glue between the sans-IO login state machine (``sanstack.iscsi.target_login``), which speaks in
login fields, and the connection core, which speaks in PDUs. It also owns the login phase's
StatSN (RFC 7143 §11.13.4: each Login Response carries the next StatSN) and hands out the
TSIH on the final response.
"""

from __future__ import annotations

from sanstack.iscsi import pdu as p
from sanstack.iscsi.chap import ChapCredentials
from sanstack.iscsi.login import TargetLoginInfo
from sanstack.iscsi.login_pdus import request_fields, response_pdu
from sanstack.iscsi.negotiation import NegotiationPreferences, SessionType
from sanstack.iscsi.target_events import LoginOutcome
from sanstack.iscsi.target_login import TargetLogin
from sanstack.target.model import Portal
from sanstack.target.registry import TargetRegistry


class RegistryLoginPolicy:
    """What a login on ``portal`` may reach: targets with an enabled group listing it.

    Several targets may share one address (as in LIO); the target the initiator names
    decides the portal group, and so the TPGT of the session (RFC 7143 §4.4.2).
    """

    def __init__(
        self, registry: TargetRegistry, portal: Portal, preferences: NegotiationPreferences
    ) -> None:
        self._registry = registry
        self._portal = portal
        self._preferences = preferences

    def lookup_target(self, target_name: str) -> TargetLoginInfo | None:
        target = self._registry.targets.get(target_name.lower())
        if target is None:
            return None
        group = target.group_serving(self._portal)
        if group is None:
            return None
        return TargetLoginInfo(
            target_name=target.name,
            portal_group_tag=group.tag,
            alias=target.alias or None,
            auth=target.chap,
            allowed_initiators=target.allowed_initiators,
            parameters=self._preferences,
        )

    @property
    def discovery_auth(self) -> ChapCredentials | None:
        return None


class TargetLoginDriver:
    """Implements ``LoginDriver`` for ``TargetConnection``."""

    def __init__(
        self,
        registry: TargetRegistry,
        portal: Portal,
        preferences: NegotiationPreferences | None = None,
        *,
        command_window: int = 128,
    ) -> None:
        self._registry = registry
        self._command_window = command_window
        self._login = TargetLogin(
            RegistryLoginPolicy(registry, portal, preferences or NegotiationPreferences())
        )
        self._stat_sn = 1
        self.outcome: LoginOutcome | None = None
        self.failed = False

    def handle(self, request: p.LoginRequest) -> p.LoginResponse:
        fields = request_fields(request)
        answer = self._login.receive(fields)
        tsih = 0
        if self._login.complete:
            result = self._login.result
            tsih = result.tsih or self._registry.allocate_tsih()
            params = result.parameters
            self.outcome = LoginOutcome(
                initiator_name=result.initiator_name,
                target_name=result.target_name or "",
                isid=result.isid,
                tsih=tsih,
                discovery=result.session_type is SessionType.DISCOVERY,
                tpgt=result.target.portal_group_tag if result.target else 0,
                header_digest=params.header_digest,
                data_digest=params.data_digest,
                max_recv_data_segment_length=params.max_recv_data_segment_length,
                max_xmit_data_segment_length=params.max_xmit_data_segment_length,
                max_burst_length=params.max_burst_length,
                first_burst_length=params.first_burst_length,
                initial_r2t=params.initial_r2t,
                immediate_data=params.immediate_data,
                max_outstanding_r2t=params.max_outstanding_r2t,
            )
        self.failed = self._login.failed
        stat_sn = self._stat_sn
        self._stat_sn += 1
        return response_pdu(
            answer,
            request,
            tsih=tsih,
            stat_sn=stat_sn,
            exp_cmd_sn=request.cmd_sn,
            # The first MaxCmdSN opens the connection's whole command window (§4.2.2.1).
            max_cmd_sn=(request.cmd_sn + self._command_window - 1) & 0xFFFFFFFF,
        )
