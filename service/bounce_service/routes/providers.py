"""POST /webhooks/service/{provider}: where mail providers deliver bounces and complaints.

Public (no API user): each provider authenticates itself with its own signature or credentials,
checked over the raw request bytes before anything is parsed. The answer comes after the commit,
like the native webhook, so a provider only stops retrying once its events are stored.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from ..auth import Endpoint
from ..errors import ApiError
from ..http import JSONResponse, ok
from ..providers import REGISTRY, Inbound
from ..providers import _tokens as tokens
from .observe import observed

UNKNOWN = "unknown"


async def _deliver(request: Request) -> Response:
    name = request.path_params["provider"]
    if name not in REGISTRY:
        raise ApiError(404, f"unknown provider; known providers: {', '.join(sorted(REGISTRY))}")
    provider = request.app.state.providers.get(name)
    if provider is None:
        raise ApiError(404, f"provider {name} is not enabled (spec.webhooks.{name}.enabled)")
    handled = await provider.receive(
        Inbound(body=await request.body(), headers=request.headers, query=request.query_params)
    )
    if handled.token is not None and not await tokens.claim(request.app.state.db, handled.token):
        return ok(True)  # this very request was recorded before: its answer was lost on the way
    if handled.events:
        await request.app.state.recorder.record(handled.events)
    if handled.token is not None:
        await tokens.spend(request.app.state.db, handled.token)
    return JSONResponse(handled.reply) if handled.reply is not None else ok(True)


# One observed endpoint per known provider: the metric label set stays bounded whatever path is posted.
_ENDPOINTS: dict[str, Endpoint] = {name: observed(name)(_deliver) for name in [*REGISTRY, UNKNOWN]}


async def post_provider_event(request: Request) -> Response:
    return await _ENDPOINTS.get(request.path_params["provider"], _ENDPOINTS[UNKNOWN])(request)
