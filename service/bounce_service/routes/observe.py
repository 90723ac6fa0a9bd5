"""Request counting and latency for webhook endpoints, by provider and final status."""

from __future__ import annotations

import functools
import time
from typing import Any

import psycopg
from starlette.requests import Request
from starlette.responses import Response

from .. import metrics
from ..auth import Endpoint
from ..db import UNAVAILABLE
from ..errors import ApiError


def observed(provider: str):
    latency = metrics.WEBHOOK_LATENCY.labels(provider=provider)
    requests: dict[int, Any] = {}  # status -> counter child, so the hot path skips labels()

    def decorate(endpoint: Endpoint) -> Endpoint:
        @functools.wraps(endpoint)
        async def timed(request: Request) -> Response:
            started = time.perf_counter()
            status = 500
            try:
                response = await endpoint(request)
                status = response.status_code
                return response
            except ApiError as exc:
                status = exc.status
                if status < 500:  # refused input: counted so a sender's broken integration shows up
                    metrics.count_event("unknown", provider, "rejected")
                raise
            except UNAVAILABLE:
                status = 503
                raise
            except psycopg.DataError:
                status = 400  # app.py answers a value PostgreSQL cannot store as bad input
                raise
            finally:
                counter = requests.get(status)
                if counter is None:
                    counter = requests[status] = metrics.WEBHOOK_REQUESTS.labels(provider=provider, status=str(status))
                counter.inc()
                latency.observe(time.perf_counter() - started)

        return timed

    return decorate
