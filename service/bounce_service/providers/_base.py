"""What every provider module implements, and what the dispatcher hands it.

A provider turns one verified HTTP request into BounceEvents; it never writes to the database itself
(DESIGN.md: one recorder for every source), so redelivery, atomicity and thresholds behave the same
whichever provider an event came through.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, ClassVar, Mapping, Sequence

from starlette.datastructures import Headers, QueryParams

from ..config import ConfigError
from ..durations import parse_duration
from ..events import BounceEvent
from ..secrets import Secret
from . import _fields as f
from ._tokens import TokenUse
from ._verify import check_basic

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class Inbound:
    """The request as the provider signed it: raw bytes, never re-serialised JSON."""

    body: bytes
    headers: Headers
    query: QueryParams


@dataclass(frozen=True, slots=True)
class Handled:
    events: Sequence[BounceEvent] = ()
    # A JSON body answered instead of {"data": true}: Event Grid's handshake wants its own shape.
    reply: Any = None
    # A one-time signature token (Mailgun) to claim before the events are recorded and spend after.
    token: TokenUse | None = None


class Provider:
    """One mail provider's webhook. Subclasses set `name` and implement `receive`."""

    name: ClassVar[str]

    def __init__(self, section: Mapping[str, Any], *, clock: Clock = time.time) -> None:
        self.section = section
        self.clock = clock
        self.configure()

    def configure(self) -> None:
        """Read the section; a problem raises ConfigError, so a bad setting stops the start, not a request."""

    async def receive(self, inbound: Inbound) -> Handled:
        raise NotImplementedError

    def event(self, kind: str, email: str, *, key: Sequence[Any], created_at: datetime | None, meta: Mapping[str, Any],
              tracking: Sequence[Mapping[str, Any]] = ()) -> BounceEvent:
        """One event of this provider; `tracking` holds the mappings (headers, custom args, metadata) that
        may carry listmonk's X-Listmonk-Campaign / X-Listmonk-Subscriber ids."""
        campaign, subscriber = f.tracked_ids(tracking)
        return BounceEvent(
            type=kind,
            source=self.name,
            email=email,
            campaign_uuid=campaign,
            subscriber_uuid=subscriber,
            created_at=created_at,
            event_key=f.event_key(self.name, *key),
            meta=dict(meta),
        )

    def secret(self, key: str) -> Secret:
        """The resolved secret `key`; without it the provider cannot authenticate anything, so it does not start."""
        value = self.section.get(key)
        if not isinstance(value, Secret) or not value.reveal():
            raise ConfigError([f"spec.webhooks.{self.name}.{key}: a non-empty secret is required"])
        return value

    def max_age(self) -> float:
        return parse_duration(self.section["maxAge"]).total_seconds()


class BasicAuthProvider(Provider):
    """Providers that sign nothing and can only send HTTP Basic credentials (Postmark, Brevo, Mailjet, SparkPost)."""

    def configure(self) -> None:
        username = self.section.get("username")
        if not username:
            raise ConfigError([f"spec.webhooks.{self.name}.username: is required"])
        self.username: str = username
        self.password = self.secret("password")

    def authenticate(self, inbound: Inbound) -> None:
        check_basic(self.name, inbound.headers.get("authorization"), self.username, self.password)
