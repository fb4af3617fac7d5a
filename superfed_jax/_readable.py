"""How numbers and paths are written for a person: the one place every command's summary and the reports
take their units from. A command's `--json` output keeps the exact values instead (`json_line`).

* `si(value, unit)`: decimal SI prefixes, 4 significant digits (4.043e6 MACs -> '4.043 MMACs').
* `binary_bytes(n)`: bytes in binary units, 4 significant digits (25939541304 -> '24.16 GiB').
* `count(n)`: an integer with thousands separators (41130 -> '41,130').
* `fraction(value)`: an accuracy or other fraction to 4 decimals (0.9555555582046509 -> '0.9556').
* `path(p)`: relative to the current directory when it lies under it, else absolute.
* `json_line(record)`: one JSON object on one line, every value as given (what `--json` prints).

This module imports nothing of the package, so commands and reports of every layer may use it.
"""
import json
import math
import os
from typing import Any, Optional

__all__ = ["si", "binary_bytes", "count", "fraction", "path", "json_line"]

_SI_PREFIXES = ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))
_BINARY_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def si(value: float, unit: str) -> str:
    """``value`` with an SI prefix and 4 significant digits, e.g. 4.043e6 MACs -> '4.043 MMACs'."""
    for factor, prefix in _SI_PREFIXES:
        if abs(value) >= factor:
            return f"{value / factor:.4g} {prefix}{unit}"
    return f"{value:.4g} {unit}"


def binary_bytes(n: float) -> str:
    """A byte count in the largest binary unit (KiB = 1024 B, ...) that leaves at least 1, 4 significant
    digits: 512 -> '512 B', 1536 -> '1.5 KiB', 2**30 -> '1 GiB', 286759720 -> '273.5 MiB'."""
    value, unit = float(n), 0
    # Move up while the value, as it would be printed, reaches the next unit (1023.99 KiB is '1 MiB').
    while unit < len(_BINARY_UNITS) - 1 and float(f"{abs(value):.4g}") >= 1024:
        value, unit = value / 1024, unit + 1
    return f"{value:.4g} {_BINARY_UNITS[unit]}"


def count(n: int) -> str:
    """An integer with thousands separators: 41130 -> '41,130'."""
    return f"{int(n):,}"


def fraction(value: Optional[float]) -> str:
    """A fraction (an accuracy) to 4 decimals, 0.9555555582046509 -> '0.9556'; None or NaN -> 'n/a'."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.4f}"


def path(p: str, start: Optional[str] = None) -> str:
    """`p` relative to `start` (default: the current directory) when it lies under it ('.' for `start`
    itself), else absolute: what a person can paste into the next command from where they are."""
    start = os.path.abspath(start or os.getcwd())
    absolute = os.path.abspath(p)
    if absolute == start:
        return "."
    if absolute.startswith(start.rstrip(os.sep) + os.sep):
        return os.path.relpath(absolute, start)
    return absolute


def json_line(record: Any) -> str:
    """`record` as one line of JSON: full precision, nothing rounded or shortened (for scripts)."""
    return json.dumps(record)
