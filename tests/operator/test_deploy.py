"""The operator's own manifests: generated, valid, least privilege, and both cluster-wide and namespaced."""

from __future__ import annotations

from pathlib import Path

import yaml
from bounce_operator.manifests import operator_manifests, to_yaml

from .pods import pod_specs, restricted_violations
from .schemas import schema_errors

ROOT = Path(__file__).resolve().parents[2]


def test_deploy_yaml_is_the_generated_output() -> None:
    assert (ROOT / "deploy/operator.yaml").read_text() == to_yaml(operator_manifests())


def test_cluster_wide_manifests_are_valid_and_bind_a_cluster_role() -> None:
    manifests = list(yaml.safe_load_all((ROOT / "deploy/operator.yaml").read_text()))
    for manifest in manifests:
        assert schema_errors(manifest) == [], manifest["kind"]
    kinds = [m["kind"] for m in manifests]
    assert kinds == ["Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Deployment"]
    (container,) = manifests[-1]["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["bounce-operator", "--all-namespaces", "--service-image", container["image"]]


def test_the_operator_pod_is_restricted() -> None:
    for manifests in (list(yaml.safe_load_all((ROOT / "deploy/operator.yaml").read_text())),
                      operator_manifests(watch_namespaces=["mail"])):
        (pod,) = [pod for manifest in manifests for pod in pod_specs(manifest)]
        assert restricted_violations(pod) == []


def test_a_namespaced_operator_gets_roles_in_its_namespaces_only() -> None:
    manifests = operator_manifests("ops", "example/operator:1", ["mail", "marketing"])
    for manifest in manifests:
        assert schema_errors(manifest) == [], manifest["kind"]
    assert not [m for m in manifests if m["kind"].startswith("Cluster")]
    roles = {(m["kind"], m["metadata"]["namespace"]) for m in manifests if m["kind"] in ("Role", "RoleBinding")}
    assert roles == {(kind, ns) for kind in ("Role", "RoleBinding") for ns in ("mail", "marketing")}
    (container,) = manifests[-1]["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["bounce-operator", "--namespace", "mail", "--namespace", "marketing",
                                    "--service-image", "example/operator:1"]  # what it deploys runs its image


def test_rbac_has_no_wildcards_and_never_writes_secrets() -> None:
    for manifest in operator_manifests() + operator_manifests(watch_namespaces=["mail"]):
        for rule in manifest.get("rules", []):
            assert "*" not in rule["apiGroups"] + rule["resources"] + rule["verbs"]
            assert "update" not in rule["verbs"] or rule["resources"] == ["bounceconfigs/finalizers"]
            if "secrets" in rule["resources"]:
                assert rule["verbs"] == ["get", "list", "watch"]
