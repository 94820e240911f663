"""The cluster log's file in the node's state directory: one JSON line per event
(``cluster/events.py``'s codec), appended as each event happens and read back at start, so
``sanstack cluster events`` goes on numbering where the node stopped.

A line that does not decode (the torn last line of a node killed mid-write) is skipped with
a warning. The file keeps at most ``2 x capacity`` lines: at start, a longer one is
rewritten (atomically) with its newest ``capacity`` events. Appends are not fsynced: the log
is for people, and the disks' reservations, not the log, are the cluster's state.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import IO

from sanstack.cluster.events import ClusterEvent, EventLineError, decode_line, encode_line
from sanstack.edge.state_file import write_atomically

log = logging.getLogger(__name__)

FILE_NAME = "events.jsonl"


class EventFile:
    def __init__(self, state_dir: Path, capacity: int) -> None:
        self.path = state_dir / FILE_NAME
        self.capacity = capacity
        self._file: IO[bytes] | None = None

    def restore(self) -> list[ClusterEvent]:
        """The events the file holds, oldest first, numbers increasing (the newest
        ``capacity`` of them); opens the file for appending."""
        events: list[ClusterEvent] = []
        lines = 0
        try:
            with self.path.open("rb") as file:
                for number, line in enumerate(file, 1):
                    lines = number
                    try:
                        event = decode_line(line)
                    except EventLineError as exc:
                        log.warning("%s line %d skipped: %s", self.path, number, exc)
                        continue
                    if events and event.seq <= events[-1].seq:
                        log.warning("%s line %d skipped: out of order", self.path, number)
                        continue
                    events.append(event)
        except FileNotFoundError:
            pass
        events = events[-self.capacity :]
        if lines > 2 * self.capacity:
            write_atomically(self.path, b"".join(encode_line(e) for e in events))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("ab")
        return events

    def append(self, event: ClusterEvent) -> None:
        if self._file is None:
            return
        try:
            self._file.write(encode_line(event))
            self._file.flush()
        except OSError as exc:
            log.warning("%s: event %d not written: %s", self.path, event.seq, exc)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
