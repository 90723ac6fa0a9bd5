"""One reconciliation: make a BounceConfig's children match its spec, then say how it went in its status.

Level-triggered and idempotent: every call reads what exists (the first, with no status yet, creates
and reads only what turns out to exist), writes only what differs (a JSON merge patch, never PUT),
deletes the children the spec no longer wants, and patches the status only when it changed. Running it
again, after a restart or for a stray event, costs reads and nothing else.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from typing import Any, Mapping, Sequence

import kopf
from bounce_service.schema import validate_spec

from . import API_VERSION, GROUP, KIND
from .kube import ApiError, Kube, path, path_of
from .merge import is_subset, merge_patch, stamped, written_fields
from .refs import Refs, SecretKey, all_refs
from .render import (
    MAILBOX_LABEL,
    MANAGED_BY,
    MONITORING_API,
    Owner,
    PodDefaults,
    config_document,
    cronjob_name,
    render_children,
    secret_fingerprint,
    service_url,
)
from .schedule import cron_schedule
from .status import Problem, build_status, deployment_progress, rollout_failure, scan_times

ChildKey = tuple[str, str]  # (kind, name); a BounceConfig's children all live in its namespace
OwnerKey = tuple[str, str]  # (namespace, name)
PRUNABLE = (("batch/v1", "CronJob"), ("networking.k8s.io/v1", "Ingress"),
            (MONITORING_API, "ServiceMonitor"), (MONITORING_API, "PrometheusRule"))


class NameConflict(Exception):
    """A child's name is taken by an object this BounceConfig does not control; it is left alone."""


def key_of(manifest: Mapping[str, Any]) -> ChildKey:
    return manifest["kind"], manifest["metadata"]["name"]


def controller_of(body: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for ref in body.get("metadata", {}).get("ownerReferences", []):
        if ref.get("controller") and ref.get("kind") == KIND and ref.get("apiVersion", "").startswith(f"{GROUP}/"):
            return ref
    return None


def controlled_by(body: Mapping[str, Any], owner: Owner) -> bool:
    ref = controller_of(body)
    return ref is not None and ref.get("name") == owner.name and (not owner.uid or ref.get("uid") == owner.uid)


def _rollout_state(deployment: Mapping[str, Any] | None) -> tuple[bool, bool]:
    """(available, failed): what of a Deployment's rollout the status shows."""
    return deployment_progress(deployment)[0], rollout_failure(deployment) is not None


def _spec_problem(violations: list) -> Problem:
    # The CRD's CEL rules refuse such specs, but only on clusters that run them; say which rule broke.
    on_schedule = all(v.path.endswith(".scanInterval") for v in violations)
    return Problem("InvalidSchedule" if on_schedule else "InvalidSpec", "; ".join(map(str, violations)))


class Reconciler:
    """Reconciles BounceConfigs; remembers what it last wanted so child events can be checked for drift."""

    def __init__(self, kube: Kube, pods: PodDefaults = PodDefaults()) -> None:
        self._kube = kube
        self._pods = pods
        self._locks: defaultdict[OwnerKey, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._pending: set[OwnerKey] = set()
        self._wanted: dict[OwnerKey, dict[ChildKey, Mapping[str, Any]]] = {}
        self._available: dict[OwnerKey, tuple[bool, bool]] = {}  # _rollout_state of its Deployment
        self._scans: dict[OwnerKey, dict[str, dict[str, Any]]] = {}  # CronJob name → its scan_times
        self._pruned: set[OwnerKey] = set()  # stale children deleted, and nothing became unwanted since
        self._specs: dict[OwnerKey, tuple[tuple[Any, Any], tuple[dict[str, Any], list, str]]] = {}

    async def reconcile(self, body: Mapping[str, Any], logger: logging.Logger | logging.LoggerAdapter) -> None:
        owner = Owner.from_body(body)
        async with self._locks[(owner.namespace, owner.name)]:
            await self._reconcile(body, owner, logger)

    async def reconcile_named(self, namespace: str, name: str, logger: logging.Logger | logging.LoggerAdapter) -> None:
        """Reconcile from a fresh read; requests that pile up while one waits are served by that one."""
        key = (namespace, name)
        if key in self._pending:
            return
        self._pending.add(key)
        try:
            async with self._locks[key]:
                self._pending.discard(key)
                body = await self._kube.get(path(API_VERSION, KIND, namespace, name))
                if body is None or body["metadata"].get("deletionTimestamp"):
                    # Gone or going: its children go with it (garbage collection); never recreate them.
                    self.forget(namespace, name)
                    return
                await self._reconcile(body, Owner.from_body(body), logger)
        finally:
            self._pending.discard(key)

    async def resync(self, namespaces: Sequence[str | None], interval: float,
                     logger: logging.Logger | logging.LoggerAdapter) -> None:
        """Reconcile every BounceConfig every `interval` seconds: the backstop for events that never came
        (a failed drift repair, monitoring CRDs installed later). Not a kopf timer: those add finalizers."""
        while True:
            await asyncio.sleep(interval)
            self._kube.forget_discovery()
            for namespace in namespaces:
                try:
                    for body in await self._kube.list(API_VERSION, KIND, namespace):
                        if not body["metadata"].get("deletionTimestamp"):
                            await self.reconcile(body, logger)
                except (ApiError, kopf.TemporaryError) as exc:
                    logger.warning(f"resync of namespace {namespace or '(all)'} stopped early: {exc}")

    def forget(self, namespace: str, name: str) -> None:
        self._wanted.pop((namespace, name), None)
        self._available.pop((namespace, name), None)
        self._scans.pop((namespace, name), None)
        self._pruned.discard((namespace, name))
        self._specs.pop((namespace, name), None)
        self._locks.pop((namespace, name), None)

    def drift(self, event_type: str | None, child: Mapping[str, Any]) -> OwnerKey | None:
        """The BounceConfig to reconcile because of this event on one of its children, if any."""
        ref = controller_of(child)
        if ref is None:
            return None
        owner = (child["metadata"].get("namespace", ""), ref["name"])
        wanted = self._wanted.get(owner)
        if wanted is None:
            return None  # not reconciled by this process yet; its create/resume handler will do it
        desired = wanted.get(key_of({"kind": child.get("kind"), "metadata": child["metadata"]}))
        if event_type == "DELETED":
            return owner if desired is not None else None  # unwanted children are ours to delete
        if desired is None:
            self._pruned.discard(owner)  # a child it should not have (made by hand?): look for strays again
            return owner
        if not is_subset(desired, child):
            return owner
        if child.get("kind") == "Deployment" and _rollout_state(child) != self._available.get(owner):
            return owner  # a rollout finished or failed: Ready changes
        if child.get("kind") == "CronJob" and \
                scan_times(child) != self._scans.get(owner, {}).get(child["metadata"]["name"], {}):
            return owner  # a scan started or succeeded: status.mailboxes changes
        return None

    async def _reconcile(self, body: Mapping[str, Any], owner: Owner,
                         logger: logging.Logger | logging.LoggerAdapter) -> None:
        previous = body.get("status") or {}
        generation = body["metadata"].get("generation")
        spec, violations, config = self._validate(body)
        if violations:
            # Keep the last good children running; only say why the new spec is not applied.
            kept = {m["name"]: m["schedule"] for m in previous.get("mailboxes", []) if "name" in m and "schedule" in m}
            await self._report(body, build_status(
                generation=generation, problems=[_spec_problem(violations)], available=False, progress="",
                url=previous.get("url"), schedules=kept, scans={}, previous=previous))
            return

        refs = all_refs(spec)
        secrets, problems = await self._read_secrets(owner.namespace, refs)
        if "url" not in spec.get("database", {}):
            problems.append(Problem("InvalidSpec", "spec.database.url: is required in a cluster "
                                                   "(the pods have no DATABASE_URL)"))
        # Discovered even when the spec wants neither: switching both off must still prune the ones it made.
        monitoring = await self._kube.served_kinds(MONITORING_API)
        desired = render_children(owner, spec, secrets, monitoring, config, self._pods)
        key = (owner.namespace, owner.name)
        before = self._wanted.get(key)
        # Remember before writing, so the events our own writes cause are recognised as no drift.
        self._wanted[key] = {key_of(m): m for m in desired}
        if before is None or set(before) - set(self._wanted[key]):
            self._pruned.discard(key)

        results = await asyncio.gather(*(self._apply(owner, m, new=not previous) for m in desired),
                                       return_exceptions=True)
        actions: dict[str, list[str]] = defaultdict(list)
        deployment = None
        scans: dict[str, dict[str, Any]] = {}
        failed = False
        for manifest, result in zip(desired, results, strict=True):
            label = f"{manifest['kind']} {manifest['metadata']['name']}"
            if isinstance(result, NameConflict):
                problems.append(Problem("NameConflict", str(result)))
            elif isinstance(result, ApiError):
                problems.append(Problem("ApplyFailed", f"{label}: {result.message or result.status}"))
                failed = True
            elif isinstance(result, BaseException):
                raise result
            else:
                action, current = result
                if action:
                    actions[action].append(label)
                if manifest["kind"] == "Deployment":
                    deployment = current
                elif manifest["kind"] == "CronJob":
                    scans[manifest["metadata"]["labels"][MAILBOX_LABEL]] = scan_times(current)
        if key not in self._pruned:  # listing every prunable kind costs; do it only when something may go
            try:
                deleted = await self._prune(owner, desired, monitoring)
                if deleted:
                    actions["Deleted"] += deleted
                self._pruned.add(key)
            except ApiError as exc:
                problems.append(Problem("ApplyFailed", f"deleting unwanted children: {exc.message or exc.status}"))
                failed = True

        available, progress = deployment_progress(deployment)
        if (failure := rollout_failure(deployment)) is not None:
            problems.append(failure)
        self._available[key] = (available, failure is not None)  # _rollout_state, already computed
        self._scans[key] = {cronjob_name(owner, name): times for name, times in scans.items()}
        for reason, labels in actions.items():
            kopf.event(dict(body), type="Normal", reason=reason, message=", ".join(labels))
        schedules = {m["name"]: cron_schedule(m["scanInterval"]) for m in spec["mailboxes"]}
        await self._report(body, build_status(
            generation=generation, problems=problems, available=available, progress=progress,
            url=service_url(owner, spec), schedules=schedules, scans=scans, previous=previous))
        if failed:
            raise kopf.TemporaryError("some children could not be written; retrying", delay=15)

    def _validate(self, body: Mapping[str, Any]) -> tuple[dict[str, Any], list, str]:
        """(defaulted spec, violations, config document), computed once per generation: CEL is slow."""
        meta = body["metadata"]
        version = (meta.get("uid"), meta.get("generation"))
        cached = self._specs.get((meta["namespace"], meta["name"]))
        if cached is not None and cached[0] == version and None not in version:
            return cached[1]
        spec, violations = validate_spec(body.get("spec") or {})
        result = (spec, violations, "" if violations else config_document(spec))
        self._specs[(meta["namespace"], meta["name"])] = (version, result)
        return result

    async def _read_secrets(self, namespace: str, refs: Refs) -> tuple[dict[SecretKey, str | None], list[Problem]]:
        """Each referenced key's fingerprint (None when missing or unreadable), and what is wrong."""
        names = sorted({ref.name for ref in refs})
        bodies = await asyncio.gather(*(self._kube.get(path("v1", "Secret", namespace, name)) for name in names),
                                      return_exceptions=True)
        found: dict[str, dict[str, Any] | None] = {}
        problems = []
        for name, body in zip(names, bodies, strict=True):
            if isinstance(body, ApiError) and body.status == 403:  # RBAC: retrying will not help, saying so will
                problems.append(Problem("SecretForbidden", f"Secret {name} cannot be read by the operator "
                                                           f"({body.message or 'forbidden'})"))
            elif isinstance(body, BaseException):
                raise body
            else:
                found[name] = body
        values: dict[SecretKey, str | None] = {}
        for ref, where in refs.items():
            if ref.name not in found:  # unreadable: said above, once for all its keys
                values[ref] = None
                continue
            secret = found[ref.name]
            value = ((secret or {}).get("data") or {}).get(ref.key)
            values[ref] = None if value is None else secret_fingerprint(secret["metadata"].get("uid", ""), value)
            if secret is None:
                problems.append(Problem("SecretMissing", f"Secret {ref.name} not found (referenced by {where})"))
            elif value is None:
                problems.append(Problem("SecretMissing", f"Secret {ref.name} has no key {ref.key} "
                                                         f"(referenced by {where})"))
        return values, problems

    async def _apply(self, owner: Owner, desired: Mapping[str, Any], *,
                     new: bool) -> tuple[str | None, dict[str, Any]]:
        """Create, or merge-patch what differs; (action, the object as the server now has it).

        The children of a `new` BounceConfig (one never reconciled) almost never exist yet: it creates
        them without reading first, and reads only when the name is taken."""
        url = path_of(desired)
        manifest = stamped(desired)
        current = None if new else await self._kube.get(url)
        if current is None:
            try:
                return "Created", await self._kube.create(manifest)
            except ApiError as exc:
                if exc.status != 409:
                    raise
                current = await self._kube.get(url)  # it exists after all: check it like any other
                if current is None:
                    raise
        if not controlled_by(current, owner):
            raise NameConflict(f"{manifest['kind']} {manifest['metadata']['name']} already exists and is not "
                               f"controlled by BounceConfig {owner.name}; rename or delete it")
        if is_subset(manifest, current):
            return None, current
        return "Updated", await self._kube.patch(url, merge_patch(manifest, written_fields(current)))

    async def _prune(self, owner: Owner, desired: list[Mapping[str, Any]], monitoring: frozenset[str]) -> list[str]:
        wanted = {key_of(m) for m in desired}
        selector = {"app.kubernetes.io/instance": owner.name, MANAGED_BY[0]: MANAGED_BY[1]}
        kinds = [(api, kind) for api, kind in PRUNABLE if api != MONITORING_API or kind in monitoring]
        listings = await asyncio.gather(*(self._kube.list(api, kind, owner.namespace, selector) for api, kind in kinds))
        stale = [item for items in listings for item in items
                 if key_of(item) not in wanted and controlled_by(item, owner)]
        await asyncio.gather(*(self._kube.delete(path_of(item)) for item in stale))
        return [f"{item['kind']} {item['metadata']['name']}" for item in stale]

    async def _report(self, body: Mapping[str, Any], status: dict[str, Any]) -> None:
        previous = body.get("status") or {}
        if all(previous.get(key) == value for key, value in status.items()):
            return
        problems = [c for c in status["conditions"] if c["type"] == "Degraded" and c["status"] == "True"]
        was = [c for c in previous.get("conditions", []) if c.get("type") == "Degraded" and c.get("status") == "True"]
        if problems and (not was or was[0].get("message") != problems[0]["message"]):
            kopf.event(dict(body), type="Warning", reason=problems[0]["reason"], message=problems[0]["message"])
        meta = body["metadata"]
        await self._kube.patch(path(API_VERSION, KIND, meta["namespace"], meta["name"], "status"), {"status": status})
