"""Mailgun webhooks (v3 JSON): HMAC-SHA256 (hex) of `timestamp + token` with the webhook signing key.

The signature covers the token, not the event, so replays are refused twice over: a signed timestamp
outside `maxAge`, and a token already used (the database ledger in `_tokens`, shared by every replica).
What makes a re-signed redelivery harmless is the event key (event id + timestamp, since Mailgun ids
are unique only within a day, reference §1.5).
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import orjson

from . import _fields as f
from ._base import Handled, Inbound, Provider
from ._tokens import TokenUse
from ._verify import check_hex_hmac, check_window, refuse

# An enhanced status of class 5.7 (security or policy), in the code field or in the reply's text.
POLICY_CODE = re.compile(r"(?<![\d.])5\.7\.\d{1,3}(?![\d.])")
META_FIELDS = ("event", "severity", "reason", "id", "delivery-status", "tags", "log-level")


def classify(event: Mapping[str, Any]) -> str | None:
    kind = event.get("event")
    if kind == "complained":
        return "complaint"
    if kind != "failed":
        return None  # accepted, delivered, opened, clicked, unsubscribed, rejected (our API call)
    reason, severity = event.get("reason"), event.get("severity")
    status = f.optional_obj(event.get("delivery-status"), "event-data.delivery-status")
    codes = (str(status.get("enhanced-code", "")), str(status.get("bounce-code", "")), status.get("message"))
    if reason == "old":
        return "soft"  # retries exhausted after temporary failures, whatever `severity` says
    if severity != "permanent":
        return None  # a deferral: Mailgun retries and reports the outcome later
    if reason == "suppress-bounce":
        return "hard"  # re-assertion: the address is on Mailgun's bounce list
    if reason == "suppress-complaint":
        return "complaint"
    if reason == "suppress-unsubscribe":
        return None
    if reason == "bounce":
        # Mailgun's "permanent" also covers ESP policy rejections; those leave the address alive.
        return "soft" if any(isinstance(c, str) and POLICY_CODE.search(c) for c in codes) else "hard"
    return "hard" if f.dead_address(*codes) else "soft"  # generic / delayed bounce: trust only the code


class Mailgun(Provider):
    name = "mailgun"

    def configure(self) -> None:
        self.key = self.secret("secret").reveal().encode()
        self.window = self.max_age()

    async def receive(self, inbound: Inbound) -> Handled:
        payload = f.obj(f.document(inbound.body), "the body")
        signature = payload.get("signature")
        if not isinstance(signature, dict):
            raise refuse(self.name, "missing signature")
        timestamp, token = signature.get("timestamp"), signature.get("token")
        if not isinstance(timestamp, str) or not isinstance(token, str) or not token:
            raise refuse(self.name, "malformed signature")
        check_hex_hmac(self.name, self.key, timestamp.encode() + token.encode(), signature.get("signature"))
        now = self.clock()
        signed_at = check_window(self.name, timestamp, self.window, now)
        event = f.obj(payload.get("event-data"), "event-data")
        # The event in canonical form, so a retry that serialises it differently is still the same event.
        use = TokenUse.of(self.name, token, orjson.dumps(event, option=orjson.OPT_SORT_KEYS), signed_at, self.window, now)
        kind = classify(event)
        if kind is None:
            return Handled(token=use)
        return Handled(
            [self.event(
                kind,
                f.recipient(event.get("recipient"), "event-data.recipient"),
                key=[f.text(event.get("id"), "event-data.id"), event.get("timestamp")],
                created_at=f.from_unix(event.get("timestamp"), "event-data.timestamp"),
                meta=f.pick(event, *META_FIELDS),
                tracking=[f.optional_obj(event.get("user-variables"), "event-data.user-variables")],
            )],
            token=use,
        )
