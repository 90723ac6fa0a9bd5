"""Resend webhooks, delivered by Svix: HMAC-SHA256 over `id.timestamp.body`, base64, `v1,` prefixed.

The key is the base64 part of the `whsec_` secret; several signatures may be listed during a secret
rotation and any one match passes. Svix re-signs every delivery with a fresh timestamp, so its
5-minute tolerance loses no retries; `svix-id` stays the same and is the idempotency key.
"""

from __future__ import annotations

import base64
import binascii

from ..config import ConfigError
from . import _fields as f
from ._base import Handled, Inbound, Provider
from ._verify import check_window, hmac_sha256, refuse, same

META_FIELDS = ("email_id", "subject", "bounce", "from")


def header(inbound: Inbound, name: str) -> str | None:
    """Svix can white-label its headers as webhook-*; both spellings are accepted, as its library does."""
    return inbound.headers.get(f"svix-{name}") or inbound.headers.get(f"webhook-{name}")


MIN_KEY_BYTES = 16


class Resend(Provider):
    name = "resend"

    def configure(self) -> None:
        secret = self.secret("secret").reveal().strip()
        try:
            self.key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except binascii.Error:
            self.key = b""
        # Svix's keys are 24 bytes or more; "whsec_" alone would leave an empty key anyone can sign with.
        if len(self.key) < MIN_KEY_BYTES:
            raise ConfigError([f"spec.webhooks.{self.name}.secret: not a Svix signing secret "
                               f"(whsec_ followed by the base64 of at least {MIN_KEY_BYTES} bytes)"])
        self.window = self.max_age()

    def verify(self, inbound: Inbound) -> str:
        message_id, timestamp, signatures = header(inbound, "id"), header(inbound, "timestamp"), header(inbound, "signature")
        if not message_id or not timestamp or not signatures:
            raise refuse(self.name, "missing Svix signature headers")
        check_window(self.name, timestamp, self.window, self.clock())
        expected = base64.b64encode(hmac_sha256(self.key, f"{message_id}.{timestamp}.".encode() + inbound.body))
        matched = False
        for entry in signatures.split():
            version, _, signature = entry.partition(",")
            matched |= version == "v1" and same(expected, signature)
        if not matched:
            raise refuse(self.name, "invalid signature")
        return message_id

    async def receive(self, inbound: Inbound) -> Handled:
        message_id = self.verify(inbound)
        payload = f.obj(f.document(inbound.body), "the body")
        kind = payload.get("type")
        data = f.optional_obj(payload.get("data"), "data")
        if kind == "email.complained":
            bounce_type = "complaint"
        elif kind == "email.bounced":
            bounce = f.optional_obj(data.get("bounce"), "data.bounce")
            bounce_type = "hard" if bounce.get("type") == "Permanent" else "soft"
        else:
            return Handled()  # sent, delivered, delivery_delayed (Svix-side retries follow), opened, clicked
        to = data.get("to")
        # Resend does not say which recipient of a multi-recipient message bounced; the first is
        # what it reports elsewhere, and a campaign sends one recipient per message anyway.
        first = to[0] if isinstance(to, list) and to else to
        return Handled([self.event(
            bounce_type,
            f.recipient(first, "data.to"),
            key=[message_id],
            created_at=f.from_iso(payload.get("created_at"), "created_at"),
            meta={"type": kind, "svix_id": message_id, **f.pick(data, *META_FIELDS, "to")},
            tracking=[f.name_value_map(data.get("tags")), f.name_value_map(data.get("headers"))],
        )])
