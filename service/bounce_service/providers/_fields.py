"""Reading provider payloads: typed field access, addresses, times, correlation ids and event keys.

A payload that is signed but does not have the documented shape is a 400 ("Invalid data: ..."), the
same envelope as the native webhook. Correlation ids are forgiving: a campaign id that is not a UUID
is the sender's business, so it is left out of the event rather than refusing an otherwise good
bounce that the provider would then retry for hours.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timezone
from typing import Any, Iterable, Iterator, Mapping

import orjson

from ..addresses import normalise_email
from ..errors import ApiError
from ..events import MAX_EVENT_KEY, UUID_RE, plausible_time
from ..http import parse_json

# The names a sender may give the listmonk tracking headers, as headers, custom args or metadata keys.
CAMPAIGN_KEYS = ("x-listmonk-campaign", "xlistmonkcampaign", "campaign_uuid")
SUBSCRIBER_KEYS = ("x-listmonk-subscriber", "xlistmonksubscriber", "subscriber_uuid")

# Enhanced status codes that say the address itself is dead: bad mailbox, bad domain, bad syntax,
# moved, null MX, unroutable. 5.1.7/5.1.8 are about the sender's address, so they are not here.
_DEAD_ADDRESS = re.compile(r"\b5\.(?:1\.(?:1|2|3|6|10)|4\.4)\b")


def malformed(message: str) -> ApiError:
    return ApiError(400, f"Invalid data: {message}")


document = parse_json  # the native webhook's 400s for empty and malformed JSON


def items(value: Any, *, array: bool = False) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each event of a batch with its position (for messages). Unless `array` is required, a bare
    object is a batch of one: Brevo and Mailjet send either, depending on the account's settings."""
    if not isinstance(value, list):
        if array:
            raise malformed("expected a JSON array of events")
        value = [value]
    for index, item in enumerate(value):
        where = f"[{index}]"
        yield where, obj(item, where)


def obj(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise malformed(f"{where} must be a JSON object")
    return value


def optional_obj(value: Any, where: str) -> dict[str, Any]:
    return {} if value is None else obj(value, where)


def text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise malformed(f"{where} must be a non-empty string")
    return value


def recipient(value: Any, where: str) -> str:
    address = normalise_email(value) if isinstance(value, str) else None
    if address is None:
        raise malformed(f"{where} is not an e-mail address")
    return address


def from_unix(value: Any, where: str, *, scale: float = 1.0) -> datetime | None:
    """Unix time as a number or a string of digits (SparkPost); `scale` 1000 for milliseconds (Brevo).

    Absent means "now" (the recorder's default), as listmonk does; present but unreadable is a 400.
    """
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise malformed(f"{where} is not a Unix timestamp")
    try:
        when = datetime.fromtimestamp(float(value) / scale, timezone.utc)
    except (TypeError, ValueError, OverflowError, OSError):
        raise malformed(f"{where} is not a Unix timestamp") from None
    return _plausible(when, where)


def from_iso(value: Any, where: str) -> datetime | None:
    """ISO 8601; providers document UTC, so a time without an offset is taken as UTC. Absent means now."""
    if value is None or value == "":
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise malformed(f"{where} is not an ISO 8601 time") from None
    return _plausible(parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc), where)


def _plausible(when: datetime, where: str) -> datetime:
    if not plausible_time(when):
        raise malformed(f"{where} is not a plausible time (after 1970, at most a day from now)")
    return when


def _uuid(value: Any) -> str | None:
    if isinstance(value, list) and value:  # SES tags: name -> [values]
        value = value[0]
    if isinstance(value, str) and UUID_RE.match(value.strip()):
        return value.strip().lower()
    return None


def tracked_ids(sources: Iterable[Mapping[str, Any]]) -> tuple[str | None, str | None]:
    """(campaign, subscriber): the first UUID under one of CAMPAIGN_KEYS / SUBSCRIBER_KEYS in `sources`,
    keys compared ignoring case (headers, metadata). Each source is lower-cased once for both look-ups:
    a SendGrid batch does this for every one of its events."""
    campaign = subscriber = None
    for source in sources:
        lowered = {str(key).lower(): value for key, value in source.items()}
        campaign = campaign or _first_uuid(lowered, CAMPAIGN_KEYS)
        subscriber = subscriber or _first_uuid(lowered, SUBSCRIBER_KEYS)
    return campaign, subscriber


def _first_uuid(lowered: Mapping[str, Any], names: Iterable[str]) -> str | None:
    for name in names:
        if name in lowered:
            return _uuid(lowered[name])
    return None


def json_map(value: Any) -> dict[str, Any]:
    """A JSON object carried as a string (Brevo's X-Mailin-custom, Mailjet's Payload), or nothing."""
    if isinstance(value, dict):
        return value
    if isinstance(value, str) and value.strip().startswith("{"):
        try:
            parsed = orjson.loads(value)
        except orjson.JSONDecodeError:
            return {}
        return parsed if isinstance(parsed, dict) else {}
    return {}


def name_value_map(value: Any) -> dict[str, Any]:
    """Headers or tags given as [{"name": .., "value": ..}] (SES, Resend) or as an object: an object."""
    if isinstance(value, dict):
        return value
    if isinstance(value, list):
        return {item["name"]: item.get("value") for item in value if isinstance(item, dict) and isinstance(item.get("name"), str)}
    return {}


def dead_address(*texts: Any) -> bool:
    """True when an enhanced status code in any of `texts` says the address does not exist."""
    return any(isinstance(t, str) and _DEAD_ADDRESS.search(t) for t in texts)


def event_key(provider: str, *parts: Any) -> str:
    """`provider:id` for a provider's own event id; a digest when the key is composite or too long."""
    if len(parts) == 1 and isinstance(parts[0], str) and len(parts[0]) + len(provider) < MAX_EVENT_KEY:
        return f"{provider}:{parts[0]}"
    digest = hashlib.sha256(orjson.dumps(parts, option=orjson.OPT_NON_STR_KEYS)).hexdigest()
    return f"{provider}:sha256:{digest}"


def pick(source: Mapping[str, Any], *names: str) -> dict[str, Any]:
    """The named fields that are present: meta keeps what explains a bounce, not whole payloads."""
    return {name: source[name] for name in names if source.get(name) not in (None, "", [], {})}
