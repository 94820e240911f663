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


def parse_collapsed(text: str) -> list[tuple[tuple[Frame, ...], int]]:
    """Each stack (root first) and its sample count; blank lines are skipped."""
    stacks: list[tuple[tuple[Frame, ...], int]] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            raise ProfileParseError(f"line {number}: not 'frame;frame;... COUNT': {line[:80]!r}")
        stacks.append((tuple(parse_frame(f) for f in stack.split(";")), int(count)))
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


@dataclass
class Breakdown:
    """Self-time samples per layer and per (layer, module) of one py-spy recording."""

    samples: int = 0
    layers: Counter[str] = field(default_factory=Counter)
    modules: Counter[str] = field(default_factory=Counter)
    functions: Counter[str] = field(default_factory=Counter)

    def share(self, layer: str) -> float:
        return self.layers[layer] / self.samples if self.samples else 0.0

    def as_dict(self, cpu_us_per_io: float | None, top: int = 10) -> dict[str, object]:
        return {
            "samples": self.samples,
            "cpu_us_per_io": cpu_us_per_io,
            "layers": {
                layer: {
                    "samples": self.layers[layer],
                    "share": self.share(layer),
                    "us_per_io": None
                    if cpu_us_per_io is None
                    else self.share(layer) * cpu_us_per_io,
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
        result.samples += count
        result.layers[layer] += count
        where = "?" if frame is None else (sanstack_module(frame.file) or frame.file)
        result.modules[where] += count
        if frame is not None:
            result.functions[f"{frame.function} ({where})"] += count
    return result


def format_breakdown(
    result: Breakdown, cpu_us_per_io: float | None, title: str, top: int = 5
) -> str:
    """A table: per layer, % of the samples and µs of target CPU per command."""
    per_io = "" if cpu_us_per_io is None else f", {cpu_us_per_io:.1f} µs target CPU per I/O"
    lines = [f"{title}: {result.samples} samples{per_io}"]
    lines.append(f"  {'layer (self time)':32}{'samples':>9}{'%':>7}{'µs/cmd':>9}")
    for layer in LAYERS:
        share = result.share(layer)
        us = "-" if cpu_us_per_io is None else f"{share * cpu_us_per_io:.2f}"
        lines.append(f"  {layer:32}{result.layers[layer]:>9}{100 * share:>7.1f}{us:>9}")
    if result.functions:
        lines.append("  hottest functions (self samples):")
        for name, count in result.functions.most_common(top):
            pct = 100 * count / result.samples
            lines.append(f"    {pct:5.1f}%  {name}")
    return "\n".join(lines)
