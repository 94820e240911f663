"""The cluster log: typed events, a bounded ring numbered for ``--follow``, JSON lines."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from sanstack.cluster.events import (
    DEFAULT_CAPACITY,
    ClusterEvent,
    EventKind,
    EventLineError,
    EventLog,
    decode_line,
    encode_line,
)


def event(i: int = 0, kind: EventKind = EventKind.GROUP_STATE) -> ClusterEvent:
    return ClusterEvent(1_800_000_000.0 + i, "n1", kind, f"step {i}", group="g1")


FENCED = ClusterEvent(
    1_800_000_000.25,
    "n1",
    EventKind.DISK_FENCED,
    "RESERVATION CONFLICT on a disk it owned: ownership unexpectedly lost",
    group="g1",
    disk="d1",
    key=0x6754AF9670AB4138,
    peer="n2",
)


def test_the_kinds_are_the_cluster_logs() -> None:
    assert {kind.value for kind in EventKind} == {
        "membership.view",
        "membership.joined",
        "membership.left",
        "membership.rejoined",
        "membership.paused",
        "membership.resumed",
        "quorum.gained",
        "quorum.lost",
        "disk.arbitrated",
        "disk.defended",
        "disk.preempted",
        "disk.fenced",
        "disk.released",
        "disk.unfenced",
        "disk.unreachable",
        "disk.reachable",
        "group.state",
        "group.moved",
        "group.failed",
        "volume.scanned",
    }


def test_append_numbers_events_from_one() -> None:
    log = EventLog()
    assert (log.capacity, log.last_seq, log.first_seq, len(log)) == (DEFAULT_CAPACITY, 0, 1, 0)
    first = log.append(event(0))
    second = log.append(event(1))
    assert (first.seq, second.seq) == (1, 2)
    assert first == replace(event(0), seq=1)
    assert (log.first_seq, log.last_seq, len(log)) == (1, 2, 2)


def test_since_returns_the_newer_events_oldest_first() -> None:
    log = EventLog()
    for i in range(5):
        log.append(event(i))
    assert [e.seq for e in log.since(0)] == [1, 2, 3, 4, 5]
    assert [e.seq for e in log.since(3)] == [4, 5]
    assert log.since(5) == ()
    assert log.since(99) == ()
    assert [e.seq for e in log.since(0, limit=2)] == [1, 2]


def test_the_ring_drops_the_oldest_and_says_so() -> None:
    log = EventLog(capacity=3)
    for i in range(5):
        log.append(event(i))
    assert len(log) == 3
    assert (log.first_seq, log.last_seq) == (3, 5)
    # a follower that last saw 1 can tell it missed 2: first_seq > 1 + 1
    assert [e.seq for e in log.since(1)] == [3, 4, 5]
    assert [e.reason for e in log.since(0)] == ["step 2", "step 3", "step 4"]


def test_capacity_is_at_least_one() -> None:
    with pytest.raises(ValueError, match="at least one"):
        EventLog(capacity=0)


def test_restore_keeps_the_numbers_and_continues_after_them() -> None:
    log = EventLog(capacity=2)
    log.restore(
        [
            ClusterEvent(1.0, "n1", EventKind.JOINED, "a", seq=7),
            replace(FENCED, seq=9),
        ]
    )
    assert (log.first_seq, log.last_seq) == (7, 9)
    assert log.append(event()).seq == 10
    assert [e.seq for e in log.since(0)] == [9, 10]
    with pytest.raises(ValueError, match="does not follow"):
        log.restore([ClusterEvent(1.0, "n1", EventKind.JOINED, "a", seq=10)])


def test_to_dict_shows_the_key_as_hex_and_leaves_out_empty_fields() -> None:
    log = EventLog()
    log.append(FENCED)
    log.append(ClusterEvent(5.0, "n1", EventKind.VIEW, "members n1, n3", epoch=4))
    assert log.to_dict(since=0) == {
        "first_seq": 1,
        "last_seq": 2,
        "capacity": DEFAULT_CAPACITY,
        "events": [
            {
                "seq": 1,
                "time": 1_800_000_000.25,
                "node": "n1",
                "kind": "disk.fenced",
                "reason": FENCED.reason,
                "group": "g1",
                "disk": "d1",
                "peer": "n2",
                "key": "0x6754af9670ab4138",
            },
            {
                "seq": 2,
                "time": 5.0,
                "node": "n1",
                "kind": "membership.view",
                "reason": "members n1, n3",
                "epoch": 4,
            },
        ],
    }
    assert log.to_dict(since=1)["events"][0]["seq"] == 2


def test_line_codec_is_one_json_line_and_round_trips() -> None:
    numbered = EventLog().append(FENCED)
    line = encode_line(numbered)
    assert line == (
        b'{"seq":1,"time":1800000000.25,"node":"n1","kind":"disk.fenced",'
        b'"reason":"RESERVATION CONFLICT on a disk it owned: ownership unexpectedly lost",'
        b'"group":"g1","disk":"d1","peer":"n2","key":"0x6754af9670ab4138"}\n'
    )
    assert decode_line(line) == numbered
    assert decode_line(line.decode()) == numbered


def test_a_reason_with_newlines_stays_on_one_line() -> None:
    multi = ClusterEvent(1.0, "n1", EventKind.GROUP_FAILED, "first\nsecond \u00e9")
    line = encode_line(multi)
    assert line.count(b"\n") == 1 and line.endswith(b"\n")
    assert decode_line(line) == multi


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        (b'{"seq":1,"time":1.0,"node":"n1","kind":"disk.fenc', "not JSON"),  # torn write
        (b"\xff\n", "not UTF-8"),
        (b"[1]", "a JSON object"),
        (b'{"time":1.0,"node":"n1","kind":"nope","reason":""}', "unknown event kind 'nope'"),
        (
            b'{"time":1.0,"node":"n1","kind":"quorum.lost","reason":"","x":1}',
            "unknown event field 'x'",
        ),
        (
            b'{"time":"now","node":"n1","kind":"quorum.lost","reason":""}',
            "time 'now' is not a number",
        ),
        (b'{"time":1.0,"node":5,"kind":"quorum.lost","reason":""}', "node 5 is not a string"),
        (b'{"time":1.0,"node":"n1","kind":"quorum.lost"}', "reason None is not a string"),
        (
            b'{"time":1.0,"node":"n1","kind":"quorum.lost","reason":"","key":"xyz"}',
            "'xyz' is not a 64-bit hex key",
        ),
        (
            b'{"time":1.0,"node":"n1","kind":"quorum.lost","reason":"","key":12}',
            "key 12 is not a 64-bit hex key",
        ),
        (
            b'{"time":1.0,"node":"n1","kind":"quorum.lost","reason":"","seq":-1}',
            "seq -1 is not a count",
        ),
        (
            b'{"time":1.0,"node":"n1","kind":"quorum.lost","reason":"","epoch":true}',
            "epoch True is not a count",
        ),
    ],
)
def test_decode_line_refuses_what_is_not_an_event(line: bytes, problem: str) -> None:
    with pytest.raises(EventLineError) as caught:
        decode_line(line)
    assert problem in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_every_kind_round_trips() -> None:
    for i, kind in enumerate(EventKind):
        numbered = EventLog().append(event(i, kind))
        assert decode_line(encode_line(numbered)) == numbered
        assert json.loads(encode_line(numbered))["kind"] == kind.value
