"""``sanstack volume`` and ``sanstack snapshot``: one-line errors naming the field, the
``--json`` shapes, and the two ways a command reaches a volume (opening it here, or through
the control socket of the daemon that holds it).

Most tests run the CLI in this process over fake volumes (``local_service`` replaced); the
last ones run the real commands on a real volume, locally and through a real daemon.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.fake_volume import FakeFiles
from tests.support.processes import free_port, running_target

from sanstack.cli import volume as cli_volume
from sanstack.cli.main import main
from sanstack.control.server import ControlServer, bind_routes
from sanstack.snapshot.model import Holder, Progress
from sanstack.snapshot.routes import VOLUME_ROUTES
from sanstack.snapshot.service import VolumeService

IQN = "iqn.2026-11.org.sanstack:cli-volume"
SNAPSHOT_KEYS = {
    "name", "id", "created", "epoch", "weight", "keep", "scheduled", "state", "size_bytes",
    "used_bytes",
}  # fmt: skip
INFO_KEYS = {
    "path", "uuid", "size_bytes", "block_size", "chunk_size", "reserve_bytes",
    "snapshot_used_bytes", "snapshot_used_percent", "free_bytes", "snapshots", "max_snapshots",
    "policy", "schedule", "holder", "background", "format_version",
}  # fmt: skip


def sanstack(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sanstack.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        check=False,
    )


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


@pytest.fixture
def volume_file(tmp_path: Path) -> Path:
    path = tmp_path / "vol.img"
    path.write_bytes(b"")
    return path


@pytest.fixture
def files(monkeypatch: pytest.MonkeyPatch) -> FakeFiles:
    fake = FakeFiles()
    monkeypatch.setattr(cli_volume, "local_service", lambda: VolumeService(opener=fake))
    return fake


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["--log-level", "warning", *args])
    out, err = capsys.readouterr()
    return code, out, err


# -- argument errors: one line naming the field, exit 2, before anything is opened -----------


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["volume", "format", "{f}", "--size", "12X"], ["--size", "not a size"]),
        (["volume", "format", "{f}.new"], ["--size", "needed"]),
        (
            ["volume", "format", "{f}", "--size", "64M", "--reserve-percent", "95"],
            ["--reserve-percent", "1..90"],
        ),
        (
            ["volume", "format", "{f}", "--size", "64M", "--chunk-size", "3000"],
            ["--chunk-size", "power of two"],
        ),
        (["volume", "format", "{f}", "--size", "64M", "--block-size", "520"], ["--block-size"]),
        (["volume", "format", "{f}", "--size", "64M", "--max-snapshots", "1"], ["--max-snapshots"]),
        (["volume", "info", "{f}.missing"], ["FILE", "no such file"]),
        (["volume", "schedule", "{f}", "--keep", "3"], ["--every", "needed"]),
        (["volume", "schedule", "{f}", "--every", "1h"], ["--keep", "needed"]),
        (["volume", "schedule", "{f}", "--every", "5x", "--keep", "3"], ["--every", "duration"]),
        (["volume", "schedule", "{f}", "--every", "1h", "--keep", "0"], ["--keep", "1..65535"]),
        (
            ["volume", "schedule", "{f}", "--every", "1h", "--keep", "2", "--weight", "256"],
            ["--weight", "0..255"],
        ),
        (
            ["volume", "schedule", "{f}", "--every", "1h", "--keep", "2", "--prefix", ".x"],
            ["--prefix", "snapshot name"],
        ),
        (["volume", "schedule", "{f}", "--off", "--keep", "2"], ["--off"]),
        (["volume", "policy", "{f}", "--warn-percent", "0"], ["--warn-percent", "1..100"]),
        (["volume", "policy", "{f}", "--on-full", "panic"], ["--on-full", "invalid choice"]),
        (["snapshot", "create", "{f}", "bad name"], ["NAME", "snapshot name"]),
        (["snapshot", "create", "{f}", "S1", "--weight", "-1"], ["--weight", "0..255"]),
        (["snapshot", "create", "{f}", "S1", "--weight", "x"], ["--weight", "invalid int"]),
        (["snapshot", "delete", "{f}", "a/b"], ["NAME"]),
        (["snapshot", "restore", "{f}.missing", "S1"], ["FILE", "no such file"]),
        (["snapshot", "set", "{f}", "S1"], ["--weight", "--keep"]),
        (["snapshot", "list"], ["FILE"]),
    ],
)
def test_argument_errors_are_one_line_naming_the_field(
    tmp_path: Path, volume_file: Path, args: list[str], words: list[str]
) -> None:
    argv = [a.replace("{f}", str(volume_file)) for a in args]
    result = sanstack(*argv, cwd=tmp_path)
    assert result.returncode == 2, (result.returncode, result.stderr)
    line = one_line(result.stderr)
    for word in words:
        assert word in line, (word, line)


def test_help_on_every_volume_command(tmp_path: Path) -> None:
    for argv in (
        ["volume", "--help"],
        ["snapshot", "--help"],
        *(["volume", c, "--help"] for c in ("format", "info", "schedule", "policy")),
        *(["snapshot", c, "--help"] for c in ("create", "list", "delete", "restore", "set")),
    ):
        result = sanstack(*argv, cwd=tmp_path)
        assert result.returncode == 0 and "usage:" in result.stdout, result.stderr


# -- opened here, over fake volumes ------------------------------------------------------------


def test_local_commands_and_json_shapes(
    capsys: pytest.CaptureFixture[str], files: FakeFiles, volume_file: Path
) -> None:
    f = str(volume_file)
    code, out, _err = cli(
        capsys, "snapshot", "create", f, "S1", "--weight", "4", "--keep", "--json"
    )
    created = json.loads(out)
    assert code == 0 and set(created) == SNAPSHOT_KEYS
    assert (created["name"], created["weight"], created["keep"]) == ("S1", 4, True)
    cli(capsys, "snapshot", "create", f, "S2")
    code, out, _err = cli(capsys, "snapshot", "list", f, "--json")
    listed = json.loads(out)
    assert [s["name"] for s in listed] == ["S1", "S2"] and all(
        set(s) == SNAPSHOT_KEYS for s in listed
    )
    code, out, _err = cli(capsys, "snapshot", "list", f)
    heading, *rows = out.splitlines()
    assert heading.split() == ["NAME", "CREATED", "SIZE", "USED", "WEIGHT", "KEEP", "STATE"]
    assert rows[0].split()[0] == "S1" and "1M" in rows[0] and "keep" in rows[0]
    code, out, _err = cli(capsys, "snapshot", "set", f, "S1", "--no-keep", "--json")
    assert json.loads(out)["keep"] is False
    code, out, _err = cli(capsys, "volume", "info", f, "--json")
    info = json.loads(out)
    assert set(info) == INFO_KEYS and info["path"] == f and info["snapshots"] == 2
    assert info["format_version"] == 2
    code, out, _err = cli(capsys, "volume", "info", f)
    assert "snapshots   2 of at most 4096" in out and "schedule    off" in out
    assert "format      2" in out
    code, out, _err = cli(
        capsys, "volume", "schedule", f, "--every", "1h", "--keep", "24", "--json"
    )
    assert json.loads(out)["schedule"] == {
        "interval": 3600, "keep": 24, "weight": 1, "prefix": "auto",
    }  # fmt: skip
    code, out, _err = cli(capsys, "volume", "schedule", f, "--off")
    assert "schedule off" in out
    code, out, _err = cli(capsys, "volume", "policy", f, "--on-full", "fail-writes", "--json")
    assert json.loads(out)["policy"] == {
        "warn_percent": 80, "delete_percent": 90, "on_full": "fail-writes",
    }  # fmt: skip
    code, out, _err = cli(capsys, "snapshot", "delete", f, "S2", "--json")
    assert json.loads(out) == {"path": f, "deleted": "S2"}
    fake = files.volumes[f]
    assert fake.opens == fake.closes == 11 and fake.holder is None  # each opened and closed
    assert files.opened == [f] * 11


def test_refusals_from_the_volume_exit_1_in_one_line(
    capsys: pytest.CaptureFixture[str], files: FakeFiles, volume_file: Path
) -> None:
    code, _out, err = cli(capsys, "snapshot", "delete", str(volume_file), "nope")
    assert code == 1 and "no snapshot named 'nope'" in one_line(err)
    cli(capsys, "snapshot", "create", str(volume_file), "S1")
    code, _out, err = cli(capsys, "snapshot", "create", str(volume_file), "S1")
    assert code == 1 and "exists already" in one_line(err)


def test_held_without_a_control_socket_says_who(
    capsys: pytest.CaptureFixture[str], files: FakeFiles, volume_file: Path
) -> None:
    here = socket.gethostname()
    files.held_by[str(volume_file)] = Holder(here, 4242, "")
    code, _out, err = cli(capsys, "snapshot", "list", str(volume_file))
    line = one_line(err)
    assert code == 1 and f"held by pid 4242 on {here}" in line and "no control socket" in line
    files.held_by[str(volume_file)] = Holder("elsewhere.example", 7, "/run/x.sock")
    code, _out, err = cli(capsys, "snapshot", "list", str(volume_file))
    assert code == 1 and "pid 7 on elsewhere.example; run the command there" in one_line(err)
    files.held_by[str(volume_file)] = Holder(here, 8, str(volume_file.parent / "dead.sock"))
    code, _out, err = cli(capsys, "volume", "info", str(volume_file))
    assert code == 1 and "does not answer" in one_line(err)


def test_restore_wait_shows_progress_and_json_stays_clean(
    capsys: pytest.CaptureFixture[str],
    files: FakeFiles,
    volume_file: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    f = str(volume_file)
    cli(capsys, "snapshot", "create", f, "S1")
    polls: list[int] = []
    original = VolumeService.info

    async def info(self: VolumeService, path: str) -> dict[str, Any]:
        polls.append(1)
        fake = files.volumes[f]
        if len(polls) >= 3:
            fake.background = []
        elif fake.background:
            fake.background = [Progress("restore", 2, 2)]
        return await original(self, path)

    monkeypatch.setattr(VolumeService, "info", info)
    monkeypatch.setattr(cli_volume, "POLL_SECONDS", 0.01)
    code, out, err = cli(capsys, "snapshot", "restore", f, "S1", "--wait", "--progress", "--json")
    assert code == 0 and json.loads(out)["background"] == []
    assert "restore: 100% (2/2 chunks)" in err.splitlines()


# -- through a daemon's control socket, over fake volumes ------------------------------------------


@pytest.fixture
def fake_daemon(tmp_path: Path) -> Iterator[tuple[Path, FakeFiles]]:
    """A control server over a fake-volume service, on its own loop in a thread."""
    sock = tmp_path / "daemon.sock"
    files = FakeFiles()
    loop = asyncio.new_event_loop()
    started = threading.Event()
    stop = asyncio.Event()

    async def serve() -> None:
        server = ControlServer(sock, bind_routes(VolumeService(sock, opener=files), VOLUME_ROUTES))
        await server.start()
        started.set()
        await stop.wait()
        await server.close()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert started.wait(10)
    try:
        yield sock, files
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()


def test_a_held_volume_is_reached_through_its_daemon(
    capsys: pytest.CaptureFixture[str],
    files: FakeFiles,
    volume_file: Path,
    fake_daemon: tuple[Path, FakeFiles],
) -> None:
    sock, daemon_files = fake_daemon
    f = str(volume_file)
    files.held_by[f] = Holder(socket.gethostname(), 99, str(sock))
    code, out, err = cli(capsys, "snapshot", "create", f, "S1", "--json")
    assert code == 0, err
    assert set(json.loads(out)) == SNAPSHOT_KEYS
    assert list(daemon_files.volumes[f].snaps) == ["S1"] and files.opened == []
    code, out, _err = cli(capsys, "snapshot", "list", f, "--json")
    assert [s["name"] for s in json.loads(out)] == ["S1"]
    code, out, _err = cli(
        capsys, "volume", "schedule", f, "--every", "60", "--keep", "10", "--json"
    )
    assert code == 0 and json.loads(out)["schedule"]["interval"] == 60
    assert daemon_files.volumes[f].schedule is not None
    code, out, _err = cli(capsys, "volume", "info", f, "--json")
    assert set(json.loads(out)) == INFO_KEYS
    code, out, _err = cli(capsys, "snapshot", "set", f, "S1", "--weight", "9", "--json")
    assert json.loads(out)["weight"] == 9
    code, _out, err = cli(capsys, "snapshot", "delete", f, "S9")
    assert code == 1 and "name: no snapshot named 'S9'" in one_line(err)
    code, out, _err = cli(capsys, "snapshot", "delete", f, "S1", "--json")
    assert json.loads(out) == {"path": f, "deleted": "S1"}
    assert files.opened == []


# -- the real thing: a real volume, locally and through a real daemon ------------------------------


def test_real_volume_locally_then_through_the_daemon_that_serves_it(tmp_path: Path) -> None:
    vol = tmp_path / "real.img"
    formatted = sanstack("volume", "format", str(vol), "--size", "16M", "--json", cwd=tmp_path)
    assert formatted.returncode == 0, formatted.stderr
    info = json.loads(formatted.stdout)
    assert set(info) == INFO_KEYS and info["snapshots"] == 0
    again = sanstack("volume", "format", str(vol), "--size", "16M", cwd=tmp_path)
    assert again.returncode == 1 and "--force" in one_line(again.stderr)
    made = sanstack("snapshot", "create", str(vol), "local1", "--json", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["name"] == "local1"
    port = free_port()
    with running_target(tmp_path, IQN, [port], [f"volume:{vol}"]) as daemon:
        info = json.loads(sanstack("volume", "info", str(vol), "--json", cwd=tmp_path).stdout)
        assert info["holder"]["pid"] == daemon.process.pid
        assert info["holder"]["control"] == str(daemon.control)
        made = sanstack("snapshot", "create", str(vol), "remote1", "--json", cwd=tmp_path)
        assert made.returncode == 0, made.stderr
        listed = sanstack("snapshot", "list", str(vol), "--json", cwd=tmp_path)
        assert [s["name"] for s in json.loads(listed.stdout)] == ["local1", "remote1"]
        gone = sanstack("snapshot", "delete", str(vol), "local1", cwd=tmp_path)
        assert gone.returncode == 0, gone.stderr
        refused = sanstack("volume", "format", str(vol), "--force", cwd=tmp_path)
        assert refused.returncode == 1 and f"pid {daemon.process.pid}" in one_line(refused.stderr)
    listed = sanstack("snapshot", "list", str(vol), "--json", cwd=tmp_path)
    assert [s["name"] for s in json.loads(listed.stdout)] == ["remote1"]
    assert os.path.exists(vol)
