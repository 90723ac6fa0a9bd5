"""bounce-service: records bounces from every source exactly once and applies thresholds."""

__version__ = "0.1.0"

from .mailbox.parser import ParsedBounce, parse_bounce

__all__ = ["ParsedBounce", "parse_bounce", "__version__"]
