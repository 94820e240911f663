"""sanstack: a clustered SAN storage stack.

Layers stack like device-mapper: every layer is a :class:`sanstack.block.BlockDevice`.
The protocol cores (``sanstack.iscsi``, ``sanstack.scsi``, ``sanstack.target``) are sans-IO:
they take bytes and ``now`` and return events; asyncio lives only at the edges
(``sanstack.aio``, ``sanstack.block`` backstores, ``sanstack.cli``).
"""

__version__ = "0.1.0"
