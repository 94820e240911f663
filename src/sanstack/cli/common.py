"""What every ``sanstack`` command shares: one-line argument errors, the logging set-up, and
running a command's coroutine on the event loop until it ends or a signal stops it.

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
from collections.abc import Callable, Coroutine, Iterable
from typing import TYPE_CHECKING, Any, NoReturn

from sanstack.config_checks import parse_address
from sanstack.errors import ConfigError, SanstackError

if TYPE_CHECKING:
    from prometheus_client.registry import Collector

    from sanstack.control.metrics_http import MetricsServer

LOG_LEVELS = ("debug", "info", "warning", "error")

Runner = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]


class CommandParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, not the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def add_log_level(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-level",
        default="info",
        choices=LOG_LEVELS,
        help="how much is logged on stderr (default: %(default)s)",
    )


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def run_async(main: Coroutine[Any, Any, int]) -> int:
    """Run a daemon coroutine on uvloop when available; SIGINT/SIGTERM cancel it cleanly."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return int(asyncio.run(main))
    return int(uvloop.run(main))


def run_command(args: argparse.Namespace) -> int:
    """Run the parsed command (``args.func``) and turn what it raises into an exit status."""
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


def add_metrics_flag(parser: argparse.ArgumentParser, default: str = "off") -> None:
    parser.add_argument(
        "--metrics",
        default=None,
        metavar="HOST:PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics (port 0: any free port, "
        f"shown on the ready line; docs/metrics.md; default {default})",
    )


def metrics_address(text: str | None, field: str = "--metrics") -> tuple[str, int] | None:
    """``--metrics HOST:PORT`` (None: off); port 0 listens on any free port."""
    return None if text is None else parse_address(text, field, any_port=True)


async def start_metrics(
    address: tuple[str, int] | None, daemon: str, collectors: Iterable[Collector], field: str
) -> MetricsServer | None:
    """The daemon's ``/metrics`` endpoint on ``address`` (None: none); an address that
    cannot be bound is a ``ConfigError`` naming ``field``."""
    if address is None:
        return None
    from sanstack.control.metrics_http import MetricsServer, metrics_registry

    server = MetricsServer(address, metrics_registry(daemon, collectors))
    try:
        await server.start()
    except OSError as exc:
        raise ConfigError(field, f"cannot listen: {exc.strerror or exc}") from None
    return server


def ready_with_metrics(line: str, server: MetricsServer | None) -> str:
    """A daemon's ready line, with where its metrics are when it serves them."""
    return line if server is None else f"{line} metrics {server.url}"
