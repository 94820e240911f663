"""The changeable mode parameters of a logical unit (SPC-4 §7.5, SBC-4 §6.5).

Only the state lives here; encoding and decoding of the pages is in ``sanstack.scsi.spc``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class ModeParameters:
    """Current values of the pages sanstack lets an initiator change.

    Caching page (08h): ``wce`` write cache enable, ``rcd`` read cache disable.
    Control page (0Ah): ``d_sense`` descriptor sense, ``tas`` task aborted status,
    ``qerr`` queue error management, ``swp`` software write protect, ``tst`` task set type
    (0 = one task set shared by all nexuses).
    Informational exceptions control page (1Ch): ``dexcpt``, ``mrie``.
    """

    wce: bool = True
    rcd: bool = False
    d_sense: bool = False
    tas: bool = False
    qerr: int = 0
    swp: bool = False
    tst: int = 0
    dexcpt: bool = True
    mrie: int = 0
