"""Operational endpoints: liveness, readiness, metrics and the OpenAPI document."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from .. import metrics
from ..http import JSONResponse, error, ok
from ..openapi import openapi_document


async def healthz(request: Request) -> Response:
    """Liveness: the process answers. Deliberately independent of the database (no restart storms)."""
    return ok("ok")


async def readyz(request: Request) -> Response:
    """Readiness: only route traffic here while the database answers."""
    if await request.app.state.db.ping():
        return ok("ready")
    return error(503, "database unavailable", {"Retry-After": "5"})


async def metrics_endpoint(request: Request) -> Response:
    gauges = request.app.state.gauges
    await gauges.refresh()
    body, content_type = metrics.exposition(gauges)
    return Response(body, media_type=content_type)


async def openapi(request: Request) -> Response:
    return JSONResponse(openapi_document(request.app.routes))
