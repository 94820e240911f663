"""The edge driver (edge/driver.py) with a fake core and a fake transport, and the bounded
wait for tasks (edge/tasks.py)."""

from __future__ import annotations

import asyncio
import gc
import logging
import typing
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from sanstack.edge import tasks as edge_tasks
from sanstack.edge.driver import TimedCoreDriver, ignore_event
from sanstack.edge.tasks import wait_ended
from sanstack.initiator.session import ISCSISession
from sanstack.iscsi import initiator_events, target_events
from sanstack.nbd import events as nbd_events
from sanstack.nbd.server import NBDConnectionHandler
from sanstack.target.server import ConnectionHandler

WAIT = 5.0  # bound on every wait for something the loop does next


@dataclass(frozen=True)
class Ping:
    n: int


@dataclass(frozen=True)
class Stop:
    pass


@dataclass(frozen=True)
class Noise:
    pass


@dataclass
class FakeCore:
    """A TimedCore: each Ping it is fed answers with one PDU; its deadline is settable."""

    events: deque[object] = field(default_factory=deque)
    out: list[bytes | memoryview] = field(default_factory=list)
    deadline: float | None = None
    received: list[tuple[bytes, float]] = field(default_factory=list)
    timer_calls: list[float] = field(default_factory=list)
    lost: bool = False

    def receive_data(self, data: bytes, now: float) -> None:
        self.received.append((data, now))
        for n in data:
            self.events.append(Stop() if n == 0xFF else Ping(n))

    def connection_lost(self) -> None:
        self.lost = True
        self.events.append(Noise())

    def get_timer(self) -> float | None:
        return self.deadline

    def handle_timer(self, now: float) -> None:
        self.timer_calls.append(now)
        self.deadline = None
        self.events.append(Noise())

    def next_event(self) -> object | None:
        return self.events.popleft() if self.events else None

    @property
    def has_data_to_send(self) -> bool:
        return bool(self.out)

    def data_to_send(self) -> Sequence[bytes | memoryview]:
        out, self.out = self.out, []
        return out


class FakeTransport:
    def __init__(self) -> None:
        self.writes: list[list[bytes | memoryview]] = []
        self.closing = False

    def writelines(self, parts: Sequence[bytes | memoryview]) -> None:
        self.writes.append(list(parts))

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


class Edge(TimedCoreDriver[FakeCore]):
    def __init__(self, core: FakeCore) -> None:
        super().__init__()
        self.core = core
        self.seen: list[object] = []
        self.after_pumps = 0
        self.torn_down = 0

    def _on_ping(self, event: Ping) -> None:
        self.seen.append(event)
        self.core.out.append(bytes([event.n]))

    def _on_stop(self, event: Stop) -> bool:
        self.seen.append(event)
        return True

    def _after_pump(self) -> None:
        self.after_pumps += 1
        super()._after_pump()

    def _teardown(self) -> None:
        super()._teardown()
        self.torn_down += 1

    _event_handlers = {Ping: _on_ping, Stop: _on_stop, Noise: ignore_event}


def run(body: Callable[[], typing.Coroutine[Any, Any, None]]) -> None:
    asyncio.run(asyncio.wait_for(body(), 30))


async def next_iteration() -> None:
    """Let the callbacks scheduled so far (call_soon) run."""
    await asyncio.sleep(0)


def timer_when(edge: Edge) -> float | None:
    return None if edge._timer is None else edge._timer.when()


def connected(core: FakeCore | None = None) -> tuple[Edge, FakeTransport]:
    edge = Edge(core or FakeCore())
    transport = FakeTransport()
    edge.connection_made(transport)  # type: ignore[arg-type]
    return edge, transport


def test_events_reach_their_handlers_in_order_and_output_leaves_in_one_write() -> None:
    async def body() -> None:
        edge, transport = connected()
        edge.data_received(bytes([1, 2]))
        assert edge.seen == [Ping(1), Ping(2)]
        assert edge.core.received[0][1] <= asyncio.get_running_loop().time()
        # What one segment produced is written when its data_received returns, in one write.
        assert transport.writes == [[b"\x01", b"\x02"]]
        edge.data_received(bytes([3]))
        assert transport.writes == [[b"\x01", b"\x02"], [b"\x03"]]
        await next_iteration()
        assert len(transport.writes) == 2

    run(body)


def test_the_write_registry_keeps_no_loop_alive() -> None:
    """Each loop's drivers share one _Writes; it goes with them, whatever was pending."""
    from sanstack.edge import driver

    async def body() -> None:
        edge, _transport = connected()
        other, _other = connected()
        assert edge._writes is other._writes
        edge._writes._pending.append(edge)  # left pending when the loop ends

    for _ in range(3):
        asyncio.run(body())
    gc.collect()
    assert len(driver._WRITES) == 0


class Resolving(Edge):
    """Each Ping also resolves the futures in ``answers`` (as a session's answers do)."""

    answers: list[asyncio.Future[None]] = []

    def _on_ping(self, event: Ping) -> None:
        super()._on_ping(event)
        for answer in self.answers:
            answer.set_result(None)

    _event_handlers = {**Edge._event_handlers, Ping: _on_ping}


def test_output_of_the_callbacks_a_segment_set_off_leaves_right_behind_them() -> None:
    """A pump resolves futures (a command's answer); the callbacks waiting on them produce
    output (the answer to a client), which leaves in one write queued behind them, for
    every driver of the loop, before the loop polls again."""

    async def body() -> None:
        loop = asyncio.get_running_loop()
        edge = Resolving(FakeCore())
        transport = FakeTransport()
        edge.connection_made(transport)  # type: ignore[arg-type]
        other, other_transport = connected()

        def answered(n: int) -> Callable[[asyncio.Future[None]], None]:
            def callback(_answer: asyncio.Future[None]) -> None:
                other.core.out.append(bytes([n]))
                other._schedule_flush()

            return callback

        edge.answers = [loop.create_future() for _ in range(3)]
        for n, answer in enumerate(edge.answers, 10):
            answer.add_done_callback(answered(n))
        edge.data_received(bytes([1]))
        assert transport.writes == [[b"\x01"]] and other_transport.writes == []
        await next_iteration()
        assert other_transport.writes == [[b"\x0a", b"\x0b", b"\x0c"]]

    run(body)


def test_a_handler_that_ends_the_connection_stops_the_pump_at_once() -> None:
    async def body() -> None:
        edge, transport = connected()
        pumps = edge.after_pumps
        edge.core.deadline = asyncio.get_running_loop().time() + 100
        edge.data_received(bytes([1, 0xFF, 2]))
        assert edge.seen == [Ping(1), Stop()]
        assert list(edge.core.events) == [Ping(2)]  # left in the core
        assert edge.after_pumps == pumps  # no timer armed, no flush scheduled
        await next_iteration()
        assert transport.writes == []

    run(body)


def test_a_closed_gate_leaves_events_in_the_core() -> None:
    async def body() -> None:
        edge, transport = connected()
        room = [True]
        edge._event_gate = lambda: room[0]
        edge.core.out.append(b"pending")
        room[0] = False
        edge.data_received(bytes([1]))
        assert edge.seen == []
        assert transport.writes == [[b"pending"]]
        room[0] = True
        edge._pump()
        assert edge.seen == [Ping(1)]
        await next_iteration()
        assert transport.writes == [[b"pending"], [b"\x01"]]

    run(body)


def test_writes_nothing_once_the_transport_is_closing() -> None:
    async def body() -> None:
        edge, transport = connected()
        transport.closing = True
        edge.data_received(bytes([1]))
        edge.core.out.append(b"late")
        edge._schedule_flush()
        await next_iteration()
        assert transport.writes == []
        assert not edge.core.has_data_to_send  # drained all the same

    run(body)


def test_one_timer_at_the_earliest_deadline_and_the_core_handles_it() -> None:
    async def body() -> None:
        loop = asyncio.get_running_loop()
        edge, _transport = connected()
        assert timer_when(edge) is None
        far = loop.time() + 100
        edge.core.deadline = far
        edge._pump()
        assert timer_when(edge) == far
        edge.core.deadline = far + 50  # later: the timer stays where it is
        edge._pump()
        assert timer_when(edge) == far
        edge.core.deadline = now = loop.time()  # earlier: re-armed, and due now
        edge._pump()
        assert timer_when(edge) == now
        async with asyncio.timeout(WAIT):
            while not edge.core.timer_calls:
                await next_iteration()
        assert edge.core.timer_calls[0] >= now
        assert timer_when(edge) is None  # the core asked for no further deadline

    run(body)


def test_connection_lost_tells_the_core_pumps_and_tears_down() -> None:
    async def body() -> None:
        edge, _transport = connected()
        edge.core.deadline = asyncio.get_running_loop().time() + 100
        edge._pump()
        timer = edge._timer
        assert timer is not None
        edge.connection_lost(None)
        assert edge.core.lost
        assert not edge.core.events  # its last event was taken
        assert edge.torn_down == 1
        assert timer.cancelled() and edge._timer is None

    run(body)


def test_an_event_type_without_a_handler_is_a_bug() -> None:
    async def body() -> None:
        edge, _transport = connected()
        edge.core.events.append(object())
        with pytest.raises(KeyError):
            edge._pump()

    run(body)


@pytest.mark.parametrize(
    ("edge", "events"),
    [
        (ConnectionHandler, target_events.Event),
        (ISCSISession, initiator_events.Event),
        (NBDConnectionHandler, nbd_events.Event),
    ],
    ids=["target", "initiator", "nbd"],
)
def test_every_edge_handles_every_event_of_its_core(edge: type[Any], events: object) -> None:
    assert set(edge._event_handlers) == set(typing.get_args(events))


def test_wait_ended_returns_what_ended() -> None:
    async def body() -> None:
        async def quick() -> None:
            return None

        task = asyncio.create_task(quick())
        assert await wait_ended([task], "quick tasks") == {task}
        assert await wait_ended([], "no tasks") == set()

    run(body)


def test_wait_ended_is_bounded_and_logs_what_is_left(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(edge_tasks, "TASK_END_WAIT_SECONDS", 0.01)

    async def body() -> None:
        stuck = asyncio.create_task(asyncio.Event().wait())
        try:
            with caplog.at_level(logging.WARNING, logger="sanstack.edge.tasks"):
                assert await wait_ended([stuck], "stuck tasks") == set()
        finally:
            stuck.cancel()
        assert "1 stuck tasks still running" in caplog.text

    run(body)
