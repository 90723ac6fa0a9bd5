"""kmock's Kubernetes emulator, taught the API-server behaviour that kopf and the operator rely on.

kmock 0.8 (pinned: this overrides private methods) assigns no resourceVersion, uid or generation,
replays every object to each new watch, ignores label selectors, merges patches its own way, serves
no status subresource and collects no garbage. `Cluster` adds, in the simplest faithful form:

- resourceVersion (one counter), uid, creationTimestamp, generation (bumped by spec changes only);
- watches that resume after the resourceVersion they are given, and equality label selectors;
- RFC 7386 merge patches and RFC 6902 JSON patches (a failed `test` answers 422), no PUT, no other
  content type; a no-op patch changes nothing and emits no event, as on a real server;
- the status subresource: `/status` writes only status, the main resource never does;
- object reads answered directly (kmock's reaction matching costs milliseconds per request);
- the Deployment controller's part that matters here (a rollout completes at once unless told not to);
- background garbage collection of dependents, by ownerReferences uid.
"""

from __future__ import annotations

import copy
import datetime
import uuid
from typing import Any, AsyncIterator

import aiohttp.web
import attrs
import jsonpatch
import kmock
from kmock._internal import k8s, references, rendering

MUTATIONS = {kmock.action.CREATE, kmock.action.UPDATE, kmock.action.DELETE}
DEPLOYMENTS = kmock.resource("apps", "v1", "deployments")

# Every resource the operator and kopf touch, as a real API server would list them in discovery.
BUILTIN = {
    ("", "v1", "configmaps"): "ConfigMap",
    ("", "v1", "secrets"): "Secret",
    ("", "v1", "services"): "Service",
    ("", "v1", "events"): "Event",
    ("apps", "v1", "deployments"): "Deployment",
    ("batch", "v1", "cronjobs"): "CronJob",
    ("networking.k8s.io", "v1", "ingresses"): "Ingress",
    ("bounce-operator.io", "v1alpha1", "bounceconfigs"): "BounceConfig",
    ("", "v1", "namespaces"): "Namespace",
    ("apiextensions.k8s.io", "v1", "customresourcedefinitions"): "CustomResourceDefinition",
}
CLUSTER_SCOPED = {"Namespace", "CustomResourceDefinition"}
MONITORING = {
    ("monitoring.coreos.com", "v1", "servicemonitors"): "ServiceMonitor",
    ("monitoring.coreos.com", "v1", "prometheusrules"): "PrometheusRule",
}
VERBS = ["get", "list", "watch", "create", "patch", "delete"]


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def matches(labels: dict[str, str], selector: str) -> bool:
    """Equality-based selectors (`a=b`, `a==b`, `a!=b`) and existence (`a`, `!a`)."""
    for term in filter(None, (part.strip() for part in selector.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key) != value:
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _essence(body: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in body.items() if key not in ("metadata", "status")}


@attrs.define(kw_only=True)
class Cluster(kmock.KubernetesEmulator):
    complete_rollouts: bool = True  # play the Deployment controller: every rollout succeeds at once
    # (namespace, name) of Secrets the operator's RBAC does not let it read: answered 403.
    forbidden_secrets: set[tuple[str, str]] = attrs.field(factory=set)
    _revision: int = attrs.field(default=0, init=False)
    _changes: list[tuple[int, references.resource, dict[str, Any]]] = attrs.field(factory=list, init=False)
    _keys: dict[references.resource, set[tuple]] = attrs.field(factory=dict, init=False)  # live objects, per resource

    def serve(self, resources: dict[tuple[str, str, str], str]) -> None:
        for (group, version, plural), kind in resources.items():
            self.resources[kmock.resource(group, version, plural)] = kmock.ResourceInfo(
                kind=kind, namespaced=kind not in CLUSTER_SCOPED, verbs=VERBS,
                subresources=["status"] if kind in ("BounceConfig", "Deployment", "CronJob") else [],
            )

    def has_status(self, resource: references.resource) -> bool:
        return resource in self.resources and "status" in self.resources[resource].subresources

    # -- writes -------------------------------------------------------------------------------------

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        if request.resource is not None and request.method == kmock.method.PUT:
            raise k8s.KubernetesError(405, "MethodNotAllowed", "PUT is not served by this emulator: PATCH")
        if request.resource is not None and request.resource.plural and \
                request.action in (kmock.action.FETCH, kmock.action.LIST):
            # Answered here, not by kmock's reaction matching: that costs milliseconds per request.
            body = await (self._serve_fetch(request) if request.action == kmock.action.FETCH else self._serve_list(request))
            return aiohttp.web.json_response(body)
        if request.resource is None or request.action not in MUTATIONS:
            return await super()._handle(request)
        if request.action != kmock.action.CREATE and request.name is None:
            raise k8s.KubernetesError(405, "MethodNotAllowed", "collection writes are not emulated")
        async with self._lock:
            body = await self._write(request)
        return aiohttp.web.json_response(body)

    async def _write(self, request: rendering.Request) -> dict[str, Any]:
        resource = request.resource
        assert resource is not None
        if request.action == kmock.action.CREATE:
            body = copy.deepcopy(request.data)
            meta = body.setdefault("metadata", {})
            if "name" not in meta and "generateName" in meta:
                meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
            key = (resource, request.namespace or meta.get("namespace"), meta.get("name"))
            if key in self._objects and not self._objects[key].deleted:
                raise k8s.KubernetesError(409, "AlreadyExists", f"{resource.plural} {key[2]!r} already exists")
            meta.update(namespace=key[1], uid=str(uuid.uuid4()), creationTimestamp=_now(), generation=1)
            if self.has_status(resource):
                body.pop("status", None)
            await self._store(key, body, "ADDED")
            await self._control(key, body)
            return body

        key = (resource, request.namespace, request.name)
        if key not in self._objects or self._objects[key].deleted:
            raise k8s.KubernetesObjectNotFoundError()
        current = self._objects[key].raw
        if request.action == kmock.action.DELETE:
            return await self._delete(key, current)
        return await self._patch(key, current, request)

    async def _patch(self, key: tuple, current: dict[str, Any], request: rendering.Request) -> dict[str, Any]:
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
        if content_type == "application/merge-patch+json":
            patched = merge_patch(current, request.data)
        elif content_type == "application/json-patch+json":
            try:
                patched = jsonpatch.apply_patch(current, request.data)
            except (jsonpatch.JsonPatchTestFailed, jsonpatch.JsonPatchConflict) as exc:
                raise k8s.KubernetesError(422, "Invalid", str(exc)) from None
        else:
            raise k8s.KubernetesError(415, "UnsupportedMediaType", f"{content_type!r} is not emulated")

        resource = key[0]
        if request.subresource == "status":
            patched = {**current, "status": patched.get("status", {})}
        elif self.has_status(resource):
            patched = {**patched, "status": current.get("status")} if "status" in current else \
                {k: v for k, v in patched.items() if k != "status"}
        # Identity is immutable; generation counts changes of everything but metadata and status.
        meta = patched.setdefault("metadata", {})
        for field in ("name", "namespace", "uid", "creationTimestamp", "generation", "resourceVersion"):
            if field in current["metadata"]:
                meta[field] = current["metadata"][field]
            else:
                meta.pop(field, None)
        if _essence(patched) != _essence(current):
            meta["generation"] = current["metadata"].get("generation", 0) + 1
        if patched == current:
            return current
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            return await self._delete(key, patched, force=True)
        await self._store(key, patched, "MODIFIED")
        await self._control(key, patched)
        return patched

    async def _delete(self, key: tuple, current: dict[str, Any], force: bool = False) -> dict[str, Any]:
        if current["metadata"].get("finalizers") and not force:
            marked = merge_patch(current, {"metadata": {"deletionTimestamp": _now()}})
            await self._store(key, marked, "MODIFIED")
            return marked
        self._revision += 1
        gone = merge_patch(current, {"metadata": {"resourceVersion": str(self._revision)}})
        self._objects[key].delete()
        self._keys[key[0]].discard(key)
        await self._emit(key[0], {"type": "DELETED", "object": gone})
        await self._collect_garbage(current["metadata"]["uid"])
        return gone

    async def _collect_garbage(self, uid: str) -> None:
        """Delete, in the background, every object whose owner this was (as the API server's GC does)."""
        dependents = [
            (key, obj.raw) for key, obj in list(self._objects.items())
            if not obj.deleted and any(ref.get("uid") == uid for ref in obj.raw["metadata"].get("ownerReferences", []))
        ]
        for key, body in dependents:
            await self._delete(key, body)

    async def _store(self, key: tuple, body: dict[str, Any], event_type: str) -> None:
        self._revision += 1
        body["metadata"]["resourceVersion"] = str(self._revision)
        if key in self._objects:
            self._objects[key].create(body)
        else:
            self._objects[key] = body
        self._keys.setdefault(key[0], set()).add(key)
        await self._emit(key[0], {"type": event_type, "object": copy.deepcopy(body)})

    async def _emit(self, resource: references.resource, event: dict[str, Any]) -> None:
        self._changes.append((self._revision, resource, event))
        await self._buses[resource].put(event)

    async def _control(self, key: tuple, body: dict[str, Any]) -> None:
        """The Deployment controller: report the current generation as fully rolled out."""
        if key[0] != DEPLOYMENTS or not self.complete_rollouts:
            return
        replicas = body.get("spec", {}).get("replicas", 1)
        status = {"observedGeneration": body["metadata"]["generation"], "replicas": replicas,
                  "updatedReplicas": replicas, "readyReplicas": replicas, "availableReplicas": replicas}
        if body.get("status") != status:
            await self._store(key, {**copy.deepcopy(body), "status": status}, "MODIFIED")

    async def finish_rollouts(self) -> None:
        """Complete every pending rollout now, and each later one at once (see `complete_rollouts`)."""
        self.complete_rollouts = True
        async with self._lock:
            for key, obj in list(self._objects.items()):
                if key[0] == DEPLOYMENTS and not obj.deleted:
                    await self._control(key, obj.raw)

    # -- reads --------------------------------------------------------------------------------------

    def _visible(self, request: rendering.Request, resource: references.resource, body: dict[str, Any]) -> bool:
        meta = body.get("metadata", {})
        return (resource == request.resource
                and (request.namespace is None or meta.get("namespace") == request.namespace)
                and (request.name is None or meta.get("name") == request.name)
                and matches(meta.get("labels") or {}, request.params.get("labelSelector", "")))

    async def _serve_fetch(self, request: rendering.Request) -> rendering.Payload:
        if request.resource.plural == "secrets" and (request.namespace, request.name) in self.forbidden_secrets:
            raise k8s.KubernetesError(403, "Forbidden", f'secrets "{request.name}" is forbidden: User '
                                      f'"system:serviceaccount:ops:bounce-operator" cannot get resource "secrets" '
                                      f'in API group "" in the namespace "{request.namespace}"')
        key = (request.resource, request.namespace, request.name)
        obj = self._objects[key] if key in self._objects else None
        if obj is None or obj.deleted:
            raise k8s.KubernetesObjectNotFoundError()
        return obj.raw

    async def _serve_list(self, request: rendering.Request) -> rendering.Payload:
        if request.resource not in self.resources:
            raise k8s.KubernetesResourceNotFoundError()
        async with self._lock:
            bodies = (self._objects[key].raw for key in self._keys.get(request.resource, ()))
            items = [body for body in bodies if self._visible(request, request.resource, body)]
            return {"kind": "List", "metadata": {"resourceVersion": str(self._revision)}, "items": items}

    async def _serve_watch(self, request: rendering.Request) -> AsyncIterator[rendering.Payload]:
        yield b""
        resource = request.resource
        assert resource is not None
        since = request.params.get("resourceVersion")
        async with self._lock:
            marker = await self._buses[resource].mark()
            if since:  # continue after that version, as a real watch does
                backlog = [event for revision, res, event in self._changes
                           if revision > int(since) and self._visible(request, res, event["object"])]
            else:
                bodies = (self._objects[key].raw for key in self._keys.get(resource, ()))
                backlog = [{"type": "ADDED", "object": body} for body in bodies if self._visible(request, resource, body)]
        try:
            for event in backlog:
                yield event
            async for event in self._buses[resource].stream(since=marker):
                if self._visible(request, resource, event["object"]):
                    yield event
        finally:
            await self._buses[resource].unmark(marker)
