"""The CRD is a valid CustomResourceDefinition, and the examples pass it (and the service's loader) while
broken specs fail it for the right reason."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Callable, Iterator

import celpy
import jsonschema
import pytest
import yaml
from bounce_operator.refs import all_refs
from bounce_operator.schedule import InvalidSchedule, cron_schedule
from bounce_service.config import ConfigError, load_config
from bounce_service.schema import apply_defaults, validate_spec
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
    # Every secret the operator would mount resolves, so the service starts with this very file.
    database = SecretRef.from_spec(spec["database"]["url"])
    environ = {SecretRef(ref.name, ref.key).env_var: "value" for ref in all_refs(spec)}
    environ[database.env_var] = "postgresql://bounce@db.example/bounce"  # one that libpq can read
    config = load_config(path, secrets=SecretSource(directory=None, environ=environ), environ={})
    assert config.spec == spec


def schema_nodes(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from schema_nodes(child, f"{path}.{name}")
    if "items" in node:
        yield from schema_nodes(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from schema_nodes(node["additionalProperties"], f"{path}{{}}")


ROOT_SCHEMA = CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def test_the_schema_is_structural() -> None:
    """What the API server requires of a CRD schema beyond its shape, which kubernetes-validate cannot see."""
    problems = []
    for path, node in schema_nodes(ROOT_SCHEMA):
        if "type" not in node and not node.get("x-kubernetes-int-or-string"):
            problems.append(f"{path}: no type")
        for key in node.get("x-kubernetes-list-map-keys", []):
            item = node["items"]
            if key not in item.get("required", []) and "default" not in item["properties"][key]:
                problems.append(f"{path}: list-map key {key} is neither required nor defaulted")
        if "default" in node:
            # The API server validates defaults (after defaulting them in turn) and refuses a CRD whose do not.
            value = apply_defaults(node, copy.deepcopy(node["default"]))
            errors = list(jsonschema.Draft7Validator(node).iter_errors(value))
            problems += [f"{path}: default {node['default']!r} invalid: {e.message}" for e in errors]
        for rule in node.get("x-kubernetes-validations", []):
            if not rule.get("message"):
                problems.append(f"{path}: rule {rule['rule']!r} has no message")
            celpy.Environment().compile(rule["rule"])  # raises on a rule that does not parse
    assert problems == []


def test_every_spec_field_is_bounded() -> None:
    """Unbounded strings, lists and maps make the API server's CEL cost estimate refuse the rules above them,
    and let one object grow to the etcd limit."""
    unbounded = []
    for path, node in schema_nodes(ROOT_SCHEMA["properties"]["spec"], "spec"):
        kind = node.get("type")
        if kind == "string" and not {"maxLength", "enum"} & set(node):
            unbounded.append(path)
        elif kind == "array" and "maxItems" not in node:
            unbounded.append(path)
        elif kind == "integer" and not {"minimum", "maximum"} <= set(node):
            unbounded.append(path)
        elif kind == "object" and "additionalProperties" in node and "maxProperties" not in node:
            unbounded.append(path)
    assert unbounded == []


def test_secrets_are_only_ever_references() -> None:
    """No field that holds a credential takes a string: each is an object with just a secretRef."""
    credentials = {"url", "token", "password", "secret", "verificationKey"}
    found = []
    for path, node in schema_nodes(ROOT_SCHEMA["properties"]["spec"], "spec"):
        name = path.rsplit(".", 1)[-1]
        if name in credentials:
            assert node["type"] == "object" and set(node["properties"]) == {"secretRef"}, path
            assert node["required"] == ["secretRef"], path
            found.append(path)
    assert len(found) >= 10


def full() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "examples/bounceconfig-full.yaml").read_text())


def mutate(change: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    manifest = copy.deepcopy(full())
    change(manifest["spec"])
    return manifest


def enable(provider: str) -> Callable[[dict[str, Any]], Any]:
    return lambda spec: spec["webhooks"].update({provider: {"enabled": True}})


SCAN_RULE = "scanInterval must be whole minutes dividing an hour"
STRUCTURAL = [  # (change, path, what the loader says); the CRD's own schema refuses these too
    pytest.param(lambda s: s["mailboxes"][0].update(name="Returns"), "spec.mailboxes[0].name",
                 "must match the pattern", id="mailbox-name-not-dns"),
    pytest.param(lambda s: s["mailboxes"][0].update(host="pop..example.com"), "spec.mailboxes[0].host",
                 "must match the pattern", id="mailbox-host-not-a-host"),
    pytest.param(lambda s: s["mailboxes"][0].update(port=99999), "spec.mailboxes[0].port", "must be <= 65535",
                 id="port-out-of-range"),
    pytest.param(lambda s: s["mailboxes"][0].update(scanInterval="15 minutes"), "spec.mailboxes[0].scanInterval",
                 "must be a duration such as 90s, 15m or 720h", id="interval-not-a-duration"),
    pytest.param(lambda s: s["mailboxes"][0].update(protocol="smtp"), "spec.mailboxes[0].protocol",
                 "must be one of: pop3, imap", id="unknown-protocol"),
    pytest.param(lambda s: s["mailboxes"][0].pop("host"), "spec.mailboxes[0].host", "is required", id="no-host"),
    pytest.param(lambda s: s["service"].update(replicas=-1), "spec.service.replicas", "must be >= 0",
                 id="negative-replicas"),
    pytest.param(lambda s: s["service"]["ingress"].update(host="Bounces.Example.com"), "spec.service.ingress.host",
                 "must match the pattern", id="ingress-host-not-lowercase"),
    pytest.param(lambda s: s["database"]["url"].update(value="postgresql://inline"), "spec.database.url.value",
                 "unknown field", id="inline-secret"),
    pytest.param(lambda s: s["mailboxes"][0].update(password="hunter2"), "spec.mailboxes[0].password",
                 "must be an object", id="inline-password"),
    pytest.param(lambda s: s["actions"]["hard"].update(action="bounce"), "spec.actions.hard.action",
                 "must be one of", id="unknown-action"),
    pytest.param(lambda s: s["api"]["users"][0].update(permissions=["bounces:everything"]),
                 "spec.api.users[0].permissions[0]", "must be one of", id="unknown-permission"),
]
RULES = [  # what only the CEL rules (x-kubernetes-validations) can say
    pytest.param(lambda s: s["mailboxes"][0].update(scanInterval="7m"), "spec.mailboxes[0].scanInterval",
                 SCAN_RULE, id="interval-not-cron"),
    pytest.param(lambda s: s["mailboxes"][0].update(scanInterval="90m"), "spec.mailboxes[0].scanInterval",
                 SCAN_RULE, id="interval-not-dividing-a-day"),
    pytest.param(lambda s: s["mailboxes"][0].update(scanInterval="60500ms"), "spec.mailboxes[0].scanInterval",
                 SCAN_RULE, id="interval-not-whole-minutes"),
    pytest.param(lambda s: s["mailboxes"][0].update(scanInterval="30s"), "spec.mailboxes[0].scanInterval",
                 "scanInterval must be at least 1m", id="interval-too-short"),
    pytest.param(lambda s: s["mailboxes"][0].update(timeout="0ms"), "spec.mailboxes[0].timeout",
                 "timeout must be more than 0s", id="timeout-zero"),
    pytest.param(lambda s: s["mailboxes"].append(dict(s["mailboxes"][0])), "spec.mailboxes",
                 "mailbox names must be unique", id="duplicate-mailbox"),
    pytest.param(lambda s: s["api"]["users"].append(dict(s["api"]["users"][0])), "spec.api.users",
                 "api user names must be unique", id="duplicate-user"),
    pytest.param(lambda s: s["mailboxes"][0].pop("password"), "spec.mailboxes[0]",
                 "auth userpass requires username and password", id="mailbox-without-password"),
    pytest.param(lambda s: s["service"]["ingress"].pop("host"), "spec.service.ingress",
                 "ingress enabled requires host", id="ingress-without-host"),
    pytest.param(lambda s: s["webhooks"]["ses"].update(topicArns=[]), "spec.webhooks.ses",
                 "ses enabled requires at least one topicArns entry", id="ses-without-topics"),
    pytest.param(lambda s: s["webhooks"]["sendgrid"].pop("verificationKey"), "spec.webhooks.sendgrid",
                 "sendgrid enabled requires verificationKey", id="sendgrid-without-key"),
    pytest.param(lambda s: s["webhooks"]["postmark"].pop("password"), "spec.webhooks.postmark",
                 "postmark enabled requires username and password", id="postmark-without-password"),
    pytest.param(lambda s: s["webhooks"]["mailgun"].pop("secret"), "spec.webhooks.mailgun",
                 "mailgun enabled requires secret", id="mailgun-without-secret"),
    *[pytest.param(enable(provider), f"spec.webhooks.{provider}", f"{provider} enabled requires",
                   id=f"{provider}-without-secret")
      for provider in ("forwardemail", "lettermint", "resend", "azure", "brevo", "mailjet", "sparkpost")],
]


@pytest.mark.parametrize(("change", "path", "message"), STRUCTURAL + RULES)
def test_invalid_specs_fail_the_loader_for_the_right_reason(change: Callable, path: str, message: str,
                                                            tmp_path: Path) -> None:
    config = tmp_path / "bounceconfig.yaml"
    config.write_text(yaml.safe_dump(mutate(change)))
    with pytest.raises(ConfigError) as raised:
        load_config(config, secrets=SecretSource(directory=None, environ={}), environ={})
    (problem,) = raised.value.problems
    assert problem.startswith(f"{path}: ") and message in problem, problem


@pytest.mark.parametrize(("change", "path", "message"), STRUCTURAL)
def test_structural_errors_also_fail_the_crd_schema_at_that_field(change: Callable, path: str, message: str) -> None:
    errors = schema_errors(mutate(change))
    # jsonschema names the object holding a missing or unknown field, not the field itself.
    where = path.rsplit(".", 1)[0] if message in ("is required", "unknown field") else path
    dotted = where.replace("[", ".").replace("]", "")
    assert [e.split(": ", 1)[0] for e in errors] == [dotted], errors


def test_the_invalid_cases_exercise_every_rule() -> None:
    """Each CEL rule of the spec has a case above that breaks it (a rule nobody tests may never fire)."""
    messages = {rule["message"] for _, node in schema_nodes(ROOT_SCHEMA["properties"]["spec"])
                for rule in node.get("x-kubernetes-validations", [])}
    tested = {case.values[2] for case in RULES}
    assert {m for m in messages if not any(t in m for t in tested)} == set()


INTERVALS = ([f"{n}m" for n in range(1, 121)] + [f"{n}h" for n in range(1, 49)]
             + [f"{n}m" for n in range(150, 1500, 30)]
             + [f"{n}s" for n in range(0, 7300, 45)] + ["1h30m", "60500ms", "60000ms", "2h0m", "1441m", "1439m"])


def test_the_crd_and_the_operator_agree_on_every_interval() -> None:
    """An interval the CRD accepts always has a cron schedule, and one it refuses never has one."""
    verdicts = []
    for interval in INTERVALS:
        mailbox = {"name": "m", "host": "h", "auth": "none", "scanInterval": interval}
        accepted = validate_spec({"mailboxes": [mailbox]})[1] == []
        try:
            cron_schedule(interval)
            schedulable = True
        except InvalidSchedule:
            schedulable = False
        verdicts.append((interval, accepted, schedulable))
    assert [v for v in verdicts if v[1] != v[2]] == []
    assert 20 < sum(accepted for _, accepted, _ in verdicts) < len(verdicts) - 100  # both sides exercised
