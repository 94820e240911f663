"""One group's lifecycle on one node, carried out (asyncio edge of ``cluster/group_state.py``).

``GroupRunner`` feeds the ``GroupLifecycle`` table its events (online and offline requests,
fencing, each step's end, the step deadline) and runs the step each new state starts as a
task it owns. A new step replaces the one under way: that one is cancelled and awaited
(bounded) before the new one begins, so two steps of one group never overlap. A step that
raises is STEP_FAILED with the error as the reason; the table's ``pending_timeout`` deadline
is a loop timer that reports STEP_TIMED_OUT, which cancels the step through its successor.
Entering a state that starts nothing (ONLINE, OFFLINE, FAILED) ends any step still running,
so a late step never reports into a state that does not expect it.

Every state change goes to ``on_state`` (the node logs it, publishes its claims and
re-evaluates placement); it is called synchronously and must not call back into the runner.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from sanstack.cluster.group_phases import GroupPhases
from sanstack.cluster.group_state import (
    GroupAction,
    GroupEvent,
    GroupLifecycle,
    GroupState,
)
from sanstack.edge.tasks import wait_ended

log = logging.getLogger(__name__)

Steps = Callable[[GroupAction], Awaitable[None]]
# (runner, old state, new state, reason)
StateListener = Callable[["GroupRunner", GroupState, GroupState, str], None]


class GroupRunner:
    def __init__(
        self,
        name: str,
        pending_timeout: float,
        steps: Steps,
        on_state: StateListener,
    ) -> None:
        self.name = name
        self.lifecycle = GroupLifecycle(name, pending_timeout)
        self.phases = GroupPhases()  # how long each onlining step took (metrics)
        self.steps = steps
        self.on_state = on_state
        self._loop = asyncio.get_running_loop()
        self._step: asyncio.Task[None] | None = None
        self._step_action: GroupAction | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._orphans: set[asyncio.Task[None]] = set()  # cancelled steps until they end
        self._closed = False

    @property
    def state(self) -> GroupState:
        return self.lifecycle.state

    @property
    def failure(self) -> str | None:
        return self.lifecycle.failure

    def request_online(self, reason: str = "") -> None:
        self._event(GroupEvent.ONLINE_REQUESTED, reason)

    def request_offline(self, reason: str = "") -> None:
        self._event(GroupEvent.OFFLINE_REQUESTED, reason)

    def fence(self, reason: str) -> None:
        """Stop at once without writes (a disk's reservation was lost, or a hard stop)."""
        self._event(GroupEvent.FENCED, reason)

    def lose_storage(self, reason: str) -> None:
        """Stop at once without writes, as a failure here (its disks have no path)."""
        self._event(GroupEvent.STORAGE_LOST, reason)

    def _event(self, event: GroupEvent, reason: str) -> None:
        if self._closed or not self.lifecycle.accepts(event):
            return
        old = self.lifecycle.state
        action = self.lifecycle.handle(event, self._loop.time(), reason)
        self._changed(old, action, reason or event.value)

    def _changed(self, old: GroupState, action: GroupAction | None, reason: str) -> None:
        new = self.lifecycle.state
        self._arm_timer()
        if action is not None:
            self._start(action)
        elif new is not old and not new.pending:
            self._cancel_step()
        if new is not old:
            self.phases.changed(old, new, self._loop.time())
            self.on_state(self, old, new, reason)

    def _arm_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self.lifecycle.get_timer()
        if deadline is not None and not self._closed:
            self._timer = self._loop.call_at(deadline, self._timed_out)

    def _timed_out(self) -> None:
        self._timer = None
        old = self.lifecycle.state
        action = self.lifecycle.handle_timer(self._loop.time())
        if self.lifecycle.state is not old or action is not None:
            self._changed(old, action, self.lifecycle.failure or "timed out")
        else:
            self._arm_timer()

    def _start(self, action: GroupAction) -> None:
        previous = self._step
        if previous is not None:
            previous.cancel()
        task = self._loop.create_task(self._run(action, previous), name=f"{self.name}-{action}")
        self._step, self._step_action = task, action
        task.add_done_callback(self._step_done)

    async def _run(self, action: GroupAction, previous: asyncio.Task[None] | None) -> None:
        if previous is not None:
            await wait_ended([previous], f"{self.name} steps")
        log.debug("group %s: %s", self.name, action.value)
        await self.steps(action)

    def _cancel_step(self) -> None:
        step, self._step, self._step_action = self._step, None, None
        if step is not None:
            step.cancel()
            self._orphans.add(step)
            step.add_done_callback(self._orphans.discard)

    def _step_done(self, task: asyncio.Task[None]) -> None:
        if task is not self._step:
            return  # replaced by a newer step: its successor reports
        action = self._step_action
        self._step, self._step_action = None, None
        if task.cancelled() or self._closed:
            return
        error = task.exception()
        if error is None:
            self._event(GroupEvent.STEP_DONE, "")
        else:
            what = action.value if action is not None else "step"
            log.warning("group %s: %s failed: %s", self.name, what, error)
            self._event(GroupEvent.STEP_FAILED, f"{what}: {error or type(error).__name__}")

    async def close(self) -> None:
        """Cancel the step under way and the timer; the group's resources are the steps'."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        running = [t for t in (self._step, *self._orphans) if t is not None]
        self._step = None
        for task in running:
            task.cancel()
        await wait_ended(running, f"{self.name} steps")
