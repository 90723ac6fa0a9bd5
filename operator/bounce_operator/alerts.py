"""Prometheus alert rules for bounce services: the one source of the operator's PrometheusRule (one
service), the chart's PrometheusRule (every bounce service a Prometheus scrapes) and docs/alerts.md.

Label conventions are the prometheus-operator's for a ServiceMonitor target: `namespace`, `service`
(the Service, named after the BounceConfig), `container`. Every expression aggregates with `max`/`sum
by (namespace, service, ...)` so an alert names its service whichever mode produced it, and the
database-derived gauges (identical on every replica) yield one alert, not one per pod.

    python -m bounce_operator.alerts > charts/bounce-operator/files/alerts.yaml
"""

from __future__ import annotations

import sys
from typing import Any, Mapping

import yaml

BOUNCE_RATE_THRESHOLD = 0.05  # mailbox providers start throttling and blocking senders around 5%
COMPLAINT_RATE_THRESHOLD = 0.001  # Gmail and Yahoo's bulk-sender rules: keep spam complaints under 0.1%
STALE_SCAN_INTERVALS = 3  # one failed or skipped scan is noise; three in a row means nobody reads bounces
AUTH_FAILURES_PER_SECOND = 0.05  # 3 a minute, for 10 minutes: a rotated secret or a probe, not a stray request
CONTAINER = "bounce-service"  # the service's container name (render.render_deployment), a target label

# How long each condition must hold before its alert fires. Tests evaluate the rules with other values.
HOLD: dict[str, str] = {
    "BounceRateHigh": "15m",
    "ComplaintRateHigh": "15m",
    "MailboxScanStale": "5m",
    "BounceAuthFailureSpike": "10m",
    "BounceServiceDown": "5m",
    "BounceDatabaseDown": "5m",
}


def _selector(service: str | None, namespace: str | None) -> str:
    if service is None and namespace is None:
        return f'container="{CONTAINER}"'
    if service is None or namespace is None:
        raise ValueError("give both service and namespace, or neither (every bounce service)")
    return f'namespace="{namespace}", service="{service}"'


def alert_rules(service: str | None = None, namespace: str | None = None, *,
                hold: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """The `spec.groups` of a PrometheusRule for the bounce service `service` in `namespace`, or, with
    neither, for every bounce service. `hold` overrides the `for` of some alerts (see HOLD)."""
    unknown = set(hold or {}) - set(HOLD)
    if unknown:
        raise ValueError(f"no such alerts: {sorted(unknown)}")
    durations = {**HOLD, **(hold or {})}
    sel = _selector(service, namespace)
    by = "namespace, service"
    where = "{{ $labels.namespace }}/{{ $labels.service }}"

    def rule(alert: str, expr: str, severity: str, summary: str, description: str) -> dict[str, Any]:
        return {
            "alert": alert,
            "expr": expr,
            "for": durations[alert],
            "labels": {"severity": severity},
            "annotations": {"summary": summary, "description": description},
        }

    up = f"max by ({by}) (up{{{sel}}}) == 0"
    if service is not None:
        # A service whose targets vanished altogether (no pods, no ServiceMonitor) is down too. Only for
        # one named service: for "every bounce service" it would fire on clusters that have none yet.
        up += f" or absent(up{{{sel}}})"
    rules = [
        rule(
            "BounceRateHigh",
            f"max by ({by}, campaign_uuid, campaign) (bounce_campaign_bounce_rate{{{sel}}})"
            f" > {BOUNCE_RATE_THRESHOLD}",
            "warning",
            "Campaign {{ $labels.campaign }} bounces more than 5% of its sends.",
            "{{ $value | humanizePercentage }} of campaign {{ $labels.campaign }} ({{ $labels.campaign_uuid }}) "
            f"bounced ({where}). Mailbox providers throttle or block senders above 5%: stop sending to the "
            "list and clean it before the next campaign.",
        ),
        rule(
            "ComplaintRateHigh",
            f"max by ({by}, campaign_uuid, campaign) (bounce_campaign_complaint_rate{{{sel}}})"
            f" > {COMPLAINT_RATE_THRESHOLD}",
            "warning",
            "Campaign {{ $labels.campaign }} draws more than 0.1% spam complaints.",
            "{{ $value | humanizePercentage }} of campaign {{ $labels.campaign }} ({{ $labels.campaign_uuid }}) "
            f"was reported as spam ({where}). Gmail and Yahoo require bulk senders to stay under 0.1% (and "
            "never reach 0.3%): check consent and unsubscribe links of that list.",
        ),
        rule(
            "MailboxScanStale",
            # A mailbox never scanned successfully is measured from when it was first waited for. The
            # interval gauge exists for configured mailboxes only, so a removed mailbox stops alerting.
            f"time() - max by ({by}, mailbox) (bounce_mailbox_last_success_timestamp_seconds{{{sel}}}"
            f" or bounce_mailbox_watched_since_timestamp_seconds{{{sel}}})"
            f" > {STALE_SCAN_INTERVALS} * max by ({by}, mailbox) (bounce_mailbox_scan_interval_seconds{{{sel}}})",
            "warning",
            "Bounce mailbox {{ $labels.mailbox }} has not been scanned successfully for 3 intervals.",
            "No scan of mailbox {{ $labels.mailbox }} "
            f"({where}) has succeeded for {{{{ $value | humanizeDuration }}}}. Its bounces are not being "
            "recorded: look at the scanner CronJob's last Jobs and the BounceConfig's status.mailboxes.",
        ),
        rule(
            "BounceAuthFailureSpike",
            f"sum by ({by}, provider) (rate(bounce_auth_failures_total{{{sel}}}[5m]))"
            f" > {AUTH_FAILURES_PER_SECOND}",
            "warning",
            "Many {{ $labels.provider }} requests are refused for bad credentials or signatures.",
            "{{ $value | printf \"%.2f\" }} requests a second to the {{ $labels.provider }} endpoint of "
            f"{where} fail authentication. Either a secret was rotated on one side only (the provider's "
            "events are being lost to retries) or someone is probing the endpoint.",
        ),
        rule(
            "BounceServiceDown",
            up,
            "critical",
            f"No replica of bounce service {where} is up.",
            f"Prometheus cannot scrape any replica of {where}. Providers' webhooks fail while it is down "
            "and some providers give up retrying within hours: check the Deployment's pods and the "
            "database (the service waits for it at start).",
        ),
        rule(
            "BounceDatabaseDown",
            f"max by ({by}) (bounce_database_up{{{sel}}}) == 0",
            "critical",
            f"Bounce service {where} cannot reach its database.",
            f"No replica of {where} reaches PostgreSQL: webhooks are answered 503 (providers retry for a "
            "while) and mailbox scans record nothing. Check the database and the `database.url` Secret.",
        ),
    ]
    name = "bounce-operator" if service is None else f"bounce-operator.{service}"
    return [{"name": name, "rules": rules}]


def main() -> None:
    """Print the rules for every bounce service, as a Prometheus rule file (the chart ships this)."""
    header = "# Generated by `python -m bounce_operator.alerts` (operator/bounce_operator/alerts.py).\n"
    sys.stdout.write(header + yaml.safe_dump({"groups": alert_rules()}, sort_keys=False, width=1000))


if __name__ == "__main__":
    main()
