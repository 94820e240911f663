"""Real initiators against a real target process: libiscsi's tools and qemu over iscsi://."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from tests.support.processes import free_port, require_tool, run_tool, running_target

pytestmark = pytest.mark.interop
IQN = "iqn.2026-11.org.sanstack:interop"


def test_discovery_inquiry_and_listing(tmp_path: Path) -> None:
    iscsi_ls = require_tool("iscsi-ls")
    iscsi_inq = require_tool("iscsi-inq")
    ports = [free_port(), free_port()]
    luns = [f"{tmp_path / 'a.img'}:64M", "memory:32M"]
    with running_target(tmp_path, IQN, ports, luns):
        listing = run_tool([iscsi_ls, "-s", f"iscsi://127.0.0.1:{ports[0]}/"]).stdout
        assert f"Target:{IQN}" in listing
        for port in ports:
            assert f"127.0.0.1:{port}" in listing
        assert re.search(r"Lun:0\s+Type:DIRECT_ACCESS.*\(Size:64M\)", listing), listing
        assert re.search(r"Lun:1\s+Type:DIRECT_ACCESS.*\(Size:32M\)", listing), listing
        standard = run_tool([iscsi_inq, f"iscsi://127.0.0.1:{ports[1]}/{IQN}/0"]).stdout
        assert "SANSTACK" in standard
        serial = run_tool(
            [iscsi_inq, "-e", "1", "-c", "0x80", f"iscsi://127.0.0.1:{ports[0]}/{IQN}/0"]
        )
        assert "Unit Serial Number" in serial.stdout or "serial" in serial.stdout.lower()
        ident = run_tool(
            [iscsi_inq, "-e", "1", "-c", "0x83", f"iscsi://127.0.0.1:{ports[0]}/{IQN}/1"]
        )
        assert "NAA" in ident.stdout


def test_qemu_img_convert_round_trip(tmp_path: Path) -> None:
    qemu_img = require_tool("qemu-img")
    source = tmp_path / "source.img"
    source.write_bytes(os.urandom(256 * 1024 * 1024))
    port = free_port()
    with running_target(tmp_path, IQN, [port], [f"{tmp_path / 'lun0.img'}:256M"]):
        url = f"iscsi://127.0.0.1:{port}/{IQN}/0"
        run_tool([qemu_img, "convert", "-p", "-n", "-f", "raw", "-O", "raw", str(source), url])
        back = tmp_path / "back.img"
        run_tool([qemu_img, "convert", "-f", "raw", "-O", "raw", url, str(back)])
        run_tool([qemu_img, "compare", "-f", "raw", "-F", "raw", str(source), str(back)])
        run_tool([qemu_img, "compare", "-f", "raw", "-F", "raw", str(source), url])


def test_qemu_io_patterns(tmp_path: Path) -> None:
    qemu_io = require_tool("qemu-io")
    port = free_port()
    with running_target(tmp_path, IQN, [port], ["memory:64M"]):
        url = f"iscsi://127.0.0.1:{port}/{IQN}/0"
        script = [
            "write -P 0xab 0 1M",
            "write -P 0xcd 1M 4k",
            "write -z 2M 1M",
            "discard 4M 1M",
            "read -P 0xab 0 1M",
            "read -P 0xcd 1M 4k",
            "read -P 0 2M 1M",
            "read -P 0 4M 1M",
            "flush",
        ]
        args = [qemu_io, "-f", "raw"]
        for line in script:
            args += ["-c", line]
        out = run_tool([*args, url]).stdout
        assert "Pattern verification failed" not in out, out
        assert out.count("read ") >= 4


def test_thousand_luns_answer_inquiry_and_read_capacity(tmp_path: Path) -> None:
    iscsi_ls = require_tool("iscsi-ls")
    port = free_port()
    luns = [f"{tmp_path / f'l{i}.img'}:1M" for i in range(1024)]
    with running_target(tmp_path, IQN, [port], luns, ready_timeout=120):
        listing = run_tool([iscsi_ls, "-s", f"iscsi://127.0.0.1:{port}/"], timeout=300).stdout
        found = re.findall(r"Lun:(\d+)\s+Type:DIRECT_ACCESS.*\(Size:1M\)", listing)
        assert sorted(int(n) for n in found) == list(range(1024))
