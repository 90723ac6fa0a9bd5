"""Pure functions from a BounceConfig to the manifests of its children (plain dicts, ready to PATCH).

Nothing here talks to the cluster: the reconciler gathers the inputs (the defaulted spec, the checksum
of config and secrets, which monitoring CRDs exist) and these functions decide everything else.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Mapping

import yaml

from . import API_VERSION, KIND
from .alerts import alert_rules
from .manifests import IMAGE
from .quantity import canonical_quantity
from .refs import Refs, SecretKey, scanner_refs, service_refs
from .schedule import cron_schedule, interval_seconds

CONFIG_DIR = "/etc/bounce-operator/config"
CONFIG_FILE = "bounceconfig.yaml"
SECRETS_DIR = "/etc/bounce-operator/secrets"  # the service's default: <dir>/<secret name>/<key>
PORT = 8080
USER_ID = 65532  # any non-root id; the image must not need a home directory or a writable root
CHECKSUM_ANNOTATION = "bounce-operator.io/checksum"
MAILBOX_LABEL = "bounce-operator.io/mailbox"
MANAGED_BY = ("app.kubernetes.io/managed-by", "bounce-operator")
CRONJOB_NAME_LIMIT = 52  # the CronJob controller appends 11 characters to name its Jobs
MONITORING_API = "monitoring.coreos.com/v1"


@dataclass(frozen=True)
class PodDefaults:
    """What the service's and scanners' pods get where the spec says nothing: the operator's own settings
    (`--service-image`, `--image-pull-secret`; the chart passes its image and pull secrets), so one
    install decides which image and registry a BounceConfig without an `image` runs."""
    image: str = IMAGE
    pull_secrets: tuple[str, ...] = ()


@dataclass(frozen=True)
class Owner:
    """The BounceConfig that every child belongs to (and is garbage-collected with)."""

    name: str
    namespace: str
    uid: str

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Owner:
        meta = body["metadata"]
        return cls(meta["name"], meta["namespace"], meta.get("uid", ""))

    def reference(self) -> dict[str, Any]:
        return {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


def labels(owner: Owner, component: str) -> dict[str, str]:
    return {**selector_labels(owner, component), MANAGED_BY[0]: MANAGED_BY[1]}


def selector_labels(owner: Owner, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "bounce-service",
        "app.kubernetes.io/instance": owner.name,
        "app.kubernetes.io/component": component,
    }


def _metadata(owner: Owner, name: str, component: str, **extra_labels: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": owner.namespace,
        "labels": {**labels(owner, component), **extra_labels},
        "ownerReferences": [owner.reference()],
    }


def config_map_name(owner: Owner) -> str:
    return f"{owner.name}-config"


def cronjob_name(owner: Owner, mailbox: str) -> str:
    """`<config>-<mailbox>`, shortened with a stable hash when it would not fit a CronJob name."""
    name = f"{owner.name}-{mailbox}"
    if len(name) <= CRONJOB_NAME_LIMIT:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[:CRONJOB_NAME_LIMIT - 9].rstrip('-')}-{digest}"


def service_url(owner: Owner, spec: Mapping[str, Any]) -> str:
    ingress = spec["service"].get("ingress", {})
    if ingress.get("enabled"):
        return f"{'https' if ingress.get('tlsSecretName') else 'http'}://{ingress['host']}"
    return f"http://{owner.name}.{owner.namespace}.svc"


def config_document(spec: Mapping[str, Any]) -> str:
    """The file the pods read: the defaulted spec as YAML (libyaml's emitter when present: 20x faster)."""
    return yaml.dump(dict(spec), Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper), sort_keys=True,
                     default_flow_style=False)


def secret_fingerprint(uid: str, value: str) -> str:
    """What stands for a secret value in the checksum: it changes with the value, yet whoever may read the
    Deployment but not the Secret cannot test guesses against it (they cannot see the Secret's uid)."""
    return hashlib.sha256(f"{uid}\0{value}".encode()).hexdigest()


def checksum(config: str, secrets: Mapping[SecretKey, str | None]) -> str:
    """Changes whenever the config or any of these secrets (fingerprints; None: missing) changes, so the pods roll."""
    digest = hashlib.sha256(config.encode())
    for key in sorted(secrets):
        value = secrets[key]
        digest.update(f"\0{key}\0{'-' if value is None else '+' + value}".encode())
    return digest.hexdigest()


def render_config_map(owner: Owner, config: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(owner, config_map_name(owner), "config"),
        "data": {CONFIG_FILE: config},
    }


_CONTAINER_SECURITY = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
}
_POD_SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": USER_ID,
    "runAsGroup": USER_ID,
    "fsGroup": USER_ID,  # makes the 0440 secret files readable by the pod's group
    "seccompProfile": {"type": "RuntimeDefault"},
}


def _secrets_volume(refs: Refs) -> dict[str, Any]:
    """One projected volume: every key at <secrets dir>/<secret name>/<key>, and nothing else."""
    by_secret: dict[str, list[dict[str, str]]] = {}
    for ref in sorted(refs):
        by_secret.setdefault(ref.name, []).append({"key": ref.key, "path": f"{ref.name}/{ref.key}"})
    return {
        "name": "secrets",
        "projected": {
            "defaultMode": 0o440,
            "sources": [{"secret": {"name": name, "items": items}} for name, items in by_secret.items()],
        },
    }


def _pod_spec(owner: Owner, spec: Mapping[str, Any], container: dict[str, Any], refs: Refs, pods: PodDefaults,
              **extra: Any) -> dict[str, Any]:
    service = spec["service"]
    pull_secrets = [entry["name"] for entry in service.get("imagePullSecrets", [])] or list(pods.pull_secrets)
    mounts = [
        {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},  # the root file system is read-only
    ]
    volumes: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": config_map_name(owner)}},
        {"name": "tmp", "emptyDir": {}},
    ]
    if refs:
        mounts.append({"name": "secrets", "mountPath": SECRETS_DIR, "readOnly": True})
        volumes.append(_secrets_volume(refs))
    container = {
        "image": service.get("image") or pods.image,
        "imagePullPolicy": service["imagePullPolicy"],
        **container,
        "securityContext": _CONTAINER_SECURITY,
        "volumeMounts": mounts,
    }
    return {
        "automountServiceAccountToken": False,  # neither the service nor a scanner talks to the API
        "enableServiceLinks": False,
        "securityContext": _POD_SECURITY,
        "containers": [container],
        "volumes": volumes,
        **({"imagePullSecrets": [{"name": name} for name in pull_secrets]} if pull_secrets else {}),
        **extra,
    }


def _resources(section: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """A section's `resources` as the API server stores them, so that what is written matches what is read
    back. Empty maps are dropped by the API server too (omitempty): written, they would never match."""
    return {kind: {name: canonical_quantity(value) for name, value in values.items()}
            for kind, values in section.get("resources", {}).items() if values}


def _command(*args: str) -> list[str]:
    return ["bounce-service", *args, "--config", f"{CONFIG_DIR}/{CONFIG_FILE}", "--secrets-dir", SECRETS_DIR]


def _probe(path: str, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "timeoutSeconds": 3,
        "failureThreshold": failures,
    }


def render_deployment(owner: Owner, spec: Mapping[str, Any], config_checksum: str,
                      pods: PodDefaults = PodDefaults()) -> dict[str, Any]:
    service = spec["service"]
    container = {
        "name": "bounce-service",
        "command": _command("serve", "--host", "0.0.0.0", "--port", str(PORT)),
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        # `serve` waits for the database (up to 120 s) and migrates before it listens: give it 5 minutes
        # to start, then judge it by the liveness probe alone.
        "startupProbe": _probe("/healthz", 5, 60),
        "livenessProbe": _probe("/healthz", 10, 3),
        "readinessProbe": _probe("/readyz", 5, 2),
    }
    if resources := _resources(service):
        container["resources"] = resources
    pod_labels = selector_labels(owner, "service")
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(owner, owner.name, "service"),
        "spec": {
            "replicas": service["replicas"],
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": pod_labels},
            # Webhooks must keep being answered during a rollout: never go below the wanted replicas.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": pod_labels, "annotations": {CHECKSUM_ANNOTATION: config_checksum}},
                "spec": _pod_spec(owner, spec, container, service_refs(spec), pods, terminationGracePeriodSeconds=30),
            },
        },
    }


def render_service(owner: Owner) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(owner, owner.name, "service"),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(owner, "service"),
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def render_ingress(owner: Owner, spec: Mapping[str, Any]) -> dict[str, Any]:
    ingress = spec["service"]["ingress"]
    metadata = _metadata(owner, owner.name, "service")
    if ingress.get("annotations"):
        metadata["annotations"] = dict(ingress["annotations"])
    body: dict[str, Any] = {
        "rules": [{
            "host": ingress["host"],
            "http": {"paths": [{
                "path": prefix,
                "pathType": "Prefix",
                "backend": {"service": {"name": owner.name, "port": {"name": "http"}}},
            } for prefix in ingress["paths"]]},
        }],
    }
    if ingress.get("className"):
        body["ingressClassName"] = ingress["className"]
    if ingress.get("tlsSecretName"):
        body["tls"] = [{"hosts": [ingress["host"]], "secretName": ingress["tlsSecretName"]}]
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": metadata, "spec": body}


SCAN_EXIT_CONFIG = 2  # `bounce-service scan` exit status for invalid configuration: retrying cannot help


def render_cronjob(owner: Owner, spec: Mapping[str, Any], index: int,
                   pods: PodDefaults = PodDefaults()) -> dict[str, Any]:
    mailbox = spec["mailboxes"][index]
    interval = interval_seconds(mailbox["scanInterval"])
    container: dict[str, Any] = {
        "name": "scanner",
        "command": [*_command("scan"), "--mailbox", mailbox["name"]],
    }
    if resources := _resources(mailbox):
        container["resources"] = resources
    pod_labels = {**selector_labels(owner, "scanner"), MAILBOX_LABEL: mailbox["name"]}
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": _metadata(owner, cronjob_name(owner, mailbox["name"]), "scanner",
                              **{MAILBOX_LABEL: mailbox["name"]}),
        "spec": {
            "schedule": cron_schedule(mailbox["scanInterval"]),
            "timeZone": "Etc/UTC",
            "concurrencyPolicy": "Forbid",  # two scanners on one mailbox would race for the same messages
            # A run missed by more than one interval is superseded by the next one anyway.
            "startingDeadlineSeconds": interval,
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {
                "metadata": {"labels": pod_labels},
                "spec": {
                    "backoffLimit": 2,
                    # A hung server must not hold the mailbox (Forbid) for longer than this.
                    "activeDeadlineSeconds": max(interval, 600),
                    "podFailurePolicy": {"rules": [{
                        "action": "FailJob",
                        "onExitCodes": {"containerName": "scanner", "operator": "In",
                                        "values": [SCAN_EXIT_CONFIG]},
                    }]},
                    "template": {
                        "metadata": {"labels": pod_labels},
                        "spec": _pod_spec(owner, spec, container, scanner_refs(spec, index), pods,
                                          restartPolicy="Never"),
                    },
                },
            },
        },
    }


def render_service_monitor(owner: Owner) -> dict[str, Any]:
    return {
        "apiVersion": MONITORING_API,
        "kind": "ServiceMonitor",
        "metadata": _metadata(owner, owner.name, "monitoring"),
        "spec": {
            "selector": {"matchLabels": selector_labels(owner, "service")},
            "endpoints": [{"port": "http", "path": "/metrics", "interval": "30s"}],
        },
    }


def render_prometheus_rule(owner: Owner) -> dict[str, Any]:
    return {
        "apiVersion": MONITORING_API,
        "kind": "PrometheusRule",
        "metadata": _metadata(owner, owner.name, "monitoring"),
        "spec": {"groups": alert_rules(owner.name, owner.namespace)},
    }


def render_children(owner: Owner, spec: Mapping[str, Any], secrets: Mapping[SecretKey, str | None],
                    monitoring: frozenset[str], config: str | None = None,
                    pods: PodDefaults = PodDefaults()) -> list[dict[str, Any]]:
    """Every child the BounceConfig should have; any other child it owns is to be deleted.

    `secrets` holds each referenced key's `secret_fingerprint` (None: missing), `monitoring` the kinds of
    monitoring.coreos.com/v1 this cluster serves, and `config` the spec's `config_document` if the caller
    already has it; `pods` the operator's defaults for what the spec leaves out.
    """
    service = spec["service"]
    config = config_document(spec) if config is None else config
    # Only what the service's pods mount rolls them: a mailbox password is read by each scanner run afresh.
    mounted = {key: secrets.get(key) for key in service_refs(spec)}
    children = [render_config_map(owner, config), render_deployment(owner, spec, checksum(config, mounted), pods),
                render_service(owner)]
    if service.get("ingress", {}).get("enabled"):
        children.append(render_ingress(owner, spec))
    children += [render_cronjob(owner, spec, index, pods) for index in range(len(spec["mailboxes"]))]
    metrics = service["metrics"]
    if metrics["serviceMonitor"] and "ServiceMonitor" in monitoring:
        children.append(render_service_monitor(owner))
    if metrics["prometheusRule"] and "PrometheusRule" in monitoring:
        children.append(render_prometheus_rule(owner))
    return children
