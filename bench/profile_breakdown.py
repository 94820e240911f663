"""Where sanstack's target spends its CPU per command: py-spy samples grouped by layer.

Pure: it reads the text ``py-spy record --format raw`` writes (collapsed stacks, one line
per distinct stack, ``frame;frame;...;leaf COUNT``, root first, each frame
``function (file:line)``) and groups the samples' *self* time by the sanstack layer of
the frame that was running.  bench/target_vs_tgt.py ``--profile`` records the file and
turns shares into microseconds per command with the target's measured CPU per I/O.

A frame is classified by its file:

- Python code under ``sanstack/`` by package and module (the ``LAYER_RULES`` table);
- the event loop and the thread pool (``asyncio/``, ``uvloop/``, ``concurrent/``,
  ``threading.py``, ``selectors.py``, ``queue.py``; with ``--native``, uvloop's and
  libuv's C sources and ``_asynciomodule.c``) as the runtime;
- frames that belong to whoever called them are skipped in favour of their caller:
  dataclass-generated ``__init__`` (``<string>``), ``<frozen ...>`` modules and native
  frames of libc, libpython and the like.  So a ``preadv`` in C counts for the Python
  function that called ``os.preadv`` (the block backstore), and a ``writev`` inside
  uvloop's ``writelines`` (with ``--native``) counts for the runtime;
- any other file is ``other``.

Samples are not CPU time on their own: py-spy counts a thread that is runnable but waiting
for a CPU as busy, and the file backstore's pool threads spend much of their time being
woken.  So the samples of the main thread (the event loop) and of the other threads
(stacks under ``threading.py``'s ``_bootstrap``) are shared out separately, each over the
CPU that group of threads was measured to use per I/O (``/proc``), and the two added.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

PDU_CODEC = "iSCSI PDU codec"
CONNECTION_CORE = "iSCSI connection core"
SCSI = "SCSI LU/SBC"
BLOCK = "block backstore"
EDGE = "edge driver (edge/, target/)"
RUNTIME = "asyncio/uvloop runtime"
OTHER = "other"
LAYERS = (PDU_CODEC, CONNECTION_CORE, SCSI, BLOCK, EDGE, RUNTIME, OTHER)

# First match wins: (path under sanstack/, layer); a path ending in "/" is a package.
LAYER_RULES: tuple[tuple[str, str], ...] = (
    ("iscsi/pdu.py", PDU_CODEC),
    ("iscsi/pdu_reader.py", PDU_CODEC),
    ("iscsi/pdu_stream.py", PDU_CODEC),
    ("iscsi/digest.py", PDU_CODEC),
    ("iscsi/login_pdus.py", PDU_CODEC),
    ("iscsi/", CONNECTION_CORE),
    ("scsi/", SCSI),
    ("block/", BLOCK),
    ("edge/", EDGE),
    ("target/", EDGE),
)
_RUNTIME_PACKAGES = frozenset({"asyncio", "uvloop", "concurrent"})
_RUNTIME_MODULES = frozenset({"threading.py", "selectors.py", "queue.py"})
# C sources of uvloop (loop.c), of libuv under it, and of CPython's _asyncio module.
_RUNTIME_C_FILES = frozenset(
    {
        "loop.c",
        "core.c",
        "linux.c",
        "linux-core.c",
        "stream.c",
        "tcp.c",
        "timer.c",
        "async.c",
        "uv-common.c",
        "epoll.c",
        "poll.c",
        "signal.c",
        "_asynciomodule.c",
        "_asynciomodule.c.h",
    }
)
_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


class ProfileParseError(ValueError):
    """A line of the raw py-spy output is not ``stack COUNT``."""


@dataclass(frozen=True, slots=True)
class Frame:
    function: str
    file: str


def parse_frame(text: str) -> Frame:
    """``function (file:line)``; a frame without that shape keeps its text as function."""
    match = _FRAME.match(text)
    if match is None:
        return Frame(text, "")
    return Frame(match["function"], match["file"])


def parse_collapsed(
    text: str, malformed: list[str] | None = None
) -> list[tuple[tuple[Frame, ...], int]]:
    """Each stack (root first) and its sample count; blank lines are skipped.

    A line that is not ``stack COUNT`` raises :class:`ProfileParseError`, or, given a
    ``malformed`` list, is appended to it and skipped: ``--nonblocking`` reads the names of
    a running process, and a name caught half-written can hold a newline.  Samples with
    no frame at all make a line `` COUNT``: an empty stack, counted as ``other``.
    """
    stacks: list[tuple[tuple[Frame, ...], int]] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            if malformed is None:
                raise ProfileParseError(
                    f"line {number}: not 'frame;frame;... COUNT': {line[:80]!r}"
                )
            malformed.append(line)
            continue
        # An empty stack (" 6"): samples of a thread py-spy found no Python frame in.
        frames = tuple(parse_frame(f) for f in stack.split(";")) if stack else ()
        stacks.append((frames, int(count)))
    return stacks


def sanstack_module(file: str) -> str | None:
    """The path under ``sanstack/`` (``iscsi/pdu.py``), or None outside sanstack."""
    parts = file.replace("\\", "/").split("/")
    if "sanstack" not in parts[:-1]:
        return None
    last = len(parts) - 1 - parts[::-1].index("sanstack")
    return "/".join(parts[last + 1 :])


def classify_frame(frame: Frame) -> str | None:
    """The layer of a frame, or None if it counts for its caller."""
    file = frame.file
    if not file or file.startswith("<"):  # <string> (generated code), <frozen runpy>
        return None
    module = sanstack_module(file)
    if module is not None:
        for prefix, layer in LAYER_RULES:
            if module == prefix or (prefix.endswith("/") and module.startswith(prefix)):
                return layer
        return OTHER
    parts = file.replace("\\", "/").split("/")
    if not file.endswith(".py"):  # a native frame (--native): libc, libpython, uvloop's C
        return RUNTIME if parts[-1] in _RUNTIME_C_FILES else None
    if _RUNTIME_PACKAGES.intersection(parts[:-1]) or parts[-1] in _RUNTIME_MODULES:
        return RUNTIME
    return OTHER


def self_frame(stack: Sequence[Frame]) -> tuple[str, Frame | None]:
    """The layer a sample's self time counts for, and the frame that decided it."""
    for frame in reversed(stack):
        layer = classify_frame(frame)
        if layer is not None:
            return layer, frame
    return OTHER, None


def on_pool_thread(stack: Sequence[Frame]) -> bool:
    """The stack is a ``threading.Thread``'s (the backstore's pool), not the main thread's."""
    return any(f.function.endswith("_bootstrap") and f.file.endswith("threading.py") for f in stack)


@dataclass(frozen=True, slots=True)
class ThreadCpu:
    """Measured CPU µs per I/O of the main thread and of all the other threads."""

    main_us: float
    threads_us: float

    @property
    def total_us(self) -> float:
        return self.main_us + self.threads_us


@dataclass
class Breakdown:
    """Self-time samples per layer, per thread group, module and function of one recording."""

    main: Counter[str] = field(default_factory=Counter)  # layer -> samples, main thread
    threads: Counter[str] = field(default_factory=Counter)  # layer -> samples, other threads
    modules: Counter[str] = field(default_factory=Counter)
    functions: Counter[str] = field(default_factory=Counter)

    @property
    def samples(self) -> int:
        return self.main.total() + self.threads.total()

    def us_per_io(self, cpu: ThreadCpu) -> dict[str, float]:
        """Each layer's µs of target CPU per I/O: each thread group's CPU shared out over
        its own samples; a group's CPU without samples counts as ``other``."""
        result = dict.fromkeys(LAYERS, 0.0)
        for samples, us in ((self.main, cpu.main_us), (self.threads, cpu.threads_us)):
            total = samples.total()
            if not total:
                result[OTHER] += us
                continue
            for layer, count in samples.items():
                result[layer] += us * count / total
        return result

    def shares(self, cpu: ThreadCpu | None) -> dict[str, float]:
        """Each layer's fraction of the target's CPU (of the raw samples without ``cpu``)."""
        if cpu is not None and cpu.total_us > 0:
            return {k: v / cpu.total_us for k, v in self.us_per_io(cpu).items()}
        total = self.samples
        return {k: (self.main[k] + self.threads[k]) / total if total else 0.0 for k in LAYERS}

    def as_dict(self, cpu: ThreadCpu | None, top: int = 10) -> dict[str, object]:
        shares = self.shares(cpu)
        per_io = self.us_per_io(cpu) if cpu is not None else None
        return {
            "samples": self.samples,
            "cpu_us_per_io": None
            if cpu is None
            else {"main": cpu.main_us, "threads": cpu.threads_us},
            "layers": {
                layer: {
                    "samples_main": self.main[layer],
                    "samples_threads": self.threads[layer],
                    "share": shares[layer],
                    "us_per_io": None if per_io is None else per_io[layer],
                }
                for layer in LAYERS
            },
            "top_modules": dict(self.modules.most_common(top)),
            "top_functions": dict(self.functions.most_common(top)),
        }


def breakdown(stacks: Iterable[tuple[Sequence[Frame], int]]) -> Breakdown:
    result = Breakdown()
    for stack, count in stacks:
        layer, frame = self_frame(stack)
        (result.threads if on_pool_thread(stack) else result.main)[layer] += count
        where = "?" if frame is None else (sanstack_module(frame.file) or frame.file)
        result.modules[where] += count
        if frame is not None:
            result.functions[f"{frame.function} ({where})"] += count
    return result


def format_breakdown(result: Breakdown, cpu: ThreadCpu | None, title: str, top: int = 5) -> str:
    """A table: per layer, samples per thread group, % of the CPU and µs per command."""
    per_io = ""
    if cpu is not None:
        per_io = (
            f"; target CPU per I/O {cpu.total_us:.1f} µs "
            f"(main thread {cpu.main_us:.1f}, other threads {cpu.threads_us:.1f})"
        )
    lines = [f"{title}: {result.samples} samples{per_io}"]
    lines.append(f"  {'layer (self time)':30}{'main':>7}{'threads':>9}{'% CPU':>8}{'µs/cmd':>9}")
    shares = result.shares(cpu)
    per_layer = result.us_per_io(cpu) if cpu is not None else {}
    for layer in LAYERS:
        us = f"{per_layer[layer]:.2f}" if per_layer else "-"
        lines.append(
            f"  {layer:30}{result.main[layer]:>7}{result.threads[layer]:>9}"
            f"{100 * shares[layer]:>8.1f}{us:>9}"
        )
    if result.functions:
        lines.append("  hottest functions (% of all samples, self):")
        for name, count in result.functions.most_common(top):
            lines.append(f"    {100 * count / result.samples:5.1f}%  {name}")
    return "\n".join(lines)
