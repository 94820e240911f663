"""Property tests: every PDU survives encode -> decode, whole or split anywhere in a stream."""

from __future__ import annotations

import dataclasses
from itertools import pairwise
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sanstack.iscsi.codes import (
    AsyncEvent,
    ISCSIResponse,
    LoginStage,
    LogoutReason,
    LogoutResponseCode,
    RejectReason,
    SNACKType,
    TaskAttribute,
    TaskManagementFunction,
    TaskManagementResponseCode,
    decode_sense,
    encode_sense,
)
from sanstack.iscsi.pdu import (
    PDU,
    R2T,
    AsyncMessage,
    DataDigestError,
    DataIn,
    DataOut,
    LoginRequest,
    LoginResponse,
    LogoutRequest,
    LogoutResponse,
    NopIn,
    NopOut,
    Reject,
    SCSICommand,
    SCSIResponse,
    SNACKRequest,
    TaskManagementRequest,
    TaskManagementResponse,
    TextRequest,
    TextResponse,
)
from sanstack.iscsi.pdu_reader import PDUReader, decode

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def as_view(b: bytes) -> memoryview:
    return memoryview(b)


u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
u64 = st.integers(0, 0xFFFF_FFFF_FFFF_FFFF)
flag = st.booleans()
data = st.binary(max_size=70)
stage = st.integers(0, 3).map(LoginStage)

STRATEGIES: dict[str, st.SearchStrategy[Any]] = {
    "NopOut": st.builds(
        NopOut, itt=u32, ttt=u32, lun=u64, cmd_sn=u32, exp_stat_sn=u32, immediate=flag, data=data
    ),
    "SCSICommand": st.builds(
        SCSICommand,
        itt=u32,
        lun=u64,
        cdb=st.binary(max_size=260),
        expected_data_transfer_length=u32,
        cmd_sn=u32,
        exp_stat_sn=u32,
        final=flag,
        read=flag,
        write=flag,
        attr=st.integers(0, 7).map(TaskAttribute),
        immediate=flag,
        bidi_read_expected_length=st.none() | u32,
        data=data,
    ),
    "SCSIResponse": st.builds(
        SCSIResponse,
        itt=u32,
        status=u8,
        response=u8.map(ISCSIResponse),
        stat_sn=u32,
        exp_cmd_sn=u32,
        max_cmd_sn=u32,
        exp_data_sn=u32,
        residual_overflow=flag,
        residual_underflow=flag,
        bidi_residual_overflow=flag,
        bidi_residual_underflow=flag,
        residual_count=u32,
        bidi_residual_count=u32,
        snack_tag=u32,
        sense=st.binary(max_size=40),
        data=st.just(b"") | data | st.binary(max_size=30).map(encode_sense),
    ),
    "TaskManagementRequest": st.builds(
        TaskManagementRequest,
        function=st.integers(0, 127).map(TaskManagementFunction),
        itt=u32,
        lun=u64,
        referenced_task_tag=u32,
        cmd_sn=u32,
        exp_stat_sn=u32,
        ref_cmd_sn=u32,
        exp_data_sn=u32,
        immediate=flag,
    ),
    "TaskManagementResponse": st.builds(
        TaskManagementResponse,
        itt=u32,
        response=u8.map(TaskManagementResponseCode),
        stat_sn=u32,
        exp_cmd_sn=u32,
        max_cmd_sn=u32,
    ),
    "LoginRequest": st.builds(
        LoginRequest,
        isid=st.integers(0, (1 << 48) - 1),
        tsih=u16,
        itt=u32,
        cid=u16,
        cmd_sn=u32,
        exp_stat_sn=u32,
        transit=flag,
        cont=flag,
        csg=stage,
        nsg=stage,
        version_max=u8,
        version_min=u8,
        data=data,
    ),
    "LoginResponse": st.builds(
        LoginResponse,
        isid=st.integers(0, (1 << 48) - 1),
        itt=u32,
        tsih=u16,
        stat_sn=u32,
        exp_cmd_sn=u32,
        max_cmd_sn=u32,
        status_class=u8,
        status_detail=u8,
        transit=flag,
        cont=flag,
        csg=stage,
        nsg=stage,
        version_max=u8,
        version_active=u8,
        data=data,
    ),
    "TextRequest": st.builds(
        TextRequest,
        itt=u32,
        ttt=u32,
        lun=u64,
        cmd_sn=u32,
        exp_stat_sn=u32,
        final=flag,
        cont=flag,
        immediate=flag,
        data=data,
    ),
    "TextResponse": st.builds(
        TextResponse,
        itt=u32,
        ttt=u32,
        lun=u64,
        stat_sn=u32,
        exp_cmd_sn=u32,
        max_cmd_sn=u32,
        final=flag,
        cont=flag,
        data=data,
    ),
    "DataOut": st.builds(
        DataOut,
        itt=u32,
        ttt=u32,
        lun=u64,
        exp_stat_sn=u32,
        data_sn=u32,
        buffer_offset=u32,
        final=flag,
        data=st.binary(max_size=600),
    ),
    "DataIn": st.builds(
        DataIn,
        itt=u32,
        ttt=u32,
        lun=u64,
        stat_sn=u32,
        exp_cmd_sn=u32,
        max_cmd_sn=u32,
        data_sn=u32,
        buffer_offset=u32,
        residual_count=u32,
        final=flag,
        acknowledge=flag,
        residual_overflow=flag,
        residual_underflow=flag,
        status_present=flag,
        status=u8,
        data=st.binary(max_size=600) | st.binary(max_size=600).map(as_view),
    ),
    "LogoutRequest": st.builds(
        LogoutRequest,
        itt=u32,
        reason=st.integers(0, 127).map(LogoutReason),
        cid=u16,
        cmd_sn=u32,
        exp_stat_sn=u32,
        immediate=flag,
    ),
    "LogoutResponse": st.builds(
        LogoutResponse,
        itt=u32,
        response=u8.map(LogoutResponseCode),
        stat_sn=u32,
        exp_cmd_sn=u32,
        max_cmd_sn=u32,
        time2wait=u16,
        time2retain=u16,
    ),
    "SNACKRequest": st.builds(
        SNACKRequest,
        type=st.integers(0, 15).map(SNACKType),
        itt=u32,
        ttt=u32,
        lun=u64,
        exp_stat_sn=u32,
        beg_run=u32,
        run_length=u32,
    ),
    "NopIn": st.builds(
        NopIn, itt=u32, ttt=u32, lun=u64, stat_sn=u32, exp_cmd_sn=u32, max_cmd_sn=u32, data=data
    ),
    "R2T": st.builds(
        R2T,
        itt=u32,
        ttt=u32,
        lun=u64,
        stat_sn=u32,
        exp_cmd_sn=u32,
        max_cmd_sn=u32,
        r2t_sn=u32,
        buffer_offset=u32,
        desired_data_transfer_length=u32,
    ),
    "AsyncMessage": st.builds(
        AsyncMessage,
        async_event=u8.map(AsyncEvent),
        lun=u64,
        stat_sn=u32,
        exp_cmd_sn=u32,
        max_cmd_sn=u32,
        async_vcode=u8,
        parameter1=u16,
        parameter2=u16,
        parameter3=u16,
        data=data,
    ),
    "Reject": st.builds(
        Reject,
        reason=u8.map(RejectReason),
        stat_sn=u32,
        exp_cmd_sn=u32,
        max_cmd_sn=u32,
        data_sn_r2t_sn=u32,
        data=st.just(b"") | st.binary(min_size=48, max_size=48),
    ),
}

any_pdu = st.one_of(*STRATEGIES.values())
digests = st.tuples(st.booleans(), st.booleans())


def expected(pdu: PDU) -> PDU:
    """What decoding gives back: the canonical form of fields with encoder conveniences."""
    if isinstance(pdu, SCSICommand) and len(pdu.cdb) < 16:
        return dataclasses.replace(pdu, cdb=pdu.cdb.ljust(16, b"\0"))
    if isinstance(pdu, SCSIResponse):
        segment = pdu.data or (encode_sense(pdu.sense) if pdu.sense else b"")
        return dataclasses.replace(pdu, data=segment, sense=decode_sense(segment))
    return pdu


def test_every_pdu_class_has_a_strategy() -> None:
    assert set(STRATEGIES) == {cls.__name__ for cls in PDU.__args__}


@pytest.mark.parametrize("name", sorted(STRATEGIES))
@SETTINGS
@given(data=st.data(), flags=digests)
def test_roundtrip(name: str, data: st.DataObject, flags: tuple[bool, bool]) -> None:
    pdu = data.draw(STRATEGIES[name])
    header_digest, data_digest = flags
    wire = pdu.encode(header_digest, data_digest)
    assert b"".join(pdu.encode_parts(header_digest, data_digest)) == wire
    assert len(wire) % 4 == 0
    decoded = decode(wire, header_digest, data_digest)
    assert decoded == expected(pdu)
    assert decoded.encode(header_digest, data_digest) == wire


@settings(max_examples=150, deadline=None)
@given(
    pdus=st.lists(any_pdu, max_size=8),
    flags=digests,
    cuts=st.lists(st.integers(0, 1 << 16), max_size=12),
)
def test_stream_split_anywhere(pdus: list[PDU], flags: tuple[bool, bool], cuts: list[int]) -> None:
    stream = b"".join(pdu.encode(*flags) for pdu in pdus)
    points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    reader = PDUReader(max_data_segment_length=1024, header_digest=flags[0], data_digest=flags[1])
    got: list[PDU] = []
    for start, end in pairwise(points):
        # Feed a mix of buffer types: only bytes may be kept by reference.
        piece = stream[start:end]
        reader.feed(bytearray(piece) if start % 3 == 1 else piece)
        while (pdu := reader.next_pdu()) is not None:
            got.append(pdu)
    assert got == [expected(p) for p in pdus]
    assert reader.buffered == 0


@settings(max_examples=100, deadline=None)
@given(
    before=st.lists(any_pdu, max_size=3),
    victim=STRATEGIES["DataOut"].filter(lambda p: len(p.data) > 0),
    after=st.lists(any_pdu, max_size=3),
    flip=st.integers(0, 1 << 16),
    chunk=st.integers(1, 200),
)
def test_data_digest_error_keeps_stream_in_sync(
    before: list[PDU], victim: DataOut, after: list[PDU], flip: int, chunk: int
) -> None:
    bad = bytearray(victim.encode(True, True))
    bad[52 + flip % len(victim.data)] ^= 0x01
    stream = b"".join(
        [
            *(p.encode(True, True) for p in before),
            bytes(bad),
            *(p.encode(True, True) for p in after),
        ]
    )
    reader = PDUReader(max_data_segment_length=1024, header_digest=True, data_digest=True)
    got: list[PDU] = []
    errors: list[DataDigestError] = []
    for i in range(0, len(stream), chunk):
        reader.feed(stream[i : i + chunk])
        while True:
            try:
                pdu = reader.next_pdu()
            except DataDigestError as exc:
                errors.append(exc)
                continue
            if pdu is None:
                break
            got.append(pdu)
    assert got == [expected(p) for p in before + after]
    assert len(errors) == 1
    assert errors[0].header == bytes(bad[:48])
    assert errors[0].pdu == dataclasses.replace(victim, data=b"")
