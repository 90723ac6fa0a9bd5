"""A restarted operator picks up where it left off: changes made while it was down, and nothing else."""

from __future__ import annotations

from pathlib import Path

from bounce_operator import API_VERSION, KIND

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


async def test_children_left_by_an_operator_stopped_mid_reconcile_are_repaired(
        api: Api, cluster: Cluster, tmp_path: Path) -> None:
    """Children exist but no status yet: each is checked and patched to the spec, not recreated."""
    namespace = "midway"
    await create_secrets(api, namespace)
    owner = await api.create(bounceconfig("mail", namespace))
    reference = {"apiVersion": API_VERSION, "kind": KIND, "name": "mail", "uid": owner["metadata"]["uid"],
                 "controller": True}
    left = await api.create({"apiVersion": "apps/v1", "kind": "Deployment",
                             "metadata": {"name": "mail", "namespace": namespace, "ownerReferences": [reference]},
                             "spec": {"replicas": 7}})
    operator = await Operator(cluster, tmp_path, "--namespace", namespace).start()
    try:
        await wait_ready(api, namespace, "mail")
        deployment = await child(api, "apps/v1", "Deployment", namespace, "mail")
        assert deployment["metadata"]["uid"] == left["metadata"]["uid"]
        assert deployment["spec"]["replicas"] == 2
        updated = [e for e in api.events(namespace) if e[:3] == ("Normal", "Updated", "mail")]
        assert [message for *_, message in updated] == ["Deployment mail"]
        assert not [e for e in api.events(namespace) if e[0] == "Warning"]  # no failed write on the way
    finally:
        await operator.stop()
    assert "Traceback" not in operator.log()
