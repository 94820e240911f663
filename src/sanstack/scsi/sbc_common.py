"""Checks and helpers every SBC-4 handler shares (ready state, LBA range, write protection,
Data-Out length, byte comparison).

The order handlers apply them follows SBC-4 and libiscsi's expectations: CDB field errors,
then NOT READY, then LBA OUT OF RANGE, then DATA PROTECT, and only then the Data-Out buffer
(libiscsi's ReadOnly tests send WRITE SAME with no Data-Out and expect WRITE PROTECTED).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from sanstack.scsi.cdb import LENGTH_FIELD_BYTE
from sanstack.scsi.codes import ASC, SenseKey, Status
from sanstack.scsi.command import CommandResult
from sanstack.scsi.limits import MAX_TRANSFER_BLOCKS
from sanstack.scsi.sense import fixed_sense, invalid_field_in_cdb, lba_out_of_range

if TYPE_CHECKING:
    from sanstack.scsi.logical_unit import LogicalUnit

PROTECT_BIT: Final = 7  # the field pointer names the most significant bit of xxPROTECT
BYTCHK_BIT: Final = 2
# Compare and verify in slices of this many bytes: bounds the memory a VERIFY holds and the
# size of the integers used to locate the first differing byte.
COMPARE_CHUNK_BYTES: Final = 1 << 20

_DATA_OUT_MISMATCH_SENSE: Final = fixed_sense(
    SenseKey.ILLEGAL_REQUEST, ASC.INVALID_FIELD_IN_COMMAND_INFORMATION_UNIT
)


def check_protect(protect: int) -> None:
    """sanstack formats no protection information, so any xxPROTECT value is invalid (§4.21)."""
    if protect:
        raise invalid_field_in_cdb(1, PROTECT_BIT)


def check_transfer_length(count: int, cdb_length: int) -> None:
    """A transfer above MAXIMUM TRANSFER LENGTH is INVALID FIELD IN CDB (SBC-4 §6.6.4)."""
    if count > MAX_TRANSFER_BLOCKS:
        raise invalid_field_in_cdb(LENGTH_FIELD_BYTE[cdb_length])


def check_lba_range(lu: LogicalUnit, lba: int, count: int) -> None:
    """LBA OUT OF RANGE when any block of ``[lba, lba+count)`` is past the last LBA.

    With ``count == 0`` an LBA equal to the capacity is accepted (nothing is touched) and
    anything beyond it is rejected, as libiscsi's *_0blocks tests expect.
    """
    if lba + count > lu.device.num_blocks:
        raise lba_out_of_range()


def data_out_mismatch(expected: int) -> CommandResult:
    """CHECK CONDITION for a Data-Out buffer the command cannot use, as FCP-4 §9.4.2 b) and
    LIO answer: ILLEGAL REQUEST / INVALID FIELD IN COMMAND INFORMATION UNIT, nothing written.
    ``data_out_used`` still carries what the CDB called for, so the transport reports the
    residual libiscsi checks even on this path.
    """
    return CommandResult(
        status=Status.CHECK_CONDITION, sense=_DATA_OUT_MISMATCH_SENSE, data_out_used=expected
    )


def whole_blocks_of_data_out(
    data_out: bytes | memoryview, need: int, block_size: int
) -> memoryview | None:
    """The part of the Data-Out buffer a write-type command processes, or None to reject it.

    libiscsi's residual tests (test_write_residuals.c, test_writeverify*_residuals.c) accept
    FCP-4 §9.4.2 a) — process the blocks that did arrive — and require it for WRITE AND
    VERIFY. So: extra bytes are ignored (underflow), a short buffer of whole blocks writes
    just those blocks (overflow), and only a buffer ending in a partial block is refused.
    """
    have = len(data_out)
    view = memoryview(data_out)
    if have >= need:
        return view[:need] if have > need else view
    if have % block_size:
        return None
    return view


def first_mismatch(expected: bytes | memoryview, actual: bytes | memoryview) -> int | None:
    """Offset of the first byte where two equal-length buffers differ, None if they match.

    Slices are compared as ``bytes`` (a memcmp; ``memoryview`` equality goes element by
    element, some thirty times slower). In the first slice that differs, the XOR of the two
    read as big-endian integers has its highest set bit in the first differing byte.
    """
    left = memoryview(expected).cast("B")
    right = memoryview(actual).cast("B")
    if len(left) != len(right):
        raise ValueError(f"cannot compare {len(left)} bytes with {len(right)}")
    for start in range(0, len(left), COMPARE_CHUNK_BYTES):
        a = bytes(left[start : start + COMPARE_CHUNK_BYTES])
        b = bytes(right[start : start + COMPARE_CHUNK_BYTES])
        if a != b:
            diff = int.from_bytes(a, "big") ^ int.from_bytes(b, "big")
            return start + len(a) - 1 - (diff.bit_length() - 1) // 8
    return None


def miscompare(offset: int, data_out_used: int) -> CommandResult:
    """MISCOMPARE / MISCOMPARE DURING VERIFY OPERATION with VALID and the byte offset."""
    return CommandResult(
        status=Status.CHECK_CONDITION,
        sense=fixed_sense(
            SenseKey.MISCOMPARE, ASC.MISCOMPARE_DURING_VERIFY_OPERATION, information=offset
        ),
        data_out_used=data_out_used,
    )


async def flush_if_needed(lu: LogicalUnit, fua: bool) -> None:
    """Make a completed write durable when FUA asks for it or the caching page has WCE=0.

    A device without a volatile cache (``write_cache`` False) is already durable.
    """
    device = lu.device
    if device.write_cache and (fua or not lu.mode.wce):
        await device.flush()
