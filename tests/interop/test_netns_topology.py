"""The namespace topology the cluster tests run on: hosts reach each other on both
networks; a partition of the cluster network cuts it between sides and leaves storage
whole; healing restores it; closing removes every namespace."""

from __future__ import annotations

import subprocess
import sys

import pytest
from tests.support.netns import NetHost, topology

pytestmark = pytest.mark.interop

PORT = 7400
SERVE = (
    "import socket\n"
    "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    f"s.bind(('0.0.0.0', {PORT}))\n"
    "print('ready', flush=True)\n"
    "while True:\n"
    "    data, peer = s.recvfrom(64)\n"
    "    s.sendto(data, peer)\n"
)
ASK = (
    "import socket, sys\n"
    "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    "s.settimeout(0.5)\n"
    "for _ in range(4):\n"
    f"    s.sendto(b'ping', (sys.argv[1], {PORT}))\n"
    "    try:\n"
    "        s.recvfrom(64)\n"
    "        sys.exit(0)\n"
    "    except TimeoutError:\n"
    "        pass\n"
    "sys.exit(1)\n"
)


def reaches(source: NetHost, destination: NetHost, network: str) -> bool:
    result = subprocess.run(
        source.command([sys.executable, "-c", ASK, destination.address(network)]),
        capture_output=True,
        timeout=30,
        check=False,
    )
    return result.returncode == 0


def test_partition_cuts_the_cluster_network_only() -> None:
    with topology(["n1", "n2", "n3"]) as top:
        n1, n2, n3 = (top.hosts[n] for n in ("n1", "n2", "n3"))
        echo = subprocess.Popen(
            n1.command([sys.executable, "-c", SERVE]), stdout=subprocess.PIPE, text=True
        )
        try:
            assert echo.stdout is not None and echo.stdout.readline().strip() == "ready"
            assert reaches(n2, n1, "cluster") and reaches(n2, n1, "storage")
            top.partition(["n1"], ["n2", "n3"])
            assert not reaches(n2, n1, "cluster")
            assert reaches(n2, n1, "storage")
            top.heal()
            assert reaches(n3, n1, "cluster")
        finally:
            echo.kill()
            echo.wait(10)
        names = top._made[:]
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    assert not any(name in listed.stdout for name in names)
