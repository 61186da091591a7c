"""The one base class of errors in what the user gave: options, files, data sets, apps.

    raise InputError("--clients-per-round 4 exceeds --client-num 3")
    # fl-launch, fl-stats, fl-finish print it as "fl-launch: error: <message>" and exit 2

Each module keeps its own subclass (PlanError, DataSetError, ModelError, PartitionError, ...), so a
caller can still catch one kind; the commands catch them all at once (launcher.cli.errors). Being a
ValueError, it reads as one to code that knew these errors as ValueErrors.
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad input from the user; the message is the one line the user sees (no traceback, exit 2)."""
