"""The README's metric table is the reference SREs read: it names every metric /metrics exports, with its
type, and nothing that is not exported."""

from __future__ import annotations

import re

from bounce_operator.alerts import alert_rules
from tests.conftest import ROOT


def documented() -> dict[str, str]:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Metrics"):readme.index("\n## ", readme.index("## Metrics") + 1)]
    return dict(re.findall(r"^\| `(bounce_\w+)` \| (\w+) \|", section, re.M))


async def test_the_readme_documents_every_exported_metric_with_its_type(make_client) -> None:
    client = await make_client(mailboxes=[{"name": "returns", "host": "pop.example.com", "auth": "none",
                                           "scanInterval": "15m"}])
    text = (await client.get("/metrics")).text
    exported = dict(re.findall(r"^# TYPE (bounce_\w+) (\w+)$", text, re.M))
    assert documented() == exported
    assert "_created" not in text


def test_the_readme_lists_every_alert_with_its_severity() -> None:
    readme = (ROOT / "README.md").read_text()
    listed = dict(re.findall(r"^\| `([A-Z]\w+)` \| (warning|critical) \|", readme, re.M))
    assert listed == {rule["alert"]: rule["labels"]["severity"] for rule in alert_rules()[0]["rules"]}
