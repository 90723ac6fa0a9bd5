"""E-mail address normalisation shared by every input path."""

from __future__ import annotations

import re

_ADDRESS = re.compile(r"^[^@\s<>(),;:\"\[\]\\\x00-\x1f\x7f]+@[A-Za-z0-9\[]([A-Za-z0-9.:\-\]]*[A-Za-z0-9\]])?$")
MAX_ADDRESS = 254


def fold_address(text: str) -> str:
    """An address as it is stored and compared: trimmed and lower-cased.

    bounces.email compares bytes (migration 0008), so whatever writes an address and whatever filters by
    one must fold it alike: this is the one place that says how.
    """
    return text.strip().lower()


def normalise_email(text: str) -> str | None:
    """Return the lower-cased bare address, or None when `text` is not one single plain address."""
    candidate = fold_address(text)
    # The pattern alone decides: no display name, comment, route or list can match it, and it is several
    # times cheaper than email.utils.parseaddr on the webhook's hot path.
    if not candidate or len(candidate) > MAX_ADDRESS or not _ADDRESS.fullmatch(candidate):
        return None
    return candidate
