"""The Starlette application: routes, error mapping and the objects they share."""

from __future__ import annotations

import gc
import logging
import os
from contextlib import asynccontextmanager
from typing import AsyncIterator

import psycopg
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import metrics
from .auth import Authenticator
from .collection import tune_collection
from .config import HANDOVER_ENV, ServiceConfig, from_handover, load_config
from .db import UNAVAILABLE, Database
from .errors import ApiError
from .gauges import DatabaseGauges
from .group_commit import GroupCommitter
from .http import BodyLimitMiddleware, error
from .recorder import Recorder
from .providers import REGISTRY, build_providers
from .routes import bounces, data, native, ops, providers
from .secrets import SecretSource

log = logging.getLogger(__name__)

ROUTES = [
    Route("/webhooks/bounce", native.post_bounce, methods=["POST"]),
    Route("/webhooks/service/{provider}", providers.post_provider_event, methods=["POST"]),
    Route("/api/bounces", bounces.list_bounces, methods=["GET"]),
    Route("/api/bounces", bounces.delete_bounces, methods=["DELETE"]),
    Route("/api/bounces/export", bounces.export_bounces, methods=["GET"]),
    Route("/api/bounces/import", bounces.import_bounces, methods=["POST"]),
    Route("/api/bounces/blocklist", bounces.blocklist_bounced, methods=["PUT"]),
    Route("/api/bounces/{id}", bounces.get_bounce, methods=["GET"]),
    Route("/api/bounces/{id}", bounces.delete_bounce, methods=["DELETE"]),
    Route("/api/subscribers", data.upsert_subscriber, methods=["POST"]),
    Route("/api/subscribers/import", data.import_subscribers, methods=["POST"]),
    Route("/api/subscribers/{id}", data.get_subscriber, methods=["GET"]),
    Route("/api/subscribers/{id}/bounces", bounces.subscriber_bounces, methods=["GET"]),
    Route("/api/subscribers/{id}/bounces", bounces.delete_subscriber_bounces, methods=["DELETE"]),
    Route("/api/lists", data.upsert_list, methods=["POST"]),
    Route("/api/campaigns", data.upsert_campaign, methods=["POST"]),
    Route("/healthz", ops.healthz, methods=["GET"]),
    Route("/readyz", ops.readyz, methods=["GET"]),
    Route("/metrics", ops.metrics_endpoint, methods=["GET"]),
    Route("/openapi.json", ops.openapi, methods=["GET"]),
]


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error(exc.status, exc.message, exc.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return error(404, "unknown endpoint")
    if exc.status_code == 405:
        return error(405, "method not allowed", exc.headers)
    return error(exc.status_code, str(exc.detail), exc.headers)


async def _unavailable(request: Request, exc: Exception) -> Response:
    log.warning("database unavailable for %s %s: %s", request.method, request.url.path, type(exc).__name__)
    return error(503, "database unavailable, retry later", {"Retry-After": "5"})


async def _unstorable(request: Request, exc: Exception) -> Response:
    # PostgreSQL refuses some values JSON allows (a NUL character in text or JSONB, say): that is bad input.
    log.info("refused unstorable value on %s %s: %s", request.method, request.url.path, type(exc).__name__)
    return error(400, "Invalid data: a value cannot be stored (NUL characters, for one, are not allowed)")


async def _internal(request: Request, exc: Exception) -> Response:
    # The traceback goes to the log only; the client learns nothing about the internals.
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error(500, "internal server error")


def create_app(config: ServiceConfig) -> Starlette:
    webhook_providers = build_providers(config.webhooks)  # a bad provider key stops the start (ConfigError)
    metrics.reserve_sources(REGISTRY)
    db = Database(config.database_url.reveal(), max_size=config.pool_size)
    recorder = Recorder(db, config.actions)
    settings = config.group_commit
    committer = (
        GroupCommitter(recorder, max_events=settings.max_events, max_wait=settings.max_wait, flushers=settings.flushers)
        if settings.enabled
        else None
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await db.open()
        if committer is not None:
            committer.start()
        try:
            yield
        finally:
            if committer is not None:
                await committer.stop()
            await db.close()

    handlers: dict = {
        ApiError: _api_error,
        HTTPException: _http_error,
        psycopg.DataError: _unstorable,
        Exception: _internal,
    }
    handlers.update({kind: _unavailable for kind in UNAVAILABLE})
    app = Starlette(
        routes=list(ROUTES),
        middleware=[Middleware(BodyLimitMiddleware, max_body_size=config.max_body_size)],
        exception_handlers=handlers,
        lifespan=lifespan,
    )
    app.state.config = config
    app.state.db = db
    app.state.recorder = committer or recorder
    app.state.bulk_recorder = recorder  # imports are one transaction of their own, never group-committed
    app.state.auth = Authenticator(config.users)
    app.state.gauges = DatabaseGauges.from_config(db, config)
    app.state.providers = webhook_providers
    return app


def app_from_environment() -> Starlette:
    """uvicorn factory for worker processes.

    `serve` validated the config and hands the spec over in BOUNCE_VALIDATED_SPEC; a server started
    another way (plain uvicorn, as some benchmarks do) names the file to validate in BOUNCE_CONFIG.
    """
    secrets = SecretSource.default(os.environ.get("BOUNCE_SECRETS_DIR"))
    spec = os.environ.get(HANDOVER_ENV)
    config = from_handover(spec, secrets=secrets) if spec else load_config(os.environ["BOUNCE_CONFIG"], secrets=secrets)
    app = create_app(config)
    # What start-up loaded (modules, schemas, CEL programs) lives as long as the worker: kept out of the
    # collector's full passes, which would otherwise walk all of it again and again under load.
    gc.collect()
    gc.freeze()
    tune_collection()
    return app
