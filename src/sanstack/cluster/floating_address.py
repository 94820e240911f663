"""A group's floating address, as Pacemaker's IPaddr2 keeps one (asyncio edge).

The owner of a group whose export is ``floating`` adds the export's IPv4 address to the
interface that routes to it before it binds the export, and removes it after it unbinds;
every other node has it nowhere. The address is added as a /32, so it brings no subnet route
of its own and the node's other traffic (its iSCSI sessions) keeps its source address.

Gratuitous ARP: a new owner tells the segment at once that the address is behind its
interface now, an ARP request and an ARP reply from the address to itself, sent again
``ANNOUNCE_AFTER`` (IPaddr2's ``send_arp`` repeats too: a first one may arrive inside a
neighbour's lock time and be ignored). It is what moves the clients of an owner that did not
remove the address, one that was stopped (``kill -STOP``) or cut off: its kernel still has
the address and would still take their connections. Such an owner removes it when it
learns that it was fenced (its group stops), before it could serve anything.

Everything here runs ``ip`` (iproute2) and sends on a packet socket: the node needs
CAP_NET_ADMIN and CAP_NET_RAW for a floating export, as IPaddr2 needs root.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import re
import socket
import struct
from typing import Final

from sanstack.errors import SanstackError

log = logging.getLogger(__name__)

IP_TIMEOUT: Final = 10.0  # one ``ip`` command
ANNOUNCE_AFTER: Final = (0.2, 0.5, 1.0, 2.0)  # seconds after the first announcement
ETH_P_ARP: Final = 0x0806
_DEVICE = re.compile(r"\bdev (\S+)")


class FloatingAddressError(SanstackError):
    """``ip`` refused to add or remove the address, or no interface routes to it."""


async def run_ip(*args: str) -> str:
    """``ip ARGS``, bounded; its output, or ``FloatingAddressError`` with its message."""
    try:
        process = await asyncio.create_subprocess_exec(
            "ip",
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as exc:
        raise FloatingAddressError(f"ip {' '.join(args)}: {exc.strerror or exc}") from None
    try:
        async with asyncio.timeout(IP_TIMEOUT):
            out, err = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        raise FloatingAddressError(f"ip {' '.join(args)}: no answer in {IP_TIMEOUT:g} s") from None
    if process.returncode != 0:
        message = err.decode(errors="replace").strip() or f"exit {process.returncode}"
        raise FloatingAddressError(f"ip {' '.join(args)}: {message}")
    return out.decode(errors="replace")


def arp_announcements(mac: bytes, address: str) -> list[bytes]:
    """The gratuitous ARP frames for ``address`` at ``mac``: a request and a reply, each
    from the address to itself, broadcast, padded to the Ethernet minimum."""
    ip = ipaddress.IPv4Address(address).packed
    header = b"\xff" * 6 + mac + struct.pack(">H", ETH_P_ARP)
    frames = []
    for operation, target_mac in ((1, b"\x00" * 6), (2, b"\xff" * 6)):
        arp = struct.pack(">HHBBH6s4s6s4s", 1, 0x0800, 6, 4, operation, mac, ip, target_mac, ip)
        frames.append((header + arp).ljust(60, b"\x00"))
    return frames


def announce(device: str, address: str) -> None:
    """Send the gratuitous ARP frames for ``address`` out of ``device`` once."""
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP)) as sock:
        sock.bind((device, ETH_P_ARP))
        mac = sock.getsockname()[4]
        if len(mac) != 6:
            return  # not an Ethernet device: nothing to tell
        sock.setblocking(False)
        for frame in arp_announcements(mac, address):
            with contextlib.suppress(BlockingIOError):
                sock.send(frame)


class FloatingAddress:
    """One group's floating IPv4 address on this node (module docstring)."""

    def __init__(self, address: str, group: str) -> None:
        self.address = address
        self.group = group
        self._announcing: asyncio.Task[None] | None = None

    async def devices(self) -> list[str]:
        """The interfaces that have the address on this node (none, normally, or one)."""
        out = await run_ip("-o", "-4", "addr", "show", "to", f"{self.address}/32")
        return [line.split()[1].split("@")[0] for line in out.splitlines() if line.strip()]

    async def add(self) -> str:
        """The address on the interface that routes to it (kept if already there), then
        announced; returns the interface."""
        present = await self.devices()
        if present:
            device = present[0]
        else:
            route = await run_ip("-o", "-4", "route", "get", self.address)
            match = _DEVICE.search(route)
            if match is None or match.group(1) == "lo":
                raise FloatingAddressError(f"{self.address}: no interface routes to it: {route}")
            device = match.group(1)
            await run_ip("addr", "add", f"{self.address}/32", "dev", device)
            log.info("group %s: address %s added on %s", self.group, self.address, device)
        await self._stop_announcing()
        self._announce(device)
        self._announcing = asyncio.get_running_loop().create_task(
            self._announce_again(device), name=f"{self.group} address announcements"
        )
        return device

    async def remove(self) -> None:
        """The address off every interface of this node that has it; nothing when none."""
        await self._stop_announcing()
        for device in await self.devices():
            await run_ip("addr", "del", f"{self.address}/32", "dev", device)
            log.info("group %s: address %s removed from %s", self.group, self.address, device)

    def _announce(self, device: str) -> None:
        try:
            announce(device, self.address)
        except OSError as exc:
            log.warning(
                "group %s: gratuitous ARP for %s on %s not sent: %s",
                self.group,
                self.address,
                device,
                exc.strerror or exc,
            )

    async def _announce_again(self, device: str) -> None:
        waited = 0.0
        for after in ANNOUNCE_AFTER:
            await asyncio.sleep(after - waited)
            waited = after
            self._announce(device)

    async def _stop_announcing(self) -> None:
        task, self._announcing = self._announcing, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
