"""The volume service, its control routes and the target's volume and snapshot LUNs, over
fake volumes: one open volume per file and process, refcounted by LUNs and requests;
errors are ``ServiceError``s naming the field; config forms name the field too."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from tests.support.fake_volume import FakeFiles

from sanstack.block.device import DeviceReadOnly
from sanstack.control.server import Route, bind_routes, dispatch
from sanstack.errors import ConfigError, ServiceError
from sanstack.snapshot.model import Holder, NotAVolume, VolumeError
from sanstack.snapshot.routes import VOLUME_ROUTES
from sanstack.snapshot.service import VolumeLease, VolumeService
from sanstack.target.build import build_registry
from sanstack.target.config import parse_config, parse_lun_argument
from sanstack.target.server import TargetServer
from sanstack.target.service import TargetService

IQN = "iqn.2026-11.org.sanstack:volumes"


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.fixture
def volume_file(tmp_path: Path) -> Path:
    path = tmp_path / "vol.img"
    path.write_bytes(b"")
    return path


def test_one_volume_per_file_shared_and_closed_by_the_last_user(
    tmp_path: Path, volume_file: Path
) -> None:
    files = FakeFiles()
    link = tmp_path / "link.img"
    link.symlink_to(volume_file)

    async def main() -> None:
        service = VolumeService(tmp_path / "c.sock", opener=files)
        a = await service.acquire_volume(volume_file)
        b = await service.acquire_volume(link)  # the same file by another name
        assert a is b and files.opened == [str(volume_file)]
        assert service.holder.control == str(tmp_path / "c.sock")
        assert service.holder.pid == os.getpid()
        (listed,) = service.volumes()
        assert listed["path"] == str(volume_file) and listed["users"] == 2
        await service.release_volume(link)
        assert files.volumes[str(volume_file)].closes == 0
        await service.release_volume(volume_file)
        assert files.volumes[str(volume_file)].closes == 1 and service.volumes() == []

    run(main())


def test_concurrent_first_opens_open_once(volume_file: Path) -> None:
    files = FakeFiles()

    async def main() -> None:
        service = VolumeService(opener=files)
        volumes = await asyncio.gather(*(service.acquire_volume(volume_file) for _ in range(8)))
        assert len({id(v) for v in volumes}) == 1 and len(files.opened) == 1

    run(main())


def test_luns_of_a_volume_and_its_snapshots_share_it(volume_file: Path) -> None:
    files = FakeFiles()

    async def main() -> None:
        service = VolumeService(opener=files)
        await service.create(str(volume_file), "S1")
        volume_lun = await service.open_lun(volume_file, None)
        snap_lun = await service.open_lun(volume_file, "S1")
        fake = files.volumes[str(volume_file)]
        assert files.opened == [str(volume_file)] * 2  # create's open/close, then the LUNs'
        assert (volume_lun.backstore, volume_lun.path) == ("volume", str(volume_file))
        assert (snap_lun.backstore, snap_lun.path) == ("snapshot", f"{volume_file}@S1")
        assert snap_lun.read_only and not volume_lun.read_only
        assert snap_lun.identity != volume_lun.identity
        await volume_lun.write(0, b"\x01" * 512)
        assert await snap_lun.read(0, 1) == bytes(512)  # the point in time, not the write
        with pytest.raises(DeviceReadOnly):
            await snap_lun.write(0, b"\x02" * 512)
        with pytest.raises(DeviceReadOnly):
            await snap_lun.unmap(0, 1)
        (listed,) = service.volumes()
        assert (listed["luns"], listed["users"]) == (2, 2)
        await volume_lun.close()
        await volume_lun.close()  # idempotent: releases once
        assert fake.closes == 1 and fake.open_snapshots == 1
        await snap_lun.close()
        assert fake.closes == 2 and fake.open_snapshots == 0 and service.volumes() == []
        assert snap_lun.health() == "closed"

    run(main())


def test_service_calls_return_the_model_shapes(volume_file: Path) -> None:
    files = FakeFiles()
    path = str(volume_file)

    async def main() -> None:
        service = VolumeService(opener=files)
        created = await service.create(path, "S1", 7, True)
        assert created["name"] == "S1" and created["weight"] == 7 and created["keep"] is True
        assert set(created) == {
            "name", "id", "created", "epoch", "weight", "keep", "scheduled", "state",
            "size_bytes", "used_bytes",
        }  # fmt: skip
        assert [s["name"] for s in await service.snapshots(path)] == ["S1"]
        changed = await service.set_snapshot(path, "S1", weight=3)
        assert changed["weight"] == 3 and changed["keep"] is True
        info = await service.info(path)
        assert info["path"] == path and info["snapshots"] == 1 and info["holder"] is not None
        info = await service.set_policy(path, warn_percent=70)
        assert info["policy"] == {"warn_percent": 70, "delete_percent": 90, "on_full": "delete"}
        restored = await service.restore(path, "S1")
        assert restored["background"] == [{"operation": "restore", "done": 1, "total": 2}]
        assert await service.delete(path, "S1") == {"path": path, "deleted": "S1"}
        json.dumps(info)

    run(main())


@pytest.mark.parametrize(
    ("call", "status", "words"),
    [
        (lambda s, p: s.delete(p, "nope"), 404, "name: no snapshot"),
        (lambda s, p: s.create(p, "bad name"), 400, "name: snapshot name"),
        (lambda s, p: s.create(p, "S", 256), 400, "weight: 256"),
        (lambda s, p: s.create(p, "S", 1, "yes"), 400, "keep:"),
        (lambda s, p: s.info(""), 400, "path:"),
        (lambda s, p: s.info(p + ".missing"), 404, "path: cannot open"),
        (lambda s, p: s.set_policy(p, warn_percent=0), 400, "warn_percent"),
    ],
)
def test_refusals_name_the_field(volume_file: Path, call: Any, status: int, words: str) -> None:
    files = FakeFiles()

    async def missing(path: str, holder: Holder) -> Any:
        if path.endswith(".missing"):
            raise FileNotFoundError(2, "No such file or directory", path)
        return await files(path, holder)

    async def main() -> None:
        service = VolumeService(opener=missing)
        with pytest.raises(ServiceError) as caught:
            await call(service, str(volume_file))
        assert caught.value.status == status and words in str(caught.value), str(caught.value)
        assert "\n" not in str(caught.value)
        assert service.volumes() == []  # the request's reference went back

    run(main())


def test_held_and_not_a_volume(volume_file: Path) -> None:
    path = str(volume_file)
    files = FakeFiles(held_by={path: Holder("node2", 4242, "/run/x.sock")})

    async def not_a_volume(_path: str, _holder: Holder) -> Any:
        raise NotAVolume("bad magic")

    async def main() -> None:
        with pytest.raises(ServiceError) as caught:
            await VolumeService(opener=files).snapshots(path)
        assert caught.value.status == 409
        assert "pid 4242 on node2 (control socket /run/x.sock)" in str(caught.value)
        with pytest.raises(ServiceError) as caught:
            await VolumeService(opener=not_a_volume).snapshots(path)
        assert caught.value.status == 400 and "bad magic" in str(caught.value)

    run(main())


def test_shutdown_closes_whatever_is_left(volume_file: Path) -> None:
    files = FakeFiles()

    async def main() -> None:
        service = VolumeService(opener=files)
        lun = await service.open_lun(volume_file, None)
        await service.close()
        assert files.volumes[str(volume_file)].closes == 1
        await lun.close()  # a late release is harmless
        assert files.volumes[str(volume_file)].closes == 1
        with pytest.raises(VolumeError):
            await service.acquire_volume(volume_file)

    run(main())


# -- routes -------------------------------------------------------------------------------------


def _volume_routes() -> list[Route]:
    return bind_routes(VolumeService(opener=FakeFiles()), VOLUME_ROUTES)


def _request(
    routes: list[Route], method: str, resource: str, body: Any = None, *, raw: bytes | None = None
) -> tuple[int, Any]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
    result: tuple[int, Any] = asyncio.run(dispatch(routes, method, resource, data))
    return result


def test_volume_routes(volume_file: Path) -> None:
    routes = _volume_routes()
    q = f"path={quote(str(volume_file))}"
    status, created = _request(routes, "POST", f"/v1/volumes/snapshots?{q}", {"name": "a:1+b"})
    assert status == 200 and created["name"] == "a:1+b"
    status, listed = _request(routes, "GET", f"/v1/volumes/snapshots?{q}")
    assert status == 200 and [s["name"] for s in listed] == ["a:1+b"]
    status, changed = _request(routes, "PUT", f"/v1/volumes/snapshots/a:1+b?{q}", {"keep": True})
    assert status == 200 and changed["keep"] is True
    status, info = _request(
        routes, "PUT", f"/v1/volumes/schedule?{q}", {"interval": 60, "keep": 10}
    )
    assert status == 200 and info["schedule"] == {
        "interval": 60, "keep": 10, "weight": 1, "prefix": "auto",
    }  # fmt: skip
    status, info = _request(routes, "DELETE", f"/v1/volumes/schedule?{q}")
    assert status == 200 and info["schedule"] is None
    status, info = _request(routes, "PUT", f"/v1/volumes/policy?{q}", {"on_full": "fail-writes"})
    assert status == 200 and info["policy"]["on_full"] == "fail-writes"
    status, info = _request(routes, "POST", f"/v1/volumes/snapshots/a:1+b/restore?{q}")
    assert status == 200 and info["background"][0]["operation"] == "restore"
    status, info = _request(routes, "GET", f"/v1/volumes/info?{q}")
    assert status == 200 and info["path"] == str(volume_file)
    status, gone = _request(routes, "DELETE", f"/v1/volumes/snapshots/a:1+b?{q}")
    assert status == 200 and gone == {"path": str(volume_file), "deleted": "a:1+b"}
    assert _request(routes, "GET", "/v1/volumes") == (200, [])


@pytest.mark.parametrize(
    ("req", "expected"),
    [
        (("GET", "/v1/volumes/info", None), (400, "path:")),
        (("GET", "/v1/volumes/info?path=relative.img", None), (400, "path:")),
        (("POST", "/v1/volumes/snapshots?{q}", {"name": "x", "color": 1}), (400, "color")),
        (("POST", "/v1/volumes/snapshots?{q}", ["x"]), (400, "body")),
        (("POST", "/v1/volumes/snapshots?{q}", {"name": "x", "weight": -1}), (400, "weight")),
        (("DELETE", "/v1/volumes/snapshots/nope?{q}", None), (404, "name:")),
        (("PUT", "/v1/volumes/schedule?{q}", {"interval": 0, "keep": 1}), (400, "interval")),
        (("PUT", "/v1/volumes/schedule?{q}", {"interval": 60}), (400, "keep")),
        (("PUT", "/v1/volumes/policy?{q}", {"on_full": "panic"}), (400, "on_full")),
        (("PUT", "/v1/volumes/policy?{q}", {"warn_percent": 101}), (400, "warn_percent")),
        (("PATCH", "/v1/volumes/policy?{q}", {}), (405, "not allowed")),
    ],
)
def test_volume_route_refusals(
    volume_file: Path, req: tuple[str, str, Any], expected: tuple[int, str]
) -> None:
    method, resource, body = req
    status, words = expected
    routes = _volume_routes()
    resource = resource.replace("{q}", f"path={quote(str(volume_file))}")
    got, answer = _request(routes, method, resource, body)
    assert got == status and words in answer["error"], answer


# -- the target's volume and snapshot LUNs ---------------------------------------------------------


def test_quick_form_and_toml_name_volume_luns(volume_file: Path) -> None:
    spec = parse_lun_argument(f"volume:{volume_file}", 0, "--lun")
    assert (spec.backstore, spec.path, spec.snapshot, spec.read_only) == (
        "volume", volume_file, None, False,
    )  # fmt: skip
    spec = parse_lun_argument(f"snapshot:{volume_file}@nightly:2", 1, "--lun")
    assert (spec.backstore, spec.snapshot, spec.read_only) == ("snapshot", "nightly:2", True)
    (target,) = parse_config(
        {
            "target": [
                {
                    "name": IQN,
                    "portal_group": [{"tag": 1, "portals": ["127.0.0.1:3260"]}],
                    "lun": [
                        {"backstore": "volume", "path": str(volume_file)},
                        {"backstore": "snapshot", "path": str(volume_file), "snapshot": "S1"},
                    ],
                }
            ]
        }
    )
    assert [(lun.number, lun.backstore, lun.snapshot) for lun in target.luns] == [
        (0, "volume", None),
        (1, "snapshot", "S1"),
    ]


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("snapshot:{f}", "names no snapshot"),
        ("snapshot:{f}@", "snapshot name"),
        ("snapshot:{f}@bad/name", "snapshot name"),
        ("volume:{f}.missing", "does not exist"),
        ("volume:", "needs the volume file"),
    ],
)
def test_quick_form_errors(volume_file: Path, text: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_lun_argument(text.replace("{f}", str(volume_file)), 0, "--lun x")
    assert str(caught.value).startswith("--lun x: ") and words in str(caught.value)


@pytest.mark.parametrize(
    ("lun", "field", "words"),
    [
        ({"backstore": "volume"}, "lun[0].path", "needs the volume file"),
        ({"backstore": "volume", "path": "{f}", "size": "1G"}, "lun[0].size", "from the volume"),
        ({"backstore": "snapshot", "path": "{f}"}, "lun[0].snapshot", "snapshot name"),
        ({"backstore": "volume", "path": "{f}", "snapshot": "S"}, "lun[0].snapshot", "only"),
        ({"backstore": "file", "path": "{f}", "snapshot": "S"}, "lun[0].snapshot", "only"),
        ({"backstore": "tape", "path": "{f}"}, "lun[0].backstore", "'volume'"),
    ],
)
def test_toml_errors_name_the_field(
    volume_file: Path, lun: dict[str, Any], field: str, words: str
) -> None:
    lun = {k: v.replace("{f}", str(volume_file)) for k, v in lun.items()}
    raw = {
        "target": [
            {"name": IQN, "portal_group": [{"tag": 1, "portals": ["127.0.0.1:1"]}], "lun": [lun]}
        ]
    }
    with pytest.raises(ConfigError) as caught:
        parse_config(raw)
    assert str(caught.value).startswith(f"target[0].{field}: "), str(caught.value)
    assert words in str(caught.value)


def test_registry_luns_share_one_volume_and_close_it_once(volume_file: Path) -> None:
    files = FakeFiles()

    async def main() -> None:
        service = VolumeService(opener=files)
        await service.create(str(volume_file), "S1")
        await service.create(str(volume_file), "S2")
        (spec,) = parse_config(
            {
                "target": [
                    {
                        "name": IQN,
                        "portal_group": [{"tag": 1, "portals": ["127.0.0.1:1"]}],
                        "lun": [
                            {"backstore": "volume", "path": str(volume_file)},
                            {"backstore": "snapshot", "path": str(volume_file), "snapshot": "S1"},
                            {"backstore": "snapshot", "path": str(volume_file), "snapshot": "S2"},
                        ],
                    }
                ]
            }
        )
        opened_before = len(files.opened)
        registry = await build_registry([spec], None, service)
        assert len(files.opened) == opened_before + 1
        fake = files.volumes[str(volume_file)]
        assert fake.open_snapshots == 2
        (listed,) = service.volumes()
        assert listed["luns"] == 3
        await registry.close()
        assert fake.open_snapshots == 0 and fake.holder is None and service.volumes() == []

    run(main())


def test_registry_refuses_a_missing_snapshot_and_closes_what_it_opened(volume_file: Path) -> None:
    files = FakeFiles()

    async def main() -> None:
        service = VolumeService(opener=files)
        (spec,) = parse_config(
            {
                "target": [
                    {
                        "name": IQN,
                        "portal_group": [{"tag": 1, "portals": ["127.0.0.1:1"]}],
                        "lun": [
                            {"backstore": "volume", "path": str(volume_file)},
                            {"backstore": "snapshot", "path": str(volume_file), "snapshot": "S9"},
                        ],
                    }
                ]
            }
        )
        with pytest.raises(ConfigError) as caught:
            await build_registry([spec], None, service)
        assert str(caught.value).startswith("target[0].lun[1].snapshot: ")
        assert service.volumes() == [] and files.volumes[str(volume_file)].holder is None

    run(main())


def test_registry_refuses_a_volume_held_elsewhere(volume_file: Path) -> None:
    files = FakeFiles(held_by={str(volume_file): Holder("node2", 77, "")})
    (spec,) = parse_config(
        {
            "target": [
                {
                    "name": IQN,
                    "portal_group": [{"tag": 1, "portals": ["127.0.0.1:1"]}],
                    "lun": [{"backstore": "volume", "path": str(volume_file)}],
                }
            ]
        }
    )
    with pytest.raises(VolumeError) as caught:
        run(build_registry([spec], None, VolumeService(opener=files)))
    assert not isinstance(caught.value, ConfigError)  # refused (exit 1), not bad input
    assert str(caught.value) == f"target[0].lun[0].path: {volume_file} is held by pid 77 on node2"


def test_lun_add_and_remove_a_snapshot_at_runtime(volume_file: Path) -> None:
    files = FakeFiles()

    async def main() -> None:
        service = VolumeService(opener=files)
        await service.create(str(volume_file), "S1")
        (spec,) = parse_config(
            {
                "target": [
                    {
                        "name": IQN,
                        "portal_group": [{"tag": 1, "portals": ["127.0.0.1:1"]}],
                        "lun": [{"backstore": "volume", "path": str(volume_file)}],
                    }
                ]
            }
        )
        registry = await build_registry([spec], None, service)
        target = TargetService(TargetServer(registry), service)
        added = await target.add_lun(
            IQN,
            {"backstore": "snapshot", "path": str(volume_file), "snapshot": "S1", "size": None},
        )
        assert added["lun"] == 1 and added["read_only"] is True
        assert (added["backstore"], added["path"]) == ("snapshot", f"{volume_file}@S1")
        assert isinstance(registry.targets[IQN].luns[1].device, VolumeLease)
        fake = files.volumes[str(volume_file)]
        assert fake.open_snapshots == 1 and files.opened.count(str(volume_file)) == 2
        with pytest.raises(ServiceError) as caught:
            await target.add_lun(
                IQN, {"backstore": "snapshot", "path": str(volume_file), "snapshot": "S9"}
            )
        assert caught.value.status == 400 and "lun.snapshot" in str(caught.value)
        with pytest.raises(ServiceError) as caught:
            await target.add_lun(IQN, {"backstore": "snapshot", "path": str(volume_file)})
        assert caught.value.status == 400 and str(caught.value).startswith("snapshot: ")
        await target.remove_lun(IQN, 1)
        assert fake.open_snapshots == 0 and fake.holder is not None  # LUN 0 still holds it
        await registry.close()
        assert fake.holder is None

    run(main())
