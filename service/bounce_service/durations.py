"""Go-style durations (`90s`, `15m`, `720h`, `1h30m`), the syntax Kubernetes users already write."""

from __future__ import annotations

import re
from datetime import timedelta

_PART = re.compile(r"([0-9]+)(ms|s|m|h)")
_WHOLE = re.compile(r"^([0-9]+(ms|s|m|h))+$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}


def parse_duration(text: str) -> timedelta:
    if not _WHOLE.match(text):
        raise ValueError(f"not a duration: {text!r} (examples: 90s, 15m, 720h)")
    return timedelta(seconds=sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _PART.findall(text)))
