"""The real operator (a `bounce-operator` process) against the emulated cluster: lifecycle scenarios.

Every test has its own namespace in one cluster served by one operator; waits poll for a condition
with a deadline (`eventually`), never sleep.
"""

from __future__ import annotations

from typing import Any

from .cluster import Cluster
from .conftest import Api, Operator, bounceconfig, condition, create_secrets, eventually
from .schemas import schema_errors

MAILBOX = {"name": "returns", "host": "pop.example.com", "auth": "none", "scanInterval": "15m"}


async def wait_ready(api: Api, namespace: str, name: str, generation: int = 1) -> dict[str, Any]:
    async def ready() -> dict[str, Any] | None:
        body = await api.bounceconfig(namespace, name)
        ok = condition(body, "Ready").get("status") == "True" and body["status"].get("observedGeneration") == generation
        return body if ok else None

    return await eventually(ready, what=f"{namespace}/{name} Ready at generation {generation}")


async def ready_config(api: Api, namespace: str) -> dict[str, Any]:
    """The Secrets and a BounceConfig `mail` with one mailbox, once the operator reports it Ready."""
    await create_secrets(api, namespace)
    await api.create(bounceconfig("mail", namespace, mailboxes=[MAILBOX]))
    return await wait_ready(api, namespace, "mail")


async def wait_condition(api: Api, namespace: str, type_: str, **wanted: str) -> dict[str, Any]:
    """BounceConfig `mail`'s condition `type_` once its fields have the `wanted` values."""
    async def matching() -> dict[str, Any]:
        found = condition(await api.bounceconfig(namespace, "mail"), type_)
        return found if all(found.get(key) == value for key, value in wanted.items()) else {}

    return await eventually(matching, what=f"{namespace}/mail {type_} with {wanted}")


async def wait_degraded(api: Api, namespace: str, name: str) -> dict[str, Any]:
    async def degraded() -> dict[str, Any]:
        return condition(await api.bounceconfig(namespace, name), "Degraded")

    return await eventually(degraded, what=f"{namespace}/{name} to report a Degraded condition")


async def wait_event(api: Api, namespace: str, type_: str, reason: str, *parts: str, count: int = 1) -> None:
    """Wait until `count` Events of this type and reason about BounceConfig `mail` name every one of `parts`."""
    async def posted() -> list[str]:
        found = [message for t, r, name, message in api.events(namespace)
                 if (t, r, name) == (type_, reason, "mail") and all(part in message for part in parts)]
        return found if len(found) >= count else []

    await eventually(posted, what=f"{count} {type_} {reason} Event(s) naming {parts} in {namespace}")


async def child(api: Api, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
    return await api.get(api_version, kind, namespace, name)


async def test_a_bounceconfig_gets_its_children_and_a_ready_status(api: Api, operator: Operator, namespace: str) -> None:
    await create_secrets(api, namespace)
    spec = {"mailboxes": [MAILBOX, {**MAILBOX, "name": "fbl", "scanInterval": "24h"}],
            "service": {"ingress": {"enabled": True, "host": "bounces.example.com"}}}
    created = await api.create(bounceconfig("mail", namespace, **spec))

    body = await wait_ready(api, namespace, "mail")
    status = body["status"]
    assert status["url"] == "http://bounces.example.com"
    assert status["mailboxCount"] == 2
    assert status["mailboxes"] == [{"name": "returns", "schedule": "*/15 * * * *"},
                                   {"name": "fbl", "schedule": "0 0 * * *"}]
    assert condition(body, "Ready")["reason"] == "Available"
    assert condition(body, "Degraded") | {"lastTransitionTime": None} == {
        "type": "Degraded", "status": "False", "reason": "Reconciled", "message": "every child matches the spec",
        "observedGeneration": 1, "lastTransitionTime": None}

    children = [("v1", "ConfigMap", "mail-config"), ("apps/v1", "Deployment", "mail"), ("v1", "Service", "mail"),
                ("networking.k8s.io/v1", "Ingress", "mail"), ("batch/v1", "CronJob", "mail-returns"),
                ("batch/v1", "CronJob", "mail-fbl"), ("monitoring.coreos.com/v1", "ServiceMonitor", "mail"),
                ("monitoring.coreos.com/v1", "PrometheusRule", "mail")]
    for api_version, kind, name in children:
        obj = await child(api, api_version, kind, namespace, name)
        assert obj is not None, f"{kind} {name} missing"
        (owner,) = obj["metadata"]["ownerReferences"]
        assert owner["uid"] == created["metadata"]["uid"] and owner["controller"] is True

    await wait_event(api, namespace, "Normal", "Created", "ConfigMap mail-config", "Deployment mail", "Service mail",
                     "Ingress mail", "CronJob mail-returns", "CronJob mail-fbl", "ServiceMonitor mail",
                     "PrometheusRule mail")
    assert not [e for e in api.events(namespace) if e[1] in ("Updated", "Deleted") or e[0] == "Warning"]
    sources = {e["source"]["component"] for (resource, ns, _), e in api.cluster.objects.items()
               if resource.plural == "events" and ns == namespace}
    assert sources == {"bounce-operator"}


async def test_ready_follows_the_rollout(api: Api, cluster: Cluster, operator: Operator, namespace: str) -> None:
    cluster.complete_rollouts = False  # the Deployment controller is slow today
    try:
        await create_secrets(api, namespace)
        await api.create(bounceconfig("mail", namespace))

        ready = await wait_condition(api, namespace, "Ready", reason="Progressing")  # while the rollout is pending
        assert ready["status"] == "False"
        assert ready["message"] == "the Deployment controller has not seen the latest spec yet"
        assert condition(await api.bounceconfig(namespace, "mail"), "Degraded")["status"] == "False"  # nothing wrong
    finally:
        await cluster.finish_rollouts()
    body = await wait_ready(api, namespace, "mail")
    ready = condition(body, "Ready")
    assert (ready["reason"], ready["message"]) == ("Available", "2/2 replicas available")


async def test_a_failed_rollout_is_reported_until_it_recovers(api: Api, cluster: Cluster, operator: Operator,
                                                             namespace: str) -> None:
    cluster.complete_rollouts = False
    try:
        await create_secrets(api, namespace)
        await api.create(bounceconfig("mail", namespace))
        await eventually(lambda: child(api, "apps/v1", "Deployment", namespace, "mail"), what="the Deployment")
        # What the Deployment controller writes once progressDeadlineSeconds passes (a bad image, say).
        await api.patch("apps/v1", "Deployment", namespace, "mail", {"status": {
            "observedGeneration": 1, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 0, "conditions": [
                {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                 "message": 'ReplicaSet "mail-5d8c" has timed out progressing.'}]}}, subresource="status")
        degraded = await wait_condition(api, namespace, "Degraded", status="True")  # once the rollout failed
        assert degraded["reason"] == "RolloutFailed"
        assert degraded["message"] == 'Deployment mail: ReplicaSet "mail-5d8c" has timed out progressing.'
        assert condition(await api.bounceconfig(namespace, "mail"), "Ready")["reason"] == "RolloutFailed"
        await wait_event(api, namespace, "Warning", "RolloutFailed", "has timed out progressing")
    finally:
        await cluster.finish_rollouts()
    body = await wait_ready(api, namespace, "mail")
    assert condition(body, "Degraded")["status"] == "False"


async def test_spec_changes_reach_the_children(api: Api, operator: Operator, namespace: str) -> None:
    await ready_config(api, namespace)
    before = await child(api, "apps/v1", "Deployment", namespace, "mail")

    await api.patch("bounce-operator.io/v1alpha1", "BounceConfig", namespace, "mail", {"spec": {
        "mailboxes": [{**MAILBOX, "scanInterval": "1h"}, {**MAILBOX, "name": "fbl"}],
        "service": {"replicas": 3, "ingress": {"enabled": True, "host": "bounces.example.com"}},
    }})
    body = await wait_ready(api, namespace, "mail", generation=2)
    assert body["status"]["mailboxes"] == [{"name": "returns", "schedule": "0 * * * *"},
                                           {"name": "fbl", "schedule": "*/15 * * * *"}]
    assert (await child(api, "batch/v1", "CronJob", namespace, "mail-returns"))["spec"]["schedule"] == "0 * * * *"
    assert await child(api, "batch/v1", "CronJob", namespace, "mail-fbl") is not None
    assert await child(api, "networking.k8s.io/v1", "Ingress", namespace, "mail") is not None
    after = await child(api, "apps/v1", "Deployment", namespace, "mail")
    assert after["spec"]["replicas"] == 3
    annotation = "bounce-operator.io/checksum"
    # The config changed, so the pods roll.
    assert after["spec"]["template"]["metadata"]["annotations"][annotation] != \
        before["spec"]["template"]["metadata"]["annotations"][annotation]
    await wait_event(api, namespace, "Normal", "Updated", "ConfigMap mail-config", "Deployment mail",
                     "CronJob mail-returns")
    await wait_event(api, namespace, "Normal", "Created", "Ingress mail", "CronJob mail-fbl")

    await api.patch("bounce-operator.io/v1alpha1", "BounceConfig", namespace, "mail", {"spec": {
        "mailboxes": [{**MAILBOX, "name": "fbl"}], "service": {"ingress": {"enabled": False}},
    }})
    body = await wait_ready(api, namespace, "mail", generation=3)
    assert body["status"]["mailboxCount"] == 1
    assert await child(api, "batch/v1", "CronJob", namespace, "mail-returns") is None
    assert await child(api, "networking.k8s.io/v1", "Ingress", namespace, "mail") is None
    assert body["status"]["url"] == f"http://mail.{namespace}.svc"
    await wait_event(api, namespace, "Normal", "Deleted", "CronJob mail-returns", "Ingress mail")


async def test_switching_both_metrics_children_off_deletes_them(api: Api, operator: Operator, namespace: str) -> None:
    # What docs/helm.md asks of a BounceConfig once the chart's own monitoring is on.
    await ready_config(api, namespace)
    for kind in ("ServiceMonitor", "PrometheusRule"):
        assert await child(api, "monitoring.coreos.com/v1", kind, namespace, "mail") is not None

    await api.patch("bounce-operator.io/v1alpha1", "BounceConfig", namespace, "mail", {"spec": {
        "service": {"metrics": {"serviceMonitor": False, "prometheusRule": False}}}})
    await wait_ready(api, namespace, "mail", generation=2)
    await wait_event(api, namespace, "Normal", "Deleted", "ServiceMonitor mail", "PrometheusRule mail")
    for kind in ("ServiceMonitor", "PrometheusRule"):
        assert await child(api, "monitoring.coreos.com/v1", kind, namespace, "mail") is None


async def test_fields_taken_out_of_the_spec_leave_the_children(api: Api, operator: Operator, namespace: str) -> None:
    await create_secrets(api, namespace)
    ingress = {"enabled": True, "host": "bounces.example.com", "className": "nginx", "tlsSecretName": "bounces-tls",
               "annotations": {"example.com/keep": "1", "example.com/drop": "2"}}
    resources = {"requests": {"cpu": "100m"}, "limits": {"memory": "256Mi"}}
    await api.create(bounceconfig("mail", namespace, service={"ingress": ingress, "resources": resources}))
    await wait_ready(api, namespace, "mail")
    await api.patch("networking.k8s.io/v1", "Ingress", namespace, "mail", {"metadata": {"labels": {"team": "mail"}}})

    await api.patch("bounce-operator.io/v1alpha1", "BounceConfig", namespace, "mail", {"spec": {"service": {
        "ingress": {"className": None, "tlsSecretName": None, "annotations": {"example.com/drop": None}},
        "resources": {"limits": None}}}})
    body = await wait_ready(api, namespace, "mail", generation=2)
    assert body["status"]["url"] == "http://bounces.example.com"

    written = await child(api, "networking.k8s.io/v1", "Ingress", namespace, "mail")
    assert "tls" not in written["spec"] and "ingressClassName" not in written["spec"]
    assert {k: v for k, v in written["metadata"]["annotations"].items() if k.startswith("example.com/")} == \
        {"example.com/keep": "1"}
    assert written["metadata"]["labels"]["team"] == "mail"  # someone else's field: left alone
    deployment = await child(api, "apps/v1", "Deployment", namespace, "mail")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["resources"] == {"requests": {"cpu": "100m"}}


async def test_scans_reported_by_the_cronjob_reach_the_status(api: Api, operator: Operator, namespace: str) -> None:
    await ready_config(api, namespace)
    # What the CronJob controller writes when it starts a Job, and when one completes.
    times = {"lastScheduleTime": "2026-03-01T10:15:00Z", "lastSuccessfulTime": "2026-03-01T10:15:07Z"}
    await api.patch("batch/v1", "CronJob", namespace, "mail-returns", {"status": times}, subresource="status")

    async def reported() -> list[dict[str, Any]]:
        mailboxes = (await api.bounceconfig(namespace, "mail"))["status"]["mailboxes"]
        return mailboxes if "lastSuccessfulTime" in mailboxes[0] else []

    assert await eventually(reported, what="the scan times in status") == [
        {"name": "returns", "schedule": "*/15 * * * *", **times}]


async def test_deleted_and_edited_children_are_restored(api: Api, operator: Operator, namespace: str) -> None:
    await ready_config(api, namespace)
    deployment = await child(api, "apps/v1", "Deployment", namespace, "mail")

    await api.delete("apps/v1", "Deployment", namespace, "mail")
    restored = await eventually(lambda: child(api, "apps/v1", "Deployment", namespace, "mail"), what="Deployment back")
    assert restored["metadata"]["uid"] != deployment["metadata"]["uid"]
    assert restored["spec"] == deployment["spec"]
    await wait_event(api, namespace, "Normal", "Created", "Deployment mail", count=2)  # first made, then restored

    await api.patch("batch/v1", "CronJob", namespace, "mail-returns", {
        "metadata": {"labels": {"team": "mail"}}, "spec": {"schedule": "0 3 * * *"}})

    async def schedule_restored() -> dict[str, Any] | None:
        cronjob = await child(api, "batch/v1", "CronJob", namespace, "mail-returns")
        return cronjob if cronjob["spec"]["schedule"] == "*/15 * * * *" else None

    cronjob = await eventually(schedule_restored, what="the CronJob's schedule restored")
    assert cronjob["metadata"]["labels"]["team"] == "mail"  # a merge patch keeps what it does not own
    await wait_event(api, namespace, "Normal", "Updated", "CronJob mail-returns")

    await api.patch("v1", "ConfigMap", namespace, "mail-config", {"data": {"bounceconfig.yaml": "{}"}})

    async def config_restored() -> bool:
        config_map = await child(api, "v1", "ConfigMap", namespace, "mail-config")
        return config_map["data"]["bounceconfig.yaml"] != "{}"

    await eventually(config_restored, what="the ConfigMap restored")


async def test_a_missing_secret_degrades_until_it_is_created(api: Api, operator: Operator, namespace: str) -> None:
    await api.secret(namespace, "bounce-api", {"admin": "admin-token"})
    await api.create(bounceconfig("mail", namespace))

    problem = await wait_degraded(api, namespace, "mail")
    assert problem["status"] == "True" and problem["reason"] == "SecretMissing"
    assert problem["message"] == "Secret bounce-db not found (referenced by spec.database.url)"
    ready = condition(await api.bounceconfig(namespace, "mail"), "Ready")
    assert ready["status"] == "False" and ready["reason"] == "SecretMissing"
    await wait_event(api, namespace, "Warning", "SecretMissing", "Secret bounce-db not found")
    # The children exist anyway: the kubelet starts the pods once the Secret appears.
    deployment = await child(api, "apps/v1", "Deployment", namespace, "mail")
    checksum = deployment["spec"]["template"]["metadata"]["annotations"]["bounce-operator.io/checksum"]

    await api.secret(namespace, "bounce-db", {"url": "postgresql://bounce@db/bounce"})
    body = await wait_ready(api, namespace, "mail")
    assert condition(body, "Degraded")["status"] == "False"
    deployment = await child(api, "apps/v1", "Deployment", namespace, "mail")
    rolled = deployment["spec"]["template"]["metadata"]["annotations"]["bounce-operator.io/checksum"]
    assert rolled != checksum

    # A changed value rolls the pods again.
    await api.patch("v1", "Secret", namespace, "bounce-db", {"data": {"url": "cG9zdGdyZXNxbDovL290aGVy"}})

    async def rolled_again() -> bool:
        deployment = await child(api, "apps/v1", "Deployment", namespace, "mail")
        return deployment["spec"]["template"]["metadata"]["annotations"]["bounce-operator.io/checksum"] != rolled

    await eventually(rolled_again, what="a rollout after the Secret changed")


async def test_a_secret_the_operator_may_not_read_is_reported(api: Api, cluster: Cluster, operator: Operator,
                                                             namespace: str) -> None:
    await create_secrets(api, namespace)
    cluster.forbidden_secrets.add((namespace, "bounce-db"))  # a Role that leaves Secrets out, say
    try:
        await api.create(bounceconfig("mail", namespace))
        problem = await wait_degraded(api, namespace, "mail")
        assert (problem["status"], problem["reason"]) == ("True", "SecretForbidden")
        assert problem["message"].startswith("Secret bounce-db cannot be read by the operator (")
        assert 'cannot get resource "secrets"' in problem["message"]
    finally:
        cluster.forbidden_secrets.discard((namespace, "bounce-db"))
    await api.patch("bounce-operator.io/v1alpha1", "BounceConfig", namespace, "mail", {"spec": {"service": {"replicas": 1}}})
    body = await wait_ready(api, namespace, "mail", generation=2)
    assert condition(body, "Degraded")["status"] == "False"


async def test_an_invalid_schedule_is_reported_and_nothing_is_applied(api: Api, operator: Operator, namespace: str) -> None:
    await create_secrets(api, namespace)
    # The CRD's CEL rule refuses 7m on a real API server; the emulator lets it through, as an old one would.
    await api.create(bounceconfig("mail", namespace, mailboxes=[{**MAILBOX, "scanInterval": "7m"}]))

    problem = await wait_degraded(api, namespace, "mail")
    assert problem["reason"] == "InvalidSchedule"
    assert problem["message"].startswith("spec.mailboxes[0].scanInterval: scanInterval must be whole minutes dividing")
    assert await child(api, "apps/v1", "Deployment", namespace, "mail") is None
    await wait_event(api, namespace, "Warning", "InvalidSchedule", "spec.mailboxes[0].scanInterval")


async def test_a_spec_without_a_database_is_reported(api: Api, operator: Operator, namespace: str) -> None:
    await create_secrets(api, namespace)
    body = bounceconfig("mail", namespace)
    del body["spec"]["database"]  # fine on a laptop with DATABASE_URL; pods have no such variable
    await api.create(body)

    problem = await wait_degraded(api, namespace, "mail")
    assert (problem["reason"], problem["message"]) == (
        "InvalidSpec", "spec.database.url: is required in a cluster (the pods have no DATABASE_URL)")
    await wait_event(api, namespace, "Warning", "InvalidSpec", "spec.database.url")


async def test_a_name_taken_by_someone_else_is_left_alone(api: Api, operator: Operator, namespace: str) -> None:
    await create_secrets(api, namespace)
    theirs = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "mail", "namespace": namespace},
              "spec": {"ports": [{"port": 5432}]}}
    await api.create(theirs)
    await api.create(bounceconfig("mail", namespace))

    problem = await wait_degraded(api, namespace, "mail")
    assert problem["reason"] == "NameConflict"
    assert "Service mail already exists and is not controlled by BounceConfig mail" in problem["message"]
    assert (await child(api, "v1", "Service", namespace, "mail"))["spec"] == {"ports": [{"port": 5432}]}
    await wait_event(api, namespace, "Warning", "NameConflict", "Service mail already exists")
    assert await child(api, "apps/v1", "Deployment", namespace, "mail") is not None


async def test_a_deleted_bounceconfig_is_not_resurrected(api: Api, operator: Operator, namespace: str) -> None:
    await ready_config(api, namespace)

    # The emulator's garbage collector deletes the children by their owner reference, as the API server's does.
    await api.delete("bounce-operator.io/v1alpha1", "BounceConfig", namespace, "mail")
    gone = [("apps/v1", "Deployment", "mail"), ("v1", "ConfigMap", "mail-config"), ("batch/v1", "CronJob", "mail-returns")]

    async def all_gone() -> bool:
        return all([await child(api, v, k, namespace, n) is None for v, k, n in gone])

    await eventually(all_gone, what="the children collected")
    # Once a later BounceConfig is Ready, the operator has handled the deletions: nothing came back.
    await api.create(bounceconfig("later", namespace))
    await wait_ready(api, namespace, "later")
    assert await all_gone()


def test_what_the_operator_wrote_is_valid_for_kubernetes(cluster: Cluster, operator: Operator) -> None:
    """The objects the tests above left in the cluster, as the operator wrote them, pass the real schemas."""
    written = [obj.raw for obj in list(cluster.objects.values()) if not obj.deleted and
               (obj.raw.get("metadata", {}).get("labels") or {}).get("app.kubernetes.io/managed-by") == "bounce-operator"]
    kinds = {body["kind"] for body in written}
    assert kinds == {"ConfigMap", "Deployment", "Service", "Ingress", "CronJob", "ServiceMonitor", "PrometheusRule"}
    assert {body["kind"]: schema_errors(body) for body in written if schema_errors(body)} == {}


def rbac_request(request: Any) -> tuple[str, str, str] | None:
    """(API group, resource[/subresource], verb) of an API request, as RBAC sees it."""
    if request.resource is None or not request.resource.plural:
        return None  # discovery, allowed to every authenticated user
    resource = request.resource.plural + (f"/{request.subresource}" if request.subresource else "")
    method = request.method.value
    if method == "GET":
        verb = "watch" if request.params.get("watch") == "true" else "get" if request.name else "list"
    else:
        verb = {"POST": "create", "PATCH": "patch", "DELETE": "delete", "PUT": "update"}[method]
    return request.resource.group, resource, verb


def operator_requests(cluster: Cluster) -> list[Any]:
    """The requests the operator made (the tests' own come from kmock's client)."""
    return [r for r in cluster if not r.headers.get("User-Agent", "").startswith("kmock/")]


def allowed_by(role: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {(group, resource, verb) for rule in role["rules"] for group in rule["apiGroups"]
            for resource in rule["resources"] for verb in rule["verbs"]}


def test_the_operator_stays_within_its_rbac(cluster: Cluster, operator: Operator) -> None:
    """Every request the operator made in the tests above is allowed by the ClusterRole in deploy/."""
    from bounce_operator.manifests import operator_manifests

    (role,) = [m for m in operator_manifests() if m["kind"] == "ClusterRole"]
    made = {rbac_request(r) for r in operator_requests(cluster)} - {None}
    assert len(made) > 10
    assert made <= allowed_by(role), made - allowed_by(role)
    assert not [r for r in operator_requests(cluster) if r.method.value == "PUT"]  # create or merge-patch only
