"""LUN 299 of a real target process through libiscsi's tools and qemu, by every name it has.

REPORT LUNS gives LUN 299 as flat space ``41 2B`` (SAM-5 §4.7.7.4), which libiscsi and Linux
read as LUN 16683; a URL ending in ``/299`` (libiscsi puts ``01 2B`` on the wire, as Linux's
``int_to_scsilun(299)`` and LIO do) reaches the same logical unit (README, "LUN numbers above
255").
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from tests.support.processes import free_port, require_tool, run_tool, running_target

pytestmark = pytest.mark.interop
IQN = "iqn.2026-11.org.sanstack:many-luns"
LUN_COUNT = 300


def serial(iscsi_inq: str, url: str) -> str:
    out = run_tool([iscsi_inq, "-e", "1", "-c", "128", url]).stdout
    match = re.search(r"Unit Serial Number:\[(\w+)\]", out)
    assert match is not None, out
    return match.group(1)


def test_lun_299_by_both_numbers(tmp_path: Path) -> None:
    iscsi_inq = require_tool("iscsi-inq")
    iscsi_ls = require_tool("iscsi-ls")
    qemu_img = require_tool("qemu-img")
    qemu_io = require_tool("qemu-io")
    port = free_port()
    with running_target(tmp_path, IQN, [port], ["memory:1M"] * LUN_COUNT):
        base = f"iscsi://127.0.0.1:{port}/{IQN}"
        listing = run_tool([iscsi_ls, "-s", f"iscsi://127.0.0.1:{port}/"]).stdout
        numbers = [int(n) for n in re.findall(r"^Lun:(\d+)\s+Type:DIRECT_ACCESS", listing, re.M)]
        assert numbers == [*range(256), *range(0x4000 | 256, 0x4000 | LUN_COUNT)], listing

        assert serial(iscsi_inq, f"{base}/299") == serial(iscsi_inq, f"{base}/16683")
        # tgt would read 01 2B as LUN 43; here it is LUN 299 and LUN 43 is another unit.
        assert serial(iscsi_inq, f"{base}/299") != serial(iscsi_inq, f"{base}/43")
        for missing in (300, 0x4000 | 300, 0x8000 | 299):
            refused = run_tool([iscsi_inq, f"{base}/{missing}"], check=False)
            assert refused.returncode != 0, missing
            assert "LOGICAL_UNIT_NOT_SUPPORTED" in refused.stdout + refused.stderr, missing

        by_option = {
            "file.driver": "iscsi",
            "file.transport": "tcp",
            "file.portal": f"127.0.0.1:{port}",
            "file.target": IQN,
            "file.lun": 299,
        }
        for image in (f"{base}/299", f"{base}/16683", f"json:{json.dumps(by_option)}"):
            info = json.loads(run_tool([qemu_img, "info", "--output=json", image]).stdout)
            assert info["virtual-size"] == 1024 * 1024, image

        run_tool([qemu_io, "-f", "raw", "-c", "write -P 0x5a 0 64k", f"{base}/299"])
        read = run_tool([qemu_io, "-f", "raw", "-c", "read -P 0x5a 0 64k", f"{base}/16683"])
        assert "Pattern verification failed" not in read.stdout, read.stdout
        untouched = run_tool([qemu_io, "-f", "raw", "-c", "read -P 0 0 64k", f"{base}/43"])
        assert "Pattern verification failed" not in untouched.stdout, untouched.stdout
