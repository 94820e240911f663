"""The Data-In framer: runs of Data-In framed where they lie, anything else left to the
reader, a Data-In cut by a segment's end completed from the next; and the initiator core
that uses it answers the same whatever the split."""

from __future__ import annotations

import asyncio
import struct

import pytest
from tests.support.initiator_pair import make_initiator_pair

from sanstack.iscsi import pdu as p
from sanstack.iscsi.initiator_events import CommandCompleted, ConnectionFailed
from sanstack.iscsi.initiator_framing import DataInFramer

RESERVED = 0xFFFFFFFF


def data_in(itt: int, data: bytes, *, stat_sn: int = 0, status: bool = True) -> bytes:
    return p.DataIn(
        itt=itt,
        ttt=RESERVED,
        stat_sn=stat_sn,
        exp_cmd_sn=1,
        max_cmd_sn=64,
        final=True,
        status_present=status,
        data=data,
    ).encode()


def collect(framer: DataInFramer, segments: list[bytes]) -> tuple[list[tuple[int, bytes]], bytes]:
    got: list[tuple[int, bytes]] = []
    rest = b""
    for segment in segments:
        rest += framer.frame(segment, lambda fields, data: got.append((fields[5], data)))
    return got, rest


def splits(stream: bytes, size: int) -> list[bytes]:
    return [stream[i : i + size] for i in range(0, len(stream), size)]


@pytest.mark.parametrize("size", [1, 3, 7, 8, 47, 48, 49, 100, 4096, 1 << 20])
def test_every_split_frames_every_pdu_once(size: int) -> None:
    pdus = [(itt, bytes([itt]) * (itt * 5)) for itt in range(1, 12)]  # padding included
    stream = b"".join(data_in(itt, data) for itt, data in pdus)
    framer = DataInFramer()
    framer.max_segment = 4096
    got, rest = collect(framer, splits(stream, size))
    assert got == pdus
    assert rest == b""
    assert framer.carry == b""


def test_another_pdu_and_what_follows_go_back() -> None:
    nop = p.NopIn(itt=RESERVED, ttt=5, stat_sn=1, exp_cmd_sn=1, max_cmd_sn=9).encode()
    first, last = data_in(1, b"a" * 8), data_in(2, b"b" * 8)
    framer = DataInFramer()
    framer.max_segment = 4096
    got, rest = collect(framer, [first + nop + last])
    assert got == [(1, b"a" * 8)]
    assert rest == nop + last


def test_a_segment_too_long_goes_back_even_when_held() -> None:
    big = data_in(1, bytes(100))
    framer = DataInFramer()
    framer.max_segment = 64
    got, rest = collect(framer, [big[:20], big[20:]])
    assert got == []
    assert rest == big


def test_a_held_pdu_goes_back_when_taken() -> None:
    framer = DataInFramer()
    framer.max_segment = 4096
    pdu = data_in(1, b"x" * 16)
    assert framer.frame(pdu[:30], lambda fields, data: None) == b""
    assert framer.take_carry() == pdu[:30]
    assert framer.carry == b""


def read16(lba: int, blocks: int) -> bytes:
    return struct.pack(">BBQIBB", 0x88, 0, lba, blocks, 0, 0)


@pytest.mark.parametrize("size", [1, 13, 48, 500, 4144, 9000])
def test_the_core_completes_reads_whatever_the_split(size: int) -> None:
    pair = make_initiator_pair()
    core = pair.initiator
    pattern = b"".join(bytes([i]) * 4096 for i in range(6))
    asyncio.run(pair.device.write(0, pattern))
    itts = [core.submit(0, read16(i * 8, 8), read_length=4096) for i in range(6)]
    pair.target_conn.receive_data(b"".join(bytes(x) for x in core.data_to_send()), pair.now)
    pair._target_events()
    answer = b"".join(bytes(x) for x in pair.target_conn.data_to_send())
    for segment in splits(answer, size):
        core.receive_data(segment, pair.now)
    done = [e for e in iter(core.next_event, None) if isinstance(e, CommandCompleted)]
    assert [e.itt for e in done] == itts
    assert all(e.status == 0 for e in done)
    assert [b"".join(e.parts) for e in done] == [bytes([i]) * 4096 for i in range(6)]
    assert core.in_flight == 0


def test_a_data_in_for_an_unknown_task_fails_the_connection() -> None:
    pair = make_initiator_pair()
    core = pair.initiator
    core.receive_data(data_in(0x4242, bytes(512), stat_sn=core.exp_stat_sn), pair.now)
    failed = [e for e in iter(core.next_event, None) if isinstance(e, ConnectionFailed)]
    assert failed
    assert "unknown ITT" in failed[0].reason
    assert core.closed
