"""``sanstack host run --config FILE`` against sanstack's target configured for mutual CHAP:
it logs in with the file's CHAP, takes the file's timings and map policy, the flags given
with it override the file, its LUN filter keeps LUNs out at start and after a rescan; a wrong
secret is one clear error line naming ``host.chap``."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from tests.support.processes import (
    free_port,
    run_tool,
    running_config_host,
    running_config_target,
    sanstack_command,
)

pytestmark = pytest.mark.interop
IQN = "iqn.2026-11.org.sanstack:chapped"
USER, SECRET = "node1", "the-right-secret"
TARGET_USER, TARGET_SECRET = "array", "the-targets-secret"


def target_config(tmp_path: Path, ports: list[int]) -> Path:
    path = tmp_path / "target.toml"
    groups = "".join(
        f'[[target.portal_group]]\ntag = {i + 1}\nportals = ["127.0.0.1:{port}"]\n'
        for i, port in enumerate(ports)
    )
    luns = '[[target.lun]]\nbackstore = "memory"\nsize = "1M"\n' * 3
    path.write_text(
        f'[[target]]\nname = "{IQN}"\n'
        f'chap = {{ user = "{USER}", secret = "{SECRET}", '
        f'mutual_user = "{TARGET_USER}", mutual_secret = "{TARGET_SECRET}" }}\n' + groups + luns
    )
    return path


def host_config(tmp_path: Path, ports: list[int], secret: str) -> Path:
    path = tmp_path / "host.toml"
    portals = ", ".join(f'"127.0.0.1:{port}"' for port in ports)
    path.write_text(
        f"""
[host]
name = "chapped"
portals = [{portals}]
targets = ["{IQN}"]
nbd = "127.0.0.1:1"          # the --nbd flag overrides it
rescan_interval = 0

[host.chap]
user = "{USER}"
secret = "{secret}"
mutual_user = "{TARGET_USER}"
mutual_secret = "{TARGET_SECRET}"

[host.session]
login_timeout = 3
nop_timeout = 4

[host.map]
selector = "round-robin"
failback = "manual"

[host.luns]
exclude = ["{IQN}/1", "{IQN}/3"]
"""
    )
    return path


def sanstack(*args: str) -> subprocess.CompletedProcess[str]:
    return run_tool([*sanstack_command(), *args], timeout=60)


def host_json(control: Path, *args: str) -> Any:
    return json.loads(sanstack("host", *args, "--json", "--control", str(control)).stdout)


def test_host_run_config_logs_in_with_mutual_chap_and_keeps_left_out_luns_out(
    tmp_path: Path,
) -> None:
    ports = [free_port(), free_port()]
    with running_config_target(tmp_path, target_config(tmp_path, ports)) as target:
        nbd_port = free_port()
        config = host_config(tmp_path, ports, SECRET)
        extra = ["--nbd", f"127.0.0.1:{nbd_port}"]
        with running_config_host(tmp_path, config, "chapped", extra=extra) as host:
            assert f"nbd://127.0.0.1:{nbd_port} maps 2".encode() in host.ready_line
            status = host_json(host.control, "status")
            assert status["initiator"] == "iqn.2026-11.org.sanstack.host:chapped"
            assert status["counts"] == {"sessions": 2, "sessions_up": 2, "maps": 2}
            maps = host_json(host.control, "maps")
            assert sorted(m["alias"] for m in maps) == [f"{IQN}/0", f"{IQN}/2"]
            assert all(m["selector"] == "round-robin" for m in maps)

            # LUN 1 and 3 are left out: LUN 3 now comes, and so does LUN 4.
            for number in (3, 4):
                sanstack("target", "lun-add", IQN, "memory:1M", "--number", str(number),
                         "--control", str(target.control))  # fmt: skip
            # (The unit attention may have rescanned already; this one ends after it.)
            (result,) = host_json(host.control, "rescan")
            assert result["maps"] == 3
            maps = host_json(host.control, "maps")
            assert sorted(m["alias"] for m in maps) == [f"{IQN}/0", f"{IQN}/2", f"{IQN}/4"]
            assert all(m["paths"] == {"active": 2} for m in maps)
            exported = {name for m in maps for name in m["exports"]}
            assert not {f"{IQN}/1", f"{IQN}/3"} & exported


def test_a_wrong_chap_secret_is_one_clear_line_naming_host_chap(tmp_path: Path) -> None:
    ports = [free_port()]
    with running_config_target(tmp_path, target_config(tmp_path, ports)):
        config = host_config(tmp_path, ports, "not-the-secret")
        result = subprocess.run(
            [*sanstack_command(), "host", "run", "--config", str(config),
             "--nbd", "127.0.0.1:0", "--control", str(tmp_path / "host.sock")],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("sanstack: error: host.chap: "), last
    assert "AUTHENTICATION_FAILURE" in last and "check user and secret" in last, last
