"""The heartbeats' UDP endpoint: the asyncio edge that drives ``Membership``.

One datagram socket on the node's cluster address. Every datagram received goes to
``Membership.receive_datagram`` at once; one task ticks the membership at its
``next_deadline`` (or sooner when a datagram or ``poke`` may have brought it forward: a
changed claim, pause or quorum is sent within ``SEND_GAP`` intervals, not at the next
beat) and sends each ``Tick.datagrams()`` to that node's address. What membership reports
goes to ``on_events`` synchronously, in order.

UDP to a peer that is down is answered on loopback by ICMP port unreachable, which asyncio
reports through ``error_received``; that is the failure detector's business, not an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping

from sanstack.cluster.membership import HeartbeatDropped, Membership, MembershipEvent
from sanstack.edge.tasks import still_wanted, wait_ended

log = logging.getLogger(__name__)

EventSink = Callable[[list[MembershipEvent]], None]


class _Endpoint(asyncio.DatagramProtocol):
    def __init__(self, driver: HeartbeatTransport) -> None:
        self.driver = driver

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        self.driver.received(data)

    def error_received(self, exc: Exception) -> None:
        log.debug("heartbeat socket: %s", exc)


class HeartbeatTransport:
    """Membership over UDP: bind, then ``run`` until ``close``."""

    def __init__(
        self,
        membership: Membership,
        address: tuple[str, int],
        peers: Mapping[str, tuple[str, int]],
        on_events: EventSink,
    ) -> None:
        self.membership = membership
        self.address = address
        self.peers = dict(peers)
        self.on_events = on_events
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.DatagramTransport | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.sent = 0
        self.received_count = 0

    async def bind(self) -> None:
        """Bind the cluster address (an ``OSError`` when it is taken)."""
        transport, _protocol = await self._loop.create_datagram_endpoint(
            lambda: _Endpoint(self), local_addr=self.address
        )
        self._transport = transport

    def start(self) -> None:
        if self._task is None:
            self._task = self._loop.create_task(self._run(), name="heartbeats")

    def poke(self) -> None:
        """Something this node says about itself changed: tick soon."""
        self._wake.set()

    def received(self, data: bytes) -> None:
        self.received_count += 1
        events = self.membership.receive_datagram(data, self._loop.time())
        for event in events:
            if isinstance(event, HeartbeatDropped):
                log.debug("heartbeat dropped (%s): %s", event.node, event.reason)
        if events:
            self.on_events(events)
        self._wake.set()

    async def _run(self) -> None:
        while True:
            still_wanted()
            now = self._loop.time()
            tick = self.membership.tick(now)
            self._send(tick.datagrams())
            if tick.events:
                self.on_events(tick.events)
            delay = self.membership.next_deadline(self._loop.time()) - self._loop.time()
            if delay > 0:
                self._wake.clear()
                # asyncio.timeout, not wait_for: 3.11's wait_for loses a cancellation
                # that comes as the event is set, and then close would wait for ever.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._wake.wait()

    def _send(self, datagrams: list[tuple[str, bytes]]) -> None:
        transport = self._transport
        if transport is None:
            return
        for node, data in datagrams:
            address = self.peers.get(node)
            if address is not None:
                transport.sendto(data, address)
                self.sent += 1

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await wait_ended([task], "heartbeat tasks")
        if self._transport is not None:
            self._transport.close()
            self._transport = None
