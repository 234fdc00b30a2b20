"""Drills of the shipped runbooks: each runs a runbook of remediations/ end to end, with its real
steps, against real peers, and asserts the effect on the peer (an alias moved, a file verified).

The shared harness is `harness.py` (the platform, the series registry, the shipped rig) and its
fixtures are in `conftest.py`; one `test_<runbook>.py` per runbook.
"""
