"""Prometheus alert rules for one bounce service, shared by the operator's PrometheusRule and the chart."""

from __future__ import annotations

from typing import Any

BOUNCE_RATE_THRESHOLD = 0.05  # mailbox providers start throttling and blocking senders around 5%


def alert_rules(service: str, namespace: str) -> list[dict[str, Any]]:
    """The `spec.groups` of a PrometheusRule watching the service `service` in `namespace`.

    `bounce_campaign_bounce_rate` is derived from the database, so every replica reports the same value;
    `max by (campaign)` collapses the replicas instead of multiplying alerts.
    """
    selector = f'namespace="{namespace}", service="{service}"'
    return [
        {
            "name": f"bounce-operator.{service}",
            "rules": [
                {
                    "alert": "BounceRateHigh",
                    "expr": f"max by (campaign) (bounce_campaign_bounce_rate{{{selector}}}) > {BOUNCE_RATE_THRESHOLD}",
                    "for": "15m",
                    "labels": {"severity": "warning"},
                    "annotations": {
                        "summary": "Campaign {{ $labels.campaign }} bounces more than 5% of its sends.",
                        "description": (
                            f"Bounce rate is {{{{ $value | humanizePercentage }}}} for campaign "
                            f"{{{{ $labels.campaign }}}} ({namespace}/{service}). Check the list's hygiene "
                            "before mailbox providers throttle the sender."
                        ),
                    },
                },
            ],
        }
    ]
