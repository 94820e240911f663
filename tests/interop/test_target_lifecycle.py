"""Access control, CHAP, and teardown paths of a real target process."""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest
from tests.support.iscsi_client import TestInitiator
from tests.support.processes import (
    free_port,
    require_tool,
    run_tool,
    running_config_target,
    running_target,
)
from tests.support.waits import wait_until

from sanstack.iscsi import pdu as p

pytestmark = pytest.mark.interop
IQN = "iqn.2026-11.org.sanstack:lifecycle"
ALLOWED = "iqn.2026-11.org.sanstack:allowed"


def _config(tmp_path: Path, port: int, extra: str) -> Path:
    config = tmp_path / "target.toml"
    config.write_text(
        f'[[target]]\nname = "{IQN}"\n{extra}\n'
        f'[[target.portal_group]]\ntag = 1\nportals = ["127.0.0.1:{port}"]\n'
        '[[target.lun]]\nbackstore = "memory"\nsize = "16M"\n'
    )
    return config


def test_acl_refuses_other_initiators(tmp_path: Path) -> None:
    iscsi_inq = require_tool("iscsi-inq")
    port = free_port()
    with running_config_target(tmp_path, _config(tmp_path, port, f'initiators = ["{ALLOWED}"]')):
        url = f"iscsi://127.0.0.1:{port}/{IQN}/0"
        assert "SANSTACK" in run_tool([iscsi_inq, "-i", ALLOWED, url]).stdout
        refused = run_tool([iscsi_inq, "-i", "iqn.2026-11.org.sanstack:intruder", url], check=False)
        assert refused.returncode != 0
        assert "SANSTACK" not in refused.stdout


def test_chap_accepts_the_secret_and_refuses_anything_else(tmp_path: Path) -> None:
    iscsi_inq = require_tool("iscsi-inq")
    port = free_port()
    chap = 'chap = { user = "node1", secret = "a-long-secret-1" }'
    with running_config_target(tmp_path, _config(tmp_path, port, chap)):
        good = f"iscsi://node1%a-long-secret-1@127.0.0.1:{port}/{IQN}/0"
        assert "SANSTACK" in run_tool([iscsi_inq, good]).stdout
        for url in (
            f"iscsi://node1%wrong-secret-000@127.0.0.1:{port}/{IQN}/0",
            f"iscsi://127.0.0.1:{port}/{IQN}/0",
        ):
            refused = run_tool([iscsi_inq, url], check=False)
            assert refused.returncode != 0 and "SANSTACK" not in refused.stdout


def test_sigterm_during_a_large_copy_stops_cleanly(tmp_path: Path) -> None:
    """Graceful shutdown while a client streams writes: exit 0, bounded, no traceback."""
    qemu_img = require_tool("qemu-img")
    source = tmp_path / "src.img"
    source.write_bytes(os.urandom(128 * 1024 * 1024))
    port = free_port()
    with running_target(tmp_path, IQN, [port], [f"{tmp_path / 'lun.img'}:128M"]) as daemon:
        url = f"iscsi://127.0.0.1:{port}/{IQN}/0"
        copy = subprocess.Popen(
            [qemu_img, "convert", "-n", "-f", "raw", "-O", "raw", str(source), url],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        lun = tmp_path / "lun.img"
        wait_until(lambda: lun.stat().st_blocks > 0, 60, "the copy's first writes reached the LUN")
        started = time.monotonic()
        daemon.process.send_signal(signal.SIGTERM)
        daemon.process.wait(30)
        assert time.monotonic() - started < 15
        # libiscsi keeps trying to reconnect to a target that is gone: end the client.
        copy.kill()
        copy.wait(30)
    # running_target asserts exit status 0 and no traceback in the log.


def test_connection_lost_in_the_middle_of_a_write(tmp_path: Path) -> None:
    port = free_port()
    with running_target(tmp_path, IQN, [port], ["memory:16M"]) as daemon:
        for _ in range(20):
            victim = TestInitiator("127.0.0.1", port, IQN, isid=0x80_0000_0042)
            cdb = struct.pack(">BBIBHB", 0x2A, 0, 0, 0, 2048, 0).ljust(16, b"\0")
            victim.send(
                p.SCSICommand(
                    itt=1, cdb=cdb, expected_data_transfer_length=2048 * 512, write=True,
                    final=False, data=bytes(8192), cmd_sn=victim.cmd_sn,
                )
            )  # fmt: skip
            victim.sock.shutdown(socket.SHUT_RDWR)
            victim.close()
        survivor = TestInitiator("127.0.0.1", port, IQN, isid=0x80_0000_0043)
        data = os.urandom(4096)
        survivor.write(8, data)
        assert survivor.read(8, 8) == data
        survivor.logout()
        assert daemon.process.poll() is None


def test_relogin_with_the_same_isid_reinstates_the_session(tmp_path: Path) -> None:
    port = free_port()
    with running_target(tmp_path, IQN, [port], ["memory:16M"]):
        first = TestInitiator("127.0.0.1", port, IQN, isid=0x80_0000_0077)
        second = TestInitiator("127.0.0.1", port, IQN, isid=0x80_0000_0077)
        # The old connection is closed by the target (RFC 7143 §6.3.5).
        first.sock.settimeout(5)
        with pytest.raises((ConnectionError, OSError)):
            while True:
                first.receive()
        data = os.urandom(512)
        second.write(0, data)
        assert second.read(0, 1) == data
        second.logout()


def test_many_sessions_at_once(tmp_path: Path) -> None:
    port = free_port()
    with running_target(tmp_path, IQN, [port], ["memory:64M"]):
        clients = [
            TestInitiator("127.0.0.1", port, IQN, isid=0x80_0001_0000 + i) for i in range(64)
        ]
        for i, client in enumerate(clients):
            client.write(i * 8, bytes([i]) * 4096)
        for i, client in enumerate(clients):
            assert client.read(i * 8, 8) == bytes([i]) * 4096
        for client in clients:
            client.logout()
