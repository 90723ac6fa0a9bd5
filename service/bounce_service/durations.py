"""Go-style durations (`90s`, `15m`, `720h`, `1h30m`), the syntax Kubernetes users already write."""

from __future__ import annotations

import re
from datetime import timedelta

_PART = re.compile(r"([0-9]+)(ms|s|m|h)")
_WHOLE = re.compile(r"^([0-9]+(ms|s|m|h))+$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}  # integers: any number of digits stays exact
# Go's (and so Kubernetes') longest duration: 2^63 - 1 nanoseconds, about 292 years.
MAX_MS = (2**63 - 1) // 1_000_000
TOO_LONG = "must be at most 2562047h (the longest Go duration)"


def parse_duration(text: str) -> timedelta:
    if not _WHOLE.match(text):
        raise ValueError(f"not a duration: {text!r} (examples: 90s, 15m, 720h)")
    milliseconds = sum(int(n) * _UNIT_MS[unit] for n, unit in _PART.findall(text))
    if milliseconds > MAX_MS:
        raise ValueError(TOO_LONG)
    return timedelta(milliseconds=milliseconds)
