"""What one logical unit's commands did, counted as they complete (sans-IO).

The target's edge records every command it ran on a LUN (``record``, once per command with
the time the edge measured): the I/O counters of ``block/io_stats.py`` (READ, WRITE,
SYNCHRONIZE CACHE, UNMAP and WRITE SAME with UNMAP, the rest as ``other``), the PERSISTENT
RESERVE IN/OUT commands by service action, and the commands answered RESERVATION
CONFLICT. The Prometheus collector of the target (``target/metrics.py``) reads them.
"""

from __future__ import annotations

from typing import Final

from sanstack.block.io_stats import IOKind, IOStats
from sanstack.scsi.codes import Opcode, Status
from sanstack.scsi.command import Command, CommandResult
from sanstack.scsi.pr_codec import PRInServiceAction, PROutServiceAction

_KINDS: Final[dict[int, IOKind]] = {
    **dict.fromkeys((Opcode.READ_6, Opcode.READ_10, Opcode.READ_12, Opcode.READ_16), IOKind.READ),
    **dict.fromkeys(
        (
            Opcode.WRITE_6,
            Opcode.WRITE_10,
            Opcode.WRITE_12,
            Opcode.WRITE_16,
            Opcode.WRITE_AND_VERIFY_10,
            Opcode.WRITE_AND_VERIFY_12,
            Opcode.WRITE_AND_VERIFY_16,
            Opcode.COMPARE_AND_WRITE,
            Opcode.ORWRITE_16,
            Opcode.WRITE_SAME_10,
            Opcode.WRITE_SAME_16,
        ),
        IOKind.WRITE,
    ),
    **dict.fromkeys((Opcode.SYNCHRONIZE_CACHE_10, Opcode.SYNCHRONIZE_CACHE_16), IOKind.FLUSH),
    Opcode.UNMAP: IOKind.UNMAP,
}
# One entry per opcode, so the per-command lookup is an index.
KIND_OF_OPCODE: Final = tuple(_KINDS.get(opcode, IOKind.OTHER) for opcode in range(256))
_WRITE_SAME: Final = frozenset({Opcode.WRITE_SAME_10, Opcode.WRITE_SAME_16})
_UNMAP_BIT: Final = 0x08  # WRITE SAME byte 1 (SBC-4 §5.49)
_PR_IN: Final = Opcode.PERSISTENT_RESERVE_IN
_PR_OUT: Final = Opcode.PERSISTENT_RESERVE_OUT
_CONDITION_MET: Final = int(Status.CONDITION_MET)
_RESERVATION_CONFLICT: Final = int(Status.RESERVATION_CONFLICT)

PR_SERVICE_ACTIONS: Final[tuple[tuple[int, int, str], ...]] = (
    *((_PR_OUT, int(sa), sa.name.lower()) for sa in PROutServiceAction),
    *((_PR_IN, int(sa), sa.name.lower()) for sa in PRInServiceAction),
)


class CommandStats:
    """One LUN's counters (module docstring); ``io`` is per ``IOKind``, ``pr`` per
    (opcode, service action) of ``PR_SERVICE_ACTIONS``."""

    __slots__ = ("conflicts", "io", "pr")

    def __init__(self) -> None:
        self.io = IOStats()
        self.pr: dict[tuple[int, int], int] = {}
        self.conflicts = 0

    def record(self, command: Command, result: CommandResult | None, seconds: float) -> None:
        """One command ended with ``result`` (None: aborted, or it failed without one)."""
        cdb = command.cdb
        opcode = cdb[0] if cdb else 0
        kind = KIND_OF_OPCODE[opcode]
        if kind is IOKind.OTHER:
            if opcode in (_PR_IN, _PR_OUT) and len(cdb) > 1:
                key = (opcode, cdb[1] & 0x1F)
                self.pr[key] = self.pr.get(key, 0) + 1
        elif opcode in _WRITE_SAME and len(cdb) > 1 and cdb[1] & _UNMAP_BIT:
            kind = IOKind.UNMAP
        if result is None:
            self.io.record(kind, 0, seconds, ok=False)
            return
        status = result.status
        if status and status != _CONDITION_MET:  # not GOOD: ints, cheaper than Enum hashing
            if status == _RESERVATION_CONFLICT:
                self.conflicts += 1
            self.io.record(kind, 0, seconds, ok=False)
        elif kind is IOKind.READ:
            self.io.record(kind, len(result.data), seconds)
        elif kind is IOKind.WRITE:
            self.io.record(kind, len(command.data_out), seconds)
        else:
            self.io.record(kind, 0, seconds)
