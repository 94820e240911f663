"""``ISCSIDevice.start_read``: a GOOD whole answer goes to the sink at once; any other end
(sense, a short read, a failed path) comes as ``read_slow`` with what ``read_parts`` would
go on to do: a unit attention retried, a short read a MediumError, the PathFailed."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import cast

import pytest

from sanstack.block.device import MediumError
from sanstack.initiator.lun_device import ISCSIDevice
from sanstack.initiator.session import CommandResponse, CommandWaiter, ISCSISession, PathFailed
from sanstack.iscsi.initiator_events import CommandCompleted, PathFailureKind
from sanstack.scsi.codes import ASC, SenseKey, Status
from sanstack.scsi.sense import fixed_sense

DATA = bytes(range(256)) * 16  # 4 KiB
Parts = Sequence[bytes | memoryview]


class FakeSession:
    """What ``ISCSIDevice`` uses of a session: ``start_command`` keeps the waiter, and a
    retried command (``command``) answers GOOD with ``DATA``."""

    def __init__(self) -> None:
        self.waiter: CommandWaiter | None = None
        self.retries = 0
        self.cancelled: list[int] = []
        self.relative_target_port_id: int | None = None

    def start_command(self, lun: int, cdb: bytes, read_length: int, waiter: CommandWaiter) -> int:
        self.waiter = waiter
        return 7

    def cancel_command(self, itt: int) -> None:
        self.cancelled.append(itt)

    async def command(
        self, lun: int, cdb: bytes, *, data_out: bytes = b"", read_length: int = 0
    ) -> CommandResponse:
        self.retries += 1
        return CommandResponse(Status.GOOD, DATA[:read_length], b"", 0)


class Sink:
    def __init__(self) -> None:
        self.parts: Parts | None = None
        self.resume: Callable[[], Awaitable[Parts]] | None = None

    def read_done(self, parts: Parts) -> None:
        self.parts = parts

    def read_slow(self, resume: Callable[[], Awaitable[Parts]]) -> None:
        self.resume = resume


def started() -> tuple[FakeSession, Sink, CommandWaiter]:
    session = FakeSession()
    device = ISCSIDevice(cast(ISCSISession, session), 0)
    device.block_size = 512
    sink = Sink()
    assert device.start_read(0, 8, sink) is not None
    assert session.waiter is not None
    return session, sink, session.waiter


def test_a_good_whole_answer_goes_to_the_sink_at_once() -> None:
    _, sink, waiter = started()
    waiter.command_done(CommandCompleted(7, Status.GOOD, (DATA,), b""))
    assert sink.parts == (DATA,)
    assert sink.resume is None


def test_a_unit_attention_is_retried_through_read_slow() -> None:
    session, sink, waiter = started()
    sense = fixed_sense(SenseKey.UNIT_ATTENTION, ASC.REPORTED_LUNS_DATA_HAS_CHANGED)
    waiter.command_done(CommandCompleted(7, Status.CHECK_CONDITION, (), sense))
    assert sink.parts is None and sink.resume is not None
    assert session.retries == 0  # nothing runs inside the call
    parts = asyncio.run(_awaited(sink.resume))
    assert b"".join(parts) == DATA
    assert session.retries == 1


def test_a_short_read_is_a_medium_error() -> None:
    _, sink, waiter = started()
    waiter.command_done(CommandCompleted(7, Status.GOOD, (DATA[:512],), b"", 3584))
    assert sink.resume is not None
    with pytest.raises(MediumError):
        asyncio.run(_awaited(sink.resume))


def test_a_failed_path_comes_as_its_path_failed() -> None:
    _, sink, waiter = started()
    failure = PathFailed(PathFailureKind.CONNECTION_LOST, "cable")
    waiter.command_failed(failure)
    assert sink.resume is not None
    with pytest.raises(PathFailed) as raised:
        asyncio.run(_awaited(sink.resume))
    assert raised.value is failure


def test_cancel_gives_the_command_back_to_the_session() -> None:
    session = FakeSession()
    device = ISCSIDevice(cast(ISCSISession, session), 0)
    device.block_size = 512
    ticket = device.start_read(0, 8, Sink())
    assert ticket is not None
    ticket.cancel()
    assert session.cancelled == [7]


async def _awaited(resume: Callable[[], Awaitable[Parts]]) -> Parts:
    return await resume()
