"""Device-server limits shared by the SBC-4 command handlers and the Block Limits VPD page.

The handlers in ``sanstack.scsi.sbc`` enforce these values and ``sanstack.scsi.spc`` reports
them in the Block Limits VPD page (SBC-4 §6.6.4), so an initiator that reads the page never
sends a command the device server rejects for its size.
"""

from typing import Final

# MAXIMUM TRANSFER LENGTH, in logical blocks, of READ/WRITE/VERIFY/WRITE AND VERIFY/ORWRITE.
# SBC-4 §6.6.4: a longer transfer ends with INVALID FIELD IN CDB. libiscsi's
# WriteSame16.Unmap writes 65536 blocks with one WRITE(16) without reading this field, so the
# limit may not be lower than that.
MAX_TRANSFER_BLOCKS: Final = 0x10000

# MAXIMUM COMPARE AND WRITE LENGTH: the NUMBER OF LOGICAL BLOCKS field is one byte.
MAX_COMPARE_AND_WRITE_BLOCKS: Final = 255

# MAXIMUM WRITE SAME LENGTH.
MAX_WRITE_SAME_BLOCKS: Final = 0x10000

# MAXIMUM UNMAP LBA COUNT (the sum over all descriptors of one UNMAP command).
MAX_UNMAP_BLOCKS: Final = 0x10000

# MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT.
MAX_UNMAP_DESCRIPTORS: Final = 256

# WSNZ (SBC-4 §6.6.4): WRITE SAME with NUMBER OF LOGICAL BLOCKS zero ("to the end of the
# medium") is rejected with INVALID FIELD IN CDB, so one command can never rewrite a whole LUN.
WRITE_SAME_NO_ZERO: Final = False

# The device server honours DPO and FUA: MODE SENSE reports DPOFUA=1 in the device-specific
# parameter (SBC-4 §6.5.1), which libiscsi's *_dpofua tests compare with the RSOC usage data.
SUPPORTS_DPO_FUA: Final = True
