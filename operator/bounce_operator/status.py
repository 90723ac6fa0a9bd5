"""The BounceConfig's `status`: conditions that say what is wrong, and what the user needs to know.

`Ready` answers "does the service work as specified?"; `Degraded` answers "is something blocking the
operator?". Both carry a machine-readable reason and a message naming the field, Secret or object.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Mapping, Sequence


@dataclass(frozen=True)
class Problem:
    reason: str  # SecretMissing | SecretForbidden | InvalidSpec | InvalidSchedule | NameConflict | ApplyFailed | RolloutFailed
    message: str


def _joined(problems: Sequence[Problem]) -> str:
    return "; ".join(problem.message for problem in problems)


def _condition(type_: str, status: bool, reason: str, message: str, generation: int | None,
               previous: Mapping[str, Mapping[str, Any]], now: str) -> dict[str, Any]:
    value = "True" if status else "False"
    before = previous.get(type_, {})
    # The transition time moves only when the status flips, as `kubectl wait` and dashboards expect.
    since = before.get("lastTransitionTime") if before.get("status") == value else None
    condition = {"type": type_, "status": value, "reason": reason, "message": message,
                 "lastTransitionTime": since or now}
    if generation is not None:
        condition["observedGeneration"] = generation
    return condition


SCAN_FIELDS = ("lastScheduleTime", "lastSuccessfulTime")  # from each scanner CronJob's own status


def scan_times(cronjob: Mapping[str, Any] | None) -> dict[str, Any]:
    """When the CronJob controller last started a scan, and when one last succeeded."""
    status = (cronjob or {}).get("status") or {}
    return {field: status[field] for field in SCAN_FIELDS if status.get(field)}


def build_status(*, generation: int | None, problems: Sequence[Problem], available: bool, progress: str,
                 url: str | None, schedules: Mapping[str, str], scans: Mapping[str, Mapping[str, Any]],
                 previous: Mapping[str, Any], now: datetime | None = None) -> dict[str, Any]:
    """The whole new status. `scans` holds each mailbox's `scan_times` as its CronJob reports them; `previous`
    (the current status) keeps transition times, and scan times where `scans` has none."""
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ")
    before = {c["type"]: c for c in previous.get("conditions", []) if "type" in c}
    if problems:
        ready = _condition("Ready", False, problems[0].reason, _joined(problems), generation, before, stamp)
        degraded = _condition("Degraded", True, problems[0].reason, _joined(problems), generation, before, stamp)
    else:
        ready = _condition("Ready", available, "Available" if available else "Progressing", progress,
                           generation, before, stamp)
        degraded = _condition("Degraded", False, "Reconciled", "every child matches the spec", generation,
                              before, stamp)
    known = {m.get("name"): scan_times({"status": m}) for m in previous.get("mailboxes", [])}
    status: dict[str, Any] = {
        "conditions": [ready, degraded],
        "mailboxCount": len(schedules),
        "mailboxes": [{"name": name, "schedule": schedule, **known.get(name, {}), **scans.get(name, {})}
                      for name, schedule in schedules.items()],
    }
    if generation is not None:
        status["observedGeneration"] = generation
    if url is not None:
        status["url"] = url
    return status


def _seen_by_controller(deployment: Mapping[str, Any]) -> bool:
    """Whether the Deployment controller has seen the latest spec: its status speaks of that one."""
    return deployment.get("status", {}).get("observedGeneration", 0) >= deployment.get("metadata", {}).get("generation", 0)


def deployment_progress(deployment: Mapping[str, Any] | None) -> tuple[bool, str]:
    """Whether the Deployment's current generation is rolled out and available, with a message saying so."""
    if deployment is None:
        return False, "the Deployment does not exist yet"
    wanted = deployment.get("spec", {}).get("replicas", 1)
    status = deployment.get("status", {})
    if not _seen_by_controller(deployment):
        return False, "the Deployment controller has not seen the latest spec yet"
    updated = status.get("updatedReplicas", 0)
    available = status.get("availableReplicas", 0)
    if updated < wanted or available < wanted:
        return False, f"{min(updated, available)}/{wanted} replicas updated and available"
    return True, f"{wanted}/{wanted} replicas available"


def rollout_failure(deployment: Mapping[str, Any] | None) -> Problem | None:
    """The Deployment controller's verdict that the rollout will not finish by itself (its
    progressDeadlineSeconds passed: an image that cannot be pulled, pods that crash, a quota), in its words."""
    if deployment is None or not _seen_by_controller(deployment):
        return None  # none yet, or a verdict on an older spec
    for condition in deployment.get("status", {}).get("conditions") or []:
        if condition.get("type") == "Progressing" and condition.get("status") == "False":
            detail = condition.get("message") or condition.get("reason") or "no progress"
            return Problem("RolloutFailed", f"Deployment {deployment['metadata']['name']}: {detail}")
    return None
