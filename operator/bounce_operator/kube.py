"""The few Kubernetes API calls the operator makes: read, create, merge-PATCH, delete, list (never PUT).

Built on the official client's transport (kubeconfig, in-cluster token rotation, exec plugins) but
speaking plain JSON dicts, so the reconciler works with the same manifests the render functions return.
The client is synchronous; calls run in a small thread pool so the operator's event loop never blocks.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Mapping
from urllib.parse import quote

PLURALS = {
    "ConfigMap": "configmaps",
    "Secret": "secrets",
    "Service": "services",
    "Deployment": "deployments",
    "Ingress": "ingresses",
    "CronJob": "cronjobs",
    "ServiceMonitor": "servicemonitors",
    "PrometheusRule": "prometheusrules",
    "BounceConfig": "bounceconfigs",
}
MERGE_PATCH = "application/merge-patch+json"
WORKERS = 16  # concurrent API calls; the client is synchronous, so each takes a thread


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


def path(api_version: str, kind: str, namespace: str | None, name: str | None = None,
         subresource: str | None = None) -> str:
    """The URL of an object, or of a collection (no name) in one namespace or in all (namespace None)."""
    parts = ["/api/v1" if api_version == "v1" else f"/apis/{api_version}"]
    if namespace is not None:
        parts += ["namespaces", quote(namespace)]
    parts.append(PLURALS[kind])
    if name is not None:
        parts.append(quote(name))
    if subresource is not None:
        parts.append(subresource)
    return "/".join(parts)


def path_of(manifest: Mapping[str, Any]) -> str:
    meta = manifest["metadata"]
    return path(manifest["apiVersion"], manifest["kind"], meta["namespace"], meta["name"])


class Kube:
    def __init__(self, api_client: Any, *, discovery_ttl: float = 60.0) -> None:
        self._api = api_client
        self._pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="kube")
        self._discovery_ttl = discovery_ttl
        self._discovered: dict[str, tuple[float, frozenset[str]]] = {}

    @classmethod
    def from_environment(cls) -> Kube:
        """In a pod: the service account; elsewhere: $KUBECONFIG (read now, not at import) or ~/.kube/config."""
        from kubernetes import client, config

        configuration = client.Configuration()
        configuration.connection_pool_maxsize = WORKERS  # one connection per worker thread, reused
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config(client_configuration=configuration)
        else:
            config.load_kube_config(config_file=os.environ.get("KUBECONFIG"), client_configuration=configuration)
        return cls(client.ApiClient(configuration))

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _call(self, method: str, url: str, query: list[tuple[str, str]] | None, body: Any,
              content_type: str | None) -> Any:
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        method, full_url, headers, body, _ = self._api.param_serialize(
            method, url, query_params=query or [], header_params=headers, body=body, auth_settings=["BearerToken"]
        )
        response = self._api.call_api(method, full_url, header_params=headers, body=body, _request_timeout=(5, 30))
        data = response.read()
        payload = json.loads(data) if data else None
        if response.status >= 400:
            message = payload.get("message", "") if isinstance(payload, dict) else data.decode(errors="replace")
            raise ApiError(response.status, message)
        return payload

    async def request(self, method: str, url: str, *, query: list[tuple[str, str]] | None = None,
                      body: Any = None, content_type: str | None = None) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._call, method, url, query, body, content_type)

    async def get(self, url: str) -> dict[str, Any] | None:
        try:
            return await self.request("GET", url)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def create(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        meta = manifest["metadata"]
        url = path(manifest["apiVersion"], manifest["kind"], meta["namespace"])
        return await self.request("POST", url, body=manifest, content_type="application/json")

    async def patch(self, url: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        return await self.request("PATCH", url, body=patch, content_type=MERGE_PATCH)

    async def delete(self, url: str) -> None:
        """Delete; children go in the background (the API server's garbage collector removes their pods)."""
        try:
            await self.request("DELETE", url, body={"propagationPolicy": "Background"},
                               content_type="application/json")
        except ApiError as exc:
            if exc.status != 404:
                raise

    async def list(self, api_version: str, kind: str, namespace: str | None,
                   labels: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        query = [("labelSelector", ",".join(f"{k}={v}" for k, v in sorted(labels.items())))] if labels else []
        listing = await self.request("GET", path(api_version, kind, namespace), query=query)
        return [{"apiVersion": api_version, "kind": kind, **item} for item in listing.get("items", [])]

    def forget_discovery(self) -> None:
        """Ask again next time: a CRD (the Prometheus operator's, say) may have been installed since."""
        self._discovered.clear()

    async def served_kinds(self, api_version: str) -> frozenset[str]:
        """The kinds an API group version serves, or nothing if the cluster lacks it (cached for a while)."""
        now = time.monotonic()
        cached = self._discovered.get(api_version)
        if cached and now - cached[0] < self._discovery_ttl:
            return cached[1]
        try:
            listing = await self.request("GET", f"/apis/{api_version}")
        except ApiError as exc:
            if exc.status not in (403, 404, 503):
                raise
            listing = {}
        kinds = frozenset(r["kind"] for r in listing.get("resources", []) if "/" not in r["name"])
        self._discovered[api_version] = (now, kinds)
        return kinds
