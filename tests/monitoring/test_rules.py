"""The alert rules under Debian's promtool: they load (`check rules`), and every alert fires when it should
and stays quiet when it should not (`test rules`, with the production `for` durations), for one named
service (the operator's PrometheusRule) and for every bounce service (the chart's)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from bounce_operator.alerts import CONTAINER, HOLD, alert_rules
from bounce_operator.render import Owner, render_deployment
from bounce_service.schema import validate_spec
from tests.conftest import ROOT

NS, SVC = "mail", "newsletters"
WHERE = f"{NS}/{SVC}"
SPRING = "33333333-3333-4333-8333-333333333333"
AUTUMN = "44444444-4444-4444-8444-444444444444"


def series(name: str, values: str, pod: str = "a", namespace: str = NS, service: str = SVC, **labels: str) -> dict:
    """A series as a ServiceMonitor target of the service's pod `pod` would carry it."""
    target = {"container": "bounce-service", "namespace": namespace, "service": service, "job": service,
              "pod": f"{service}-{pod}", **labels}
    return {"series": name + "{" + ", ".join(f'{k}="{v}"' for k, v in target.items()) + "}", "values": values}


def expect(alert: str, at: str, *fired: dict[str, Any]) -> dict:
    """`alert` at `at` fires exactly `fired`: each {"labels": {...}, "summary": ..., "description": ...}."""
    return {"eval_time": at, "alertname": alert, "exp_alerts": [
        {"exp_labels": f["labels"], "exp_annotations": {"summary": f["summary"], "description": f["description"]}}
        for f in fired
    ]}


def campaign(uuid: str, name: str, severity: str = "warning") -> dict[str, str]:
    return {"severity": severity, "namespace": NS, "service": SVC, "campaign_uuid": uuid, "campaign": name}


SERVICE_DOWN = {
    "labels": {"severity": "critical", "namespace": NS, "service": SVC},
    "summary": f"No replica of bounce service {WHERE} is up.",
    "description": f"Prometheus cannot scrape any replica of {WHERE}. Providers' webhooks fail while it is down and "
                   "some providers give up retrying within hours: check the Deployment's pods and the database (the "
                   "service waits for it at start).",
}

# One promtool test group per alert: the series it reads, and when it must (not) fire.
CASES: dict[str, dict[str, Any]] = {
    "BounceRateHigh": {
        "input_series": [
            # Two replicas report the same database-derived rate: one alert, not two.
            series("bounce_campaign_bounce_rate", "0.0625x30", "a", campaign_uuid=SPRING, campaign="Spring"),
            series("bounce_campaign_bounce_rate", "0.0625x30", "b", campaign_uuid=SPRING, campaign="Spring"),
            series("bounce_campaign_bounce_rate", "0.05x30", "a", campaign_uuid=AUTUMN, campaign="Autumn"),  # at, not over
            series("bounce_campaign_bounce_rate", "0.5x30", "a", service="other", campaign_uuid=AUTUMN, campaign="X"),
        ],
        "alert_rule_test": [
            expect("BounceRateHigh", "14m"),  # pending: 15m not yet held
            expect("BounceRateHigh", "16m", {
                "labels": campaign(SPRING, "Spring"),
                "summary": "Campaign Spring bounces more than 5% of its sends.",
                "description": f"6.25% of campaign Spring ({SPRING}) bounced ({WHERE}). Mailbox providers throttle "
                               "or block senders above 5%: stop sending to the list and clean it before the next campaign.",
            }),
        ],
    },
    "ComplaintRateHigh": {
        "input_series": [
            series("bounce_campaign_complaint_rate", "0.002x30", "a", campaign_uuid=SPRING, campaign="Spring"),
            series("bounce_campaign_complaint_rate", "0.0005x30", "a", campaign_uuid=AUTUMN, campaign="Autumn"),
        ],
        "alert_rule_test": [
            expect("ComplaintRateHigh", "10m"),
            expect("ComplaintRateHigh", "16m", {
                "labels": campaign(SPRING, "Spring"),
                "summary": "Campaign Spring draws more than 0.1% spam complaints.",
                "description": f"0.2% of campaign Spring ({SPRING}) was reported as spam ({WHERE}). Gmail and Yahoo "
                               "require bulk senders to stay under 0.1% (and never reach 0.3%): check consent and "
                               "unsubscribe links of that list.",
            }),
        ],
    },
    "MailboxScanStale": {
        # promtool's clock starts at 0: a last success at 0 is `eval_time` old.
        "input_series": [
            series("bounce_mailbox_scan_interval_seconds", "900x120", "a", mailbox="returns"),
            series("bounce_mailbox_scan_interval_seconds", "900x120", "b", mailbox="returns"),
            series("bounce_mailbox_last_success_timestamp_seconds", "0x120", "a", mailbox="returns"),
            series("bounce_mailbox_last_success_timestamp_seconds", "0x120", "b", mailbox="returns"),
            # Scanned hourly: three hours of grace, not 45 minutes.
            series("bounce_mailbox_scan_interval_seconds", "3600x120", "a", mailbox="fbl"),
            series("bounce_mailbox_last_success_timestamp_seconds", "0x120", "a", mailbox="fbl"),
            # Removed from the config (no interval any more) but still in mailbox_scans: never alerts.
            series("bounce_mailbox_last_success_timestamp_seconds", "0x120", "a", mailbox="old"),
            # Scanned every 15 minutes, on time.
            series("bounce_mailbox_scan_interval_seconds", "900x120", "a", mailbox="fresh"),
            series("bounce_mailbox_last_success_timestamp_seconds", "0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 900+900x7 7200x100",
                   "a", mailbox="fresh"),
            # Added with a wrong password: never a successful scan since it was first waited for, at 0.
            series("bounce_mailbox_scan_interval_seconds", "900x120", "a", mailbox="new"),
            series("bounce_mailbox_watched_since_timestamp_seconds", "0x120", "a", mailbox="new"),
            # First scanned successfully at 30m, on time since: replica b's older view (no success seen
            # yet, waiting since 0) does not outweigh replica a's.
            series("bounce_mailbox_scan_interval_seconds", "900x120", "a", mailbox="added"),
            series("bounce_mailbox_watched_since_timestamp_seconds", "0x120", "b", mailbox="added"),
            series("bounce_mailbox_last_success_timestamp_seconds", "_x29 1800+60x90", "a", mailbox="added"),
        ],
        "alert_rule_test": [
            expect("MailboxScanStale", "49m"),  # stale since 45m, pending for 5m
            expect("MailboxScanStale", "51m", *[{
                "labels": {"severity": "warning", "namespace": NS, "service": SVC, "mailbox": mailbox},
                "summary": f"Bounce mailbox {mailbox} has not been scanned successfully for 3 intervals.",
                "description": f"No scan of mailbox {mailbox} ({WHERE}) has succeeded for 51m 0s. Its bounces are not "
                               "being recorded: look at the scanner CronJob's last Jobs and the BounceConfig's "
                               "status.mailboxes.",
            } for mailbox in ("new", "returns")]),
        ],
    },
    "BounceAuthFailureSpike": {
        "input_series": [
            series("bounce_auth_failures_total", "0+6x30", "a", provider="sendgrid"),  # 0.1/s
            series("bounce_auth_failures_total", "0+1x30", "a", provider="ses"),  # one a minute: noise
            series("bounce_auth_failures_total", "0+1x30", "b", provider="ses"),
        ],
        "alert_rule_test": [
            expect("BounceAuthFailureSpike", "9m"),
            expect("BounceAuthFailureSpike", "20m", {
                "labels": {"severity": "warning", "namespace": NS, "service": SVC, "provider": "sendgrid"},
                "summary": "Many sendgrid requests are refused for bad credentials or signatures.",
                "description": f"0.10 requests a second to the sendgrid endpoint of {WHERE} fail authentication. "
                               "Either a secret was rotated on one side only (the provider's events are being lost "
                               "to retries) or someone is probing the endpoint.",
            }),
        ],
    },
    "BounceServiceDown": {
        "input_series": [
            series("up", "1 1 0x20", "a"),
            series("up", "1 1 0x20", "b"),
            series("up", "0x20", "a", service="half"),  # one of two replicas down: still served
            series("up", "1x20", "b", service="half"),
        ],
        "alert_rule_test": [
            expect("BounceServiceDown", "6m"),
            expect("BounceServiceDown", "8m", SERVICE_DOWN),
        ],
    },
    "BounceDatabaseDown": {
        "input_series": [
            series("bounce_database_up", "1 0x20", "a"),
            series("bounce_database_up", "1 0x20", "b"),
            series("bounce_database_up", "0x20", "a", service="half"),
            series("bounce_database_up", "1x20", "b", service="half"),
        ],
        "alert_rule_test": [
            expect("BounceDatabaseDown", "5m"),
            expect("BounceDatabaseDown", "7m", {
                "labels": {"severity": "critical", "namespace": NS, "service": SVC},
                "summary": f"Bounce service {WHERE} cannot reach its database.",
                "description": f"No replica of {WHERE} reaches PostgreSQL: webhooks are answered 503 (providers retry "
                               "for a while) and mailbox scans record nothing. Check the database and the "
                               "`database.url` Secret.",
            }),
        ],
    },
}


def promtool(*args: str, cwd: Path) -> str:
    result = subprocess.run(["promtool", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def run_rule_tests(directory: Path, groups: list[dict[str, Any]], tests: list[dict[str, Any]]) -> str:
    """Write `groups` as a rule file, check it, and run promtool's unit tests `tests` against it."""
    (directory / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    promtool("check", "rules", "rules.yaml", cwd=directory)
    (directory / "tests.yaml").write_text(yaml.safe_dump(
        {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": tests}, sort_keys=False))
    return promtool("test", "rules", "tests.yaml", cwd=directory)


def test_every_alert_has_a_case() -> None:
    (group,) = alert_rules(SVC, NS)
    assert [rule["alert"] for rule in group["rules"]] == list(CASES) == list(HOLD)


@pytest.mark.parametrize("alert", list(CASES))
def test_alert_fires_only_when_it_should(alert: str, tmp_path: Path, prometheus_tools) -> None:
    assert "SUCCESS" in run_rule_tests(tmp_path, alert_rules(SVC, NS), [{"interval": "1m", **CASES[alert]}])


def test_a_vanished_service_is_down(tmp_path: Path, prometheus_tools) -> None:
    """No target at all (no pods, no ServiceMonitor) is as bad as failing targets, for a named service."""
    other = series("up", "1x20", "a", service="other")
    run_rule_tests(tmp_path, alert_rules(SVC, NS), [{"interval": "1m", "input_series": [other], "alert_rule_test": [
        expect("BounceServiceDown", "4m"),
        expect("BounceServiceDown", "6m", SERVICE_DOWN),
    ]}])


def test_cluster_wide_rules_cover_every_bounce_service_and_nothing_else(tmp_path: Path, prometheus_tools) -> None:
    rate = "bounce_campaign_bounce_rate"
    inputs = [
        series(rate, "0.0625x30", "a", namespace="mail", service="newsletters", campaign_uuid=SPRING, campaign="Spring"),
        series(rate, "0.0625x30", "a", namespace="shop", service="receipts", campaign_uuid=AUTUMN, campaign="Autumn"),
        series("up", "0x20", "a", namespace="shop", service="receipts"),
        # Another application's target that is down is not a bounce service.
        {"series": 'up{namespace="shop", service="cart", job="cart", container="cart", pod="cart-a"}', "values": "0x20"},
    ]
    rules = alert_rules()
    firing = {rule["alert"]: rule for rule in rules[0]["rules"]}
    assert "absent" not in firing["BounceServiceDown"]["expr"]  # a cluster without bounce services is fine
    output = run_rule_tests(tmp_path, rules, [{"interval": "1m", "input_series": inputs, "alert_rule_test": [
        expect("BounceRateHigh", "16m", *[{
            "labels": {"severity": "warning", "namespace": ns, "service": svc, "campaign_uuid": uuid, "campaign": name},
            "summary": f"Campaign {name} bounces more than 5% of its sends.",
            "description": f"6.25% of campaign {name} ({uuid}) bounced ({ns}/{svc}). Mailbox providers throttle or "
                           "block senders above 5%: stop sending to the list and clean it before the next campaign.",
        } for ns, svc, uuid, name in (("mail", "newsletters", SPRING, "Spring"), ("shop", "receipts", AUTUMN, "Autumn"))]),
        expect("BounceServiceDown", "6m", {
            "labels": {"severity": "critical", "namespace": "shop", "service": "receipts"},
            "summary": "No replica of bounce service shop/receipts is up.",
            "description": "Prometheus cannot scrape any replica of shop/receipts. Providers' webhooks fail while it "
                           "is down and some providers give up retrying within hours: check the Deployment's pods "
                           "and the database (the service waits for it at start).",
        }),
    ]}])
    assert "SUCCESS" in output


def test_hold_overrides_for_and_refuses_unknown_alerts() -> None:
    (group,) = alert_rules(SVC, NS, hold={"BounceRateHigh": "0s"})
    holds = {rule["alert"]: rule["for"] for rule in group["rules"]}
    assert holds == {**HOLD, "BounceRateHigh": "0s"}
    with pytest.raises(ValueError, match="BounceRateHigj"):
        alert_rules(SVC, NS, hold={"BounceRateHigj": "0s"})
    with pytest.raises(ValueError, match="both"):
        alert_rules(SVC)


def test_every_bounce_service_is_found_by_its_container_name() -> None:
    """The cluster-wide rules select targets by `container`: the name the operator gives the service's."""
    spec, violations = validate_spec(yaml.safe_load((ROOT / "examples/bounceconfig.yaml").read_text())["spec"])
    assert violations == []
    deployment = render_deployment(Owner(SVC, NS, "uid"), spec, "checksum")
    assert [c["name"] for c in deployment["spec"]["template"]["spec"]["containers"]] == [CONTAINER]


def test_docs_show_every_alert_as_it_is() -> None:
    """docs/alerts.md quotes each cluster-wide expression verbatim (whitespace aside) and its `for`."""
    docs = " ".join((ROOT / "docs/alerts.md").read_text().split())
    for rule in alert_rules()[0]["rules"]:
        assert f"## {rule['alert']}" in docs
        assert " ".join(rule["expr"].split()) in docs, rule["alert"]
        assert f"[{rule['alert']}](#{rule['alert'].lower()}) | {rule['labels']['severity']} | {rule['for']} |" in docs
