"""A group's lifecycle carried out, without processes: ``GroupRunner`` runs the table's steps
in order as owned tasks, bounds each by ``pending_timeout``, turns a failure into the undo
path and FAILED, and a fencing into a stop without writes that replaces the step under way;
``GroupResources`` arbitrates every disk until owned, serves the export (the default
export is the first disk), and stops without writes by shutting the gates first."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from tests.support.nbd_socket import NBDSocketClient
from tests.support.processes import free_port
from tests.support.waits import until

from sanstack.block.device import BlockDevice, DeviceIdentity, DeviceNotReady
from sanstack.block.memory import MemoryDevice
from sanstack.cluster.arbitration import Intent, Verdict, VerdictKind
from sanstack.cluster.group_runner import GroupRunner
from sanstack.cluster.group_state import GroupAction, GroupState
from sanstack.cluster.group_steps import GroupResources
from sanstack.cluster.heartbeat import ClaimState
from sanstack.cluster.model import GroupSpec, Timings
from sanstack.snapshot.model import Holder
from sanstack.snapshot.volume import format_volume

A = GroupAction
S = GroupState


class Recorder:
    """Steps that record themselves; ``behaviour`` makes one fail or hang."""

    def __init__(self) -> None:
        self.actions: list[GroupAction] = []
        self.cancelled: list[GroupAction] = []
        self.behaviour: dict[GroupAction, str] = {}
        self.states: list[tuple[GroupState, GroupState, str]] = []

    async def steps(self, action: GroupAction) -> None:
        self.actions.append(action)
        how = self.behaviour.get(action)
        try:
            if how == "fail":
                raise DeviceNotReady("no path")
            if how == "hang":
                await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled.append(action)
            raise

    def on_state(self, _r: GroupRunner, old: GroupState, new: GroupState, why: str) -> None:
        self.states.append((old, new, why))


def with_runner(
    body: Callable[[GroupRunner, Recorder], Awaitable[None]], timeout: float = 10.0
) -> Recorder:
    recorder = Recorder()

    async def main() -> None:
        runner = GroupRunner("g1", timeout, recorder.steps, recorder.on_state)
        try:
            await body(runner, recorder)
        finally:
            await runner.close()

    asyncio.run(main())
    return recorder


async def settled(runner: GroupRunner, state: GroupState) -> None:
    await until(lambda: runner.state is state, 5, f"group in {state.name}")


def test_online_then_offline_run_the_steps_in_order() -> None:
    async def body(runner: GroupRunner, _r: Recorder) -> None:
        runner.request_online("placed here")
        await settled(runner, S.ONLINE)
        runner.request_offline("placed elsewhere")
        await settled(runner, S.OFFLINE)

    recorder = with_runner(body)
    assert recorder.actions == [
        A.ARBITRATE_DISKS,
        A.OPEN_VOLUMES,
        A.BIND_EXPORT,
        A.UNBIND_EXPORT,
        A.CLOSE_VOLUMES,
        A.RELEASE_DISKS,
    ]
    assert recorder.states[0] == (S.OFFLINE, S.ONLINING_DISKS, "placed here")
    assert recorder.states[3] == (S.ONLINING_EXPORT, S.ONLINE, "step-done")
    assert [new for _o, new, _w in recorder.states][-1] is S.OFFLINE


def test_a_failed_step_on_the_way_up_undoes_and_ends_failed_with_the_reason() -> None:
    async def body(runner: GroupRunner, recorder: Recorder) -> None:
        recorder.behaviour[A.OPEN_VOLUMES] = "fail"
        runner.request_online()
        await settled(runner, S.FAILED)
        assert runner.failure == "open-volumes: no path"

    recorder = with_runner(body)
    assert recorder.actions == [
        A.ARBITRATE_DISKS,
        A.OPEN_VOLUMES,
        A.CLOSE_VOLUMES,
        A.RELEASE_DISKS,
    ]


def test_a_step_that_hangs_is_cancelled_at_the_pending_timeout() -> None:
    async def body(runner: GroupRunner, recorder: Recorder) -> None:
        recorder.behaviour[A.ARBITRATE_DISKS] = "hang"
        runner.request_online()
        await settled(runner, S.FAILED)
        assert runner.failure == "arbitrate-disks timed out after 0.2 s"

    recorder = with_runner(body, timeout=0.2)
    assert recorder.actions == [A.ARBITRATE_DISKS, A.RELEASE_DISKS]
    assert recorder.cancelled == [A.ARBITRATE_DISKS]


def test_fencing_replaces_the_step_under_way_with_a_stop_without_writes() -> None:
    async def body(runner: GroupRunner, recorder: Recorder) -> None:
        recorder.behaviour[A.ARBITRATE_DISKS] = "hang"
        runner.request_online()
        await until(lambda: recorder.actions == [A.ARBITRATE_DISKS], 5, "arbitrating")
        runner.fence("disk d1 fenced")
        await settled(runner, S.OFFLINE)

    recorder = with_runner(body)
    assert recorder.actions == [A.ARBITRATE_DISKS, A.STOP_WITHOUT_WRITES]
    assert recorder.cancelled == [A.ARBITRATE_DISKS]
    assert (S.ONLINING_DISKS, S.STOPPING, "disk d1 fenced") in recorder.states


def test_requests_a_state_does_not_take_are_ignored_and_close_cancels_the_step() -> None:
    async def body(runner: GroupRunner, recorder: Recorder) -> None:
        recorder.behaviour[A.UNBIND_EXPORT] = "hang"
        runner.request_online()
        await settled(runner, S.ONLINE)
        runner.request_offline()
        await until(lambda: A.UNBIND_EXPORT in recorder.actions, 5, "unbinding")
        runner.request_online()  # not taken while offlining: the placement asks again later
        assert runner.state is S.OFFLINING_EXPORT

    recorder = with_runner(body)
    assert recorder.cancelled == [A.UNBIND_EXPORT]


# -- GroupResources ------------------------------------------------------------------------


class Services:
    """The node as a group's steps see it: disks in memory, scripted verdicts."""

    me = "n1"
    timings = Timings(heartbeat_interval=0.1, arbitration_interval=0.2, pending_timeout=5.0)

    def __init__(self) -> None:
        self.disks = {
            name: MemoryDevice(2048, identity=DeviceIdentity.from_seed(name))
            for name in ("d1", "d2")
        }
        self.verdicts: dict[str, list[VerdictKind]] = {}
        self.rounds: list[tuple[str, Intent]] = []
        self.conflicts: list[tuple[str, str]] = []
        self.change = asyncio.Event()
        self.claims: dict[tuple[str, str], ClaimState] = {}  # (node, group) -> its claim
        self.scans: list[tuple[str, str]] = []  # (group, disk) of each scan that ended

    def device(self, disk: str) -> BlockDevice:
        return self.disks[disk]

    async def arbitrate(self, disk: str, intent: Intent) -> Verdict:
        self.rounds.append((disk, intent))
        script = self.verdicts.get(disk) or []
        kind = script.pop(0) if script else VerdictKind.OWNED
        if intent is Intent.RELEASE:
            kind = VerdictKind.RELEASED
        return Verdict(kind, member="n2" if kind is VerdictKind.HELD_BY_MEMBER else None)

    async def changed(self, within: float) -> None:
        await self.change.wait()
        self.change.clear()

    def conflict(self, group: str, disk: str) -> None:
        self.conflicts.append((group, disk))

    def holder(self) -> Holder:
        return Holder("n1", 1, "")

    def claim(self, node: str, group: str) -> ClaimState | None:
        return self.claims.get((node, group))

    def scanned(self, group: str, disk: str, seconds: float) -> None:
        self.scans.append((group, disk))


def test_a_disk_held_by_a_member_is_arbitrated_again_when_the_cluster_changes() -> None:
    services = Services()
    services.verdicts["d2"] = [VerdictKind.HELD_BY_MEMBER, VerdictKind.HELD_BY_MEMBER]
    spec = GroupSpec("g1", ("d1", "d2"))

    async def body() -> None:
        group = GroupResources(spec, services)
        step = asyncio.create_task(group.arbitrate_disks())
        await until(lambda: services.rounds.count(("d2", Intent.OWN)) == 1, 5, "first round")
        assert not step.done()
        services.change.set()
        await until(lambda: services.rounds.count(("d2", Intent.OWN)) == 2, 5, "second round")
        services.change.set()
        await asyncio.wait_for(step, 5)
        assert sorted(group.gates) == ["d1", "d2"]

    asyncio.run(body())
    assert services.rounds.count(("d1", Intent.OWN)) == 1


def test_a_disk_held_by_a_member_still_running_the_group_is_not_read_on_every_change() -> None:
    # n2 claims g1 ONLINE, then OFFLINING: changes do not make d2 read again (a move of
    # 1000 disks saw every waiting disk read on each of dozens of changes); once n2 claims
    # nothing, the next change does.
    services = Services()
    services.timings = Timings(heartbeat_interval=0.1, arbitration_interval=60.0)
    services.verdicts["d2"] = [VerdictKind.HELD_BY_MEMBER]
    services.claims[("n2", "g1")] = ClaimState.ONLINE
    spec = GroupSpec("g1", ("d1", "d2"))

    async def body() -> None:
        group = GroupResources(spec, services)
        step = asyncio.create_task(group.arbitrate_disks())
        await until(lambda: services.rounds.count(("d2", Intent.OWN)) == 1, 5, "first round")
        for claim in (ClaimState.ONLINE, ClaimState.OFFLINING):
            services.claims[("n2", "g1")] = claim
            services.change.set()
            await until(lambda: not services.change.is_set(), 5, "the change seen")
            assert services.rounds.count(("d2", Intent.OWN)) == 1
        del services.claims[("n2", "g1")]
        services.change.set()
        await asyncio.wait_for(step, 5)
        assert services.rounds.count(("d2", Intent.OWN)) == 2

    asyncio.run(body())


def test_the_end_of_a_volume_s_free_space_scan_is_told_to_the_node() -> None:
    services = Services()
    services.disks["d1"] = MemoryDevice(8192, identity=DeviceIdentity.from_seed("d1"))
    spec = GroupSpec("g1", ("d1", "d2"), volumes=("d1",))

    async def body() -> None:
        await format_volume(services.disks["d1"])
        group = GroupResources(spec, services)
        await group.arbitrate_disks()
        await group.open_volumes()
        await until(lambda: services.scans == [("g1", "d1")], 5, "the scan's end told")
        await group.close_volumes()
        assert not group.volumes

    asyncio.run(body())


def test_the_export_serves_each_disk_by_name_and_the_first_as_the_default() -> None:
    services = Services()
    port = free_port()
    spec = GroupSpec("g1", ("d1", "d2"), export=("127.0.0.1", port))

    async def body() -> None:
        group = GroupResources(spec, services)
        await group.arbitrate_disks()
        await services.disks["d1"].write(0, b"\1" * 512)
        await services.disks["d2"].write(0, b"\2" * 512)
        await group.bind_export()
        for name, byte in (("", 1), ("d1", 1), ("d2", 2)):
            client = await NBDSocketClient.connect("127.0.0.1", port, name)
            assert await client.read(0, 512) == bytes([byte]) * 512
            await client.close()
        # Fenced: the gates shut before the server stops, nothing more reaches a disk.
        gate = group.gates["d1"]
        await group.stop_without_writes("fenced: test")
        assert gate.shut_reason == "fenced: test"
        assert group.server is None and not group.gates
        with pytest.raises(OSError):
            await NBDSocketClient.connect("127.0.0.1", port, "")
        await group.arbitrate_disks()
        await group.release_disks()
        assert not group.gates

    asyncio.run(body())
    assert [r for r in services.rounds if r[1] is Intent.RELEASE] == [
        ("d1", Intent.RELEASE),
        ("d2", Intent.RELEASE),
    ]
