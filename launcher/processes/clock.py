"""Timestamps as run.json and a device's agent.json write them.

    now_iso()
    # '2026-11-24 23:41:07.123+00:00' form: local time with its UTC offset, to the millisecond
"""

from __future__ import annotations

import datetime as dt


def now_iso() -> str:
    return dt.datetime.now().astimezone().isoformat(timespec="milliseconds")
