"""Login PDUs to and from the login state machine's fields (RFC 7143 §11.12, §11.13).

``sanstack.iscsi.login`` speaks in fields so it stays independent of the codec; these four
functions are the only place the two meet, for a target (request in, response out) and for
an initiator (request out, response in).
"""

from __future__ import annotations

from sanstack.iscsi import pdu as p
from sanstack.iscsi.codes import LoginStage
from sanstack.iscsi.login import LoginRequestFields, LoginResponseFields


def request_fields(pdu: p.LoginRequest) -> LoginRequestFields:
    return LoginRequestFields(
        isid=pdu.isid,
        tsih=pdu.tsih,
        itt=pdu.itt,
        cid=pdu.cid,
        cmd_sn=pdu.cmd_sn,
        exp_stat_sn=pdu.exp_stat_sn,
        transit=pdu.transit,
        cont=pdu.cont,
        csg=int(pdu.csg),
        nsg=int(pdu.nsg),
        version_max=pdu.version_max,
        version_min=pdu.version_min,
        data=pdu.data,
    )


def request_pdu(fields: LoginRequestFields, *, cmd_sn: int, exp_stat_sn: int) -> p.LoginRequest:
    return p.LoginRequest(
        isid=fields.isid,
        tsih=fields.tsih,
        itt=fields.itt,
        cid=fields.cid,
        cmd_sn=cmd_sn,
        exp_stat_sn=exp_stat_sn,
        transit=fields.transit,
        cont=fields.cont,
        csg=LoginStage(fields.csg),
        nsg=LoginStage(fields.nsg),
        version_max=fields.version_max,
        version_min=fields.version_min,
        data=fields.data,
    )


def response_fields(pdu: p.LoginResponse) -> LoginResponseFields:
    return LoginResponseFields(
        transit=pdu.transit,
        cont=pdu.cont,
        csg=int(pdu.csg),
        nsg=int(pdu.nsg),
        version_max=pdu.version_max,
        version_active=pdu.version_active,
        status_class=pdu.status_class,
        status_detail=pdu.status_detail,
        data=pdu.data,
    )


def response_pdu(
    fields: LoginResponseFields,
    request: p.LoginRequest,
    *,
    tsih: int,
    stat_sn: int,
    exp_cmd_sn: int,
    max_cmd_sn: int,
) -> p.LoginResponse:
    return p.LoginResponse(
        isid=request.isid,
        itt=request.itt,
        tsih=tsih,
        stat_sn=stat_sn,
        exp_cmd_sn=exp_cmd_sn,
        max_cmd_sn=max_cmd_sn,
        status_class=fields.status_class,
        status_detail=fields.status_detail,
        transit=fields.transit,
        cont=fields.cont,
        csg=LoginStage(fields.csg),
        nsg=LoginStage(fields.nsg),
        version_max=fields.version_max,
        version_active=fields.version_active,
        data=fields.data,
    )
