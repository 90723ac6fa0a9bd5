"""The Helm chart, with the real helm: it lints strictly, renders valid objects for every mode, stays
consistent with what the operator's Python renders (RBAC, Deployment, alert rules, CRD), and its values
schema refuses mistakes with a message that names them."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
import yaml

from bounce_operator.alerts import alert_rules
from bounce_operator.manifests import CLUSTER_RULES, RULES, operator_manifests
from bounce_operator.render import Owner, render_children, render_service
from bounce_operator.render import labels as labels_of
from bounce_service.schema import validate_spec
from tests.conftest import ROOT
from tests.operator.schemas import schema_errors

from .conftest import CHART, Helm

MONITORING = {"serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
              "prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
              "dashboard": {"enabled": True, "annotations": {"grafana_folder": "Mail"}}}
EVERYTHING = {"monitoring": MONITORING, "exampleBounceConfig": {"enabled": True},
              "podDisruptionBudget": {"enabled": True}, "networkPolicy": {"enabled": True}}
NAMESPACED = {"watchNamespaces": ["mail", "marketing"]}
CASES: dict[str, dict[str, Any]] = {
    "defaults": {},
    "cluster-wide, everything on": EVERYTHING,
    "namespaced": NAMESPACED,
    "namespaced, everything on": {**NAMESPACED, **EVERYTHING,
                                  "exampleBounceConfig": {"enabled": True, "namespace": "mail", "name": "news"}},
    "bring your own service account": {"rbac": {"create": False}, "serviceAccount": {"create": False, "name": "ops"}},
    "monitoring on": {"monitoring": MONITORING},
    "ingress on": {"exampleBounceConfig": {"enabled": True, "spec": {"service": {"ingress": {
        "enabled": True, "host": "bounces.example.com", "className": "nginx", "tlsSecretName": "bounces-tls"}}}}},
}
ALWAYS = ["CustomResourceDefinition", "ServiceAccount", "Service", "Deployment", "Pod"]  # Pod: the `helm test` hook


def kinds(objects: list[dict[str, Any]]) -> list[str]:
    return sorted(o["kind"] for o in objects)


def the(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind]
    return found


@pytest.fixture(scope="module")
def rendered(helm: Helm) -> dict[str, list[dict[str, Any]]]:
    return {case: helm.template(values) for case, values in CASES.items()}


@pytest.mark.parametrize("case", list(CASES))
def test_lint_strict_passes(helm: Helm, case: str, tmp_path) -> None:
    (tmp_path / "values.yaml").write_text(yaml.safe_dump(CASES[case]))
    result = helm.run("lint", "--strict", str(CHART), "--values", str(tmp_path / "values.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("case", list(CASES))
def test_every_rendered_object_passes_its_schema(rendered, case: str) -> None:
    """Built-in kinds on Kubernetes 1.30 and 1.33 (strict), monitoring kinds, and BounceConfig by the CRD."""
    for manifest in rendered[case]:
        assert schema_errors(manifest) == [], (manifest["kind"], manifest["metadata"]["name"])


def test_each_mode_renders_what_it_needs_and_nothing_more(rendered) -> None:
    assert kinds(rendered["defaults"]) == sorted(ALWAYS + ["ClusterRole", "ClusterRoleBinding"])
    assert kinds(rendered["namespaced"]) == sorted(ALWAYS + ["Role", "RoleBinding"] * 2)
    assert kinds(rendered["cluster-wide, everything on"]) == sorted(ALWAYS + [
        "ClusterRole", "ClusterRoleBinding", "ServiceMonitor", "PrometheusRule", "ConfigMap", "BounceConfig",
        "PodDisruptionBudget", "NetworkPolicy"])
    assert kinds(rendered["monitoring on"]) == sorted(ALWAYS + [
        "ClusterRole", "ClusterRoleBinding", "ServiceMonitor", "PrometheusRule", "ConfigMap"])
    assert kinds(rendered["ingress on"]) == sorted(ALWAYS + ["ClusterRole", "ClusterRoleBinding", "BounceConfig"])
    assert kinds(rendered["bring your own service account"]) == sorted(set(ALWAYS) - {"ServiceAccount"})
    deployment = the(rendered["bring your own service account"], "Deployment")
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "ops"


def test_rbac_is_the_operators_own(rendered) -> None:
    """The same rules as bounce_operator.manifests (and deploy/operator.yaml), in both modes."""
    cluster = rendered["defaults"]
    assert the(cluster, "ClusterRole")["rules"] == RULES + CLUSTER_RULES
    binding = the(cluster, "ClusterRoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "bounce-operator", "namespace": "bounce-operator"}]
    assert binding["roleRef"]["name"] == the(cluster, "ClusterRole")["metadata"]["name"]

    namespaced = rendered["namespaced"]
    roles = [o for o in namespaced if o["kind"] == "Role"]
    assert {r["metadata"]["namespace"] for r in roles} == {"mail", "marketing"}
    assert all(r["rules"] == RULES for r in roles)
    assert not [o for o in namespaced if o["kind"].startswith("Cluster")]
    assert {b["metadata"]["namespace"] for b in namespaced if b["kind"] == "RoleBinding"} == {"mail", "marketing"}


@pytest.mark.parametrize("case, watch", [("defaults", []), ("namespaced", ["mail", "marketing"])])
def test_the_deployment_runs_the_operator_as_manifests_py_does(rendered, case: str, watch: list[str]) -> None:
    chart = the(rendered[case], "Deployment")["spec"]
    (python,) = [m for m in operator_manifests(watch_namespaces=watch) if m["kind"] == "Deployment"]
    python = python["spec"]
    assert (chart["replicas"], chart["strategy"]) == (python["replicas"], python["strategy"])
    pod, expected_pod = chart["template"]["spec"], python["template"]["spec"]
    for key in ("securityContext", "volumes", "serviceAccountName"):
        assert pod[key] == expected_pod[key], key
    (container,), (expected,) = pod["containers"], expected_pod["containers"]
    assert {k: v for k, v in container.items() if k != "imagePullPolicy"} == expected


def test_kubernetes_older_than_1_30_is_refused_and_1_33_gets_the_same_objects(helm: Helm, rendered) -> None:
    def render(version: str) -> subprocess.CompletedProcess[str]:
        return helm.run("template", "bounce-operator", str(CHART), "--namespace", "bounce-operator", "--include-crds",
                        "--kube-version", version)

    old = render("1.29.0")
    assert old.returncode != 0
    assert "chart requires kubeVersion: >=1.30.0-0 which is incompatible with Kubernetes v1.29.0" in old.stderr
    new = render("1.33.0")
    assert new.returncode == 0, new.stderr
    assert [doc for doc in yaml.safe_load_all(new.stdout) if doc] == rendered["defaults"]


def test_the_crd_is_the_one_in_crds(rendered) -> None:
    """One source of truth: the chart's crds/ holds a link that helm follows (and `helm package` resolves)."""
    link = CHART / "crds/bounceconfigs.yaml"
    assert link.is_symlink() and link.resolve() == (ROOT / "crds/bounceconfigs.yaml").resolve()
    assert the(rendered["defaults"], "CustomResourceDefinition") == yaml.safe_load(link.read_text())


def test_the_packaged_chart_carries_the_crd_itself(helm: Helm, tmp_path) -> None:
    result = helm.run("package", str(CHART), "--destination", str(tmp_path))
    assert result.returncode == 0, result.stderr
    (package,) = tmp_path.glob("bounce-operator-*.tgz")
    listing = subprocess.run(["tar", "-tvzf", str(package)], capture_output=True, text=True, check=True).stdout
    (line,) = [line for line in listing.splitlines() if line.endswith("bounce-operator/crds/bounceconfigs.yaml")]
    assert line.startswith("-")  # a regular file in the archive, not a dangling link


def test_the_prometheus_rule_is_alert_rules_for_every_service(rendered) -> None:
    rule = the(rendered["cluster-wide, everything on"], "PrometheusRule")
    assert rule["spec"]["groups"] == alert_rules()
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_files_alerts_yaml_is_the_generated_output() -> None:
    generated = subprocess.run([sys.executable, "-m", "bounce_operator.alerts"], capture_output=True, text=True,
                               check=True).stdout
    assert (CHART / "files/alerts.yaml").read_text() == generated, \
        "regenerate: python -m bounce_operator.alerts > charts/bounce-operator/files/alerts.yaml"


@pytest.mark.parametrize("case, namespaces", [("cluster-wide, everything on", {"any": True}),
                                              ("namespaced, everything on", {"matchNames": ["mail", "marketing"]})])
def test_the_service_monitor_selects_the_services_the_operator_renders(rendered, case: str, namespaces) -> None:
    monitor = the(rendered[case], "ServiceMonitor")["spec"]
    assert monitor["namespaceSelector"] == namespaces
    owner = Owner("news", "mail", "uid")
    service = render_service(owner)
    labels = service["metadata"]["labels"]
    assert monitor["selector"]["matchLabels"].items() <= labels.items()
    assert monitor["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    assert not monitor["selector"]["matchLabels"].items() <= labels_of(owner, "scanner").items()


def test_the_dashboard_is_a_grafana_dashboard_for_the_sidecar(rendered) -> None:
    config_map = the(rendered["cluster-wide, everything on"], "ConfigMap")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["annotations"] == {"grafana_folder": "Mail"}
    dashboard = json.loads(config_map["data"]["bounce-operator.json"])
    assert dashboard == json.loads((CHART / "files/dashboard.json").read_text())
    titles = [panel["title"] for panel in dashboard["panels"]]
    for wanted in ("Bounce rate by campaign", "Complaint rate by campaign", "Bounce events by provider",
                   "Time since last successful mailbox scan", "Mailbox scans by outcome (last hour)"):
        assert wanted in titles
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(titles)
    variables = [v["name"] for v in dashboard["templating"]["list"]]
    assert variables == ["datasource", "namespace", "service"]
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            assert 'namespace=~"$namespace", service=~"$service"' in target["expr"], panel["title"]


def test_the_example_bounceconfig_is_valid_and_where_the_operator_looks(rendered) -> None:
    example = the(rendered["namespaced, everything on"], "BounceConfig")
    assert (example["metadata"]["namespace"], example["metadata"]["name"]) == ("mail", "news")
    _, violations = validate_spec(example["spec"])  # the CRD's schema and CEL rules, as the API server runs them
    assert violations == []
    default = the(rendered["cluster-wide, everything on"], "BounceConfig")
    assert (default["metadata"]["namespace"], default["metadata"]["name"]) == ("bounce-operator", "example")


def test_what_the_operator_makes_of_the_example_with_ingress_on_is_valid(rendered) -> None:
    """The chart renders no Ingress itself: the operator does, per BounceConfig. Every child it would
    create for the chart's example with the ingress on passes its Kubernetes schema on 1.30 and 1.33."""
    example = the(rendered["ingress on"], "BounceConfig")
    spec, violations = validate_spec(example["spec"])
    assert violations == []
    owner = Owner(example["metadata"]["name"], example["metadata"]["namespace"], "uid")
    children = render_children(owner, spec, {}, frozenset({"ServiceMonitor", "PrometheusRule"}))
    (ingress,) = [child for child in children if child["kind"] == "Ingress"]
    assert ingress["spec"]["rules"][0]["host"] == "bounces.example.com"
    assert ingress["spec"]["tls"] == [{"hosts": ["bounces.example.com"], "secretName": "bounces-tls"}]
    for child in children:
        assert schema_errors(child) == [], (child["kind"], child["metadata"]["name"])


def test_helm_test_checks_the_operators_liveness_through_its_service(rendered) -> None:
    objects = rendered["defaults"]
    pod, service, deployment = the(objects, "Pod"), the(objects, "Service"), the(objects, "Deployment")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    script = pod["spec"]["containers"][0]["command"][-1]
    assert "http://bounce-operator.bounce-operator.svc:8080/healthz" in script
    compile(script, "helm-test", "exec")  # it is Python the operator's image runs
    assert service["spec"]["ports"][0]["port"] == 8080
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert not service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()  # never routes to itself
    (probe_port,) = deployment["spec"]["template"]["spec"]["containers"][0]["ports"]
    assert (probe_port["name"], probe_port["containerPort"]) == ("health", 8080)


def test_the_network_policy_lets_in_probes_and_lets_out_dns_and_the_api_server_only(rendered) -> None:
    policy = the(rendered["cluster-wide, everything on"], "NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert policy["ingress"] == [{"ports": [{"port": "health", "protocol": "TCP"}]}]
    dns, api = policy["egress"]
    assert {p["port"] for p in dns["ports"]} == {53}
    assert [p["port"] for p in api["ports"]] == [443, 6443]


def test_the_notes_say_what_was_installed(helm: Helm) -> None:
    result = helm.run("install", "bounce-operator", str(CHART), "--dry-run=client", "--namespace", "ops",
                      "--set", "watchNamespaces={mail,marketing}")
    assert result.returncode == 0, result.stderr
    notes = result.stdout.split("NOTES:", 1)[1]
    assert "in namespace ops, serving BounceConfigs in: mail, marketing." in notes
    assert "helm test bounce-operator -n ops" in notes


INVALID = [
    ({"image": {"pullPolicy": "Sometimes"}},
     "at '/image/pullPolicy': value must be one of 'Always', 'IfNotPresent', 'Never'"),
    ({"replicas": 2}, "at '': additional properties 'replicas' not allowed"),
    ({"monitoring": {"prometheusRule": {"enabled": True, "label": {}}}},
     "at '/monitoring/prometheusRule': additional properties 'label' not allowed"),
    ({"watchNamespaces": ["Mail"]}, "at '/watchNamespaces/0': 'Mail' does not match pattern"),
    ({"watchNamespaces": ["mail", "mail"]}, "at '/watchNamespaces': items at 0 and 1 are equal"),
    ({"podDisruptionBudget": {"maxUnavailable": 0}}, "at '/podDisruptionBudget/maxUnavailable': minimum: got 0, want 1"),
    ({"exampleBounceConfig": {"name": "1st"}}, "at '/exampleBounceConfig/name': '1st' does not match pattern"),
    ({"monitoring": {"serviceMonitor": {"interval": "often"}}},
     "at '/monitoring/serviceMonitor/interval': 'often' does not match pattern"),
    ({"networkPolicy": {"apiServer": {"cidrs": ["kubernetes.default"]}}},
     "at '/networkPolicy/apiServer/cidrs/0': 'kubernetes.default' does not match pattern"),
    ({"resources": {"request": {"cpu": "1"}}}, "at '/resources': additional properties 'request' not allowed"),
]


@pytest.mark.parametrize("values, message", INVALID, ids=[message.split(":")[0] for _, message in INVALID])
def test_invalid_values_are_refused_with_a_message_naming_them(helm: Helm, values, message: str) -> None:
    error = helm.template_error(values)
    assert "values don't meet the specifications of the schema" in error
    assert message in error


def test_no_service_account_and_no_name_is_refused(helm: Helm) -> None:
    error = helm.template_error({"serviceAccount": {"create": False}})
    assert "serviceAccount.name is required when serviceAccount.create is false" in error


def test_the_chart_image_and_pull_secrets_are_the_defaults_of_what_the_operator_deploys(helm: Helm) -> None:
    values = {"image": {"repository": "registry.internal/mirror/bounce-operator", "tag": "0.1.0"},
              "imagePullSecrets": [{"name": "regcred"}]}
    (deployment,) = [doc for doc in helm.template(values) if doc["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    command = container["command"]
    assert command[command.index("--service-image") + 1] == container["image"] == \
        "registry.internal/mirror/bounce-operator:0.1.0"
    assert command[command.index("--image-pull-secret") + 1] == "regcred"


def test_the_example_leaves_monitoring_to_the_chart_when_the_chart_ships_it(helm: Helm) -> None:
    for monitoring, expected in (({}, None),
                                 ({"serviceMonitor": {"enabled": True}}, {"serviceMonitor": False}),
                                 ({"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}},
                                  {"serviceMonitor": False, "prometheusRule": False})):
        values = {"exampleBounceConfig": {"enabled": True}, "monitoring": monitoring}
        (example,) = [doc for doc in helm.template(values) if doc["kind"] == "BounceConfig"]
        assert example["spec"].get("service", {}).get("metrics") == expected, monitoring
        assert example["spec"]["actions"]["hard"] == {"count": 1, "action": "blocklist"}  # the rest as given


def test_an_example_outside_the_watched_namespaces_is_refused(helm: Helm) -> None:
    values = {"watchNamespaces": ["mail", "mkt"], "exampleBounceConfig": {"enabled": True}}
    error = helm.template_error(values)  # the release's namespace is not watched
    assert "exampleBounceConfig would go to namespace default, which watchNamespaces (mail, mkt) leaves out" in error
    values["exampleBounceConfig"]["namespace"] = "mkt"
    (example,) = [doc for doc in helm.template(values) if doc["kind"] == "BounceConfig"]
    assert example["metadata"]["namespace"] == "mkt"


def test_the_values_schema_is_closed() -> None:
    """Every object of values.schema.json that lists properties refuses others (free-form maps aside)."""
    schema = json.loads((CHART / "values.schema.json").read_text())

    def open_objects(node: Any, path: str) -> list[str]:
        if isinstance(node, dict):
            found = [path] if "properties" in node and node.get("additionalProperties") is not False else []
            return found + [p for key, value in node.items() for p in open_objects(value, f"{path}/{key}")]
        if isinstance(node, list):
            return [p for index, value in enumerate(node) for p in open_objects(value, f"{path}/{index}")]
        return []

    assert open_objects(schema, "") == []
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(defaults) == set(schema["properties"]) - {"global"}  # every value documented by the schema
