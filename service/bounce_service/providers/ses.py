"""Amazon SES bounce and complaint notifications, delivered by SNS.

Fixes listmonk's defects (reference §4.1, §6.5): SignatureVersion 2 (SHA-256) works, only allow-listed
topics are accepted (a validly signed message only proves that *some* AWS account sent it), a
subscription is confirmed only after verification and only for those topics, an UnsubscribeConfirmation
does not re-subscribe, event-publishing complaints are recorded, every bounced recipient gets an
event, and `created_at` is the bounce time, not the send time.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Mapping

import orjson

from ..config import ConfigError
from ..errors import ApiError
from ..events import BounceEvent
from . import _fields as f
from ._base import Clock, Handled, Inbound, Provider
from ._sns import SIGNED_FIELDS, SNS_HOST, FetchError, Fetcher, HttpsFetcher, SnsVerifier
from ._verify import check_window, refuse

log = logging.getLogger(__name__)

MESSAGE_TYPE = "x-amz-sns-message-type"
BOUNCE_FIELDS = ("bounceType", "bounceSubType", "feedbackId", "reportingMTA")
RECIPIENT_FIELDS = ("action", "status", "diagnosticCode")
COMPLAINT_FIELDS = ("complaintFeedbackType", "complaintSubType", "feedbackId", "userAgent")


def bounce_type(bounce: Mapping[str, Any], bounced: Mapping[str, Any]) -> str:
    """Permanent (including Suppressed re-assertions) is hard; Transient is soft unless the
    recipient's status says the address is dead (5.4.4, which listmonk also treats as hard)."""
    if bounce.get("bounceType") == "Permanent":
        return "hard"
    return "hard" if f.dead_address(str(bounced.get("status", ""))) else "soft"


class Ses(Provider):
    name = "ses"

    def __init__(
        self,
        section: Mapping[str, Any],
        *,
        clock: Clock = time.time,
        fetcher: Fetcher | None = None,
        sns_host: str = SNS_HOST,
    ) -> None:
        """`fetcher` and `sns_host` exist for tests (a local HTTPS server); production uses the defaults."""
        self.sns = SnsVerifier(self.name, fetcher or HttpsFetcher(), sns_host)
        super().__init__(section, clock=clock)

    def configure(self) -> None:
        self.topics = frozenset(self.section.get("topicArns") or ())
        if not self.topics:
            raise ConfigError([f"spec.webhooks.{self.name}.topicArns: at least one topic is required"])
        self.auto_confirm = bool(self.section.get("autoConfirmSubscriptions", True))
        self.window = self.max_age()

    async def receive(self, inbound: Inbound) -> Handled:
        kind = inbound.headers.get(MESSAGE_TYPE)
        if kind not in SIGNED_FIELDS:
            raise f.malformed(f"{MESSAGE_TYPE} must be one of {', '.join(SIGNED_FIELDS)}")
        message = f.obj(f.document(inbound.body), "the body")
        if message.get("Type") != kind:
            raise f.malformed(f"Type does not match {MESSAGE_TYPE}")
        for field in SIGNED_FIELDS[kind]:
            if field != "Subject":
                f.text(message.get(field), field)
        if message["TopicArn"] not in self.topics:
            raise refuse(self.name, "topic not allowed (spec.webhooks.ses.topicArns)", status=403)
        check_window(self.name, f.from_iso(message["Timestamp"], "Timestamp").timestamp(), self.window, self.clock())
        await self.sns.verify(message)

        if kind == "Notification":
            return Handled(self.events(message))
        if kind == "UnsubscribeConfirmation":
            # Its SubscribeURL would subscribe again (listmonk's typo did exactly that): acknowledge only.
            log.info("SNS subscription to %s was removed", message["TopicArn"])
        elif self.auto_confirm:
            await self.confirm(message)
        else:
            log.warning("SNS subscription to %s awaits confirmation (autoConfirmSubscriptions is off): %s",
                        message["TopicArn"], message["SubscribeURL"])
        return Handled()

    async def confirm(self, message: Mapping[str, Any]) -> None:
        if not self.sns.is_subscribe_url(message["SubscribeURL"]):
            raise refuse(self.name, "SubscribeURL is not an Amazon SNS URL")
        try:
            await self.sns.fetcher.get(message["SubscribeURL"])
        except FetchError as exc:
            if exc.transient:
                raise ApiError(503, f"could not confirm the SNS subscription ({exc}); retry later", {"Retry-After": "5"}) from None
            raise f.malformed(f"SNS refused to confirm the subscription ({exc})") from None
        log.info("confirmed the SNS subscription to %s", message["TopicArn"])

    def events(self, envelope: Mapping[str, Any]) -> list[BounceEvent]:
        try:
            record = orjson.loads(envelope["Message"])
        except orjson.JSONDecodeError:
            return []  # "Successfully validated SNS topic for Amazon SES event publishing."
        if not isinstance(record, dict):
            return []
        kind = record.get("eventType") or record.get("notificationType")
        mail = f.optional_obj(record.get("mail"), "Message.mail")
        # Headers only with "include original headers", tags only with event publishing: try both.
        tracking = [f.name_value_map(mail.get("headers")), f.optional_obj(mail.get("tags"), "Message.mail.tags")]
        base = {"sns_message_id": envelope["MessageId"], "topic_arn": envelope["TopicArn"],
                "ses_message_id": mail.get("messageId"), "notification": kind}
        if kind == "Bounce":
            report = f.obj(record.get("bounce"), "Message.bounce")
            recipients, fields = report.get("bouncedRecipients"), BOUNCE_FIELDS
        elif kind == "Complaint":
            report = f.obj(record.get("complaint"), "Message.complaint")
            if report.get("complaintFeedbackType") == "not-spam":
                return []  # a correction of an earlier report, not a complaint
            recipients, fields = report.get("complainedRecipients"), COMPLAINT_FIELDS
        else:
            return []  # Delivery, Send, DeliveryDelay (SES retries), Reject, Open, Click, ...
        if not isinstance(recipients, list) or not recipients:
            raise f.malformed(f"Message.{kind.lower()} lists no recipients")
        # SES's own id of this bounce or complaint: one report can reach us in two SNS messages (an identity's
        # notifications and a configuration set's event destination), each with its own MessageId.
        feedback_id = report.get("feedbackId")
        origin = feedback_id if isinstance(feedback_id, str) and feedback_id else envelope["MessageId"]
        events = []
        for index, item in enumerate(recipients):
            entry = f.obj(item, f"Message.{kind.lower()}.recipients[{index}]")
            email = f.recipient(entry.get("emailAddress"), f"Message.{kind.lower()}.recipients[{index}].emailAddress")
            events.append(self.event(
                bounce_type(report, entry) if kind == "Bounce" else "complaint",
                email,
                key=[f"{origin}:{email}"],
                created_at=f.from_iso(report.get("timestamp"), f"Message.{kind.lower()}.timestamp"),
                meta={**base, **f.pick(report, *fields), **f.pick(entry, *RECIPIENT_FIELDS)},
                tracking=tracking,
            ))
        return events
