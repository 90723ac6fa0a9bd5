"""The Pod Security Standards' "restricted" profile, as checks on any manifest that makes pods."""

from __future__ import annotations

from typing import Any, Iterator


def pod_specs(manifest: dict[str, Any]) -> Iterator[dict[str, Any]]:
    spec = manifest.get("spec", {})
    if manifest["kind"] == "CronJob":
        yield spec["jobTemplate"]["spec"]["template"]["spec"]
    elif manifest["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        yield spec["template"]["spec"]
    elif manifest["kind"] == "Pod":
        yield spec


def restricted_violations(pod: dict[str, Any]) -> list[str]:
    """What keeps this pod from running non-root, read-only, unprivileged, with every capability dropped."""
    problems = []
    context = pod.get("securityContext", {})
    if any(pod.get(host) for host in ("hostNetwork", "hostPID", "hostIPC")):
        problems.append("shares a host namespace")
    for container in pod.get("initContainers", []) + pod["containers"]:
        own = container.get("securityContext", {})
        name = container["name"]
        if own.get("runAsNonRoot", context.get("runAsNonRoot")) is not True:
            problems.append(f"{name}: runAsNonRoot is not set")
        if own.get("runAsUser", context.get("runAsUser")) == 0:
            problems.append(f"{name}: runs as uid 0")
        if own.get("seccompProfile", context.get("seccompProfile")) != {"type": "RuntimeDefault"}:
            problems.append(f"{name}: seccomp profile is not RuntimeDefault")
        if own.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: privilege escalation is allowed")
        if own.get("privileged"):
            problems.append(f"{name}: privileged")
        if own.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{name}: the root file system is writable")
        if own.get("capabilities", {}).get("drop") != ["ALL"] or own.get("capabilities", {}).get("add"):
            problems.append(f"{name}: capabilities are not all dropped")
    return problems
