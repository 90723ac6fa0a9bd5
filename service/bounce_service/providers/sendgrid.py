"""SendGrid's signed Event Webhook: ECDSA P-256 over timestamp + raw body, batches of events.

Fixes listmonk's reading (reference §4.2): classifications are matched case-insensitively against
SendGrid's Title Case labels, `dropped` with a bounce-like reason and `spamreport` are recorded, each
event keeps only its own fields as meta, `sg_event_id` makes redelivery harmless, and a signed
timestamp outside `maxAge` is refused as a replay.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Mapping

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ..config import ConfigError
from . import _fields as f
from ._base import Handled, Inbound, Provider
from ._verify import check_window, refuse

SIGNATURE = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP = "X-Twilio-Email-Event-Webhook-Timestamp"
KEY_FIELD = "spec.webhooks.sendgrid.verificationKey"

# bounce_classification (lower-cased) -> type; "mailbox unavailable" is decided by the status code.
CLASSIFICATIONS = {
    "invalid address": "hard",
    "technical failure": "soft",
    "content": "soft",
    "reputation": "soft",
    "frequency or volume too high": "soft",
    "unclassified": "soft",
}
# `dropped` reasons that say something about the address; the others are the sender's own doing.
DROPPED = {"bounced address": "hard", "invalid": "hard", "spam reporting address": "complaint", "expired": "soft"}
META_FIELDS = ("event", "type", "reason", "status", "bounce_classification", "sg_event_id", "sg_message_id",
               "smtp-id", "category", "attempt")


def load_key(text: str) -> ec.EllipticCurvePublicKey:
    """The verification key as SendGrid shows it (base64 DER) or as PEM; anything else stops the start."""
    try:
        if "-----BEGIN" in text:
            key = serialization.load_pem_public_key(text.encode())
        else:
            key = serialization.load_der_public_key(base64.b64decode("".join(text.split()), validate=True))
    except (ValueError, TypeError, binascii.Error):
        raise ConfigError([f"{KEY_FIELD}: not a public key (expected SendGrid's base64 verification key or PEM)"]) from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ConfigError([f"{KEY_FIELD}: not an ECDSA P-256 public key, which SendGrid signs with"])
    return key


def classify(event: Mapping[str, Any]) -> str | None:
    kind = event.get("event")
    if kind == "spamreport":
        return "complaint"
    if kind == "dropped":
        return DROPPED.get(str(event.get("reason", "")).strip().lower())
    if kind != "bounce":
        return None  # delivered, deferred (SendGrid retries), opens, clicks, ...
    status, reason = event.get("status"), event.get("reason")
    label = str(event.get("bounce_classification") or "").strip().lower()
    if label == "mailbox unavailable":
        return "hard" if f.dead_address(status, reason) else "soft"
    if label in CLASSIFICATIONS:
        return CLASSIFICATIONS[label]
    # No (or an unknown) classification: `type` bounce is SendGrid's permanent verdict, blocked is policy.
    if event.get("type") == "blocked" or str(status or "").startswith("4"):
        return "soft"
    return "hard"


class SendGrid(Provider):
    name = "sendgrid"

    def configure(self) -> None:
        self.key = load_key(self.secret("verificationKey").reveal())
        self.window = self.max_age()

    def verify(self, inbound: Inbound) -> None:
        timestamp = inbound.headers.get(TIMESTAMP)
        signature = inbound.headers.get(SIGNATURE)
        if not signature or not timestamp:
            raise refuse(self.name, "missing signature (is the Signed Event Webhook enabled?)")
        check_window(self.name, timestamp, self.window, self.clock())
        try:
            der = base64.b64decode(signature, validate=True)
            self.key.verify(der, timestamp.encode() + inbound.body, ec.ECDSA(hashes.SHA256()))
        except (binascii.Error, ValueError, InvalidSignature):
            raise refuse(self.name, "invalid signature") from None

    async def receive(self, inbound: Inbound) -> Handled:
        self.verify(inbound)
        found = []
        for where, event in f.items(f.document(inbound.body), array=True):
            kind = classify(event)
            if kind is not None:
                found.append(self.event(
                    kind,
                    f.recipient(event.get("email"), f"{where}.email"),
                    key=[f.text(event.get("sg_event_id"), f"{where}.sg_event_id")],
                    created_at=f.from_unix(event.get("timestamp"), f"{where}.timestamp"),
                    meta=f.pick(event, *META_FIELDS),
                    # custom_args arrive merged into the event; legacy unique_args may stay nested
                    tracking=[event, f.optional_obj(event.get("unique_args"), f"{where}.unique_args")],
                ))
        return Handled(found)
