"""The gratuitous ARP frames a new owner of a floating address sends
(cluster/floating_address.py; the address itself moving between nodes is
tests/interop/test_cluster_fencing.py's)."""

from __future__ import annotations

import struct

from sanstack.cluster.floating_address import ETH_P_ARP, arp_announcements

MAC = bytes.fromhex("02005e0000a1")
ADDRESS = "10.1.2.200"
IP = bytes((10, 1, 2, 200))


def test_a_request_and_a_reply_from_the_address_to_itself_broadcast() -> None:
    request, reply = arp_announcements(MAC, ADDRESS)
    for frame in (request, reply):
        assert len(frame) == 60  # the Ethernet minimum, padded
        assert frame[:6] == b"\xff" * 6 and frame[6:12] == MAC
        assert struct.unpack(">H", frame[12:14])[0] == ETH_P_ARP
        htype, ptype, hlen, plen = struct.unpack(">HHBB", frame[14:20])
        assert (htype, ptype, hlen, plen) == (1, 0x0800, 6, 4)
        assert frame[22:28] == MAC and frame[28:32] == IP and frame[38:42] == IP
        assert frame[42:] == bytes(18)
    assert struct.unpack(">H", request[20:22])[0] == 1
    assert request[32:38] == bytes(6)
    assert struct.unpack(">H", reply[20:22])[0] == 2
    assert reply[32:38] == b"\xff" * 6
