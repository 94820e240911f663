"""A daemon's Prometheus endpoint: ``GET /metrics`` in the text format over plain HTTP.

Every daemon (``target serve``, ``host run``, ``cluster node``) serves its collectors here
when given ``--metrics HOST:PORT`` (or ``metrics`` in its TOML file); port 0 takes any free
port, and ``url`` says which was bound. aiohttp serves the route and ``prometheus_client``
writes the text; each collector builds its metric families from the daemon's live state at
scrape time, on the event loop (the state is the loop's, so no copy and no lock), so a
scrape costs the daemon nothing between scrapes. This module knows no service: what is
exposed is each collector's (``target/metrics.py``, ``host/metrics.py``,
``cluster/metrics.py``; the series are listed in docs/metrics.md).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from aiohttp import web
from prometheus_client.aiohttp import make_aiohttp_handler
from prometheus_client.core import InfoMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from sanstack import __version__

log = logging.getLogger(__name__)

PATH = "/metrics"
SHUTDOWN_TIMEOUT = 2.0  # for a scrape still being answered at close


class _DaemonInfo:
    """``sanstack_daemon_info{daemon, version} 1``: which daemon answers, and its version."""

    def __init__(self, daemon: str) -> None:
        self.daemon = daemon

    def collect(self) -> Iterable[Metric]:
        info = InfoMetricFamily("sanstack_daemon", "The daemon serving these metrics")
        info.add_metric([], {"daemon": self.daemon, "version": __version__})
        yield info


def metrics_registry(daemon: str, collectors: Iterable[Collector]) -> CollectorRegistry:
    """A registry of ``collectors`` and the daemon's info; none of the process's defaults
    (Python GC, process), which are not sanstack's to name."""
    registry = CollectorRegistry()
    registry.register(_DaemonInfo(daemon))
    for collector in collectors:
        registry.register(collector)
    return registry


class MetricsServer:
    """``GET /metrics`` on ``address``: ``start``, then ``close``."""

    def __init__(self, address: tuple[str, int], registry: CollectorRegistry) -> None:
        self.host, self.port = address
        self.registry = registry
        app = web.Application()
        app.router.add_get(PATH, make_aiohttp_handler(registry, disable_compression=True))
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_TIMEOUT
        )

    async def start(self) -> None:
        """Listen; ``OSError`` when the address cannot be bound."""
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        try:
            await site.start()
        except BaseException:
            await self._runner.cleanup()
            raise
        bound = self._runner.addresses
        if self.port == 0 and bound:
            self.port = int(bound[0][1])
        log.info("metrics on %s", self.url)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{PATH}"

    async def close(self) -> None:
        await self._runner.cleanup()
