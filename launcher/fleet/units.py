"""Sizes, rates and durations written as text, read into SI base units (bytes, bits per second, seconds).

    parse_size("900MiB")      # 943718400
    parse_rate("8Mbit")       # 8000000.0 bits per second
    parse_rate("2MB/s")       # 16000000.0
    parse_duration("40ms")    # 0.04

Sizes: B, kB, MB, GB (powers of 1000), KiB, MiB, GiB (powers of 1024); a bare integer is bytes.
Rates (per second; k, M, G are powers of 1000, as tc counts them): bit, kbit, Mbit, Gbit (also bps, kbps,
Mbps, Gbps; "Kbit", "mbit", "gbit" are read the same), or bytes per second: B/s, kB/s, MB/s, GB/s. A rate
needs its unit and must be above zero.
Durations: us, ms, s, min; a bare number is seconds.
"""

from __future__ import annotations

import re

from contract.errors import InputError

_NUMBER = re.compile(r"^\s*((?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z/]*)\s*$")
SIZE_UNITS = {"": 1, "B": 1, "kB": 1e3, "KB": 1e3, "MB": 1e6, "GB": 1e9,
              "KiB": 1024, "MiB": 1024 ** 2, "GiB": 1024 ** 3}
RATE_UNITS = {"bit": 1, "kbit": 1e3, "Kbit": 1e3, "Mbit": 1e6, "mbit": 1e6, "Gbit": 1e9, "gbit": 1e9,
              "bps": 1, "kbps": 1e3, "Kbps": 1e3, "Mbps": 1e6, "mbps": 1e6, "Gbps": 1e9, "gbps": 1e9,
              "B/s": 8, "kB/s": 8e3, "KB/s": 8e3, "MB/s": 8e6, "GB/s": 8e9}
DURATION_UNITS = {"": 1, "us": 1e-6, "ms": 1e-3, "s": 1, "min": 60}


class UnitError(InputError):
    """A size, rate or duration that does not parse; the caller adds where it was written."""


def _split(text, what: str, units: dict) -> tuple[float, float]:
    if isinstance(text, bool):
        raise UnitError(f"{what} must be text such as {_example(what)}, not {text!r}")
    if isinstance(text, (int, float)):
        text = str(text)
    if not isinstance(text, str):
        raise UnitError(f"{what} must be text such as {_example(what)}, not {text!r}")
    match = _NUMBER.match(text.replace("_", ""))
    if not match:
        raise UnitError(f"cannot read {what} {text!r} (for example {_example(what)})")
    number = float(match.group(1))
    unit = match.group(2)
    if unit not in units:
        raise UnitError(f"cannot read {what} {text!r}: unknown unit {unit!r} (known: {_known(units)})")
    return number, units[unit]


def _known(units: dict) -> str:
    seen = {}
    for unit in units:
        if unit:
            seen.setdefault(unit.lower(), unit)
    return ", ".join(seen.values())


def _example(what: str) -> str:
    return {"size": '"900MiB"', "rate": '"8Mbit"', "duration": '"40ms"'}[what]


def parse_size(text) -> int:
    number, scale = _split(text, "size", SIZE_UNITS)
    value = number * scale
    if value < 1:
        raise UnitError(f"size {text!r} must be at least one byte")
    return int(round(value))


def parse_rate(text) -> float:
    if not isinstance(text, str):
        raise UnitError(f"rate {text!r} needs a unit, for example \"8Mbit\" or \"2MB/s\"")
    number, scale = _split(text, "rate", RATE_UNITS | {"": None})
    if scale is None:
        raise UnitError(f"rate {text!r} needs a unit, for example \"8Mbit\" or \"2MB/s\"")
    if number <= 0:
        raise UnitError(f"rate {text!r} must be above zero")
    return number * scale


def parse_duration(text) -> float:
    number, scale = _split(text, "duration", DURATION_UNITS)
    return number * scale


def format_rate(bits_per_second: float) -> str:
    """A rate the way parse_rate reads it back: format_rate(8e6) -> '8Mbit'."""
    for unit, scale in (("Gbit", 1e9), ("Mbit", 1e6), ("kbit", 1e3)):
        if bits_per_second >= scale:
            return f"{bits_per_second / scale:.4g}{unit}"
    return f"{bits_per_second:g}bit"
