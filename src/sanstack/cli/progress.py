"""Progress of a long operation where a person waits (a volume's format, restore or reclaim,
a group's move, the demo's start), on stderr so that stdout stays what the command prints.

On a terminal it is one line rewritten in place; into a file or a pipe, one plain line per
change (a percent only every ``LINE_STEP`` points, unless asked for with ``--progress``);
with ``--json`` nothing unless ``--progress`` asks for it. The operations report through a
callback or their service's status; only this module writes.
"""

from __future__ import annotations

import argparse
import enum
import shutil
import sys
from typing import IO, Any

from sanstack.snapshot.model import Progress

LINE_STEP = 10  # percent points between two plain lines, when not asked for every one


class Mode(enum.Enum):
    TTY = "tty"  # one line, rewritten
    LINES = "lines"  # one line per change
    OFF = "off"


def choose_mode(
    *, as_json: bool = False, forced: bool = False, stream: IO[str] | None = None
) -> Mode:
    """TTY on a terminal, LINES elsewhere, OFF for ``--json`` unless ``forced``."""
    if as_json and not forced:
        return Mode.OFF
    return Mode.TTY if (stream or sys.stderr).isatty() else Mode.LINES


class ProgressLine:
    """``restore: 40% (1234/3000 chunks)`` or ``g1: offlining on n1``: see the module."""

    def __init__(
        self, mode: Mode | bool, stream: IO[str] | None = None, *, every_percent: bool = False
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        if isinstance(mode, bool):  # on or off; where to, as the stream is
            mode = choose_mode(stream=self.stream) if mode else Mode.OFF
        self.mode = mode
        self.step = 1 if every_percent or mode is Mode.TTY else LINE_STEP
        self._last_text: str | None = None
        self._last_percent: tuple[str, int] | None = None
        self._width = 0

    @property
    def enabled(self) -> bool:
        return self.mode is not Mode.OFF

    def show(self, text: str) -> None:
        """Say ``text`` unless it is what was said last."""
        if self.mode is Mode.OFF or text == self._last_text:
            return
        self._last_text = text
        if self.mode is Mode.TTY:
            # Longer than the terminal, it would wrap, and \r would go back one row only.
            text = text[: max(20, shutil.get_terminal_size().columns - 1)]
            self.stream.write("\r" + text.ljust(self._width))
            self._width = max(self._width, len(text))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def __call__(self, progress: Progress | dict[str, Any]) -> None:
        """A chunked operation's progress (a volume's, or its service's status entry)."""
        if self.mode is Mode.OFF:
            return
        if isinstance(progress, Progress):
            operation, done, total = progress.operation, progress.done, progress.total
        else:
            operation, done, total = progress["operation"], progress["done"], progress["total"]
        percent = 100 * done // total if total else 100
        shown = percent if percent == 100 else percent - percent % self.step
        if self._last_percent == (operation, shown):
            return
        self._last_percent = (operation, shown)
        self.show(f"{operation}: {percent}% ({done}/{total} chunks)")

    def finish(self, text: str | None = None) -> None:
        """End the line (on a terminal), saying ``text`` last if given."""
        if text is not None:
            self.show(text)
        if self.mode is Mode.TTY and self._last_text is not None:
            self.stream.write("\n")
            self.stream.flush()
        self._last_text = None
        self._last_percent = None
        self._width = 0


def progress_for(args: argparse.Namespace) -> ProgressLine:
    """The progress line a command's ``--json`` and ``--progress`` (when it has them) ask for."""
    forced = bool(getattr(args, "progress", False))
    mode = choose_mode(as_json=bool(getattr(args, "json", False)), forced=forced)
    return ProgressLine(mode, every_percent=forced)
