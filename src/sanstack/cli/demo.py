"""``sanstack demo``: the whole system on one machine (``sanstack.demo``), with no
configuration: a target with two portals, three cluster nodes, a witness disk, two groups
and a client load through each group's export, until Ctrl-C."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path
from typing import Any


def default_dir() -> Path:
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "sanstack" / "demo"


def register(commands: Any) -> None:
    demo = commands.add_parser(
        "demo",
        help="run the whole system on this machine: a target, three cluster nodes, two groups",
        description=(
            "Run, as separate processes on 127.0.0.1: a target with two portals, three "
            "cluster nodes with a witness disk, two groups (a plain disk; a snapshot volume "
            "with a snapshot schedule) exported over NBD, and a light client load through "
            "each export. Prints what runs where and the commands to try; Ctrl-C or SIGTERM "
            "stops everything. A second run in the same --dir reuses its data."
        ),
    )
    demo.add_argument(
        "--dir",
        type=Path,
        default=default_dir(),
        help="where the demo keeps its disks, state, sockets and logs (default %(default)s)",
    )
    demo.set_defaults(func=demo_command)


def own_command() -> str:
    """How to run this sanstack from another shell: the virtualenv's script if not on PATH."""
    beside = Path(sys.executable).parent / "sanstack"
    on_path = shutil.which("sanstack")
    if on_path and Path(on_path).resolve() == beside.resolve():
        return "sanstack"
    return str(beside) if beside.exists() else f"{sys.executable} -m sanstack.cli.main"


async def demo_command(args: argparse.Namespace) -> int:
    from sanstack.cli.progress import ProgressLine, choose_mode
    from sanstack.demo.run import Reporter, run_demo

    progress = ProgressLine(choose_mode())
    report = Reporter(progress.show, progress, progress.finish)
    argv = [sys.executable, "-m", "sanstack.cli.main"]
    return await run_demo(args.dir, argv, own_command(), report)
