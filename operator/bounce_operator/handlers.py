"""kopf handlers: each one only routes an event to the reconciler.

The BounceConfig handlers (create, update, resume; and a slow resync loop) reconcile it. Events on the
children it owns (found by label on the server side, then by owner reference) reconcile it again when
a child was deleted, edited by hand, or finished a rollout. Events on the Secrets it references
reconcile it too, so a changed password rolls the pods and a created Secret clears `SecretMissing`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any, Sequence

import kopf

from . import GROUP, PLURAL, VERSION
from .kube import Kube
from .reconcile import Reconciler
from .refs import secret_names
from .render import MANAGED_BY, MONITORING_API, PodDefaults

CHILDREN = (
    ("v1", "configmaps"),
    ("v1", "services"),
    ("apps/v1", "deployments"),
    ("batch/v1", "cronjobs"),
    ("networking.k8s.io/v1", "ingresses"),
    (MONITORING_API, "servicemonitors"),
    (MONITORING_API, "prometheusrules"),
)
MANAGED = f"{MANAGED_BY[0]}={MANAGED_BY[1]}"


async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, logger: kopf.Logger, *,
                    namespaces: Sequence[str], resync_interval: float, pods: PodDefaults, **_: Any) -> None:
    # A namespaced operator has no cluster-wide permissions: it must not watch namespaces or CRDs.
    settings.scanning.disabled = bool(namespaces)
    # Keep kopf's bookkeeping in our own annotations, out of `status` (which the CRD schema prunes).
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration")
    # After writing its annotations kopf waits this long to see that write come back on the watch; past
    # it, it takes the older events for the truth: it runs the create handler again on a stale body, which
    # rewrites the status with a new Ready time. Its 5 s default is too short when many BounceConfigs
    # arrive at once and the event loop falls behind the watch (200 at once: half were reconciled twice).
    # The cost: should that version never come back (a relisted watch), kopf's next handling waits as long.
    settings.persistence.consistency_timeout = 30.0
    # Events are for what the operator did (posted explicitly); kopf's per-handler chatter stays in the log.
    settings.posting.level = logging.WARNING
    settings.posting.reporting_component = "bounce-operator"  # the "From" of `kubectl describe`
    for api_version, plural in CHILDREN:
        settings.watching.label_selectors[api_version, plural] = MANAGED  # never stream unrelated objects
    memo.kube = Kube.from_environment()
    memo.reconciler = Reconciler(memo.kube, pods)
    memo.resync = asyncio.create_task(memo.reconciler.resync(namespaces or [None], resync_interval, logger))


async def shutdown(memo: kopf.Memo, **_: Any) -> None:
    memo.resync.cancel()
    memo.kube.close()


async def reconcile(body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    await memo.reconciler.reconcile(body, logger)


def secret_users(namespace: str, name: str, spec: kopf.Spec, **_: Any) -> dict[tuple[str, str], str]:
    """Index: (namespace, Secret name) → the BounceConfigs that reference it."""
    return {(namespace, secret): name for secret in secret_names(dict(spec))}


def is_referenced(namespace: str, name: str, secret_users: kopf.Index, **_: Any) -> bool:
    return (namespace, name) in secret_users


async def secret_changed(event: kopf.RawEvent, namespace: str, name: str, secret_users: kopf.Index,
                         memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    if event["type"] is None:
        return  # the initial listing: every BounceConfig is being resumed anyway
    # A copy: kopf updates the index while this awaits, and iterating it then fails.
    for user in list(secret_users.get((namespace, name), [])):
        await memo.reconciler.reconcile_named(namespace, user, logger)


async def child_changed(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger,
                        **_: Any) -> None:
    owner = memo.reconciler.drift(event["type"], body)
    if owner is not None:
        await memo.reconciler.reconcile_named(*owner, logger)


def register(registry: kopf.OperatorRegistry, *, namespaces: Sequence[str], resync_interval: float,
             pods: PodDefaults = PodDefaults()) -> None:
    """Register every handler for `namespaces` (none: all); see `Reconciler.resync` for the interval."""
    kopf.on.login(registry=registry)(kopf.login_via_client)  # the same credentials as `Kube` uses
    kopf.on.startup(registry=registry, id="configure")(
        functools.partial(configure, namespaces=namespaces, resync_interval=resync_interval, pods=pods))
    kopf.on.cleanup(registry=registry)(shutdown)
    for decorator in (kopf.on.create, kopf.on.update, kopf.on.resume):
        decorator(GROUP, VERSION, PLURAL, registry=registry, id="reconcile")(reconcile)
    kopf.index(GROUP, VERSION, PLURAL, registry=registry, id="secret_users")(secret_users)
    kopf.on.event("v1", "secrets", registry=registry, when=is_referenced)(secret_changed)
    for api_version, plural in CHILDREN:
        kopf.on.event(api_version, plural, registry=registry, labels={MANAGED_BY[0]: MANAGED_BY[1]})(child_changed)
