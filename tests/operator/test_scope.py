"""A namespaced operator on a cluster without the Prometheus operator: its namespaces only, no monitoring."""

from __future__ import annotations

from pathlib import Path
from typing import AsyncIterator

import kmock
import pytest
from bounce_operator.manifests import operator_manifests

from .cluster import BUILTIN, MONITORING, Cluster
from .conftest import Api, Operator, bounceconfig, create_secrets, eventually
from .test_e2e import allowed_by, child, operator_requests, rbac_request, wait_ready


@pytest.fixture(scope="module")
async def cluster() -> AsyncIterator[Cluster]:
    async with Cluster() as emulator, kmock.Server(emulator):
        emulator.serve(BUILTIN)
        yield emulator


async def test_namespaced_operator_serves_only_its_namespaces(api: Api, cluster: Cluster, tmp_path: Path) -> None:
    operator = await Operator(cluster, tmp_path, "--namespace", "team-a", "--namespace", "team-b").start()
    try:
        for namespace in ("elsewhere", "team-a", "team-b"):
            await create_secrets(api, namespace)
            await api.create(bounceconfig("mail", namespace))
        for namespace in ("team-a", "team-b"):
            await wait_ready(api, namespace, "mail")
            # No ServiceMonitor CRD in this cluster, so none is attempted (the spec asks for one by default).
            assert await child(api, "monitoring.coreos.com/v1", "ServiceMonitor", namespace, "mail") is None
        assert "status" not in await api.bounceconfig("elsewhere", "mail")
        assert await child(api, "apps/v1", "Deployment", "elsewhere", "mail") is None
        assert not [w for w in api.writes() if "monitoring.coreos.com" in w]
    finally:
        await operator.stop()
    log = operator.log()
    assert "Traceback" not in log and "Not enough permissions" not in log

    # What a Role in each served namespace allows, and nothing cluster-wide but discovery.
    (role, *_) = [m for m in operator_manifests(watch_namespaces=["team-a"]) if m["kind"] == "Role"]
    requests = operator_requests(cluster)
    made = {rbac_request(r) for r in requests} - {None}
    assert len(made) > 5 and made <= allowed_by(role), made - allowed_by(role)
    outside = {f"{r.method.value} {r.url.path}" for r in requests
               if rbac_request(r) is not None and r.namespace not in ("team-a", "team-b")}
    assert outside == set()


async def test_monitoring_crds_installed_later_are_used_at_the_next_resync(api: Api, cluster: Cluster,
                                                                          tmp_path: Path) -> None:
    operator = await Operator(cluster, tmp_path, "--namespace", "team-c", "--resync-interval", "0.5").start()
    try:
        await create_secrets(api, "team-c")
        await api.create(bounceconfig("mail", "team-c"))
        await wait_ready(api, "team-c", "mail")
        assert await child(api, "monitoring.coreos.com/v1", "ServiceMonitor", "team-c", "mail") is None

        cluster.serve(MONITORING)  # the Prometheus operator's CRDs arrive
        for kind in ("ServiceMonitor", "PrometheusRule"):
            await eventually(lambda: child(api, "monitoring.coreos.com/v1", kind, "team-c", "mail"),
                             what=f"a {kind} once the CRD exists")
    finally:
        await operator.stop()
    assert "Traceback" not in operator.log()


async def test_the_operators_image_settings_reach_what_it_deploys(api: Api, cluster: Cluster, tmp_path: Path) -> None:
    # What the chart passes from image.repository/tag and imagePullSecrets: a mirrored, private registry.
    mirror = "registry.internal/mirror/bounce-operator:0.1.0"
    operator = await Operator(cluster, tmp_path, "--namespace", "team-d", "--service-image", mirror,
                              "--image-pull-secret", "regcred").start()
    try:
        await create_secrets(api, "team-d")
        mailbox = {"name": "returns", "host": "pop.example.com", "auth": "none", "scanInterval": "15m"}
        await api.create(bounceconfig("mail", "team-d", mailboxes=[mailbox]))
        await wait_ready(api, "team-d", "mail")
        deployment = await child(api, "apps/v1", "Deployment", "team-d", "mail")
        cronjob = await child(api, "batch/v1", "CronJob", "team-d", "mail-returns")
        for pod in (deployment["spec"]["template"]["spec"], cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]):
            assert pod["containers"][0]["image"] == mirror
            assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    finally:
        await operator.stop()
