"""Authentication checks shared by the providers: HMAC, timestamp windows, Basic auth, shared secrets.

Every refusal goes through `refuse`, so each one is counted (bounce_auth_failures_total) and none
says which part of a credential was right. All comparisons are constant-time and run on bytes:
`hmac.compare_digest` raises on non-ASCII str, which would turn a forged header into a 500.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Iterable

from .. import metrics
from ..errors import ApiError
from ..secrets import Secret

CHALLENGE = {"WWW-Authenticate": 'Basic realm="bounce-operator", charset="UTF-8"'}


def refuse(provider: str, message: str, *, status: int = 401, headers: dict[str, str] | None = None) -> ApiError:
    metrics.AUTH_FAILURES.labels(provider=provider).inc()
    return ApiError(status, message, headers)


def same(expected: bytes, candidate: str | bytes) -> bool:
    if isinstance(candidate, str):
        candidate = candidate.encode("utf-8", "surrogateescape")
    return hmac.compare_digest(expected, candidate)


def hmac_sha256(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


def check_hex_hmac(provider: str, key: bytes, message: bytes, signature: object) -> None:
    """HMAC-SHA256 of `message`, hex in either case, as Mailgun, Forward Email and Lettermint send it."""
    if not signature:
        raise refuse(provider, "missing signature")
    if not isinstance(signature, str):  # Mailgun's sits in the JSON body, where it can be anything
        raise refuse(provider, "malformed signature")
    if not same(hmac_sha256(key, message).hex().encode(), signature.strip().lower()):
        raise refuse(provider, "invalid signature")


def check_window(provider: str, timestamp: str | int | float | None, max_age: float, now: float) -> float:
    """The signed timestamp must be within `max_age` of now, either way, or it is a replay (or a bad clock)."""
    try:
        signed_at = float(timestamp)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise refuse(provider, "missing or malformed signature timestamp") from None
    if signed_at != signed_at or abs(now - signed_at) > max_age:  # NaN never passes
        raise refuse(provider, "signature timestamp outside the accepted window")
    return signed_at


def check_basic(provider: str, header: str | None, username: str, password: Secret) -> None:
    """HTTP Basic against the configured pair; every failure looks the same to the caller."""
    scheme, _, value = (header or "").partition(" ")
    if scheme.lower() != "basic":
        raise refuse(provider, "missing credentials", headers=CHALLENGE)
    try:
        pair = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except ValueError:  # not base64 (a non-ASCII header included), or not UTF-8
        raise refuse(provider, "invalid credentials", headers=CHALLENGE) from None
    name, sep, given = pair.partition(":")
    # Both halves are always compared, so timing does not tell a right name from a wrong one.
    name_ok = same(username.encode(), name)
    password_ok = password.equals(given)
    if not (sep and name_ok and password_ok):
        raise refuse(provider, "invalid credentials", headers=CHALLENGE)


def check_shared_secret(provider: str, candidates: Iterable[str | None], secret: Secret) -> None:
    """Passes when any presented value equals the secret; an absent or empty value never does."""
    matched = False
    for candidate in candidates:
        if candidate:
            matched |= secret.equals(candidate.strip())
    if not matched:
        raise refuse(provider, "missing or wrong shared secret")
