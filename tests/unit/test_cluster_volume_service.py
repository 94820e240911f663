"""Snapshot volumes on cluster disks from any node (``cluster/snapshots.py``,
``cluster/snapshot_routes.py``, ``cluster/snapshot_exports.py``), in one process: two fake
nodes over one config, the owner with a real volume open on a memory device, the other
forwarding to the owner's real control socket. Refusals are one line naming the field."""

from __future__ import annotations

import asyncio
import json
import threading
import tomllib
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest

from sanstack.block.memory import MemoryDevice
from sanstack.cli.main import main
from sanstack.cluster.config import parse_config
from sanstack.cluster.group_state import GroupState
from sanstack.cluster.heartbeat import Claim, ClaimState
from sanstack.cluster.membership import View
from sanstack.cluster.model import ClusterConfig
from sanstack.cluster.snapshot_exports import SnapshotExports
from sanstack.cluster.snapshot_routes import CLUSTER_VOLUME_ROUTES, VolumeRequest
from sanstack.cluster.snapshots import ClusterVolumes, volume_routes
from sanstack.control.server import ControlServer, bind_routes, dispatch
from sanstack.errors import ServiceError
from sanstack.snapshot.model import SnapshotNotFound
from sanstack.snapshot.volume import SnapshotVolume, format_volume

IQN = "iqn.2026-11.org.sanstack:cluster"
SNAPSHOT_KEYS = {
    "name", "id", "created", "epoch", "weight", "keep", "scheduled", "state", "size_bytes",
    "used_bytes",
}  # fmt: skip
INFO_KEYS = {
    "path", "uuid", "size_bytes", "block_size", "chunk_size", "reserve_bytes",
    "snapshot_used_bytes", "snapshot_used_percent", "free_bytes", "snapshots", "max_snapshots",
    "policy", "schedule", "holder", "background", "format_version",
}  # fmt: skip


def config_in(directory: Path) -> ClusterConfig:
    nodes = "".join(
        f"""
[[node]]
name = "{name}"
address = "127.0.0.1:{7400 + i}"
control = "{directory / (name + ".sock")}"
state_dir = "{directory / name}"
"""
        for i, name in enumerate(("n1", "n2", "n3"), start=1)
    )
    return parse_config(
        tomllib.loads(f"""
[cluster]
name = "prod"

[storage]
portals = ["127.0.0.1:3260"]

{nodes}

[disks]
d1 = "{IQN}/1"
d2 = "{IQN}/2"

[[group]]
name = "g1"
disks = ["d1", "d2"]
volumes = ["d1"]
""")
    )


@dataclass
class Peer:
    claims: Mapping[str, Claim] = field(default_factory=dict)


@dataclass
class FakeMembership:
    members: frozenset[str]
    peers: dict[str, Peer]

    def view(self) -> View:
        return View(3, self.members, "n1")

    def alive(self) -> frozenset[str]:
        return self.members

    def peer(self, name: str) -> Peer:
        return self.peers.setdefault(name, Peer())


@dataclass
class FakeRunner:
    state: GroupState


@dataclass
class FakeResources:
    volumes: dict[str, SnapshotVolume]


@dataclass
class FakeNode:
    me: str
    config: ClusterConfig
    membership: FakeMembership
    runners: dict[str, FakeRunner]
    resources: dict[str, FakeResources]


def node(me: str, config: ClusterConfig, owner: str | None, state: GroupState) -> FakeNode:
    claims = {} if owner is None else {owner: Peer({"g1": Claim(ClaimState.ONLINE, 3)})}
    return FakeNode(
        me,
        config,
        FakeMembership(frozenset(config.node_names), dict(claims)),
        {"g1": FakeRunner(state if owner == me else GroupState.OFFLINE)},
        {"g1": FakeResources({})},
    )


def service(fake: FakeNode) -> ClusterVolumes:
    return ClusterVolumes(cast(Any, fake))


async def new_volume() -> SnapshotVolume:
    device = MemoryDevice(32768)  # 16 MiB
    await format_volume(device)
    volume = await SnapshotVolume.open(device, close_base=False)
    await volume.wait_scan()
    return volume


async def ask(svc: ClusterVolumes, method: str, resource: str, body: Any = None) -> Any:
    data = b"" if body is None else json.dumps(body).encode()
    status, answer = await dispatch(volume_routes(cast(Any, svc.node)), method, resource, data)
    if status != 200:
        raise ServiceError(status, answer["error"])
    return answer


V = "?volume=g1%2Fd1"
P = "/v1/cluster/volumes"


@asynccontextmanager
async def two_nodes(tmp_path: Path) -> AsyncIterator[tuple[ClusterVolumes, ClusterVolumes]]:
    """(n1, the owner with the volume open and its control socket served; n2, another)."""
    config = config_in(tmp_path)
    owner = node("n1", config, "n1", GroupState.ONLINE)
    volume = await new_volume()
    owner.resources["g1"].volumes["d1"] = volume
    server = ControlServer(config.node("n1").control, volume_routes(cast(Any, owner)))
    await server.start()
    try:
        yield service(owner), service(node("n2", config, "n1", GroupState.OFFLINE))
    finally:
        await server.close()
        await volume.close()


def test_every_command_works_through_another_node_with_the_service_shapes(
    tmp_path: Path,
) -> None:
    async def body() -> None:
        async with two_nodes(tmp_path) as (owner, other):
            for svc in (owner, other):
                name = f"s-{svc.node.me}"
                created = await ask(
                    svc, "POST", f"/v1/cluster/volumes/snapshots{V}", {"name": name}
                )
                assert set(created) == SNAPSHOT_KEYS and created["name"] == name
            listed = await ask(other, "GET", f"/v1/cluster/volumes/snapshots{V}")
            assert [s["name"] for s in listed] == ["s-n1", "s-n2"]
            info = await ask(other, "GET", f"/v1/cluster/volumes/info{V}")
            assert set(info) == INFO_KEYS and info["path"] == "g1/d1" and info["snapshots"] == 2
            changed = await ask(
                other, "PUT", f"/v1/cluster/volumes/snapshots/s-n1{V}", {"keep": True}
            )
            assert changed["keep"] is True
            schedule = {"interval": 3600, "keep": 2}
            info = await ask(other, "PUT", f"/v1/cluster/volumes/schedule{V}", schedule)
            assert info["schedule"]["interval"] == 3600
            info = await ask(other, "DELETE", f"/v1/cluster/volumes/schedule{V}")
            assert info["schedule"] is None
            info = await ask(
                other, "PUT", f"/v1/cluster/volumes/policy{V}", {"on_full": "fail-writes"}
            )
            assert info["policy"]["on_full"] == "fail-writes"
            assert info["policy"]["warn_percent"] == 80  # the others kept
            info = await ask(other, "POST", f"/v1/cluster/volumes/snapshots/s-n2/restore{V}")
            assert set(info) == INFO_KEYS
            deleted = await ask(other, "DELETE", f"/v1/cluster/volumes/snapshots/s-n2{V}")
            assert deleted == {"path": "g1/d1", "deleted": "s-n2"}
            with pytest.raises(ServiceError) as refused:
                await ask(other, "DELETE", f"/v1/cluster/volumes/snapshots/s-n2{V}")
            assert refused.value.status == 404 and str(refused.value).startswith("name: ")
            with pytest.raises(ServiceError) as refused:
                await ask(other, "POST", f"/v1/cluster/volumes/snapshots{V}", {"name": "s-n1"})
            assert refused.value.status == 409
            assert str(refused.value) == "name: snapshot 's-n1' already exists"

    asyncio.run(body())


@pytest.mark.parametrize(
    ("method", "resource", "body", "expected"),
    [
        ("GET", f"{P}/info", None, (400, "volume: GROUP/DISK is needed")),
        ("GET", f"{P}/info?volume=g1", None, (400, "volume: 'g1' is not GROUP/DISK")),
        ("GET", f"{P}/info?volume=g1/d1/x", None, (400, "is not GROUP/DISK")),
        ("GET", f"{P}/info?volume=g9/d1", None, (404, "volume: 'g9' is not a group")),
        ("GET", f"{P}/info?volume=g1/d9", None, (404, "'d9' is not a disk of group")),
        ("GET", f"{P}/info?volume=g1/d2", None, (404, "carries no snapshot volume")),
        ("POST", f"{P}/snapshots{V}", {"name": "a b"}, (400, "name: snapshot name")),
        ("POST", f"{P}/snapshots{V}", {"nam": "x"}, (400, "nam: unknown field")),
        ("POST", f"{P}/snapshots{V}", [1], (400, "body: a JSON object")),
        ("POST", f"{P}/snapshots{V}", {"name": "x", "weight": 300}, (400, "weight")),
        ("DELETE", f"{P}/snapshots/a%20b{V}", None, (400, "name: snapshot name")),
        ("PUT", f"{P}/snapshots/x{V}", {"keep": 1}, (400, "keep: 1 is not")),
        ("PUT", f"{P}/schedule{V}", {"interval": 0, "keep": 1}, (400, "interval")),
        ("PUT", f"{P}/policy{V}", {"warn_percent": 0}, (400, "warn_percent")),
        ("PATCH", f"{P}/info{V}", None, (405, "PATCH is not allowed")),
    ],
)
def test_bad_requests_are_refused_naming_the_field(
    tmp_path: Path, method: str, resource: str, body: Any, expected: tuple[int, str]
) -> None:
    status, message = expected

    async def body_() -> None:
        async with two_nodes(tmp_path) as (_owner, other):
            with pytest.raises(ServiceError) as refused:
                await ask(other, method, resource, body)
            assert refused.value.status == status and message in str(refused.value)
            assert "\n" not in str(refused.value)

    asyncio.run(body_())


def test_where_a_request_goes_and_why_it_is_refused(tmp_path: Path) -> None:
    config = config_in(tmp_path)

    async def body() -> None:
        request = VolumeRequest("GET", "info", None, lambda _v, _k: asyncio.sleep(0))
        nowhere = service(node("n2", config, None, GroupState.OFFLINE))
        with pytest.raises(ServiceError) as refused:
            await nowhere.volume_request("g1/d1", None, request)
        assert refused.value.status == 409
        assert str(refused.value) == (
            "volume: group g1 is not online on any node; try again when it is"
        )
        onlining = service(node("n2", config, "n2", GroupState.ONLINING_VOLUMES))
        with pytest.raises(ServiceError) as refused:
            await onlining.volume_request("g1/d1", None, request)
        assert "group g1 is onlining_volumes on n2, its volume not open" in str(refused.value)
        closed = node("n2", config, "n2", GroupState.ONLINE)
        closed.resources["g1"].volumes["d1"] = volume = await new_volume()
        await volume.close()  # as a journal failure or a fenced close leaves it
        with pytest.raises(ServiceError) as refused:
            await service(closed).volume_request("g1/d1", None, request)
        assert refused.value.status == 503
        assert str(refused.value) == "volume: g1/d1 on n2: the volume is closed"
        forwarded = service(node("n2", config, "n1", GroupState.OFFLINE))
        with pytest.raises(ServiceError) as refused:  # not forwarded again
            await forwarded.volume_request("g1/d1", "n3", request)
        assert str(refused.value) == (
            "volume: group g1 is not online on n2 (offline), as n3 believed; try again"
        )
        with pytest.raises(ServiceError) as refused:  # n1's socket: nobody listens
            await forwarded.volume_request("g1/d1", None, request)
        assert refused.value.status == 502
        assert str(refused.value).startswith("volume: n1, which runs group g1, did not answer at")

    asyncio.run(body())


def test_the_routes_check_before_they_ask_the_service() -> None:
    seen: list[tuple[str, str | None, VolumeRequest]] = []

    class Recorder:
        async def volume_request(self, volume: str, via: str | None, request: VolumeRequest) -> Any:
            seen.append((volume, via, request))
            return {}

    async def body() -> None:
        routes = bind_routes(Recorder(), CLUSTER_VOLUME_ROUTES)
        body = json.dumps({"name": "s1", "keep": True}).encode()
        status, _answer = await dispatch(
            routes, "POST", "/v1/cluster/volumes/snapshots?volume=g1/d1&via=n3", body
        )
        assert status == 200
        status, _answer = await dispatch(
            routes, "POST", "/v1/cluster/volumes/snapshots/s1/restore?volume=g1/d1", b""
        )
        assert status == 200

    asyncio.run(body())
    (volume, via, create), (_v, none, restore) = seen
    assert (volume, via, create.method, create.suffix) == ("g1/d1", "n3", "POST", "snapshots")
    assert create.body == {"name": "s1", "keep": True}  # forwarded as it came
    assert (none, restore.method, restore.suffix) == (None, "POST", "snapshots/s1/restore")


def test_snapshot_exports_list_ready_snapshots_and_hold_the_one_being_read() -> None:
    async def body() -> None:
        volume = await new_volume()
        try:
            exports = SnapshotExports("g1", lambda: {"d1": volume})
            assert exports.infos() == {}
            await volume.create_snapshot("s1")
            await volume.create_snapshot("s2")
            infos = exports.infos()
            assert sorted(infos) == ["d1@s1", "d1@s2"]
            assert infos["d1@s1"].read_only and infos["d1@s1"].size == volume.capacity_bytes
            device = exports.open("d1@s1")
            await volume.delete_snapshot("s1")  # held: only marked deleting
            assert sorted(exports.infos()) == ["d1@s2"]
            assert [s.state for s in volume.snapshots()] == ["deleting", "ready"]
            assert len(await device.read(0, 8)) == 8 * 512  # the backup reads on
            exports.release(device)
            await exports.drain()
            assert [s.name for s in volume.snapshots()] == ["s2"]  # the delete completed
            with pytest.raises(SnapshotNotFound):
                exports.open("d1@s1")
            with pytest.raises(LookupError):
                exports.open("d2@s2")
        finally:
            await volume.close()

    asyncio.run(body())


@pytest.fixture
def owner_socket(tmp_path: Path) -> Iterator[Path]:
    """n1's control socket, served on its own loop in a thread, with the volume open."""
    config = config_in(tmp_path)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    stop = asyncio.Event()

    async def serve() -> None:
        async with two_nodes(tmp_path):
            started.set()
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert started.wait(10)
    try:
        yield config.node("n1").control
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["--log-level", "warning", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_cli_reaches_a_clustered_volume_by_group_and_disk(
    capsys: pytest.CaptureFixture[str], owner_socket: Path
) -> None:
    sock = str(owner_socket)
    code, out, err = cli(capsys, "snapshot", "create", "g1/d1", "S1", "--cluster-control", sock)
    assert code == 0, err
    assert "S1" in out
    code, out, _err = cli(capsys, "snapshot", "list", "g1/d1", "--json", "--cluster-control", sock)
    assert [s["name"] for s in json.loads(out)] == ["S1"]
    code, out, _err = cli(capsys, "volume", "info", "g1/d1", "--cluster-control", sock)
    assert code == 0 and "g1/d1" in out
    code, _out, err = cli(capsys, "snapshot", "list", "g1", "--cluster-control", sock)
    assert code == 2
    assert err.strip().splitlines() == [
        "sanstack: error: FILE: g1 is not GROUP/DISK (with --cluster-control)"
    ]
    code, _out, err = cli(capsys, "snapshot", "delete", "g1/d2", "S1", "--cluster-control", sock)
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "volume: disk d2 of group g1 carries no snapshot volume" in err
    code, out, err = cli(capsys, "snapshot", "restore", "g1/d1", "S1", "--cluster-control", sock)
    assert code == 0 and f"--cluster-control {sock}" in out
    with pytest.raises(SystemExit):
        main(["volume", "format", "g1/d1", "--cluster-control", sock])  # not for format
