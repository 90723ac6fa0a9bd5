"""Status conditions and the comparisons the reconciler makes, without a cluster."""

from __future__ import annotations

from datetime import datetime, timezone

from bounce_operator.status import Problem, build_status, deployment_progress, rollout_failure, scan_times

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
T1 = datetime(2026, 1, 2, tzinfo=timezone.utc)


def status(previous: dict | None = None, now: datetime = T0, **kwargs) -> dict:
    arguments = {"generation": 3, "problems": [], "available": True, "progress": "2/2 replicas available",
                 "url": "http://mail.ns.svc", "schedules": {"returns": "*/15 * * * *"}, "scans": {}, **kwargs}
    return build_status(previous=previous or {}, now=now, **arguments)


def conditions(value: dict) -> dict[str, dict]:
    return {c["type"]: c for c in value["conditions"]}


def test_a_healthy_config_is_ready_and_not_degraded() -> None:
    value = status()
    assert conditions(value)["Ready"] == {"type": "Ready", "status": "True", "reason": "Available",
                                          "message": "2/2 replicas available",
                                          "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 3}
    assert conditions(value)["Degraded"]["status"] == "False"
    assert (value["observedGeneration"], value["url"], value["mailboxCount"]) == (3, "http://mail.ns.svc", 1)


def test_problems_make_it_degraded_and_not_ready_for_the_same_reason() -> None:
    problems = [Problem("SecretMissing", "Secret db not found (referenced by spec.database.url)"),
                Problem("NameConflict", "Service mail already exists")]
    value = conditions(status(problems=problems))
    for type_, flag in (("Ready", "False"), ("Degraded", "True")):
        assert value[type_]["status"] == flag
        assert value[type_]["reason"] == "SecretMissing"
        assert value[type_]["message"] == "Secret db not found (referenced by spec.database.url); Service mail already exists"


def test_transition_time_moves_only_when_the_status_flips() -> None:
    first = status()
    assert conditions(status(first, now=T1, progress="3/3 replicas available"))["Ready"]["lastTransitionTime"] == \
        "2026-01-01T00:00:00Z"
    assert conditions(status(first, now=T1, available=False))["Ready"]["lastTransitionTime"] == "2026-01-02T00:00:00Z"
    assert status(first, now=T1) == first  # nothing changed: nothing to write


def test_scan_times_come_from_the_cronjobs_and_are_kept_for_mailboxes_that_remain() -> None:
    scanned = {"schedule": "0 * * * *", "lastSuccessfulTime": "2026-01-01T00:00:00Z"}
    previous = {"mailboxes": [{"name": "returns", **scanned}, {"name": "gone", **scanned}]}
    assert status(previous)["mailboxes"] == [
        {"name": "returns", "schedule": "*/15 * * * *", "lastSuccessfulTime": "2026-01-01T00:00:00Z"}]
    cronjob = {"status": {"lastScheduleTime": "2026-01-02T00:15:00Z", "lastSuccessfulTime": "2026-01-02T00:15:09Z",
                          "active": []}}
    assert status(previous, scans={"returns": scan_times(cronjob)})["mailboxes"] == [
        {"name": "returns", "schedule": "*/15 * * * *", "lastScheduleTime": "2026-01-02T00:15:00Z",
         "lastSuccessfulTime": "2026-01-02T00:15:09Z"}]
    assert scan_times({"spec": {}}) == {}  # never run yet


def test_deployment_progress() -> None:
    def deployment(generation: int, observed: int, replicas: int, updated: int, available: int) -> dict:
        return {"metadata": {"generation": generation}, "spec": {"replicas": replicas},
                "status": {"observedGeneration": observed, "updatedReplicas": updated, "availableReplicas": available}}

    assert deployment_progress(None) == (False, "the Deployment does not exist yet")
    assert deployment_progress(deployment(2, 1, 2, 2, 2))[0] is False
    assert deployment_progress(deployment(2, 2, 3, 3, 1)) == (False, "1/3 replicas updated and available")
    assert deployment_progress(deployment(2, 2, 3, 3, 3)) == (True, "3/3 replicas available")
    assert deployment_progress(deployment(1, 1, 0, 0, 0)) == (True, "0/0 replicas available")


def test_a_rollout_past_its_deadline_is_a_problem() -> None:
    def deployment(generation: int, observed: int, *conditions: dict) -> dict:
        return {"metadata": {"name": "mail", "generation": generation},
                "status": {"observedGeneration": observed, "conditions": list(conditions)}}

    stuck = {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
             "message": 'ReplicaSet "mail-7d9f" has timed out progressing.'}
    assert rollout_failure(deployment(3, 3, {"type": "Available", "status": "False"}, stuck)) == \
        Problem("RolloutFailed", 'Deployment mail: ReplicaSet "mail-7d9f" has timed out progressing.')
    assert rollout_failure(deployment(4, 3, stuck)) is None  # the controller has not judged the new spec yet
    assert rollout_failure(deployment(3, 3, {**stuck, "status": "True", "reason": "NewReplicaSetAvailable"})) is None
    assert rollout_failure(None) is None
