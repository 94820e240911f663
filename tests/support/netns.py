"""Hosts with their own addresses on one machine: a network namespace per host, joined to
two switches (bridges in a namespace of their own), one for the cluster network and one for
storage, so a test can partition the cluster while every side still reaches the storage.

Every name carries a short random tag, so two runs (or two CI jobs) never collide, and
``close`` removes every namespace it made (the veths and bridges go with them). Needs root
and iproute2, as CI has.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

NETWORKS = {"cluster": 1, "storage": 2}


def ip(*args: str, netns: str | None = None) -> None:
    command = ["ip", *(["-n", netns] if netns else []), *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}: {result.stderr.strip()}")


@dataclass
class NetHost:
    name: str
    netns: str
    index: int  # the last octet of its addresses
    prefix: str  # "10.N", unique per topology

    def address(self, network: str) -> str:
        return f"{self.prefix}.{NETWORKS[network]}.{self.index}"

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside this host's namespace."""
        return ["ip", "netns", "exec", self.netns, *argv]


@dataclass
class Topology:
    tag: str
    prefix: str
    switch: str  # the namespace holding the bridges
    hosts: dict[str, NetHost] = field(default_factory=dict)
    _made: list[str] = field(default_factory=list)

    def _veth(self, host: NetHost, network: str) -> tuple[str, str]:
        """(the host's end, the switch's end) of its veth on ``network``."""
        return f"{network[0]}{host.index}", f"{network[0]}{host.index}-{self.tag}"

    def add_host(self, name: str) -> NetHost:
        index = len(self.hosts) + 1
        host = NetHost(name, f"ss-{self.tag}-{name}", index, self.prefix)
        ip("netns", "add", host.netns)
        self._made.append(host.netns)
        ip("link", "set", "lo", "up", netns=host.netns)
        for network in NETWORKS:
            inner, outer = self._veth(host, network)
            ip("link", "add", inner, "netns", host.netns, "type", "veth", "peer", outer,
               "netns", self.switch)  # fmt: skip
            ip("link", "set", outer, "master", f"br-{network}", "up", netns=self.switch)
            ip("addr", "add", f"{host.address(network)}/24", "dev", inner, netns=host.netns)
            ip("link", "set", inner, "up", netns=host.netns)
        self.hosts[name] = host
        return host

    def partition(self, *sides: Sequence[str]) -> None:
        """Split the cluster network into ``sides`` (host names); storage stays whole.
        Each side gets a bridge of its own; hosts named on no side keep the first."""
        for number, side in enumerate(sides):
            bridge = f"br-cluster{number}" if number else "br-cluster"
            if number:
                self._bridge(bridge)
            for name in side:
                _, outer = self._veth(self.hosts[name], "cluster")
                ip("link", "set", outer, "master", bridge, netns=self.switch)

    def heal(self) -> None:
        for host in self.hosts.values():
            _, outer = self._veth(host, "cluster")
            ip("link", "set", outer, "master", "br-cluster", netns=self.switch)

    def _bridge(self, name: str) -> None:
        result = subprocess.run(
            ["ip", "-n", self.switch, "link", "show", name], capture_output=True, check=False
        )
        if result.returncode != 0:
            ip("link", "add", name, "type", "bridge", netns=self.switch)
            ip("link", "set", name, "up", netns=self.switch)

    def close(self) -> None:
        for netns in reversed(self._made):
            subprocess.run(["ip", "netns", "del", netns], capture_output=True, check=False)
        self._made.clear()


@contextmanager
def topology(names: Sequence[str]) -> Iterator[Topology]:
    """Hosts ``names``, each in its own namespace on a cluster and a storage network."""
    if os.geteuid() != 0:
        raise RuntimeError("network namespaces need root")
    tag = secrets.token_hex(2)
    prefix = f"10.{100 + secrets.randbelow(100)}"
    top = Topology(tag, prefix, f"ss-{tag}-switch")
    try:
        ip("netns", "add", top.switch)
        top._made.append(top.switch)
        for network in NETWORKS:
            top._bridge(f"br-{network}")
        for name in names:
            top.add_host(name)
        yield top
    finally:
        top.close()
