"""Postmark's Bounce, Spam Complaint and Subscription Change webhooks: HTTP Basic (Postmark signs
nothing), one record per request.

Every documented bounce `Type` has a decision below. A `Type` Postmark adds later is recorded as soft:
listmonk answered it with a 400 that Postmark retries for hours and then drops (reference §4.3, §6.8).
Broadcast streams, where campaigns go, have no Spam Complaint webhook: a complaint there arrives only as
a Subscription Change suppressing the address for `SpamComplaint` (reference §8.1).
"""

from __future__ import annotations

from typing import Any

from . import _fields as f
from ._base import BasicAuthProvider, Handled, Inbound

# Postmark's Type -> our type; None means "not a delivery failure of the address": accepted, not recorded.
TYPES: dict[str, str | None] = {
    "HardBounce": "hard",
    "BadEmailAddress": "hard",
    "Transient": "soft",
    "DnsError": "soft",
    "SpamNotification": "soft",  # content or reputation filtering: the address works
    "Unknown": "soft",
    "SoftBounce": "soft",
    "VirusNotification": "soft",
    "Blocked": "soft",
    "DMARCPolicy": "soft",  # our sender authentication, not the recipient
    "SpamComplaint": "complaint",
    "Unsubscribe": None,
    "Subscribe": None,
    "AutoResponder": None,
    "AddressChange": None,
    "OpenRelayTest": None,
    "ChallengeVerification": None,
    "ManuallyDeactivated": None,
    "Unconfirmed": None,
    "SMTPApiError": None,
    "InboundError": None,
    "TemplateRenderingFailed": None,
}
RECORDS = ("Bounce", "SpamComplaint")
META_FIELDS = ("RecordType", "ID", "Type", "TypeCode", "Name", "Description", "Details", "MessageID",
               "MessageStream", "Tag", "Inactive", "CanActivate", "ServerID")
CHANGE_FIELDS = ("RecordType", "MessageID", "MessageStream", "Origin", "SuppressSending", "SuppressionReason",
                 "Tag", "ServerID")


class Postmark(BasicAuthProvider):
    name = "postmark"

    async def receive(self, inbound: Inbound) -> Handled:
        self.authenticate(inbound)
        record = f.obj(f.document(inbound.body), "the body")
        if record.get("RecordType") == "SubscriptionChange":
            return self._subscription_change(record)
        if record.get("RecordType") not in RECORDS:
            return Handled()  # Delivery, Open, Click
        kind = TYPES.get(f.text(record.get("Type"), "Type"), "soft")
        if kind is None:
            return Handled()
        record_id = record.get("ID")
        if isinstance(record_id, bool) or not isinstance(record_id, (int, str)) or record_id == "":
            raise f.malformed("ID must be Postmark's record id")
        email = f.recipient(record.get("Email"), "Email")
        return Handled([self.event(
            kind,
            email,
            key=_complaint_key(record, email, [str(record_id)]) if kind == "complaint" else [str(record_id)],
            created_at=f.from_iso(record.get("BouncedAt"), "BouncedAt"),
            meta=f.pick(record, *META_FIELDS),
            tracking=[f.optional_obj(record.get("Metadata"), "Metadata")],
        )])

    def _subscription_change(self, record: dict) -> Handled:
        """A complaint that suppressed the address; every other change is ignored: a reactivation, a manual
        suppression, and a hard bounce's (the Bounce webhook reports that bounce itself)."""
        if record.get("SuppressSending") is not True or record.get("SuppressionReason") != "SpamComplaint":
            return Handled()
        email = f.recipient(record.get("Recipient"), "Recipient")
        return Handled([self.event(
            "complaint",
            email,
            key=_complaint_key(record, email, ["subscription-change", email, record.get("ChangedAt")]),
            created_at=f.from_iso(record.get("ChangedAt"), "ChangedAt"),
            meta=f.pick(record, *CHANGE_FIELDS),
            tracking=[f.optional_obj(record.get("Metadata"), "Metadata")],
        )])


def _complaint_key(record: dict, email: str, fallback: list[Any]) -> list[Any]:
    """One complaint per message and recipient, whichever webhook reports it: a transactional stream with
    both the Spam Complaint and the Subscription Change webhook on reports each complaint twice. Without
    the message's id, `fallback` (what identifies this record alone)."""
    message_id = record.get("MessageID")
    return ["complaint", message_id, email] if isinstance(message_id, str) and message_id else fallback
