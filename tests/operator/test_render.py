"""The pure render functions, without a cluster: every child they produce, checked against real schemas."""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path
from typing import Any

import pytest
import yaml
from bounce_operator.alerts import alert_rules
from bounce_operator.refs import SecretKey, all_refs, scanner_refs, service_refs
from bounce_operator.render import (
    CHECKSUM_ANNOTATION,
    Owner,
    PodDefaults,
    checksum,
    config_document,
    cronjob_name,
    render_children,
    render_cronjob,
    render_deployment,
    secret_fingerprint,
    service_url,
)
from bounce_operator.schedule import InvalidSchedule, cron_schedule
from bounce_service.schema import validate_spec

from .pods import pod_specs, restricted_violations
from .schemas import schema_errors

ROOT = Path(__file__).resolve().parents[2]
OWNER = Owner("newsletters", "mail", "0b5e7c3a-0000-4000-8000-000000000001")
MONITORING = frozenset({"ServiceMonitor", "PrometheusRule"})


def full_spec() -> dict[str, Any]:
    spec, violations = validate_spec(yaml.safe_load((ROOT / "examples/bounceconfig-full.yaml").read_text())["spec"])
    assert not violations
    return spec


def minimal_spec() -> dict[str, Any]:
    spec, violations = validate_spec({"database": {"url": {"secretRef": {"name": "db", "key": "url"}}}})
    assert not violations
    return spec


def by_kind(children: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    kinds: dict[str, list[dict[str, Any]]] = {}
    for child in children:
        kinds.setdefault(child["kind"], []).append(child)
    return kinds


def pod_spec(child: dict[str, Any]) -> dict[str, Any]:
    (pod,) = pod_specs(child)
    return pod


def mounted_secrets(child: dict[str, Any]) -> set[str]:
    volumes = {v["name"]: v for v in pod_spec(child)["volumes"]}
    if "secrets" not in volumes:
        return set()
    return {item["path"] for source in volumes["secrets"]["projected"]["sources"] for item in source["secret"]["items"]}


@pytest.mark.parametrize(
    ("interval", "schedule"),
    [("1m", "* * * * *"), ("5m", "*/5 * * * *"), ("15m", "*/15 * * * *"), ("30m", "*/30 * * * *"),
     ("60m", "0 * * * *"), ("1h", "0 * * * *"), ("2h", "0 */2 * * *"), ("6h", "0 */6 * * *"),
     ("12h", "0 */12 * * *"), ("24h", "0 0 * * *"), ("1440m", "0 0 * * *"), ("120s", "*/2 * * * *")],
)
def test_scan_interval_becomes_a_cron_schedule(interval: str, schedule: str) -> None:
    assert cron_schedule(interval) == schedule


@pytest.mark.parametrize("interval", ["30s", "90s", "7m", "45m", "90m", "5h", "48h", "1h30m", "0m", "soon"])
def test_intervals_without_an_even_cron_rhythm_are_refused(interval: str) -> None:
    with pytest.raises(InvalidSchedule):
        cron_schedule(interval)


@pytest.mark.parametrize("spec", [full_spec(), minimal_spec()], ids=["full", "minimal"])
@pytest.mark.parametrize("monitoring", [MONITORING, frozenset()], ids=["monitoring", "no-monitoring"])
def test_every_child_is_valid_for_its_kind(spec: dict[str, Any], monitoring: frozenset[str]) -> None:
    children = render_children(OWNER, spec, {}, monitoring)
    assert {kind: len(items) for kind, items in by_kind(children).items()} == {
        "ConfigMap": 1, "Deployment": 1, "Service": 1,
        **({"Ingress": 1, "CronJob": 2} if spec["mailboxes"] else {}),
        **({"ServiceMonitor": 1, "PrometheusRule": 1} if monitoring else {}),
    }
    for child in children:
        assert schema_errors(child) == [], child["kind"]


def test_the_schema_check_itself_refuses_unknown_fields() -> None:
    children = by_kind(render_children(OWNER, full_spec(), {}, MONITORING))
    deployment = copy.deepcopy(children["Deployment"][0])
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessprobe"] = {}
    monitor = copy.deepcopy(children["ServiceMonitor"][0])
    monitor["spec"]["endpoints"][0]["scrapeEvery"] = "30s"
    assert schema_errors(deployment) and schema_errors(monitor)


def test_a_kind_without_a_schema_fails_the_check() -> None:
    """kubernetes-validate skips what it has no schema for unless told otherwise; here that is a failure."""
    (cronjob, *_) = by_kind(render_children(OWNER, full_spec(), {}, MONITORING))["CronJob"]
    errors = schema_errors({**cronjob, "apiVersion": "batch/v1beta1"})  # gone since Kubernetes 1.25
    assert len(errors) == 2 and all("no schema for CronJob batch/v1beta1" in e for e in errors), errors


def test_every_child_is_owned_labelled_and_namespaced() -> None:
    for child in render_children(OWNER, full_spec(), {}, MONITORING):
        meta = child["metadata"]
        assert meta["namespace"] == "mail"
        assert meta["ownerReferences"] == [{
            "apiVersion": "bounce-operator.io/v1alpha1", "kind": "BounceConfig", "name": "newsletters",
            "uid": OWNER.uid, "controller": True, "blockOwnerDeletion": True,
        }]
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "bounce-operator"
        assert meta["labels"]["app.kubernetes.io/instance"] == "newsletters"


def test_pods_are_locked_down() -> None:
    workloads = [c for c in render_children(OWNER, full_spec(), {}, MONITORING) if c["kind"] in ("Deployment", "CronJob")]
    assert len(workloads) == 3
    for workload in workloads:
        pod = pod_spec(workload)
        assert restricted_violations(pod) == []
        assert pod["automountServiceAccountToken"] is False  # neither the service nor a scanner uses the API
        (container,) = pod["containers"]
        assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
        assert {"name": "tmp", "emptyDir": {}} in pod["volumes"]


def test_the_service_gets_probes_config_and_only_its_own_secrets() -> None:
    spec = full_spec()
    deployment = render_deployment(OWNER, spec, "c0ffee")
    (container,) = pod_spec(deployment)["containers"]
    assert container["command"] == [
        "bounce-service", "serve", "--host", "0.0.0.0", "--port", "8080",
        "--config", "/etc/bounce-operator/config/bounceconfig.yaml", "--secrets-dir", "/etc/bounce-operator/secrets",
    ]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 150  # outlasts serve's 120 s database wait
    assert deployment["spec"]["replicas"] == 3
    assert (container["image"], container["imagePullPolicy"]) == ("ghcr.io/bounce-operator/bounce-operator:0.1.0",
                                                                   "IfNotPresent")
    assert container["resources"] == {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}}
    assert deployment["spec"]["template"]["metadata"]["annotations"] == {CHECKSUM_ANNOTATION: "c0ffee"}
    assert mounted_secrets(deployment) == {
        "bounce-db/url", "bounce-api/admin", "bounce-api/mailer", "bounce-providers/sendgrid-key",
        "bounce-providers/postmark-password", "bounce-providers/mailgun-signing-key",
    }
    spec["service"].update(image="registry.example.com/bounce@sha256:" + "0" * 64, imagePullPolicy="Always")
    (container,) = pod_spec(render_deployment(OWNER, spec, "c0ffee"))["containers"]
    assert (container["image"], container["imagePullPolicy"]) == (spec["service"]["image"], "Always")


def test_each_scanner_runs_its_mailbox_on_schedule_with_its_own_password() -> None:
    spec = full_spec()
    returns, feedback = (render_cronjob(OWNER, spec, index) for index in (0, 1))
    assert returns["metadata"]["name"] == "newsletters-returns"
    assert returns["spec"]["schedule"] == "*/15 * * * *"
    assert feedback["spec"]["schedule"] == "0 * * * *"
    assert returns["spec"]["concurrencyPolicy"] == "Forbid"
    assert returns["spec"]["startingDeadlineSeconds"] == 900
    assert returns["spec"]["successfulJobsHistoryLimit"] == returns["spec"]["failedJobsHistoryLimit"] == 3
    (container,) = pod_spec(returns)["containers"]
    assert container["command"][:2] == ["bounce-service", "scan"]
    assert container["command"][-2:] == ["--mailbox", "returns"]
    assert "bounce-mailboxes/pop3" in mounted_secrets(returns)
    assert "bounce-mailboxes/imap" not in mounted_secrets(returns)
    assert "bounce-db/url" in mounted_secrets(returns)  # `scan` loads the whole config, like `serve`


def test_pods_take_the_operators_image_and_pull_secrets_unless_the_spec_names_its_own() -> None:
    spec = full_spec()
    pods = PodDefaults(image="registry.internal/mirror/bounce-operator:0.1.0", pull_secrets=("regcred",))
    workloads = [child for child in render_children(OWNER, spec, {}, frozenset(), pods=pods)
                 if child["kind"] in ("Deployment", "CronJob")]
    assert len(workloads) == 1 + len(spec["mailboxes"])
    for workload in workloads:
        assert pod_spec(workload)["containers"][0]["image"] == pods.image
        assert pod_spec(workload)["imagePullSecrets"] == [{"name": "regcred"}]
    spec["service"].update(image="registry.example.com/bounce:2", imagePullSecrets=[{"name": "team-pull"}])
    for workload in (render_deployment(OWNER, spec, "c0ffee", pods), render_cronjob(OWNER, spec, 0, pods)):
        assert pod_spec(workload)["containers"][0]["image"] == "registry.example.com/bounce:2"
        assert pod_spec(workload)["imagePullSecrets"] == [{"name": "team-pull"}]
    assert "imagePullSecrets" not in pod_spec(render_deployment(OWNER, minimal_spec(), "c0ffee"))


def test_secret_refs_skip_disabled_providers() -> None:
    spec = full_spec()
    spec["webhooks"]["mailgun"]["enabled"] = False
    assert SecretKey("bounce-providers", "mailgun-signing-key") not in service_refs(spec)
    assert scanner_refs(spec, 1)[SecretKey("bounce-mailboxes", "imap")] == "spec.mailboxes[1].password"
    assert set(all_refs(spec)) == set(service_refs(spec)) | {SecretKey("bounce-mailboxes", "pop3"),
                                                            SecretKey("bounce-mailboxes", "imap")}


def test_a_mailbox_can_set_its_scanners_resources() -> None:
    spec = full_spec()
    (container,) = pod_spec(render_cronjob(OWNER, spec, 0))["containers"]  # the example's: 50m, 96Mi, 256Mi
    assert container["resources"] == {"requests": {"cpu": "50m", "memory": "96Mi"}, "limits": {"memory": "256Mi"}}
    spec["mailboxes"][0]["resources"] = {"requests": {"cpu": "0.05", "memory": "64Mi"}}
    (container,) = pod_spec(render_cronjob(OWNER, spec, 0))["containers"]
    assert container["resources"] == {"requests": {"cpu": "50m", "memory": "64Mi"}}  # as the API server stores it
    assert "resources" not in pod_spec(render_cronjob(OWNER, spec, 1))["containers"][0]


def test_a_mailbox_without_auth_needs_no_password_secret() -> None:
    spec = full_spec()
    spec["mailboxes"][1]["auth"] = "none"  # its password reference left behind
    assert SecretKey("bounce-mailboxes", "imap") not in scanner_refs(spec, 1)
    assert SecretKey("bounce-mailboxes", "imap") not in all_refs(spec)
    cronjob = next(child for child in render_children(OWNER, spec, {key: "v1" for key in all_refs(spec)}, frozenset())
                   if child["kind"] == "CronJob" and child["metadata"]["name"].endswith(spec["mailboxes"][1]["name"]))
    assert "bounce-mailboxes/imap" not in mounted_secrets(cronjob)


@pytest.mark.parametrize(("written", "stored"), [
    ("0.5", "500m"), ("1000m", "1"), (2, "2"), ("2.5", "2500m"), ("250m", "250m"), ("1000", "1k"), ("1e3", "1e3"),
    ("1.5Gi", "1536Mi"), ("1024Ki", "1Mi"), ("0.5Ki", "512"), ("0.1Gi", "107374182400m"), ("128974848", "128974848"),
    ("100.0m", "100m"), ("0.1n", "1n"), ("0", "0"),
])
def test_resources_are_written_as_the_api_server_stores_them(written: Any, stored: str) -> None:
    """Otherwise the stored Deployment never matches what the operator wants, and it patches it forever."""
    spec = full_spec()
    spec["service"]["resources"] = {"limits": {"cpu": written}}
    (container,) = pod_spec(render_deployment(OWNER, spec, "c0ffee"))["containers"]
    assert container["resources"] == {"limits": {"cpu": stored}}


def test_empty_resource_maps_are_left_out() -> None:
    spec = full_spec()
    spec["service"]["resources"] = {"limits": {}, "requests": {"memory": "64Mi"}}
    (container,) = pod_spec(render_deployment(OWNER, spec, "c0ffee"))["containers"]
    assert container["resources"] == {"requests": {"memory": "64Mi"}}
    spec["service"]["resources"] = {"limits": {}}
    (container,) = pod_spec(render_deployment(OWNER, spec, "c0ffee"))["containers"]
    assert "resources" not in container


def test_a_minimal_spec_mounts_only_the_database_url() -> None:
    assert mounted_secrets(render_deployment(OWNER, minimal_spec(), "c0ffee")) == {"db/url"}


def test_long_cronjob_names_are_shortened_stably() -> None:
    owner = Owner("a-very-long-bounceconfig-name-for-a-team", "mail", "u")
    name = cronjob_name(owner, "feedback-loop-mailbox-number-1")
    assert len(name) <= 52 and name == cronjob_name(owner, "feedback-loop-mailbox-number-1")
    assert name != cronjob_name(owner, "feedback-loop-mailbox-number-2")
    assert cronjob_name(OWNER, "returns") == "newsletters-returns"


def test_checksum_follows_config_and_secret_values() -> None:
    config = config_document(minimal_spec())
    base = checksum(config, {SecretKey("db", "url"): "postgresql://a"})
    assert base == checksum(config, {SecretKey("db", "url"): "postgresql://a"})
    assert base != checksum(config, {SecretKey("db", "url"): "postgresql://b"})
    assert base != checksum(config, {SecretKey("db", "url"): None})
    assert base != checksum(config + "#", {SecretKey("db", "url"): "postgresql://a"})


def test_the_service_rolls_for_its_own_secrets_only() -> None:
    spec = full_spec()

    def annotation(**changed: str | None) -> str:
        secrets = {key: "v1" for key in all_refs(spec)}
        secrets.update({SecretKey(*name.split("__")): value for name, value in changed.items()})
        (deployment,) = by_kind(render_children(OWNER, spec, secrets, frozenset()))["Deployment"]
        return deployment["spec"]["template"]["metadata"]["annotations"][CHECKSUM_ANNOTATION]

    assert annotation() == annotation()
    assert annotation(**{"bounce-db__url": "v2"}) != annotation()
    assert annotation(**{"bounce-api__mailer": None}) != annotation()
    assert annotation(**{"bounce-mailboxes__pop3": "v2"}) == annotation()  # scanners read it on each run


def test_secret_fingerprints_change_with_the_value_and_hide_it() -> None:
    assert secret_fingerprint("uid-1", "cGFzcw==") == secret_fingerprint("uid-1", "cGFzcw==")
    assert secret_fingerprint("uid-1", "cGFzcw==") != secret_fingerprint("uid-1", "cGFzcx==")
    # Without the Secret's uid nobody can check a guessed value against the annotation.
    assert secret_fingerprint("uid-1", "cGFzcw==") != secret_fingerprint("uid-2", "cGFzcw==")
    assert secret_fingerprint("", "cGFzcw==") != hashlib.sha256(b"cGFzcw==").hexdigest()


def test_config_map_holds_the_defaulted_spec_the_service_loads() -> None:
    spec = full_spec()
    (config_map,) = by_kind(render_children(OWNER, spec, {}, frozenset()))["ConfigMap"]
    assert config_map["metadata"]["name"] == "newsletters-config"
    assert yaml.safe_load(config_map["data"]["bounceconfig.yaml"]) == spec


def test_url_follows_the_ingress() -> None:
    spec = full_spec()
    assert service_url(OWNER, spec) == "https://bounces.example.com"
    del spec["service"]["ingress"]["tlsSecretName"]
    assert service_url(OWNER, spec) == "http://bounces.example.com"
    spec["service"]["ingress"]["enabled"] = False
    assert service_url(OWNER, spec) == "http://newsletters.mail.svc"


def test_ingress_routes_the_host_to_the_service_with_tls() -> None:
    (ingress,) = by_kind(render_children(OWNER, full_spec(), {}, frozenset()))["Ingress"]
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["tls"] == [{"hosts": ["bounces.example.com"], "secretName": "bounces-example-com-tls"}]
    assert ingress["metadata"]["annotations"] == {"nginx.ingress.kubernetes.io/proxy-body-size": "1m"}
    paths = ingress["spec"]["rules"][0]["http"]["paths"]
    # The providers' and the API's paths only: /metrics answers anyone, so it stays inside the cluster.
    assert [(path["path"], path["pathType"]) for path in paths] == [("/webhooks", "Prefix"), ("/api", "Prefix")]
    assert all(path["backend"] == {"service": {"name": "newsletters", "port": {"name": "http"}}} for path in paths)


def test_ingress_paths_can_be_chosen() -> None:
    spec = full_spec()
    spec["service"]["ingress"]["paths"] = ["/webhooks/service"]
    (ingress,) = by_kind(render_children(OWNER, spec, {}, frozenset()))["Ingress"]
    assert [path["path"] for path in ingress["spec"]["rules"][0]["http"]["paths"]] == ["/webhooks/service"]


def test_monitoring_follows_the_spec_switches() -> None:
    spec = full_spec()
    spec["service"]["metrics"]["prometheusRule"] = False
    kinds = by_kind(render_children(OWNER, spec, {}, MONITORING))
    assert "PrometheusRule" not in kinds
    (monitor,) = kinds["ServiceMonitor"]
    assert monitor["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "30s"}]
    assert monitor["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "service"


def test_alert_rules_watch_this_service_bounce_rate() -> None:
    (group,) = alert_rules("newsletters", "mail")
    (rule,) = [rule for rule in group["rules"] if rule["alert"] == "BounceRateHigh"]
    assert 'namespace="mail", service="newsletters"' in rule["expr"]
    assert rule["expr"].endswith("> 0.05")
