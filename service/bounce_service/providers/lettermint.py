"""Lettermint webhooks: `X-Lettermint-Signature: t=<unix>,v1=<hex>`, HMAC-SHA256 over `<t>.<raw body>`.

The signed timestamp must be within `maxAge` (Lettermint's own 300 s by default); Lettermint's event
`id` is the idempotency key.
"""

from __future__ import annotations

from . import _fields as f
from ._base import Handled, Inbound, Provider
from ._verify import check_hex_hmac, check_window, refuse

SIGNATURE = "X-Lettermint-Signature"
EVENTS = {"message.hard_bounced": "hard", "message.soft_bounced": "soft", "message.spam_complaint": "complaint"}
META_FIELDS = ("message_id", "subject", "tag", "response")


class Lettermint(Provider):
    name = "lettermint"

    def configure(self) -> None:
        self.key = self.secret("secret").reveal().encode()
        self.window = self.max_age()

    def verify(self, inbound: Inbound) -> None:
        parts = dict(part.strip().partition("=")[::2] for part in inbound.headers.get(SIGNATURE, "").split(","))
        if not parts.get("t") or not parts.get("v1"):
            raise refuse(self.name, "missing or malformed signature (expected t=...,v1=...)")
        check_window(self.name, parts["t"], self.window, self.clock())
        check_hex_hmac(self.name, self.key, parts["t"].encode() + b"." + inbound.body, parts["v1"])

    async def receive(self, inbound: Inbound) -> Handled:
        self.verify(inbound)
        payload = f.obj(f.document(inbound.body), "the body")
        kind = EVENTS.get(f.text(payload.get("event"), "event"))
        if kind is None:
            return Handled()  # deliveries, opens, webhook.test
        data = f.obj(payload.get("data"), "data")
        return Handled([self.event(
            kind,
            f.recipient(data.get("recipient"), "data.recipient"),
            key=[f.text(payload.get("id"), "id")],
            created_at=f.from_iso(payload.get("timestamp"), "timestamp"),
            meta={"event": payload["event"], "id": payload["id"], **f.pick(data, *META_FIELDS)},
            tracking=[f.optional_obj(data.get("metadata"), "data.metadata")],
        )])
