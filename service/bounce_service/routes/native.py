"""POST /webhooks/bounce: the native webhook, listmonk's contract with its defects fixed.

Differences a listmonk user will notice (DESIGN.md): the answer comes after the commit (503 if the
database is down, so the caller retries), an unknown recipient is recorded rather than dropped,
`source` must be set, a malformed `campaign_uuid` is a 400, `event_id` makes a retry idempotent, and
a JSON array records several bounces atomically.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from ..addresses import normalise_email
from ..auth import requires
from ..errors import ApiError
from ..events import BOUNCE_TYPES, UUID_RE, BounceEvent, plausible_time
from ..http import ok, parse_json, timestamp
from .observe import observed

MAX_BATCH = 1000
MAX_SOURCE = 200
MAX_EVENT_ID = 256


def recipient(body: Any) -> tuple[str, str | None]:
    """The address and subscriber UUID of a bounce body, validated: the first part of `_event`, on its own
    so that a bulk import can lock the subscribers it names while it reads the rest of each line."""
    if not isinstance(body, dict):
        raise ApiError(400, "Invalid data: expected a JSON object")

    email = body.get("email") or ""
    if not isinstance(email, str):
        raise ApiError(400, "Invalid email.")
    if email:
        email = normalise_email(email)
        if email is None:
            raise ApiError(400, "Invalid email.")

    subscriber_uuid = body.get("subscriber_uuid") or None
    if subscriber_uuid is not None and not (isinstance(subscriber_uuid, str) and UUID_RE.match(subscriber_uuid)):
        raise ApiError(400, "Invalid fields: subscriber_uuid")
    if not email and not subscriber_uuid:
        raise ApiError(400, "Invalid fields: email / subscriber_uuid")
    return email, subscriber_uuid


def _event(body: Any) -> BounceEvent:
    email, subscriber_uuid = recipient(body)

    if body.get("type") not in BOUNCE_TYPES:
        raise ApiError(400, "Invalid fields: type")

    source = body.get("source")
    if not isinstance(source, str) or not source.strip() or len(source) > MAX_SOURCE:
        raise ApiError(400, "Invalid fields: source")

    campaign_uuid = body.get("campaign_uuid") or None
    if campaign_uuid is not None and not (isinstance(campaign_uuid, str) and UUID_RE.match(campaign_uuid)):
        raise ApiError(400, "Invalid fields: campaign_uuid")

    meta = body.get("meta")
    if isinstance(meta, str):
        try:
            meta = orjson.loads(meta) if meta.strip() else {}
        except orjson.JSONDecodeError:
            raise ApiError(400, "Invalid fields: meta (a string must hold a JSON object)") from None
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise ApiError(400, "Invalid fields: meta (must be a JSON object)")

    created_at = timestamp(body["created_at"], "created_at") if body.get("created_at") else None
    if created_at is not None and not plausible_time(created_at):
        raise ApiError(400, "Invalid fields: created_at (must be after 1970 and at most a day from now)")

    event_id = body.get("event_id")
    if event_id is not None and not (isinstance(event_id, str) and 0 < len(event_id) <= MAX_EVENT_ID):
        raise ApiError(400, f"Invalid fields: event_id (a string of 1 to {MAX_EVENT_ID} characters)")

    return BounceEvent(
        type=body["type"],
        source=source.strip(),
        email=email,
        subscriber_uuid=subscriber_uuid,
        campaign_uuid=campaign_uuid,
        meta=meta,
        created_at=created_at,
        event_key=f"native:{source.strip()}:{event_id}" if event_id else None,
    )


@observed("native")
@requires("webhooks:post_bounce")
async def post_bounce(request: Request) -> Response:
    body = parse_json(await request.body())
    if isinstance(body, list):
        if not 0 < len(body) <= MAX_BATCH:
            raise ApiError(400, f"Invalid data: a batch holds 1 to {MAX_BATCH} bounces")
        events = []
        for index, item in enumerate(body):
            try:
                events.append(_event(item))
            except ApiError as exc:
                raise ApiError(exc.status, f"[{index}]: {exc.message}") from None
    else:
        events = [_event(body)]
    await request.app.state.recorder.record(events)
    return ok(True)
