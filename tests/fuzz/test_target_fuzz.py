"""Random and mutated PDUs, split at random points, against a real target process.

The target must never crash or hang: it rejects the PDU or drops that connection, while a
second session on the same target keeps reading back exactly what it wrote.
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
import struct
import time
from pathlib import Path

import pytest
from tests.support.iscsi_client import TestInitiator
from tests.support.processes import free_port, running_target

from sanstack.iscsi import pdu as p
from sanstack.iscsi.codes import SNACKType, TaskManagementFunction

IQN = "iqn.2026-11.org.sanstack:fuzz"
ROUNDS = 160
TIME_BUDGET = 60.0


def _valid_pdus(rng: random.Random, cmd_sn: int) -> list[p.PDU]:
    lba = rng.randrange(0, 2048)
    read10 = struct.pack(">BBIBHB", 0x28, 0, lba, 0, 1, 0).ljust(16, b"\0")
    write10 = struct.pack(">BBIBHB", 0x2A, 0, lba, 0, 2, 0).ljust(16, b"\0")
    random_cdb = bytes(rng.randrange(256) for _ in range(16))
    abort = TaskManagementFunction.ABORT_TASK
    return [
        p.SCSICommand(
            itt=7, cdb=read10, expected_data_transfer_length=512, read=True, cmd_sn=cmd_sn
        ),
        p.SCSICommand(
            itt=8,
            cdb=write10,
            expected_data_transfer_length=1024,
            write=True,
            cmd_sn=cmd_sn,
            data=bytes(512),
            final=False,
        ),
        p.DataOut(itt=8, ttt=0xFFFFFFFF, buffer_offset=512, data=bytes(512), final=True),
        p.SCSICommand(
            itt=9, cdb=random_cdb, expected_data_transfer_length=4096, read=True, cmd_sn=cmd_sn
        ),
        p.NopOut(itt=10, cmd_sn=cmd_sn, data=b"ping"),
        p.TaskManagementRequest(function=abort, itt=11, referenced_task_tag=7, cmd_sn=cmd_sn),
        p.TextRequest(itt=12, cmd_sn=cmd_sn, data=b"SendTargets=All\0"),
        p.LoginRequest(isid=1, itt=13, data=b"InitiatorName=x\0"),
        p.SNACKRequest(type=SNACKType(0), itt=14),
    ]


def _mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randrange(1, 6)):
        choice = rng.random()
        if choice < 0.6 and buf:
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        elif choice < 0.8:
            buf[rng.randrange(len(buf) + 1) : 0] = os.urandom(rng.randrange(1, 64))
        elif buf:
            del buf[rng.randrange(len(buf)) :]
    return bytes(buf)


def _send_split(sock: socket.socket, rng: random.Random, data: bytes) -> None:
    pos = 0
    while pos < len(data):
        n = rng.randrange(1, max(2, len(data) - pos + 1))
        sock.sendall(data[pos : pos + n])
        pos += n


def _drain(sock: socket.socket, seconds: float) -> None:
    """Read until the target closes the connection or goes quiet for ``seconds``."""
    sock.settimeout(seconds)
    try:
        while sock.recv(65536):
            pass
    except (TimeoutError, ConnectionError, OSError):
        pass


def _fuzz_round(rng: random.Random, port: int) -> None:
    mode = rng.randrange(4)
    if mode == 0:
        # Garbage before any login.
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            _send_split(sock, rng, os.urandom(rng.randrange(1, 3000)))
            _drain(sock, 0.2)
        return
    # Log in properly so the garbage reaches the full feature phase.
    client = TestInitiator(
        "127.0.0.1", port, IQN, initiator_name="iqn.2026-11.org.sanstack:fuzzer",
        isid=rng.randrange(1 << 47),
    )  # fmt: skip
    try:
        pdus = _valid_pdus(rng, client.cmd_sn)
        if mode == 1:
            payload = b"".join(_mutate(rng, pdu.encode()) for pdu in rng.sample(pdus, 3))
        elif mode == 2:
            payload = b"".join(pdu.encode() for pdu in rng.sample(pdus, 4))
        else:
            header = bytearray(os.urandom(48))
            header[5:8] = rng.choice([b"\xff\xff\xff", b"\x00\x10\x00", b"\x00\x00\x05"])
            payload = bytes(header) + os.urandom(rng.randrange(0, 600))
        _send_split(client.sock, rng, payload)
        _drain(client.sock, 0.2)
    finally:
        client.close()


@pytest.mark.timeout(240)
def test_fuzzed_connections_never_hurt_another_session(tmp_path: Path) -> None:
    port = free_port()
    rng = random.Random(int(os.environ.get("SANSTACK_FUZZ_SEED", "7403")))
    with running_target(tmp_path, IQN, [port], ["memory:2M", f"{tmp_path / 'f.img'}:2M"]) as daemon:
        good = TestInitiator("127.0.0.1", port, IQN, isid=0x80_0000_0001)
        pattern = os.urandom(64 * 512)
        good.write(100, pattern)
        start = time.monotonic()
        for round_number in range(ROUNDS):
            if time.monotonic() - start > TIME_BUDGET:
                break
            # The target may refuse a mangled login or drop us: that is allowed.
            with contextlib.suppress(ConnectionError, OSError, AssertionError, p.PDUFormatError):
                _fuzz_round(rng, port)
            assert daemon.process.poll() is None, "target died"
            if round_number % 8 == 0:
                assert good.read(100, 64) == pattern
                fresh = os.urandom(512)
                good.write(500 + round_number, fresh)
                assert good.read(500 + round_number, 1) == fresh
        assert good.read(100, 64) == pattern
        good.logout()
