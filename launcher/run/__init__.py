"""One run: its options and their checks, its plan, its folder (run.json) and status, the supervisor.

Imports processes/, devices/, apps/, flower/, stats/ and contract/; never cli/.
"""
