"""The ``sanstack`` command line: a thin view over the daemons' service APIs.

Every error an operator can cause (a bad argument, a bad config, a busy port, a missing
file) ends as one line on stderr naming the field and the problem, and exit status 2 (bad
input) or 1 (the system refused); never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from sanstack import __version__
from sanstack.errors import ConfigError, SanstackError

log = logging.getLogger("sanstack")

Runner = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, not the usage block
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="sanstack",
        description="sanstack: iSCSI target, multipath I/O and snapshot volumes.",
    )
    parser.add_argument("--version", action="version", version=f"sanstack {__version__}")
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="logging verbosity (default: info)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    from sanstack.cli import demo, mpio, nbd, proxy, target, volume

    target.register(commands)
    volume.register(commands)
    demo.register(commands)
    mpio.register(commands)
    nbd.register(commands)
    proxy.register(commands)
    return parser


def run_async(main: Coroutine[Any, Any, int]) -> int:
    """Run a daemon coroutine on uvloop when available; SIGINT/SIGTERM cancel it cleanly."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return int(asyncio.run(main))
    return int(uvloop.run(main))


class StopSignals:
    """SIGINT and SIGTERM ask a daemon to stop; installed before it says it is ready."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._loop.add_signal_handler(sig, self._stop.set)

    async def wait(self) -> None:
        try:
            await self._stop.wait()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._loop.remove_signal_handler(sig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    func: Runner = args.func
    try:
        return run_async(func(args))
    except ConfigError as exc:
        print(f"sanstack: error: {exc}", file=sys.stderr)
        return 2
    except SanstackError as exc:
        print(f"sanstack: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"sanstack: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def existing_file(text: str) -> Path:
    path = Path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{text}: no such file")
    return path


if __name__ == "__main__":
    sys.exit(main())
