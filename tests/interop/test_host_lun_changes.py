"""``sanstack host rescan`` against sanstack's target with ``sanstack host run`` as a process:
a LUN added at runtime becomes an export, a removed one goes away and its I/O fails with an
error, while I/O on the other exports never fails and the sessions are never disturbed."""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from tests.support.nbd_socket import NBDRefused, NBDReplyError, NBDSocketClient
from tests.support.processes import (
    Daemon,
    free_port,
    require_tool,
    running_host,
    running_target,
)
from tests.support.waits import until

pytestmark = pytest.mark.interop
IQN = "iqn.2026-11.org.sanstack:rescan"
LUNS = 3
BLOCK = 4096
SLOTS = 64  # 4 KiB slots written and read back, within a 1 MiB LUN


def sanstack(*args: str) -> list[str]:
    return [sys.executable, "-m", "sanstack.cli.main", *args]


async def tool(*args: str) -> str:
    """Run a command without stopping the loads on the loop; its stdout (exit 0 required)."""
    process = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), 60)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode == 0, f"{args[:6]} exited {process.returncode}: {err.decode()}"
    return out.decode(errors="replace")


class Load:
    """One NBD client writing 4 KiB blocks and reading them back, one request at a time,
    until ``stop`` or the first error (kept in ``error``)."""

    def __init__(self, port: int, export: str, seed: int) -> None:
        self.port = port
        self.export = export
        self.rng = random.Random(seed)
        self.done = 0
        self.error: Exception | None = None
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        client = await NBDSocketClient.connect("127.0.0.1", self.port, self.export)
        written: dict[int, bytes] = {}
        try:
            while not self.stop.is_set():
                slot = self.rng.randrange(SLOTS) * BLOCK
                if slot not in written or self.rng.random() < 0.5:
                    data = os.urandom(BLOCK)
                    await client.write(slot, data)
                    written[slot] = data
                else:
                    assert await client.read(slot, BLOCK) == written[slot], self.export
                self.done += 1
        except NBDReplyError as exc:
            self.error = exc
        finally:
            await client.close()

    async def end(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 60)


async def progressed(loads: list[Load], by: int, what: str) -> None:
    start = [load.done for load in loads]
    await until(
        lambda: all(ld.done >= s + by for ld, s in zip(loads, start, strict=True)), 30, what
    )


def test_a_lun_added_then_removed_at_runtime_with_io_on_the_others(tmp_path: Path) -> None:
    nbdinfo = require_tool("nbdinfo")
    ports = [free_port(), free_port()]
    with running_target(tmp_path, IQN, ports, ["memory:1M"] * LUNS) as target:
        nbd_port = free_port()
        no_timer = ["--rescan-interval", "0"]
        with running_host(tmp_path, "r1", ports, nbd_port, extra=no_timer) as host:
            asyncio.run(_added_then_removed(target, host.control, nbd_port, nbdinfo))


async def _added_then_removed(target: Daemon, control: Path, nbd_port: int, nbdinfo: str) -> None:
    async def host(*args: str) -> Any:
        out = await tool(*sanstack("host", *args, "--control", str(control)))
        return json.loads(out) if "--json" in args else out

    async def target_cli(*args: str) -> str:
        return await tool(*sanstack("target", *args, "--control", str(target.control)))

    async def listed() -> str:
        return await tool(nbdinfo, "--list", f"nbd://127.0.0.1:{nbd_port}")

    others = [Load(nbd_port, f"{IQN}/{n}", seed=n) for n in range(LUNS)]
    await progressed(others, 5, "I/O on every export")

    # Added at runtime: after a rescan it is a map with both paths and an export.
    await target_cli("lun-add", IQN, "memory:1M", "--number", str(LUNS))
    new_alias = f"{IQN}/{LUNS}"
    results = await host("rescan", "--json")
    assert [r["target"] for r in results] == [IQN]
    assert results[0]["answered"] == results[0]["sessions"] == 2
    maps = {m["alias"]: m for m in await host("maps", "--json")}
    assert len(maps) == LUNS + 1  # the rescan (or the unit attention's, first) added it
    new_wwid = maps[new_alias]["wwid"]
    names = await listed()
    assert new_alias in names and new_wwid in names
    await until_paths(host, new_alias)
    added = Load(nbd_port, new_alias, seed=99)
    await progressed([added, *others], 5, "I/O on the new export and the others")

    # Removed at runtime: its I/O fails with an error (no hang), its exports go away.
    await target_cli("lun-remove", IQN, str(LUNS))
    await asyncio.wait_for(added.task, 30)
    assert isinstance(added.error, NBDReplyError), "I/O to the removed LUN did not fail"
    table = await host("rescan")
    assert IQN in table
    names = await listed()
    assert new_alias not in names and new_wwid not in names
    assert sorted(m["alias"] for m in await host("maps", "--json")) == [
        f"{IQN}/{n}" for n in range(LUNS)
    ]
    with pytest.raises(NBDRefused):
        await NBDSocketClient.connect("127.0.0.1", nbd_port, new_alias)

    # Nothing else was disturbed: the other exports kept going without an error, on the
    # same two sessions, never logged in again.
    await progressed(others, 5, "I/O on the other exports after the removal")
    for load in others:
        await load.end()
        assert load.error is None, f"{load.export}: {load.error}"
    status = await host("status", "--json")
    assert [s["logins"] for s in status["sessions"]] == [1, 1]
    assert [s["failures"] for s in status["sessions"]] == [0, 0]
    assert all(p["failures"] == 0 for p in await host("paths", "--json"))


async def until_paths(host: Any, alias: str) -> None:
    """Both paths of ``alias``'s map active (bounded)."""
    deadline = asyncio.get_running_loop().time() + 15
    while True:
        maps = {m["alias"]: m for m in await host("maps", "--json")}
        if maps[alias]["paths"] == {"active": 2}:
            return
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"{alias}: paths {maps[alias]['paths']}, not both active")
        await asyncio.sleep(0.1)


def test_a_lun_removed_and_readded_under_its_number_is_a_new_map_after_a_rescan(
    tmp_path: Path,
) -> None:
    """Between two rescans LUN 1 is removed and another file added under the same number:
    REPORT LUNS looks the same, so only VPD 0x83 read again tells. After the rescan the old
    map's export is gone and the alias serves the new device's data."""
    from sanstack.control.client import call
    from sanstack.target.config import parse_lun_argument

    files = {}
    for tag in (b"A", b"B"):
        path = tmp_path / f"lun-{tag.decode()}.img"
        path.write_bytes(tag * (1 << 20))
        files[tag] = path
    ports = [free_port(), free_port()]
    with running_target(tmp_path, IQN, ports, ["memory:1M", str(files[b"A"])]) as target:
        nbd_port = free_port()
        no_timer = ["--rescan-interval", "0"]
        with running_host(tmp_path, "r2", ports, nbd_port, extra=no_timer) as daemon:
            control = daemon.control

            def host(*words: str) -> Any:
                out = subprocess.run(
                    sanstack("host", *words, "--json", "--control", str(control)),
                    capture_output=True,
                    check=True,
                    timeout=60,
                ).stdout
                return json.loads(out)

            alias = f"{IQN}/1"
            before = {m["alias"]: m for m in host("maps")}[alias]
            assert asyncio.run(read_block(nbd_port, alias)) == b"A" * BLOCK
            # Removed and re-added back to back, straight through the control socket.
            spec = parse_lun_argument(str(files[b"B"]), 1, "spec")
            body = {"backstore": spec.backstore, "size": spec.size, "number": 1}
            body["path"] = str(files[b"B"].resolve())
            call(target.control, "DELETE", f"/v1/targets/{IQN}/luns/1")
            call(target.control, "POST", f"/v1/targets/{IQN}/luns", body)
            host("rescan")
            maps = {m["alias"]: m for m in host("maps")}
            after = maps[alias]
            assert after["wwid"] != before["wwid"]
            assert before["wwid"] not in {m["wwid"] for m in maps.values()}
            with pytest.raises(NBDRefused):
                asyncio.run(read_block(nbd_port, before["wwid"]))
            assert asyncio.run(read_block(nbd_port, alias)) == b"B" * BLOCK
            assert asyncio.run(read_block(nbd_port, after["wwid"])) == b"B" * BLOCK
            assert sorted(m["alias"] for m in maps.values()) == [f"{IQN}/0", alias]


async def read_block(port: int, export: str) -> bytes:
    client = await NBDSocketClient.connect("127.0.0.1", port, export)
    try:
        return bytes(await client.read(0, BLOCK))
    finally:
        await client.close()
