"""The normalised bounce event every source produces and the one recorder consumes."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from .addresses import fold_address

BOUNCE_TYPES = frozenset({"soft", "hard", "complaint"})
# \Z, not $: `$` also matches before a final newline, which PostgreSQL then refuses as a uuid.
UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z")
MAX_EVENT_KEY = 512
EARLIEST = datetime(1970, 1, 1, tzinfo=timezone.utc)
CLOCK_SKEW = timedelta(days=1)


def plausible_time(when: datetime) -> bool:
    """Whether a bounce can have happened then: since 1970 and no later than a day from now (clocks drift).
    A later one would count in every threshold window for years, and past 9999 in UTC it cannot even be
    read back: every listing of its row would fail."""
    return EARLIEST <= when <= datetime.now(timezone.utc) + CLOCK_SKEW


@dataclass(frozen=True, slots=True)
class BounceEvent:
    """One bounce, complaint or block of one recipient.

    `event_key` is what makes redelivery harmless: the provider's own event id, or a hash of the
    mailbox message. Sources validate their input before building an event; the checks here catch a
    programming error before it reaches SQL.
    """

    type: str
    source: str
    email: str = ""
    subscriber_uuid: str | None = None
    campaign_uuid: str | None = None
    meta: Any = field(default_factory=dict)
    created_at: datetime | None = None
    event_key: str | None = None

    def __post_init__(self) -> None:
        if self.type not in BOUNCE_TYPES:
            raise ValueError(f"bounce type must be one of soft, hard, complaint, not {self.type!r}")
        if not self.source:
            raise ValueError("bounce source must not be empty")
        if not self.email and not self.subscriber_uuid:
            raise ValueError("a bounce needs an email or a subscriber_uuid")
        for name in ("subscriber_uuid", "campaign_uuid"):
            value = getattr(self, name)
            if value is not None and not UUID_RE.match(value):
                raise ValueError(f"{name} is not a UUID: {value!r}")
        if self.event_key is not None and not 0 < len(self.event_key) <= MAX_EVENT_KEY:
            raise ValueError(f"event_key must be 1..{MAX_EVENT_KEY} characters")
        if self.created_at is not None and not plausible_time(self.created_at):
            raise ValueError(f"created_at is not a plausible time: {self.created_at.isoformat()}")
        object.__setattr__(self, "email", fold_address(self.email))
