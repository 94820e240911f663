"""The parsers behind bench/target_vs_tgt.py, fed output captured from the real tools.

The samples were captured from libiscsi 1.19 ``iscsi-perf`` and qemu 7.2 ``qemu-img bench``
running against sanstack's target on 127.0.0.1.
"""

from __future__ import annotations

import pytest
from bench.perf_output import (
    PerfParseError,
    parse_iscsi_perf_output,
    parse_qemu_img_bench_output,
)

_HEADER = (
    "iscsi-perf version 0.1 - (c) 2014-2015 by Peter Lieven <pl@ĸamp.de>\n\n"
    "connected to iscsi://127.0.0.1:55433/iqn.2026-01.test:s/0\n"
    "capacity is 131072 blocks or 67108864 byte (64 MB)\n"
)

# iscsi-perf -l -t 3 -m 32 -b 8 -r <url>
RANDOM_LOGGING = (
    _HEADER + "performing RANDOM READ with 32 parallel requests\n"
    "FIXED transfer size of 8 blocks (4096 byte)\n"
    "will run for 3 seconds.\n\n"
    "\r00:00:02 - lba 41881, iops current 28718 (112 MB/s), iops average 28718 (112 MB/s),"
    " in_flight 32, busy 0        \n"
    "\r00:00:01 - lba 12207, iops current 27456 (107 MB/s), iops average 28087 (109 MB/s),"
    " in_flight 32, busy 0        \n"
    "\riops average 28506 (111 MB/s)"
    "                                                        \n\n\nfinished.\n"
)

# the same without -l: progress lines overwrite each other with \r
RANDOM_NO_LOGGING = (
    _HEADER + "performing RANDOM READ with 32 parallel requests\n"
    "FIXED transfer size of 8 blocks (4096 byte)\n"
    "will run for 3 seconds.\n\n"
    "\r00:00:02 - lba 87223, iops current 27981 (109 MB/s), iops average 27981 (109 MB/s),"
    " in_flight 32, busy 0        "
    "\r00:00:01 - lba 27832, iops current 30418 (118 MB/s), iops average 29200 (114 MB/s),"
    " in_flight 32, busy 0        "
    "\riops average 29864 (116 MB/s)"
    "                                                        \n\nfinished.\n"
)

# iscsi-perf -l -t 2 -m 8 -b 2048 <url>
SEQUENTIAL_LOGGING = (
    _HEADER + "performing SEQUENTIAL READ with 8 parallel requests\n"
    "FIXED transfer size of 2048 blocks (1048576 byte)\n"
    "will run for 2 seconds.\n\n"
    "\r00:00:01 - lba 108544, iops current 1445 (1446 MB/s), iops average 1445 (1446 MB/s),"
    " in_flight 8, busy 0        \n"
    "\riops average 1455 (1455 MB/s)"
    "                                                        \n\n\nfinished.\n"
)

# iscsi-perf against a target name that does not exist: stdout then stderr, exit 10
LOGIN_FAILED = (
    "iscsi-perf version 0.1 - (c) 2014-2015 by Peter Lieven <pl@ĸamp.de>\n\n"
    "Login Failed. Failed to log in to target. Status: Target not found(515)\n"
)

# qemu-img bench -f raw -c 20000 -d 32 -s 4096 -S 428969984 <url>
QEMU_BENCH = (
    "Sending 20000 read requests, 4096 bytes each, 32 in parallel "
    "(starting at offset 0, step size 428969984)\n"
    "Run completed in 0.620 seconds.\n"
)


def test_random_read_with_logging() -> None:
    result = parse_iscsi_perf_output(RANDOM_LOGGING)
    assert result.iops == 28506
    assert result.from_final_line
    assert result.finished
    assert result.errors == ()
    assert result.mode == "random"
    assert result.queue_depth == 32
    assert result.transfer_bytes == 4096
    assert result.capacity_bytes == 64 << 20
    assert [s.iops_current for s in result.samples] == [28718, 27456]
    assert [s.remaining_s for s in result.samples] == [2, 1]
    assert result.samples[-1].iops_average == 28087
    assert result.samples[0].in_flight == 32
    assert result.mib_per_s == pytest.approx(28506 * 4096 / (1 << 20))


def test_carriage_returns_without_logging_parse_the_same() -> None:
    result = parse_iscsi_perf_output(RANDOM_NO_LOGGING)
    assert result.iops == 29864
    assert result.finished
    assert len(result.samples) == 2
    assert result.samples[1].iops_current == 30418


def test_sequential_throughput_comes_from_iops_and_transfer_size() -> None:
    result = parse_iscsi_perf_output(SEQUENTIAL_LOGGING)
    assert result.mode == "sequential"
    assert result.queue_depth == 8
    assert result.iops == 1455
    assert result.mib_per_s == pytest.approx(1455.0)
    assert result.samples[0].busy == 0


def test_interrupted_run_falls_back_to_last_progress_average() -> None:
    # cut before the final line, as when the run is stopped from outside
    cut = RANDOM_LOGGING[: RANDOM_LOGGING.index("\riops average 28506")]
    result = parse_iscsi_perf_output(cut + "\nABORTED!\n")
    assert result.iops == 28087
    assert not result.from_final_line
    assert not result.finished
    assert result.errors == ("ABORTED!",)


def test_login_failure_has_no_figure() -> None:
    with pytest.raises(PerfParseError):
        parse_iscsi_perf_output(LOGIN_FAILED)


def test_read_errors_are_collected() -> None:
    text = RANDOM_LOGGING.replace(
        "\riops average 28506",
        "Read16 failed with SCSI_STATUS_CHECK_CONDITION\n\riops average 28506",
    )
    assert parse_iscsi_perf_output(text).errors == (
        "Read16 failed with SCSI_STATUS_CHECK_CONDITION",
    )


def test_qemu_img_bench() -> None:
    result = parse_qemu_img_bench_output(QEMU_BENCH)
    assert result.requests == 20000
    assert result.request_bytes == 4096
    assert result.queue_depth == 32
    assert result.seconds == pytest.approx(0.62)
    assert result.iops == pytest.approx(20000 / 0.62)
    assert result.mib_per_s == pytest.approx(20000 / 0.62 * 4096 / (1 << 20))


def test_qemu_img_bench_failure() -> None:
    with pytest.raises(PerfParseError):
        parse_qemu_img_bench_output("qemu-img: Could not open 'iscsi://...': Failed to login\n")
