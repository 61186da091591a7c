"""The node id a SuperNode logs when it registers with the SuperLink.

    supernode_id(Path("logs/latest/client_3/supernode.log"))
    # 6909139872718471024
    registered_since(Path("logs/latest/client_3/supernode.log"), offset=0)
    # True

Flower 1.41 logs ``SuperNode ID: <id>`` once per registration (again after a reconnect:
the last one counts). Pinned by tests/test_flower_internals.py.
"""

from __future__ import annotations

import re
from pathlib import Path

_NODE_ID = re.compile(r"SuperNode ID: (\d+)")


def supernode_id(log: Path) -> int | None:
    """The node id in a SuperNode's log (its last one); None before it registered or without a log."""
    try:
        found = _NODE_ID.findall(log.read_text(errors="replace"))
    except OSError:
        return None
    return int(found[-1]) if found else None


def registered_since(log: Path, offset: int) -> bool:
    """Did the SuperNode log a registration after byte ``offset`` (its log's size when it was started)?"""
    try:
        with open(log, "rb") as fh:
            fh.seek(offset)
            return _NODE_ID.search(fh.read().decode(errors="replace")) is not None
    except OSError:
        return False
