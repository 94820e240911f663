"""The shared progress line (cli/progress.py): rewritten on a terminal, plain lines into a
file (every 10 %, or every percent when asked), nothing for --json unless asked."""

from __future__ import annotations

import argparse
import io

from sanstack.cli.progress import Mode, ProgressLine, choose_mode, progress_for
from sanstack.snapshot.model import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_lines_every_ten_percent_or_every_percent_when_asked() -> None:
    log = io.StringIO()
    show = ProgressLine(Mode.LINES, log)
    for done in range(0, 101, 3):
        show(Progress("format", done, 100))
    show(Progress("format", 100, 100))
    show.finish()
    percents = [line.split()[1] for line in log.getvalue().splitlines()]
    assert percents == ["0%", "12%", "21%", "30%", "42%", "51%", "60%", "72%", "81%", "90%", "100%"]
    every = io.StringIO()
    show = ProgressLine(Mode.LINES, every, every_percent=True)
    for done in (0, 1, 1, 2, 3):
        show(Progress("restore", done, 3))
    show.finish()
    assert every.getvalue().splitlines() == [
        "restore: 0% (0/3 chunks)",
        "restore: 33% (1/3 chunks)",
        "restore: 66% (2/3 chunks)",
        "restore: 100% (3/3 chunks)",
    ]


def test_a_terminal_gets_one_line_rewritten_in_place() -> None:
    tty = Terminal()
    show = ProgressLine(True, tty)
    assert show.mode is Mode.TTY
    show({"operation": "format", "done": 5, "total": 10})
    show({"operation": "format", "done": 10, "total": 10})
    show.finish()
    assert tty.getvalue() == "\rformat: 50% (5/10 chunks)\rformat: 100% (10/10 chunks)\n"
    tty = Terminal()
    show = ProgressLine(True, tty)
    show.show("g1: offlining on n1")
    show.show("g1: offlining on n1")
    show.finish("g1: online on n3")
    assert tty.getvalue() == "\rg1: offlining on n1\rg1: online on n3   \n"


def test_states_as_plain_lines_and_nothing_when_off() -> None:
    log = io.StringIO()
    show = ProgressLine(Mode.LINES, log)
    for text in ("a", "a", "b", "a"):
        show.show(text)
    show.finish()
    assert log.getvalue() == "a\nb\na\n"
    quiet = io.StringIO()
    off = ProgressLine(False, quiet)
    off(Progress("reclaim", 1, 2))
    off.show("x")
    off.finish("y")
    assert quiet.getvalue() == ""


def test_json_turns_it_off_unless_asked_for() -> None:
    assert choose_mode(as_json=True, stream=Terminal()) is Mode.OFF
    assert choose_mode(as_json=True, forced=True, stream=io.StringIO()) is Mode.LINES
    assert choose_mode(stream=Terminal()) is Mode.TTY
    assert choose_mode(stream=io.StringIO()) is Mode.LINES
    assert progress_for(argparse.Namespace(json=True)).mode is Mode.OFF
    forced = progress_for(argparse.Namespace(json=True, progress=True))
    assert forced.enabled and forced.step == 1


def test_a_moving_group_is_shown_by_its_state_and_its_disks_holders() -> None:
    from sanstack.cli.cluster import move_progress

    def status(state: str, owner: str | None, holder: str | None) -> dict[str, object]:
        return {
            "groups": [{"name": "g1", "state": state, "owner": owner}],
            "disks": [
                {"name": "d1", "group": "g1", "holder": holder},
                {"name": "w", "group": None, "holder": "n1"},
            ],
        }

    seen = [
        move_progress(status("offlining", "n1", "n1"), "g1", "n3", 0.4),
        move_progress(status("offline", None, None), "g1", "n3", 1.2),
        move_progress(status("onlining", "n3", None), "g1", "n3", 1.9),
        move_progress(status("online", "n3", "n3"), "g1", "n3", 2.6),
    ]
    assert seen == [
        "move g1 -> n3: offlining on n1, disks held by n1 (0 s)",
        "move g1 -> n3: offline, disks released (1 s)",
        "move g1 -> n3: onlining on n3, disks released (2 s)",
        "move g1 -> n3: online on n3, disks held by n3 (3 s)",
    ]
