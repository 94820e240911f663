"""CPU per SCSI command through the whole target, in one process, without sockets.

Not a test: a measuring tool for the target's per-command cost (docs/benchmarks.md, issue
15). A ``ConnectionHandler`` (the target's asyncio edge, its ``TargetConnection`` core, the
logical unit and the backstore) is driven through a fake transport on the real event loop
(uvloop when installed): one login, then batches of pre-encoded SCSI Command PDUs (4 KiB
READ(16) or WRITE(16) with immediate data, random LBAs), one ``data_received`` per batch,
as a socket delivers a pipelined queue. It reports process CPU microseconds per command,
so the figure is the target's own Python work (no syscalls for the socket, no client), and
``--profile`` prints cProfile's top functions for one run.

    python bench/command_cost.py [--write] [--commands 200000] [--batch 32] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import random
import struct
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sanstack.block.file import FileDevice
from sanstack.block.memory import MemoryDevice
from sanstack.iscsi import pdu as p
from sanstack.iscsi.codes import MAX_DATA_SEGMENT_LENGTH
from sanstack.iscsi.initiator_login import InitiatorLogin
from sanstack.iscsi.login import LoginRequestFields
from sanstack.iscsi.login_pdus import request_pdu, response_fields
from sanstack.iscsi.negotiation import NegotiationPreferences
from sanstack.iscsi.pdu_reader import PDUReader
from sanstack.iscsi.target_events import ConnectionSettings
from sanstack.target.model import Portal, PortalGroup, Target
from sanstack.target.registry import TargetRegistry
from sanstack.target.server import ConnectionHandler, TargetServer

IQN = "iqn.2026-12.org.sanstack.bench:cost"
INITIATOR = "iqn.2026-12.org.sanstack.bench:cost-initiator"
BLOCK = 512
READ_16 = 0x88
WRITE_16 = 0x8A


class FakeTransport:
    """What the edge uses of an asyncio transport; it keeps only the byte count written."""

    def __init__(self) -> None:
        self.written = 0
        self.keep: list[bytes] | None = None
        self._closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else default

    def write(self, data: bytes | memoryview) -> None:
        self.written += len(data)
        if self.keep is not None:
            self.keep.append(bytes(data))

    def writelines(self, parts: Iterable[bytes | memoryview]) -> None:
        for part in parts:
            self.write(part)

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        self._closing = True

    def abort(self) -> None:
        self._closing = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def login(handler: ConnectionHandler, transport: FakeTransport) -> None:
    reader = PDUReader(MAX_DATA_SEGMENT_LENGTH)
    prefs = NegotiationPreferences(immediate_data=True, initial_r2t=False)
    session = InitiatorLogin(INITIATOR, IQN, isid=0x4001, preferences=prefs)
    request: LoginRequestFields | None = session.start()
    while request is not None:
        transport.keep = []
        pdu = request_pdu(request, cmd_sn=request.cmd_sn, exp_stat_sn=request.exp_stat_sn)
        handler.data_received(pdu.encode())
        for part in transport.keep:
            reader.feed(part)
        answer = reader.next_pdu()
        assert isinstance(answer, p.LoginResponse), answer
        request = session.receive(response_fields(answer))
    transport.keep = None


def batches(
    write: bool, batch: int, count: int, blocks: int, *, per_command: int, cmd_sn: int
) -> list[tuple[bytes, int]]:
    """Pre-encoded batches of ``batch`` commands, and the bytes each batch is answered with."""
    rng = random.Random(1)
    payload = os.urandom(per_command)
    out = []
    itt = 0
    last_lba = blocks - per_command // BLOCK
    for _ in range(count // batch):
        parts = []
        for _ in range(batch):
            lba = rng.randrange(0, last_lba) // 8 * 8
            cdb = struct.pack(
                ">BBQIBB", WRITE_16 if write else READ_16, 0, lba, per_command // BLOCK, 0, 0
            )
            parts.append(
                p.SCSICommand(
                    itt=itt,
                    cdb=cdb,
                    expected_data_transfer_length=per_command,
                    cmd_sn=cmd_sn,
                    exp_stat_sn=0,
                    read=not write,
                    write=write,
                    data=payload if write else b"",
                ).encode()
            )
            cmd_sn = (cmd_sn + 1) & 0xFFFFFFFF
            itt = (itt + 1) & 0x7FFFFFFF
        answer = 48 * batch if write else (48 + per_command) * batch
        out.append((b"".join(parts), answer))
    return out


async def drive(
    handler: ConnectionHandler, transport: FakeTransport, work: list[tuple[bytes, int]]
) -> None:
    loop = asyncio.get_running_loop()
    for data, answer in work:
        expected = transport.written + answer
        handler.data_received(data)
        deadline = loop.time() + 10.0
        spins = 0
        while transport.written < expected:
            if loop.time() > deadline:
                raise RuntimeError("the target did not answer a batch within 10 s")
            # Let callbacks run; then wait in the loop's poll, as a server does between
            # segments, so that a pool thread gets the GIL (a spin would starve it).
            spins += 1
            await asyncio.sleep(0 if spins < 4 else 0.0002)


async def measure(args: argparse.Namespace, path: Path | None) -> float:
    blocks = args.size_mib * 2048
    device = FileDevice(path, BLOCK) if path is not None else MemoryDevice(blocks, block_size=BLOCK)
    target = Target(IQN, [PortalGroup(1, [Portal("127.0.0.1", 3260)])])
    target.add_lun(0, device)
    server = TargetServer(TargetRegistry([target]), ConnectionSettings(nop_in_interval=None))
    handler = ConnectionHandler(server, Portal("127.0.0.1", 3260))
    transport = FakeTransport()
    handler.connection_made(transport)  # type: ignore[arg-type]
    login(handler, transport)
    warm_up = batches(
        args.write, args.batch, args.commands // 10, blocks, per_command=args.transfer, cmd_sn=0
    )
    await drive(handler, transport, warm_up)
    assert handler.core is not None
    start_sn = handler.core.exp_cmd_sn
    work = batches(
        args.write, args.batch, args.commands, blocks, per_command=args.transfer, cmd_sn=start_sn
    )
    profiler = cProfile.Profile() if args.profile else None
    started = time.process_time()
    if profiler is not None:
        profiler.enable()
    await drive(handler, transport, work)
    if profiler is not None:
        profiler.disable()
    cpu = time.process_time() - started
    if profiler is not None:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
    if args.stats:
        print(getattr(device, "stats", None))
    await device.close()
    return float(cpu * 1e6 / (len(work) * args.batch))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help="WRITE(16) instead of READ(16)")
    parser.add_argument("--commands", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=32, help="commands per received segment")
    parser.add_argument("--transfer", type=int, default=4096, help="bytes per command")
    parser.add_argument("--size-mib", type=int, default=256, help="LUN size")
    parser.add_argument("--memory", action="store_true", help="a MemoryDevice, not a file")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="cProfile one run")
    parser.add_argument("--stats", action="store_true", help="print the device's counters")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    with tempfile.TemporaryDirectory() as tmp:
        path = None
        if not args.memory:
            path = Path(tmp) / "lun.img"
            with path.open("wb") as f:
                chunk = os.urandom(1 << 20)
                for _ in range(args.size_mib):
                    f.write(chunk)
        results = []
        for _ in range(1 if args.profile else args.repeat):
            results.append(asyncio.run(measure(args, path)))
    model = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        "?",
    )  # fmt: skip
    kind = "WRITE(16)" if args.write else "READ(16)"
    shown = ", ".join(f"{r:.2f}" for r in results)
    print(f"{kind} {args.transfer} B, batch {args.batch}: CPU us per command {shown} ({model})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
