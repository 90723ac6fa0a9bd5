"""A real monitoring stack on 127.0.0.1: `bounce-service serve` on a database, and Debian's Prometheus
scraping it (1 s scrape and rule evaluation) with rules rendered from `alert_rules`.

Used by the end-to-end tests and by scripts/render_dashboard.py. Targets carry the labels a
prometheus-operator ServiceMonitor gives them (namespace, service, container, pod, job = service), so the
rules and the dashboard see what they see in a cluster.
"""

from __future__ import annotations

import json
import subprocess
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import httpx
import yaml

from bounce_service.devdb import free_port
from tests.conftest import ROOT
from tests.serving import serve

T = TypeVar("T")
MAILER = ("mailer", "dev-mailer-token")  # examples/secrets: may post bounces and upsert campaigns
DASHBOARD = ROOT / "charts/bounce-operator/files/dashboard.json"


def dashboard_queries(rate_interval: str = "5s", range_: str = "1m") -> dict[str, list[tuple[str, str]]]:
    """Each panel's (query, legend format) with Grafana's variables as Grafana would fill them in for "All"."""
    fill = {"$namespace": ".*", "$service": ".*", "$__rate_interval": rate_interval, "$__range": range_}
    panels = {}
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        queries = []
        for target in panel["targets"]:
            expr = target["expr"]
            for variable, value in sorted(fill.items(), key=lambda item: -len(item[0])):  # $__range_... first
                expr = expr.replace(variable, value)
            queries.append((expr, target.get("legendFormat", "")))
        panels[panel["title"]] = queries
    return panels


def poll(check: Callable[[], T | None], what: str, deadline: float = 20.0, every: float = 0.2) -> T:
    """Return the first truthy `check()`; fail naming `what` once `deadline` seconds have passed."""
    end = time.monotonic() + deadline
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {deadline:.0f}s waiting for {what}")
        time.sleep(every)  # polling interval between checks of a condition, not synchronisation


@dataclass(frozen=True)
class Target:
    """One scrape target, labelled as a ServiceMonitor would label a bounce service's pod."""

    port: int
    namespace: str
    service: str

    def scrape_config(self) -> dict[str, Any]:
        labels = {"namespace": self.namespace, "service": self.service, "container": "bounce-service",
                  "pod": f"{self.service}-0"}
        return {"job_name": self.service, "static_configs": [{"targets": [f"127.0.0.1:{self.port}"], "labels": labels}]}


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=5)

    def _get(self, path: str, **params: Any) -> Any:
        body = self.http.get(path, params=params).json()
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        return self._get("/api/v1/query", query=expr)["result"]

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        return self._get("/api/v1/query_range", query=expr, start=start, end=end, step=step)["result"]

    def alerts(self, name: str) -> list[dict[str, Any]]:
        """Every firing alert `name` (labels, annotations, value), sorted by labels."""
        alerts = [a for a in self._get("/api/v1/alerts")["alerts"]
                  if a["labels"]["alertname"] == name and a["state"] == "firing"]
        return sorted(alerts, key=lambda a: sorted(a["labels"].items()))


@contextmanager
def prometheus(directory: Path, targets: list[Target], groups: list[dict[str, Any]]) -> Iterator[Prometheus]:
    """Debian's `prometheus` on a free port, with `groups` as its rules, until the block ends."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(directory / "rules.yaml")],
        "scrape_configs": [target.scrape_config() for target in targets],
    }
    (directory / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    port = free_port()
    log = (directory / "prometheus.log").open("w")
    process = subprocess.Popen(
        ["prometheus", f"--config.file={directory / 'prometheus.yml'}", f"--storage.tsdb.path={directory / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    server = Prometheus(f"http://127.0.0.1:{port}")

    def ready() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"prometheus exited with {process.returncode}: {(directory / 'prometheus.log').read_text()}")
        try:
            return server.http.get("/-/ready").status_code == 200
        except httpx.TransportError:
            return False

    try:
        poll(ready, "prometheus to be ready", deadline=30, every=0.05)
        yield server
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


@contextmanager
def bounce_service(database_url: str, config: Path, secrets: Path = ROOT / "examples/secrets") -> Iterator[str]:
    """`bounce-service serve` (tests.serving.serve) with `config`; yields its URL once it is ready."""
    with serve(database_url, workers=None, config=config, secrets_dir=secrets) as (url, _):
        yield url


def service_config(directory: Path, mailboxes: dict[str, str], webhooks: dict[str, Any] | None = None) -> Path:
    """examples/bounceconfig.yaml with bounce mailboxes {name: scanInterval} (never scanned by the tests)
    and provider `webhooks`."""
    document = yaml.safe_load((ROOT / "examples/bounceconfig.yaml").read_text())
    document["spec"]["mailboxes"] = [
        {"name": name, "host": "pop.example.invalid", "scanInterval": interval, "username": "bounces",
         "password": {"secretRef": {"name": "bounce-api", "key": "mailer"}}}
        for name, interval in mailboxes.items()
    ]
    document["spec"]["webhooks"] = webhooks or {}
    path = directory / "bounceconfig.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def record(client: httpx.Client, campaign: tuple[str, str], sent: int, bounces: dict[str, int], source: str,
           start: int = 0) -> None:
    """Tell the service campaign (uuid, name) sent `sent` messages and post `bounces` {type: n} for it."""
    uuid, name = campaign
    response = client.post("/api/campaigns", auth=MAILER, json={"uuid": uuid, "name": name, "sent": sent})
    assert response.status_code == 200, response.text
    events = [{"email": f"c{uuid[:8]}-{index}@example.com", "type": kind, "source": source,
               "campaign_uuid": uuid, "event_id": f"{uuid}-{index}"}
              for index, kind in enumerate((kind for kind, n in bounces.items() for _ in range(n)), start)]
    if events:  # one request, one transaction
        response = client.post("/webhooks/bounce", auth=MAILER, json=events)
        assert response.status_code == 200, response.text


@contextmanager
def stack(directory: Path, database_url: str, groups: list[dict[str, Any]], *, mailboxes: dict[str, str],
          prepare: Callable[[httpx.Client], None], extra_targets: tuple[Target, ...] = (),
          webhooks: dict[str, Any] | None = None) -> Iterator[tuple[Prometheus, httpx.Client]]:
    """The service on `database_url`, `prepare(client)` run on it, then Prometheus scraping it.

    Prometheus starts only after `prepare`: the service refreshes its database gauges at most every 10 s
    per scrape, so the first scrape must already see the prepared data.
    """
    with ExitStack() as stack_:
        url = stack_.enter_context(bounce_service(database_url, service_config(directory, mailboxes, webhooks)))
        client = stack_.enter_context(httpx.Client(base_url=url, timeout=10))
        prepare(client)
        target = Target(int(url.rsplit(":", 1)[1]), "mail", "newsletters")
        server = stack_.enter_context(prometheus(directory / "prometheus", [target, *extra_targets], groups))
        yield server, client
