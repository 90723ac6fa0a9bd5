"""bounce-service: records bounces from every source exactly once and applies thresholds."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["ParsedBounce", "parse_bounce", "__version__"]


def __getattr__(name: str) -> Any:
    # Loaded on first use: the parser is for the scanner and library users, and importing it would slow
    # the start of every HTTP worker, which never parses a message.
    if name in ("ParsedBounce", "parse_bounce"):
        from .mailbox import parser

        return getattr(parser, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
