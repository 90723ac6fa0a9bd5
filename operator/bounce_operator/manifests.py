"""The operator's own manifests (ServiceAccount, RBAC, Deployment), rendered by one pure function.

`deploy/operator.yaml` is this module's output for a cluster-wide operator; the Helm chart reuses the
same rules. For an operator that serves only some namespaces:

    python -m bounce_operator.manifests --namespace mail --namespace marketing > operator.yaml
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Sequence

import yaml

from . import GROUP, PLURAL

NAME = "bounce-operator"
IMAGE = "ghcr.io/bounce-operator/bounce-operator:0.1.0"
LABELS = {"app.kubernetes.io/name": NAME, "app.kubernetes.io/component": "operator"}
WRITE = ["get", "list", "watch", "create", "patch"]

# What the operator does, resource by resource; nothing else (no wildcards, no update, no secrets write).
RULES: list[dict[str, Any]] = [
    {"apiGroups": [GROUP], "resources": [PLURAL], "verbs": ["get", "list", "watch", "patch"]},
    {"apiGroups": [GROUP], "resources": [f"{PLURAL}/status"], "verbs": ["get", "patch"]},
    # Setting blockOwnerDeletion on a child needs update on its owner's finalizers.
    {"apiGroups": [GROUP], "resources": [f"{PLURAL}/finalizers"], "verbs": ["update"]},
    {"apiGroups": [""], "resources": ["configmaps", "services"], "verbs": WRITE},
    {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": WRITE},
    {"apiGroups": ["batch"], "resources": ["cronjobs"], "verbs": [*WRITE, "delete"]},
    {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses"], "verbs": [*WRITE, "delete"]},
    {"apiGroups": ["monitoring.coreos.com"], "resources": ["servicemonitors", "prometheusrules"],
     "verbs": [*WRITE, "delete"]},
    # Read to mount and checksum the referenced keys; watch so a changed Secret rolls the pods.
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
]
# Only a cluster-wide operator watches for CRDs being installed (e.g. the Prometheus operator's, later).
CLUSTER_RULES = [{"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"],
                  "verbs": ["list", "watch"]}]


def _meta(name: str, namespace: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    return {**meta, "labels": dict(LABELS)}


def _binding(kind: str, role_kind: str, namespace: str, bound_in: str | None) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": kind,
        "metadata": _meta(NAME, bound_in),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": NAME},
        "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": namespace}],
    }


def operator_manifests(namespace: str = NAME, image: str = IMAGE,
                       watch_namespaces: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Everything to run the operator in `namespace`; cluster-wide unless `watch_namespaces` are given."""
    if watch_namespaces:
        rbac = [item for ns in watch_namespaces for item in (
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": _meta(NAME, ns), "rules": RULES},
            _binding("RoleBinding", "Role", namespace, ns),
        )]
        scope = [arg for ns in watch_namespaces for arg in ("--namespace", ns)]
    else:
        rbac = [
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": _meta(NAME),
             "rules": RULES + CLUSTER_RULES},
            _binding("ClusterRoleBinding", "ClusterRole", namespace, None),
        ]
        scope = ["--all-namespaces"]
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(NAME, namespace),
        "spec": {
            "replicas": 1,
            # Standalone (no peering): never let two operators run at once, even during a rollout.
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": dict(LABELS)},
            "template": {
                "metadata": {"labels": dict(LABELS)},
                "spec": {
                    "serviceAccountName": NAME,
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532,
                                        "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{
                        "name": "operator",
                        "image": image,
                        # Liveness on :8080/healthz by default; the services it deploys run its own image.
                        "command": ["bounce-operator", *scope, "--service-image", image],
                        "ports": [{"name": "health", "containerPort": 8080, "protocol": "TCP"}],
                        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "health"},
                                          "periodSeconds": 15, "timeoutSeconds": 5, "failureThreshold": 4},
                        "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
                        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                            "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}},
                        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                    }],
                    "volumes": [{"name": "tmp", "emptyDir": {}}],
                },
            },
        },
    }
    return [
        # First, so that `kubectl apply -f` of the whole file works on a cluster that lacks it.
        {"apiVersion": "v1", "kind": "Namespace", "metadata": _meta(namespace)},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(NAME, namespace)},
        *rbac,
        deployment,
    ]


class _PlainDumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True  # plain YAML that any tool (and a reader) takes: no &anchors


def to_yaml(manifests: list[dict[str, Any]]) -> str:
    header = "# Generated by `python -m bounce_operator.manifests` (operator/bounce_operator/manifests.py).\n"
    return header + yaml.dump_all(manifests, Dumper=_PlainDumper, sort_keys=False, explicit_start=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="print the operator's manifests")
    parser.add_argument("--operator-namespace", default=NAME)
    parser.add_argument("--image", default=IMAGE)
    parser.add_argument("--namespace", action="append", default=[], help="serve only this namespace (repeatable)")
    args = parser.parse_args(argv)
    sys.stdout.write(to_yaml(operator_manifests(args.operator_namespace, args.image, args.namespace)))


if __name__ == "__main__":
    main()
