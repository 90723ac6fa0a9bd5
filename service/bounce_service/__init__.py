"""bounce-service: records bounces from every source exactly once and applies thresholds."""

__version__ = "0.1.0"
