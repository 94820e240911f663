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
        # iscsi-ls prints block size x the LAST LBA, so 64 MiB shows as 63M (tgt and LIO too).
        assert re.search(r"Lun:0\s+Type:DIRECT_ACCESS.*\(Size:63M\)", listing), listing
        assert re.search(r"Lun:1\s+Type:DIRECT_ACCESS.*\(Size:31M\)", listing), listing
        standard = run_tool([iscsi_inq, f"iscsi://127.0.0.1:{ports[1]}/{IQN}/0"]).stdout
        assert "SANSTACK" in standard
        lun1 = f"iscsi://127.0.0.1:{ports[0]}/{IQN}/1"
        serial = run_tool([iscsi_inq, "-e", "1", "-c", "128", lun1]).stdout
        assert "Unit Serial Number" in serial, serial
        # The same device identity through either portal (what multipath groups paths by),
        # and a different target port (TPGT 1 and 2) on each.
        idents = [
            run_tool([iscsi_inq, "-e", "1", "-c", "131", f"iscsi://127.0.0.1:{p}/{IQN}/1"]).stdout
            for p in ports
        ]
        naa = [re.search(r"\(3\) NAA\nDesignator:\[(.*)\]", i) for i in idents]
        assert naa[0] is not None and naa[1] is not None, idents
        assert naa[0].group(1) == naa[1].group(1)
        assert f"{IQN},t,0x0001]" in idents[0] and f"{IQN},t,0x0002]" in idents[1]


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
        found = re.findall(r"Lun:(\d+)\s+Type:DIRECT_ACCESS.*\(Size:1023k\)", listing)
        # libiscsi prints LUNs >= 256 as their raw flat-space field (SAM: 0x4000 | LUN).
        numbers = sorted(int(n) & 0x3FFF if int(n) >= 0x4000 else int(n) for n in found)
        assert numbers == list(range(1024))
