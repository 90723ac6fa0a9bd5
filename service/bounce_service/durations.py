"""Go-style durations (`90s`, `15m`, `720h`, `1h30m`), the syntax Kubernetes users already write."""

from __future__ import annotations

import re
from datetime import timedelta

_PART = re.compile(r"([0-9]+)(ms|s|m|h)")
_WHOLE = re.compile(r"^([0-9]+(ms|s|m|h))+$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
# Go's (and so Kubernetes') longest duration: 2^63 - 1 nanoseconds, about 292 years.
MAX_SECONDS = (2**63 - 1) / 1e9
TOO_LONG = "must be at most 2562047h (the longest Go duration)"


def parse_duration(text: str) -> timedelta:
    if not _WHOLE.match(text):
        raise ValueError(f"not a duration: {text!r} (examples: 90s, 15m, 720h)")
    seconds = sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _PART.findall(text))
    if seconds > MAX_SECONDS:
        raise ValueError(TOO_LONG)
    return timedelta(seconds=seconds)
