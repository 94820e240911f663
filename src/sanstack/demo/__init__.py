"""``sanstack demo``: the whole system on one machine, as real processes (a target with two
portals, three cluster nodes, a witness disk, two groups, a client load through each), under
a small supervisor (``supervisor.py``) that runs the table of ``plan.py``."""
