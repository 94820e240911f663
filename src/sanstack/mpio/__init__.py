"""Multipath I/O: one block device per LUN over every path (dm-multipath, MSDSM)."""
