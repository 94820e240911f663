"""CPU per 4 KiB read through the host's data path, in one process, without sockets.

Not a test: run it by hand (docs/benchmarks.md, "Issue 15, host side"). The NBD server's
connection handler exports a ``MultipathDevice`` over one ``ISCSISession`` (logged in
against sanstack's sans-IO target core, then fed by hand): each round hands the handler
``--depth`` NBD READs in one segment and the session their answers, one Data-In PDU with
status each, in one segment, so what is measured is the host's Python per read and
nothing of the kernel, the target or the client. Prints microseconds of process CPU per
read; ``py-spy record -- python bench/host_read_cost.py`` splits it by layer.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``tests`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.initiator_pair import make_initiator_pair

from sanstack.initiator.lun_device import ISCSIDevice
from sanstack.initiator.session import ISCSISession
from sanstack.iscsi import pdu as p
from sanstack.mpio.device import MultipathDevice
from sanstack.mpio.path_slot import MultipathOptions, PathSlot
from sanstack.mpio.paths import PathState
from sanstack.mpio.shared_path import PathListener
from sanstack.nbd import NBDCmd, NBDOpt
from sanstack.nbd.protocol import ClientFlags, InfoRequestData, OptionRequest, RequestHeader
from sanstack.nbd.server import NBDConnectionHandler, NBDServer
from sanstack.scsi.alua_codec import ALUAState

BLOCKS = 1 << 20  # 512 MiB of 512-byte blocks
READ = 4096
STRIDE = 104729  # a prime: scattered offsets, as bench/host_scale.py's reads


class _Transport:
    """What the edges write to: counted, then dropped."""

    def __init__(self) -> None:
        self.writes = 0

    def writelines(self, parts: Sequence[bytes | memoryview]) -> None:
        self.writes += 1

    def write(self, data: bytes) -> None:
        self.writes += 1

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 0)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


class _Path:
    """A shared path that is always up on one session."""

    def __init__(self, session: ISCSISession) -> None:
        self.name = "path"
        self.session: ISCSISession | None = session

    def add_listener(self, listener: PathListener) -> None:
        pass

    def remove_listener(self, listener: PathListener) -> None:
        pass

    async def read_alua(self, lun: int, since: float) -> ALUAState | None:
        return None


@dataclass(frozen=True, slots=True)
class Cost:
    """What the timed rounds cost: CPU per read, and the sends each side made."""

    us_per_read: float
    target_sends: int  # writelines to the session's transport (the commands)
    client_sends: int  # writelines to the NBD transport (the replies)


async def measure(depth: int, rounds: int) -> Cost:
    pair = make_initiator_pair(blocks=BLOCKS)
    core = pair.initiator
    core.max_cmd_sn = 0x7FFFFFF0  # the window never closes: the answers below say so too
    session = ISCSISession(core, command_timeout=60.0)
    session.parameters = core.parameters
    to_target = _Transport()
    session.connection_made(to_target)  # type: ignore[arg-type]
    lun = ISCSIDevice(session, 0)
    lun.block_size, lun.num_blocks = 512, BLOCKS
    device = MultipathDevice("target", 0, MultipathOptions())
    slot = PathSlot(_Path(session), 0)
    slot.session, slot.device, slot.probed = session, lun, lun
    slot.path.state = PathState.ACTIVE
    device.slots.append(slot)
    device._adopt(lun)
    handler = NBDConnectionHandler(NBDServer({"x": device}, port=0))
    nbd = _Transport()
    handler.connection_made(nbd)  # type: ignore[arg-type]
    go = InfoRequestData("x", ()).encode()
    handler.data_received(
        ClientFlags(3).encode()
        + OptionRequest(NBDOpt.NBD_OPT_STRUCTURED_REPLY, b"").encode()
        + OptionRequest(NBDOpt.NBD_OPT_GO, go).encode()
    )
    await asyncio.sleep(0)
    if handler.device is not device:
        raise SystemExit("the export was not chosen")
    # Every segment built first: the ITTs and StatSNs the session will use are sequential.
    payload = bytes(READ)
    itt, stat_sn, cookie = core._next_itt, core.exp_stat_sn, 0
    requests: list[bytes] = []
    answers: list[bytes] = []
    for _ in range(rounds):
        asked, answered = [], []
        for _ in range(depth):
            cookie += 1
            offset = (cookie * STRIDE) % (BLOCKS * 512 // READ) * READ
            asked.append(RequestHeader(0, NBDCmd.NBD_CMD_READ, cookie, offset, READ).encode())
            header = p.DATA_IN_STRUCT.pack(
                0x25, 0x81, 0, READ, 0, itt, 0xFFFFFFFF, stat_sn, 1, 0x7FFFFFF0, 0, 0, 0
            )
            answered.append(header + payload)
            itt, stat_sn = itt + 1, stat_sn + 1
        requests.append(b"".join(asked))
        answers.append(b"".join(answered))
    sent = (to_target.writes, nbd.writes)
    started = time.process_time()
    for asked_segment, answer_segment in zip(requests, answers, strict=True):
        handler.data_received(asked_segment)
        session.data_received(answer_segment)
        await asyncio.sleep(0)
    spent = time.process_time() - started
    if slot.path.completed != depth * rounds or core.in_flight:
        raise SystemExit(f"{slot.path.completed} reads completed of {depth * rounds}")
    return Cost(spent / (depth * rounds) * 1e6, to_target.writes - sent[0], nbd.writes - sent[1])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--depth", type=int, default=32, help="reads per segment")
    parser.add_argument("--reads", type=int, default=96_000, help="reads in all")
    args = parser.parse_args(argv)
    import uvloop  # the daemons' loop (cli/common.py)

    cost = uvloop.run(measure(args.depth, max(1, args.reads // args.depth)))
    print(f"{cost.us_per_read:.2f} us of CPU per 4 KiB read (depth {args.depth})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
