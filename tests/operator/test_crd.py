"""The CRD is a valid CustomResourceDefinition, and the examples pass it (and the service's loader) while
broken specs fail it for the right reason."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Callable

import celpy
import pytest
import yaml
from bounce_operator.refs import all_refs
from bounce_service.config import build_config
from bounce_service.schema import validate_spec
from bounce_service.secrets import SecretRef, SecretSource

from .schemas import schema_errors

ROOT = Path(__file__).resolve().parents[2]
CRD = yaml.safe_load((ROOT / "crds/bounceconfigs.yaml").read_text())
EXAMPLES = sorted(
    path for path in (ROOT / "examples").glob("*.yaml")
    if yaml.safe_load(path.read_text()).get("kind") == "BounceConfig"
)


def root_violations(manifest: dict[str, Any]) -> list[str]:
    """The root-level CEL rules (on metadata.name), which the API server runs and the service never sees."""
    root = CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    env = celpy.Environment()
    return [
        rule["message"] for rule in root.get("x-kubernetes-validations", [])
        if not env.program(env.compile(rule["rule"])).evaluate({"self": celpy.json_to_cel(manifest)})
    ]


def test_the_crd_is_a_valid_custom_resource_definition() -> None:
    assert schema_errors(CRD) == []


def test_the_crd_names_and_serves_bounceconfigs() -> None:
    spec = CRD["spec"]
    assert (spec["group"], spec["scope"], spec["names"]["kind"]) == ("bounce-operator.io", "Namespaced", "BounceConfig")
    assert spec["names"]["shortNames"]
    (version,) = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}
    assert [c["name"] for c in version["additionalPrinterColumns"]] == ["Ready", "URL", "Mailboxes", "Age"]
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    assert {"observedGeneration", "conditions", "url", "mailboxCount", "mailboxes"} <= set(status)


def test_there_are_examples() -> None:
    assert {path.name for path in EXAMPLES} >= {"bounceconfig.yaml", "bounceconfig-full.yaml"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.name)
def test_each_example_passes_the_crd_and_the_service_loader(path: Path) -> None:
    manifest = yaml.safe_load(path.read_text())
    assert schema_errors(manifest) == []
    assert root_violations(manifest) == []
    spec, violations = validate_spec(manifest["spec"])
    assert violations == []
    # Every secret the operator would mount resolves, so the service starts with this very document.
    environ = {SecretRef(ref.name, ref.key).env_var: "value" for ref in all_refs(spec)}
    config = build_config(manifest["spec"], secrets=SecretSource(directory=None, environ=environ), environ={})
    assert config.spec == spec


def full() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "examples/bounceconfig-full.yaml").read_text())


def mutate(change: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    manifest = copy.deepcopy(full())
    change(manifest["spec"])
    return manifest


INVALID = [
    pytest.param(lambda s: s["mailboxes"][0].update(scanInterval="7m"), "spec.mailboxes[0].scanInterval",
                 "scanInterval must be whole minutes dividing an hour", id="interval-not-cron"),
    pytest.param(lambda s: s["mailboxes"][0].update(scanInterval="30s"), "spec.mailboxes[0].scanInterval",
                 "scanInterval must be at least 1m", id="interval-too-short"),
    pytest.param(lambda s: s["mailboxes"].append(dict(s["mailboxes"][0])), "spec.mailboxes",
                 "mailbox names must be unique", id="duplicate-mailbox"),
    pytest.param(lambda s: s["mailboxes"][0].update(name="Returns"), "spec.mailboxes[0].name",
                 "must match the pattern", id="mailbox-name-not-dns"),
    pytest.param(lambda s: s["mailboxes"][0].pop("password"), "spec.mailboxes[0]",
                 "auth userpass requires username and password", id="mailbox-without-password"),
    pytest.param(lambda s: s["service"]["ingress"].pop("host"), "spec.service.ingress",
                 "ingress enabled requires host", id="ingress-without-host"),
    pytest.param(lambda s: s["service"].update(replicas=-1), "spec.service.replicas", "must be >= 0",
                 id="negative-replicas"),
    pytest.param(lambda s: s["webhooks"]["ses"].update(topicArns=[]), "spec.webhooks.ses",
                 "ses enabled requires at least one topicArns entry", id="ses-without-topics"),
    pytest.param(lambda s: s["database"]["url"].update(value="postgresql://inline"), "spec.database.url.value",
                 "unknown field", id="inline-secret"),
    pytest.param(lambda s: s["actions"]["hard"].update(action="bounce"), "spec.actions.hard.action",
                 "must be one of", id="unknown-action"),
]


@pytest.mark.parametrize(("change", "path", "message"), INVALID)
def test_invalid_specs_fail_for_the_right_reason(change: Callable, path: str, message: str) -> None:
    _, violations = validate_spec(mutate(change)["spec"])
    assert [(v.path, message in v.message) for v in violations] == [(path, True)], violations


@pytest.mark.parametrize("change", [p.values[0] for p in INVALID if p.id in
                                    ("mailbox-name-not-dns", "negative-replicas", "inline-secret", "unknown-action")])
def test_structural_errors_also_fail_the_crd_schema(change: Callable) -> None:
    assert schema_errors(mutate(change)) != []


@pytest.mark.parametrize("name", ["1mail", "Mail", "mail.example", "m" * 64])
def test_names_that_cannot_name_a_service_are_refused(name: str) -> None:
    manifest = full()
    manifest["metadata"]["name"] = name
    assert root_violations(manifest) == [CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
                                         ["x-kubernetes-validations"][0]["message"]]
