"""bench/profile_breakdown.py on a small raw py-spy recording (shaped like py-spy 0.4's)."""

from __future__ import annotations

import pytest
from bench.profile_breakdown import (
    BLOCK,
    CONNECTION_CORE,
    EDGE,
    LAYERS,
    OTHER,
    PDU_CODEC,
    RUNTIME,
    SCSI,
    Frame,
    ProfileParseError,
    ThreadCpu,
    breakdown,
    classify_frame,
    format_breakdown,
    parse_collapsed,
    parse_frame,
)

_ROOT = (
    "_run_module_as_main (<frozen runpy>:198);<module> (sanstack/cli/main.py:66);"
    "run (uvloop/__init__.py:92);Runner.run (asyncio/runners.py:118)"
)
_RECV = _ROOT + ";TimedCoreDriver.data_received (sanstack/edge/driver.py:232)"
_CMD = (
    _RECV + ";ConnectionHandler._run_command (sanstack/target/server.py:264)"
    ";LogicalUnit.execute (sanstack/scsi/logical_unit.py:187)"
)
RAW = "\n".join(
    [
        _RECV + ";CoreDriver._flush (sanstack/edge/driver.py:214) 40",
        _CMD + ";read_16 (sanstack/scsi/sbc_rw.py:128);FileDevice.read "
        "(/work/x/src/sanstack/block/file.py:268) 20",
        _CMD + ";current_task (asyncio/tasks.py:38) 10",
        _RECV + ";_scsi_command (sanstack/iscsi/pdu_reader.py:160)"
        ";__create_fn__.<locals>.__init__ (<string>:3) 8",
        _RECV + ";TargetConnection._deliver (sanstack/iscsi/target_connection.py:412) 7",
        _ROOT + " 5",
        "Thread._bootstrap (threading.py:1002);_worker (concurrent/futures/thread.py:81) 4",
        _ROOT + ";helper (sanstack/cli/common.py:10) 3",
        _ROOT + ";dumps (/usr/lib/python3.11/json/encoder.py:200) 2",
        "",
        # --native: C frames of libc/libpython count for their caller, uvloop's for the loop
        _CMD + ";read_16 (sanstack/scsi/sbc_rw.py:128);FileDevice.read "
        "(sanstack/block/file.py:268);os_preadv (libpython3.11.so.1.0);preadv64v2 (libc.so.6) 1",
        _RECV + ";CoreDriver._flush (sanstack/edge/driver.py:214);writelines (loop.c:110315)"
        ";writev (libc.so.6) 2",
    ]
)


def test_parse_frame_and_stack() -> None:
    assert parse_frame("read_16 (sanstack/scsi/sbc_rw.py:128)") == Frame(
        "read_16", "sanstack/scsi/sbc_rw.py"
    )
    assert parse_frame("getpid (libc.so.6)") == Frame("getpid", "libc.so.6")
    assert parse_frame("0x7f2e (libc.so.6)").file == "libc.so.6"
    assert parse_frame("thread (0x7f2e)").file == "0x7f2e"
    stacks = parse_collapsed(RAW)
    assert len(stacks) == 11
    assert sum(count for _, count in stacks) == 102
    assert stacks[0][0][-1] == Frame("CoreDriver._flush", "sanstack/edge/driver.py")


def test_malformed_line_names_its_number() -> None:
    text = "a (x.py:1) 3\nb (x.py:1\n) 4\n"  # a name with a newline (--nonblocking)
    with pytest.raises(ProfileParseError, match="line 2"):
        parse_collapsed(text)
    malformed: list[str] = []
    assert parse_collapsed(text, malformed)[0] == ((Frame("a", "x.py"),), 3)
    assert malformed == ["b (x.py:1"]


def test_an_empty_stack_is_other() -> None:
    stacks = parse_collapsed(" 6\n")
    assert stacks == [((), 6)]
    assert breakdown(stacks).main == {OTHER: 6}


@pytest.mark.parametrize(
    ("file", "layer"),
    [
        ("sanstack/iscsi/pdu.py", PDU_CODEC),
        ("sanstack/iscsi/pdu_reader.py", PDU_CODEC),
        ("/work/benchw/src/sanstack/iscsi/target_tasks.py", CONNECTION_CORE),
        ("sanstack/scsi/sbc_rw.py", SCSI),
        ("sanstack/block/file.py", BLOCK),
        ("sanstack/edge/driver.py", EDGE),
        ("sanstack/target/server.py", EDGE),
        ("sanstack/cli/main.py", OTHER),
        ("asyncio/tasks.py", RUNTIME),
        ("/usr/lib/python3.11/asyncio/events.py", RUNTIME),
        ("uvloop/__init__.py", RUNTIME),
        ("threading.py", RUNTIME),
        ("loop.c", RUNTIME),
        ("json/encoder.py", OTHER),
        ("<string>", None),
        ("<frozen runpy>", None),
        ("libc.so.6", None),
    ],
)
def test_classify_frame(file: str, layer: str | None) -> None:
    assert classify_frame(Frame("f", file)) == layer


def test_breakdown_groups_self_time_by_layer_and_thread() -> None:
    result = breakdown(parse_collapsed(RAW))
    assert result.samples == 102
    assert result.main + result.threads == {
        EDGE: 40,
        BLOCK: 20 + 1,  # preadv in libc counts for FileDevice.read
        RUNTIME: 10 + 5 + 4 + 2,  # the writev under uvloop's writelines is the loop's
        PDU_CODEC: 8,  # a generated dataclass __init__ counts for its caller
        CONNECTION_CORE: 7,
        OTHER: 3 + 2,
    }
    assert result.threads == {RUNTIME: 4}  # the pool thread's stack
    assert result.modules["block/file.py"] == 21
    assert result.functions.most_common(1) == [("CoreDriver._flush (edge/driver.py)", 40)]
    assert sum(result.shares(None).values()) == pytest.approx(1.0)
    assert result.shares(None)[EDGE] == pytest.approx(40 / 102)


def test_each_thread_group_shares_out_its_own_cpu() -> None:
    result = breakdown(parse_collapsed(RAW))
    cpu = ThreadCpu(main_us=19.6, threads_us=2.0)
    per_io = result.us_per_io(cpu)
    assert per_io[EDGE] == pytest.approx(19.6 * 40 / 98)
    assert per_io[RUNTIME] == pytest.approx(19.6 * 17 / 98 + 2.0)
    assert per_io[SCSI] == 0.0
    assert sum(per_io.values()) == pytest.approx(21.6)
    assert result.shares(cpu)[RUNTIME] == pytest.approx(per_io[RUNTIME] / 21.6)
    # CPU of a thread group py-spy never caught running is not lost: it is "other"
    main_only = breakdown(
        parse_collapsed(_RECV + ";CoreDriver._flush (sanstack/edge/driver.py:1) 5")
    )
    assert main_only.us_per_io(cpu) == {**dict.fromkeys(LAYERS, 0.0), EDGE: 19.6, OTHER: 2.0}

    as_dict = result.as_dict(cpu)
    layers = as_dict["layers"]
    assert isinstance(layers, dict)
    assert layers[RUNTIME]["samples_threads"] == 4
    assert layers[EDGE]["us_per_io"] == pytest.approx(per_io[EDGE])
    assert layers[SCSI] == {
        "samples_main": 0, "samples_threads": 0, "share": 0.0, "us_per_io": 0.0
    }  # fmt: skip


def test_format_breakdown_shows_samples_percent_and_microseconds() -> None:
    cpu = ThreadCpu(main_us=19.6, threads_us=2.0)
    text = format_breakdown(breakdown(parse_collapsed(RAW)), cpu, "4 KiB random read")
    assert text.splitlines()[0] == (
        "4 KiB random read: 102 samples; target CPU per I/O 21.6 µs "
        "(main thread 19.6, other threads 2.0)"
    )
    edge = next(line for line in text.splitlines() if line.strip().startswith("edge driver"))
    assert edge.split()[-4:] == ["40", "0", "37.0", "8.00"]
    assert "39.2%  CoreDriver._flush (edge/driver.py)" in text
    assert "-" in format_breakdown(breakdown([]), None, "empty").splitlines()[2]
