"""The normalised bounce event every source produces and the one recorder consumes."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .addresses import fold_address

BOUNCE_TYPES = frozenset({"soft", "hard", "complaint"})
# \Z, not $: `$` also matches before a final newline, which PostgreSQL then refuses as a uuid.
UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z")
MAX_EVENT_KEY = 512


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
        object.__setattr__(self, "email", fold_address(self.email))
