"""Pure parsers for the output of libiscsi's ``iscsi-perf`` and of ``qemu-img bench``.

``iscsi-perf`` (libiscsi utils/iscsi-perf.c, identical in 1.19 and later) prints, once a
second from its completion callback, a progress line; with ``-l`` each ends in a newline,
without it each starts with ``\\r`` and overwrites the previous one (wrapped here)::

    00:00:02 - lba 17082, iops current 42118 (164 MB/s), iops average 42118 (164 MB/s),
    in_flight 32, busy 0

``HH:MM:SS`` counts *down* when ``-t <seconds>`` is given.  When the countdown reaches
zero it prints the final line ``iops average 45349 (177 MB/s)`` (the average over the
whole run, from the first request sent), drains the requests in flight, and prints
``finished.``.  ``ABORTED!`` means it stopped on an error or on a second SIGINT.  Its
"MB" are MiB (the byte counts are shifted right by 20) and are truncated to integers,
so callers should derive throughput from the IOPS and the transfer size instead.

``qemu-img bench`` prints ``Sending N read requests, S bytes each, D in parallel ...``
then ``Run completed in T seconds.``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_PROGRESS = re.compile(
    r"(?P<h>\d+):(?P<m>\d+):(?P<s>\d+) - lba (?P<lba>\d+), "
    r"iops current (?P<iops>\d+) \((?P<mbps>\d+) MB/s\), "
    r"iops average (?P<avg>\d+) \((?P<avg_mbps>\d+) MB/s\), "
    r"in_flight (?P<in_flight>\d+), busy (?P<busy>\d+)"
)
_FINAL = re.compile(r"^iops average (?P<avg>\d+) \((?P<avg_mbps>\d+) MB/s\)\s*$")
_TRANSFER = re.compile(r"transfer size of (?P<blocks>\d+) blocks \((?P<bytes>\d+) byte\)")
_CAPACITY = re.compile(r"capacity is (?P<blocks>\d+) blocks or (?P<bytes>\d+) byte")
_MODE = re.compile(r"performing (?P<mode>RANDOM|SEQUENTIAL) READ with (?P<depth>\d+) parallel")
_ERROR_MARKERS = (
    "Login Failed",
    "Read16 failed",
    "failed to send",
    "Failed to",
    "failed to",
    "maximum number of command retries",
    "iscsi_service failed",
    "ABORT",
)


class PerfParseError(ValueError):
    """The text holds no throughput figure at all."""


@dataclass(frozen=True)
class PerfSample:
    """One once-a-second progress line."""

    remaining_s: int
    iops_current: int
    iops_average: int
    in_flight: int
    busy: int


@dataclass(frozen=True)
class PerfResult:
    """What one ``iscsi-perf`` run reported."""

    iops: float
    """Average IOPS over the whole run: the final line, else the last progress line."""
    transfer_bytes: int | None
    capacity_bytes: int | None
    mode: str | None
    queue_depth: int | None
    samples: tuple[PerfSample, ...]
    finished: bool
    """``finished.`` was printed: the countdown ran out and iscsi-perf logged out cleanly."""
    from_final_line: bool
    errors: tuple[str, ...]

    @property
    def mib_per_s(self) -> float | None:
        if self.transfer_bytes is None:
            return None
        return self.iops * self.transfer_bytes / (1 << 20)


def parse_iscsi_perf_output(text: str) -> PerfResult:
    """Parse ``iscsi-perf`` stdout (with or without ``-l``); stderr may be appended.

    Raises :class:`PerfParseError` when there is neither a final nor a progress line.
    """
    samples: list[PerfSample] = []
    final: int | None = None
    transfer: int | None = None
    capacity: int | None = None
    mode: str | None = None
    depth: int | None = None
    finished = False
    errors: list[str] = []
    for raw in re.split(r"[\r\n]+", text):
        line = raw.strip()
        if not line:
            continue
        if (progress := _PROGRESS.search(line)) is not None:
            samples.append(
                PerfSample(
                    remaining_s=int(progress["h"]) * 3600
                    + int(progress["m"]) * 60
                    + int(progress["s"]),
                    iops_current=int(progress["iops"]),
                    iops_average=int(progress["avg"]),
                    in_flight=int(progress["in_flight"]),
                    busy=int(progress["busy"]),
                )
            )
        elif (last := _FINAL.match(line)) is not None:
            final = int(last["avg"])
        elif (size := _TRANSFER.search(line)) is not None:
            transfer = int(size["bytes"])
        elif (cap := _CAPACITY.search(line)) is not None:
            capacity = int(cap["bytes"])
        elif (how := _MODE.search(line)) is not None:
            mode = how["mode"].lower()
            depth = int(how["depth"])
        elif line == "finished.":
            finished = True
        elif any(marker in line for marker in _ERROR_MARKERS):
            errors.append(line)
    if final is not None:
        iops = float(final)
    elif samples:
        iops = float(samples[-1].iops_average)
    else:
        raise PerfParseError("no 'iops average' figure in iscsi-perf output")
    return PerfResult(
        iops=iops,
        transfer_bytes=transfer,
        capacity_bytes=capacity,
        mode=mode,
        queue_depth=depth,
        samples=tuple(samples),
        finished=finished,
        from_final_line=final is not None,
        errors=tuple(errors),
    )


_QEMU_SENDING = re.compile(
    r"Sending (?P<count>\d+) (?P<op>read|write) requests, (?P<size>\d+) bytes each, "
    r"(?P<depth>\d+) in parallel"
)
_QEMU_DONE = re.compile(r"Run completed in (?P<seconds>\d+(?:\.\d+)?) seconds")


@dataclass(frozen=True)
class QemuBenchResult:
    """What one ``qemu-img bench`` run reported."""

    requests: int
    request_bytes: int
    queue_depth: int
    seconds: float

    @property
    def iops(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    @property
    def mib_per_s(self) -> float:
        return self.iops * self.request_bytes / (1 << 20)


def parse_qemu_img_bench_output(text: str) -> QemuBenchResult:
    """Parse ``qemu-img bench`` stdout; raises :class:`PerfParseError` on anything else."""
    sending = _QEMU_SENDING.search(text)
    done = _QEMU_DONE.search(text)
    if sending is None or done is None:
        raise PerfParseError("qemu-img bench output lacks 'Sending' or 'Run completed'")
    return QemuBenchResult(
        requests=int(sending["count"]),
        request_bytes=int(sending["size"]),
        queue_depth=int(sending["depth"]),
        seconds=float(done["seconds"]),
    )
