"""API authentication: `Authorization: token USER:TOKEN` or HTTP Basic, and per-route permissions."""

from __future__ import annotations

import base64
import binascii
import functools
import hmac
from typing import Awaitable, Callable, Mapping

from starlette.requests import Request
from starlette.responses import Response

from . import metrics
from .config import ApiUser
from .errors import ApiError

CHALLENGE = {"WWW-Authenticate": 'Basic realm="bounce-operator", charset="UTF-8"'}
# Compared against when the user is unknown, so an unknown name costs as long as a wrong token.
_DUMMY_TOKEN = b"\x00" * 32

Endpoint = Callable[[Request], Awaitable[Response]]


class Authenticator:
    def __init__(self, users: Mapping[str, ApiUser]) -> None:
        self.users = dict(users)
        # Encoded once, not on every request.
        self._tokens = {name: user.token.reveal().encode() for name, user in self.users.items()}

    def authenticate(self, request: Request) -> ApiUser:
        header = request.headers.get("authorization")
        if not header:
            raise self._refuse("missing credentials")
        scheme, _, credentials = header.partition(" ")
        scheme = scheme.lower()
        if scheme == "token":
            pair = credentials.strip()
        elif scheme == "basic":
            try:
                pair = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                raise self._refuse("invalid API credentials") from None
        else:
            raise self._refuse("invalid API credentials")
        name, sep, token = pair.partition(":")
        if not sep or not name or not token:
            raise self._refuse("invalid API credentials")
        user = self.users.get(name)
        expected = self._tokens[name] if user else _DUMMY_TOKEN
        if not hmac.compare_digest(expected, token.encode()) or user is None:
            raise self._refuse("invalid API credentials")
        return user

    @staticmethod
    def _refuse(message: str) -> ApiError:
        metrics.AUTH_FAILURES.labels(provider="api").inc()
        return ApiError(401, message, CHALLENGE)


def requires(permission: str) -> Callable[[Endpoint], Endpoint]:
    """Guard an endpoint; the permission is kept on the function for the OpenAPI document and tests."""

    def decorate(endpoint: Endpoint) -> Endpoint:
        @functools.wraps(endpoint)
        async def guarded(request: Request) -> Response:
            user = request.app.state.auth.authenticate(request)
            if permission not in user.permissions:
                raise ApiError(403, f"permission denied: {permission}")
            return await endpoint(request)

        guarded.permission = permission  # type: ignore[attr-defined]
        return guarded

    return decorate
