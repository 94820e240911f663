"""What the ALUA tests share: the nexuses and the target ports they log in through, short
names for the states, the hand-written wire of RTPG/STPG CDBs and of port group
descriptors, the two-group layout most tests start from, and the command table."""

from __future__ import annotations

from sanstack.scsi.alua import ALUAGroups
from sanstack.scsi.alua_codec import ALUAState
from sanstack.scsi.command import Nexus
from sanstack.scsi.command_table import command_table

TARGET = "iqn.2024-01.org.sanstack:alua"
# A and B log in through portal group 1, C through portal group 2.
A = Nexus("iqn.2024-01.org.example:a", 1, TARGET, 1, 1)
B = Nexus("iqn.2024-01.org.example:b", 2, TARGET, 1, 1)
C = Nexus("iqn.2024-01.org.example:a", 3, TARGET, 2, 2)
AO, ANO, SB = ALUAState.ACTIVE_OPTIMIZED, ALUAState.ACTIVE_NON_OPTIMIZED, ALUAState.STANDBY
UA, LBD = ALUAState.UNAVAILABLE, ALUAState.LOGICAL_BLOCK_DEPENDENT
OFF, TR = ALUAState.OFFLINE, ALUAState.TRANSITIONING

RTPG = "a30a00000000000010000000"
RTPG_EXTENDED = "a32a00000000000010000000"
# STPG with an 8-byte parameter list: what Linux scsi_dh_alua's submit_stpg sends.
STPG_8 = "a40a00000000000000080000"

# Group 1: active/optimized, supports T|U|S|AN|AO (8Fh), no status, one port (1).
GROUP_1 = "00 8f 0001 00 00 00 01  0000 0001"
# Group 2: active/non-optimized, otherwise alike, port 2.
GROUP_2_ANO = "01 8f 0002 00 00 00 01  0000 0002"
# Group 2: preferred standby set by STPG, vendor byte 5Ah, ports 2 and 7.
GROUP_2_STANDBY = "82 8f 0002 00 01 5a 02  0000 0002 0000 0007"

# What every logical unit serves.
TABLE = command_table()


def two_groups(second: ALUAState = ANO) -> ALUAGroups:
    return ALUAGroups.one_per_port((1, 2), states={2: second})
