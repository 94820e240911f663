"""An initiator of its own, apart from the cluster's nodes, that reads the target directly:
each LUN's persistent reservation state (READ KEYS, READ RESERVATION) and raw blocks, for
tests that check the nodes' claims against the disks. It never registers: under WRITE
EXCLUSIVE, REGISTRANTS ONLY anybody may read.

Run (in the storage network's namespace, or wherever the portal is reached) as
``python -m tests.support.cluster_probe HOST PORT IQN COMMAND ...``:

- ``pr LUN...``: one JSON object on stdout, LUN -> {keys, holder, type} (keys in hex);
- ``read LUN OFFSET LENGTH FILE``: LENGTH bytes from byte OFFSET of the LUN into FILE;
- ``watch FILE INTERVAL STOP_FILE LUN...``: ``pr`` every INTERVAL seconds as JSON lines
  ``{"time": ..., "luns": {...}}`` appended to FILE, until STOP_FILE exists.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from tests.support.iscsi_client import TestInitiator

from sanstack.scsi.pr_codec import PRInCdb, PRInServiceAction, ReadKeysData, ReadReservationData

INITIATOR = "iqn.2026-11.org.sanstack:cluster-probe"
ALLOCATION = 8192
SECTOR = 512
CHUNK = 128  # sectors per READ(10)
WATCH_LIMIT = 600.0  # seconds a watch runs at most


def read_pr(initiator: TestInitiator, lun: int) -> dict[str, Any]:
    answers = []
    for action in (PRInServiceAction.READ_KEYS, PRInServiceAction.READ_RESERVATION):
        cdb = PRInCdb(action, ALLOCATION).encode()
        answer = initiator.command(cdb, read_length=ALLOCATION, lun=lun)
        if answer.status != 0:
            raise RuntimeError(f"LUN {lun}: {action.name} status {answer.status:#x}")
        answers.append(answer.data)
    keys = ReadKeysData.decode(answers[0])
    reservation = ReadReservationData.decode(answers[1])
    return {
        "keys": [f"{key:#018x}" for key in keys.reservation_keys],
        "holder": None if reservation.pr_type is None else f"{reservation.reservation_key:#018x}",
        "type": None if reservation.pr_type is None else int(reservation.pr_type),
    }


def read_all(initiator: TestInitiator, luns: list[int]) -> dict[str, Any]:
    return {str(lun): read_pr(initiator, lun) for lun in luns}


def main(argv: list[str]) -> int:
    host, port, iqn, command, *rest = argv
    isid = 0x80_0000_0000 | (os.getpid() & 0xFFFFFF)
    initiator = TestInitiator(host, int(port), iqn, initiator_name=INITIATOR, isid=isid)
    try:
        if command == "pr":
            print(json.dumps(read_all(initiator, [int(x) for x in rest])))
        elif command == "read":
            lun, offset, size, out = int(rest[0]), int(rest[1]), int(rest[2]), Path(rest[3])
            data = bytearray()
            lba, last = offset // SECTOR, (offset + size) // SECTOR
            while lba < last:
                count = min(CHUNK, last - lba)
                data += initiator.read(lba, count, SECTOR, lun=lun)
                lba += count
            out.write_bytes(bytes(data))
        elif command == "watch":
            record, interval, stop = Path(rest[0]), float(rest[1]), Path(rest[2])
            luns = [int(x) for x in rest[3:]]
            end = time.monotonic() + WATCH_LIMIT
            with record.open("a", buffering=1) as lines:
                while not stop.exists() and time.monotonic() < end:
                    sample = {"time": time.time(), "luns": read_all(initiator, luns)}
                    lines.write(json.dumps(sample) + "\n")
                    time.sleep(interval)
        else:
            raise SystemExit(f"unknown command {command!r}")
    finally:
        initiator.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
