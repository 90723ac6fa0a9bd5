"""Prometheus metrics, prefix `bounce_`.

Counters live in each process (uvicorn workers share them through prometheus-client's multiprocess
mode when PROMETHEUS_MULTIPROC_DIR is set). Labels are bounded: free-text sources beyond a fixed
number collapse into "other", so a misbehaving client cannot explode the series count.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Iterable

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, disable_created_metrics, generate_latest
from prometheus_client import multiprocess
from prometheus_client.registry import Collector
from prometheus_client.exposition import CONTENT_TYPE_LATEST

MAX_SOURCE_LABELS = 50

# A `*_created` series per counter and histogram child doubles the series count for a timestamp no alert
# or dashboard reads (and multiprocess mode, which the service runs in, never exports them anyway).
disable_created_metrics()

EVENTS = Counter(
    "bounce_events_total",
    "Bounce events by type, source and outcome (recorded, duplicate, rejected).",
    ["type", "source", "outcome"],
)
ACTIONS_FIRED = Counter(
    "bounce_actions_fired_total",
    "Threshold actions that changed a subscriber (unsubscribe, blocklist, delete).",
    ["action"],
)
WEBHOOK_REQUESTS = Counter(
    "bounce_webhook_requests_total",
    "Webhook requests by provider (native for POST /webhooks/bounce) and HTTP status.",
    ["provider", "status"],
)
WEBHOOK_LATENCY = Histogram(
    "bounce_webhook_request_duration_seconds",
    "Webhook request latency, including the database commit, by provider.",
    ["provider"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
COMMIT_GROUP_REQUESTS = Histogram(
    "bounce_commit_group_requests",
    "Requests sharing one database transaction (group commit).",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
AUTH_FAILURES = Counter(
    "bounce_auth_failures_total",
    "Requests refused for missing or wrong credentials or signatures, by provider (api for /api).",
    ["provider"],
)

_events_lock = threading.Lock()
_event_children: dict[tuple[str, str, str], Any] = {}
_sources: set[str] = set()
_reserved: frozenset[str] = frozenset()


def reserve_sources(names: Iterable[str]) -> None:
    """Sources always counted under their own name (the providers'): free-text native sources, however
    many come first, cannot push them into "other"."""
    global _reserved
    _reserved = frozenset(names)


def count_event(kind: str, source: str, outcome: str, amount: int = 1) -> None:
    """Count `amount` events; free-text sources past MAX_SOURCE_LABELS are counted as "other"."""
    child = _event_children.get((kind, source, outcome))
    if child is None:
        # Children are cached (labels() locks and builds a tuple per call), keyed by the bounded label,
        # so a client inventing sources cannot grow the cache either.
        with _events_lock:
            if source in _reserved:
                label = source
            elif source in _sources or len(_sources) < MAX_SOURCE_LABELS:
                _sources.add(source)
                label = source
            else:
                label = "other"
            key = (kind, label, outcome)
            if key not in _event_children:
                _event_children[key] = EVENTS.labels(type=kind, source=label, outcome=outcome)
            child = _event_children[key]
    child.inc(amount)


def exposition(*extra: Collector) -> tuple[bytes, str]:
    """The process's counters (every worker's, in multiprocess mode) plus this app's own collectors."""
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        counters = CollectorRegistry()
        multiprocess.MultiProcessCollector(counters)
    else:
        counters = REGISTRY
    parts = [generate_latest(counters)]
    if extra:
        local = CollectorRegistry(auto_describe=False)
        for collector in extra:
            local.register(collector)
        parts.append(generate_latest(local))
    return b"".join(parts), CONTENT_TYPE_LATEST
