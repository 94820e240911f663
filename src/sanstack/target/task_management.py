"""Task management functions across a target's sessions (RFC 7143 §11.5, SAM-5 §7).

The connection core has already dropped the tasks it still held (writes waiting for data);
here the logical units abort the tasks they run, and the response is sent only after every
aborted task has ended (bounded by ``TASK_END_WAIT_SECONDS``), as RFC 7143 §4.2.3.3 requires.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from sanstack.edge.tasks import wait_ended
from sanstack.iscsi.codes import TaskManagementFunction, TaskManagementResponseCode
from sanstack.iscsi.target_events import TaskManagementRequested
from sanstack.scsi.codes import ASC
from sanstack.scsi.logical_unit import LogicalUnit

if TYPE_CHECKING:
    from sanstack.target.server import ConnectionHandler, TargetServer

Fn = TaskManagementFunction
Code = TaskManagementResponseCode


async def run_task_management(
    server: TargetServer, handler: ConnectionHandler, event: TaskManagementRequested
) -> TaskManagementResponseCode:
    target = server.registry.targets.get(handler.target_name or "")
    nexus = handler.nexus
    if target is None or nexus is None:
        return Code.FUNCTION_REJECTED
    fn = event.function
    if fn in (Fn.TARGET_WARM_RESET, Fn.TARGET_COLD_RESET):
        tasks: list[asyncio.Task[object]] = []
        for unit in target.luns.values():
            tasks += unit.logical_unit_reset(nexus, ASC.POWER_ON_RESET_OR_BUS_DEVICE_RESET_OCCURRED)
        for other in server.connections_of(target.name):
            if other.core is not None:
                other.core.drop_undelivered(None)
        await wait_ended(tasks, "aborted tasks")
        if fn == Fn.TARGET_COLD_RESET:
            # RFC 7143 §11.5.1: after a cold reset the target closes every connection; ours
            # goes after its response is queued.
            server.close_sessions_later(target.name)
        return Code.FUNCTION_COMPLETE
    lu: LogicalUnit | None = target.luns.get(event.lun)
    if lu is None:
        return Code.LUN_DOES_NOT_EXIST
    if fn == Fn.ABORT_TASK:
        tasks = lu.abort_task(nexus, event.referenced_task_tag)
        if not tasks:
            # The command finished (and was answered) before the abort reached it.
            return Code.TASK_DOES_NOT_EXIST
    elif fn == Fn.ABORT_TASK_SET:
        tasks = lu.abort_task_set(nexus)
    elif fn == Fn.CLEAR_TASK_SET:
        tasks = lu.clear_task_set(nexus)
        _drop_undelivered_elsewhere(server, handler, event)
    elif fn == Fn.LOGICAL_UNIT_RESET:
        tasks = lu.logical_unit_reset(nexus)
        _drop_undelivered_elsewhere(server, handler, event)
    else:
        return Code.FUNCTION_NOT_SUPPORTED
    await wait_ended(tasks, "aborted tasks")
    return Code.FUNCTION_COMPLETE


def _drop_undelivered_elsewhere(
    server: TargetServer, handler: ConnectionHandler, event: TaskManagementRequested
) -> None:
    for other in server.connections_of(handler.target_name or ""):
        if other is not handler and other.core is not None:
            other.core.drop_undelivered(event.lun)
