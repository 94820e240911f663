"""The asyncio edge of one coordinator-worker stream (``workers_protocol.py`` frames).

A ``Channel`` reads frames into messages and hands each to its owner's callback, in order;
answers (``Reply``, ``Sessions``, ``Ack``) complete the request that is waiting for them.
Every request waits with a bound. Sends never wait: a peer that stops reading until more
than ``MAX_BUFFERED`` bytes are queued has the channel closed on it, so nothing queues
without bound.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable

from sanstack.target.workers_protocol import (
    Ack,
    FrameReader,
    Message,
    Reply,
    Sessions,
    WorkerProtocolError,
    encode,
)

log = logging.getLogger(__name__)

MAX_BUFFERED = 64 << 20
READ_SIZE = 1 << 16


class ChannelClosed(Exception):
    """The other end is gone (or broke the protocol); nothing more passes."""


class Channel:
    """One end of the stream between the coordinator and a worker."""

    def __init__(self, sock: socket.socket, on_message: Callable[[Message], None], name: str):
        self.name = name
        self._sock = sock
        self._on_message = on_message
        self._reader = FrameReader()
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Future[Message]] = {}
        self._next_request = 1
        self.closed = asyncio.Event()

    async def start(self) -> None:
        reader, self._writer = await asyncio.open_unix_connection(sock=self._sock)
        self._task = asyncio.get_running_loop().create_task(self._read(reader))

    def send(self, message: Message) -> None:
        writer = self._writer
        if writer is None or self.closed.is_set():
            raise ChannelClosed(f"{self.name}: channel closed")
        writer.write(encode(message))
        if writer.transport.get_write_buffer_size() > MAX_BUFFERED:
            log.error("%s: peer is not reading; closing the channel", self.name)
            self._close()
            raise ChannelClosed(f"{self.name}: peer is not reading")

    async def request(self, build: Callable[[int], Message], bound: float) -> Message:
        """Send ``build(id)`` and wait (at most ``bound`` seconds) for the answer naming
        ``id``; ``ChannelClosed`` or ``TimeoutError`` otherwise."""
        request = self._next_request
        self._next_request += 1
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._pending[request] = future
        try:
            self.send(build(request))
            return await asyncio.wait_for(future, bound)
        finally:
            self._pending.pop(request, None)

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                data = await reader.read(READ_SIZE)
                if not data:
                    break
                for message in self._reader.feed(data):
                    self._dispatch(message)
        except WorkerProtocolError as exc:
            log.error("%s: protocol error: %s", self.name, exc)
        except (ConnectionError, OSError) as exc:
            log.info("%s: channel lost: %s", self.name, exc)
        finally:
            self._close()

    def _dispatch(self, message: Message) -> None:
        if isinstance(message, (Reply, Sessions)):
            self._answer(message.request, message)
        elif isinstance(message, Ack):
            self._answer(message.seq, message)
        else:
            self._on_message(message)

    def _answer(self, request: int, message: Message) -> None:
        future = self._pending.get(request)
        if future is not None and not future.done():
            future.set_result(message)

    def _close(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ChannelClosed(f"{self.name}: channel closed"))
        if self._writer is not None:
            self._writer.close()
        else:
            self._sock.close()

    async def close(self) -> None:
        """Close and wait (bounded by the reader's own end) for the reader task to finish."""
        self._close()
        task = self._task
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
