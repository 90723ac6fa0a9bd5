"""Operator fixtures: an emulated API server (kmock + `Cluster`) and the real `bounce-operator` process."""

from __future__ import annotations

import asyncio
import base64
import os
import sys
import time
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, TypeVar

import kmock
import pytest
import yaml
from bounce_operator import API_VERSION, KIND
from bounce_operator.kube import path
from bounce_service.devdb import free_port

from .cluster import BUILTIN, MONITORING, Cluster

ROOT = Path(__file__).resolve().parents[2]
OPERATOR = Path(sys.executable).with_name("bounce-operator")
T = TypeVar("T")


class Api:
    """What a user with kubectl does, through the emulator's HTTP API (so watches see every change)."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    async def _call(self, method: str, url: str, body: Any = None, content_type: str = "application/json") -> Any:
        async with self.cluster.request(method, url, json=body, headers={"Content-Type": content_type}) as response:
            payload = await response.json()
            assert response.status < 300, f"{method} {url}: {response.status} {payload.get('message')}"
            return payload

    async def create(self, manifest: dict[str, Any]) -> dict[str, Any]:
        meta = manifest["metadata"]
        return await self._call("POST", path(manifest["apiVersion"], manifest["kind"], meta["namespace"]), manifest)

    async def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        async with self.cluster.get(path(api_version, kind, namespace, name)) as response:
            return await response.json() if response.status == 200 else None

    async def patch(self, api_version: str, kind: str, namespace: str, name: str, patch: dict[str, Any],
                    subresource: str | None = None) -> Any:
        return await self._call("PATCH", path(api_version, kind, namespace, name, subresource), patch,
                                "application/merge-patch+json")

    async def delete(self, api_version: str, kind: str, namespace: str, name: str) -> Any:
        return await self._call("DELETE", path(api_version, kind, namespace, name))

    async def bounceconfig(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self.get(API_VERSION, KIND, namespace, name)

    async def secret(self, namespace: str, name: str, data: dict[str, str]) -> dict[str, Any]:
        encoded = {key: base64.b64encode(value.encode()).decode() for key, value in data.items()}
        return await self.create({"apiVersion": "v1", "kind": "Secret",
                                  "metadata": {"name": name, "namespace": namespace}, "data": encoded})

    def writes(self, since: int = 0) -> list[str]:
        """Object writes (not status, not Events) the emulator served after request number `since`."""
        return [
            f"{r.method.value} {r.url.path}" for r in list(self.cluster)[since:]
            if r.method in ("POST", "PATCH", "DELETE", "PUT") and r.subresource != "status"
            and r.resource is not None and r.resource.plural != "events"
        ]

    def request_count(self) -> int:
        return len(list(self.cluster))

    def events(self, namespace: str) -> list[tuple[str, str, str, str]]:
        """(type, reason, involved object's name, message) of every Event posted in `namespace`, oldest first."""
        return [(e["type"], e["reason"], e["involvedObject"]["name"], e["message"])
                for (resource, ns, _), e in list(self.cluster.objects.items())
                if resource.plural == "events" and ns == namespace and not e.deleted]


async def eventually(probe: Callable[[], Awaitable[T]], timeout: float = 20.0, what: str = "") -> T:
    """Poll until `probe` returns something truthy; fail with the last value seen after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or probe}: last value {value!r}")
        await asyncio.sleep(0.05)


def condition(body: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    for item in (body or {}).get("status", {}).get("conditions", []):
        if item["type"] == type_:
            return item
    return {}


class Operator:
    """`bounce-operator` as a separate process against the emulator, as it runs in a cluster."""

    def __init__(self, cluster: Cluster, workdir: Path, *args: str) -> None:
        self.cluster = cluster
        self.workdir = workdir
        self.args = args or ("--all-namespaces",)
        self.log_path = workdir / f"operator-{time.monotonic_ns()}.log"
        self.process: asyncio.subprocess.Process | None = None

    def kubeconfig(self) -> Path:
        server = self.cluster.servers[0]
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": "kmock",
            "clusters": [{"name": "kmock", "cluster": {"server": f"http://{server.host}:{server.port}"}}],
            "users": [{"name": "kmock", "user": {"token": "test-token"}}],
            "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "kmock"}}],
        }
        target = self.workdir / "kubeconfig"
        target.write_text(yaml.safe_dump(config))
        return target

    async def start(self) -> Operator:
        port = free_port()
        env = {key: value for key, value in os.environ.items() if not key.startswith("KUBERNETES_")}
        env["KUBECONFIG"] = str(self.kubeconfig())
        with self.log_path.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                str(OPERATOR), *self.args, "--liveness", f"http://127.0.0.1:{port}/healthz",
                env=env, stdout=log, stderr=log,
            )
        await eventually(lambda: self._alive(port), timeout=30, what="the operator's liveness endpoint")
        return self

    async def _alive(self, port: int) -> bool:
        assert self.process is not None
        if self.process.returncode is not None:
            raise AssertionError(f"the operator exited with {self.process.returncode}:\n{self.log()}")
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            return False
        writer.write(b"GET /healthz HTTP/1.0\r\n\r\n")
        answer = await reader.read()
        writer.close()
        return answer.startswith(b"HTTP/1.1 200") or answer.startswith(b"HTTP/1.0 200")

    async def stop(self) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        self.process.terminate()
        try:
            await asyncio.wait_for(self.process.wait(), timeout=10)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture(scope="module")
async def cluster() -> AsyncIterator[Cluster]:
    """An emulated cluster that serves our CRD, the built-in kinds and the Prometheus operator's CRDs."""
    async with Cluster() as emulator, kmock.Server(emulator):
        emulator.serve(BUILTIN | MONITORING)
        yield emulator


@pytest.fixture(scope="module")
def api(cluster: Cluster) -> Api:
    return Api(cluster)


@pytest.fixture(scope="module")
async def operator(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Operator]:
    process = await Operator(cluster, tmp_path_factory.mktemp("operator")).start()
    yield process
    await process.stop()
    log = process.log()
    assert "Traceback" not in log, f"the operator logged an error:\n{log[-5000:]}"


_namespaces = iter(range(1, 1_000_000))


@pytest.fixture
def namespace() -> str:
    """A fresh namespace per test, so tests sharing one operator cannot see each other's objects."""
    return f"ns{next(_namespaces)}"


def bounceconfig(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    base = {
        "database": {"url": {"secretRef": {"name": "bounce-db", "key": "url"}}},
        "api": {"users": [{"name": "admin", "token": {"secretRef": {"name": "bounce-api", "key": "admin"}},
                           "permissions": ["bounces:get"]}]},
    }
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": name, "namespace": namespace},
            "spec": {**base, **spec}}


async def create_secrets(api: Api, namespace: str) -> None:
    await api.secret(namespace, "bounce-db", {"url": "postgresql://bounce:pw@db/bounce"})
    await api.secret(namespace, "bounce-api", {"admin": "admin-token"})
