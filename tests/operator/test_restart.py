"""A restarted operator picks up where it left off: changes made while it was down, and nothing else."""

from __future__ import annotations

from pathlib import Path

from .cluster import Cluster
from .conftest import Api, Operator, bounceconfig, create_secrets
from .test_e2e import MAILBOX, child, wait_ready


async def test_a_restarted_operator_resumes_without_redoing_work(api: Api, cluster: Cluster, tmp_path: Path) -> None:
    namespace = "restart"
    first = await Operator(cluster, tmp_path, "--namespace", namespace).start()
    try:
        await create_secrets(api, namespace)
        await api.create(bounceconfig("steady", namespace, mailboxes=[MAILBOX]))
        await api.create(bounceconfig("changed", namespace))
        await wait_ready(api, namespace, "steady")
        await wait_ready(api, namespace, "changed")
    finally:
        await first.stop()

    await api.patch("bounce-operator.io/v1alpha1", "BounceConfig", namespace, "changed",
                    {"spec": {"service": {"replicas": 4}}})
    mark = api.request_count()
    steady_events = [e for e in api.events(namespace) if e[2] == "steady"]
    second = await Operator(cluster, tmp_path, "--namespace", namespace).start()
    try:
        await wait_ready(api, namespace, "changed", generation=2)
        assert (await child(api, "apps/v1", "Deployment", namespace, "changed"))["spec"]["replicas"] == 4
        await api.create(bounceconfig("later", namespace))
        await wait_ready(api, namespace, "later")
        writes = api.writes(since=mark)
        assert not [w for w in writes if "/steady" in w or "steady-" in w], writes
        assert f"PATCH /apis/apps/v1/namespaces/{namespace}/deployments/changed" in writes
        assert [e for e in api.events(namespace) if e[2] == "steady"] == steady_events  # nothing done, nothing said
    finally:
        await second.stop()
    assert "Traceback" not in first.log() + second.log()
