"""The target connection's share of task management (RFC 7143 §11.5, §11.6).

The connection holds tasks the SCSI layer has not seen: write commands still collecting
Data-Out (§11.8) and commands waiting for an earlier CmdSN (§4.2.2.1). A task management
request first settles those here; what is left (tasks running on a logical unit) goes to
the edge as a ``TaskManagementRequested`` event (``sanstack.target.task_management``).
sanstack runs ErrorRecoveryLevel 0, so TASK REASSIGN is answered "task allegiance
reassignment not supported".
"""

from __future__ import annotations

from collections.abc import Container

from sanstack.iscsi import pdu as p
from sanstack.iscsi.codes import (
    TaskManagementFunction,
    TaskManagementResponseCode,
)
from sanstack.iscsi.serial_number import sn_gt
from sanstack.iscsi.target_tasks import WriteTask
from sanstack.scsi.lun import decode_target_lun

Fn = TaskManagementFunction
Code = TaskManagementResponseCode

_LOGICAL_UNIT_WIDE = frozenset({Fn.ABORT_TASK_SET, Fn.CLEAR_TASK_SET, Fn.LOGICAL_UNIT_RESET})
_TARGET_WIDE = frozenset({Fn.TARGET_WARM_RESET, Fn.TARGET_COLD_RESET})


def settle_at_connection(
    pdu: p.TaskManagementRequest,
    *,
    writes: dict[int, WriteTask],
    delivered: Container[int],
    pending_by_sn: dict[int, p.PDU],
    exp_cmd_sn: int,
) -> TaskManagementResponseCode | None:
    """The response when the connection alone settles ``pdu``; ``None`` when the logical
    units must act too (the undelivered tasks the function covers are dropped first)."""
    fn = pdu.function
    if fn == Fn.ABORT_TASK:
        ref = pdu.referenced_task_tag
        if writes.pop(ref, None) is not None:
            return Code.FUNCTION_COMPLETE
        if ref in delivered:
            return None
        # §11.5.1: a task the target never received counts as aborted if its CmdSN is
        # still ahead of us; otherwise it is gone and does not exist.
        pending = sn_gt(pdu.ref_cmd_sn, exp_cmd_sn) or pdu.ref_cmd_sn == exp_cmd_sn
        pending_by_sn.pop(pdu.ref_cmd_sn, None)
        return Code.FUNCTION_COMPLETE if pending else Code.TASK_DOES_NOT_EXIST
    if fn in _LOGICAL_UNIT_WIDE:
        drop_writes(writes, decode_target_lun(pdu.lun))
        return None
    if fn in _TARGET_WIDE:
        drop_writes(writes, None)
        return None
    if fn == Fn.TASK_REASSIGN:
        return Code.TASK_ALLEGIANCE_REASSIGNMENT_NOT_SUPPORTED
    return Code.FUNCTION_NOT_SUPPORTED


def drop_writes(writes: dict[int, WriteTask], lun: int | None) -> None:
    """Forget the write tasks of one LUN (``lun``), or of every LUN (``None``).

    By the LUN addressed, not the raw field: a LUN reset names LUN 299 as ``41 2B`` while
    its writes may have named it ``01 2B``.
    """
    for itt in [i for i, w in writes.items() if lun in (None, decode_target_lun(w.lun))]:
        del writes[itt]
