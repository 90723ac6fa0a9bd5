"""Configuration: manifests and bare specs, validation messages, secret resolution, exit status 2."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from bounce_service.config import ConfigError, build_config, from_handover, handover, load_config
from bounce_service.secrets import SecretSource
from tests.conftest import ROOT, TOKENS, make_spec

ENV = {"DATABASE_URL": "postgresql://localhost/x"}


def problems(spec, secrets: SecretSource, environ=ENV) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        build_config(spec, secrets=secrets, environ=environ)
    return caught.value.problems


def test_example_manifest_loads_with_development_secrets():
    config = load_config(
        ROOT / "examples/bounceconfig.yaml",
        secrets=SecretSource(ROOT / "examples/secrets", {}),
        environ=ENV,
    )
    assert config.actions["soft"].window == timedelta(hours=720)
    assert config.actions["hard"].action == "blocklist"
    assert config.users["admin"].token.reveal() == "dev-admin-token"
    assert "bounces:manage" in config.users["admin"].permissions
    assert config.max_body_size == 1048576


def test_bare_spec_file_is_accepted(tmp_path, secrets):
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(make_spec()))
    config = load_config(path, secrets=secrets, environ=ENV)
    assert set(config.users) == {"admin", "viewer", "poster"}


def test_defaults_follow_the_crd(secrets):
    config = build_config({}, secrets=secrets, environ=ENV)
    assert (config.actions["soft"].count, config.actions["soft"].action) == (2, "none")
    assert (config.actions["hard"].count, config.actions["hard"].action) == (1, "blocklist")
    assert config.actions["complaint"].window is None
    assert config.pool_size == 10 and config.max_body_size == 1024 * 1024


@pytest.mark.parametrize(
    "spec, expected",
    [
        ({"actions": {"soft": {"count": 0, "action": "none"}}}, "spec.actions.soft.count: must be >= 1"),
        ({"actions": {"hard": {"count": 1, "action": "explode"}}},
         "spec.actions.hard.action: must be one of: none, unsubscribe, blocklist, delete"),
        ({"actions": {"soft": {"count": 2, "action": "none", "window": "30 days"}}},
         "spec.actions.soft.window: must be a duration such as 90s, 15m or 720h"),
        ({"actions": {"soft": {"action": "none"}}}, "spec.actions.soft.count: is required"),
        ({"actoins": {}}, "spec.actoins: unknown field"),
        ({"api": {"users": [{"name": "a", "token": "inline-secret", "permissions": ["bounces:get"]}]}},
         "spec.api.users[0].token: must be an object"),
        ({"api": {"users": [{"name": "a", "token": {"secretRef": {"name": "api", "key": "admin"}},
                             "permissions": ["everything"]}]}},
         "spec.api.users[0].permissions[0]: must be one of: bounces:get, bounces:manage, webhooks:post_bounce, subscribers:manage"),
        ({"webhooks": {"sendgrid": {"enabled": True}}}, "spec.webhooks.sendgrid: sendgrid enabled requires verificationKey"),
        ({"mailboxes": [{"name": "box", "host": "pop.example.com", "scanInterval": "30s", "auth": "none"}]},
         "spec.mailboxes[0].scanInterval: scanInterval must be at least 1m"),
        ({"mailboxes": [{"name": "box", "host": "pop.example.com", "scanInterval": "5m", "auth": "none", "timeout": "0s"}]},
         "spec.mailboxes[0].timeout: timeout must be more than 0s (0 would make every read non-blocking)"),
        ({"mailboxes": [{"name": "box", "host": "pop.example.com", "scanInterval": "7m", "auth": "none"}]},
         "spec.mailboxes[0].scanInterval: scanInterval must be whole minutes dividing an hour (1m..30m) or whole hours dividing a day (1h..24h), so a cron schedule can express it"),
        ({"mailboxes": [{"name": "box", "host": "h", "scanInterval": "5m", "auth": "none"},
                        {"name": "box", "host": "h", "scanInterval": "5m", "auth": "none"}]},
         "spec.mailboxes: mailbox names must be unique"),
        ({"service": {"maxBodySize": 10}}, "spec.service.maxBodySize: must be >= 1024"),
        # The pattern admits any number of hours; Go (and so the API server's CEL) stops at ~292 years.
        ({"actions": {"soft": {"count": 2, "action": "none", "window": "99999999999999h"}}},
         "spec.actions.soft.window: must be at most 2562047h (the longest Go duration)"),
        ({"service": {"groupCommit": {"maxWait": "2562048h"}}},
         "spec.service.groupCommit.maxWait: must be at most 2562047h (the longest Go duration)"),
    ],
)
def test_invalid_spec_names_field_and_rule(spec, expected, secrets):
    assert expected in problems(spec, secrets)


def test_every_problem_is_reported_at_once(secrets):
    found = problems({"actions": {"soft": {"count": 0, "action": "x"}}, "bogus": 1}, secrets)
    assert len(found) == 3


def test_missing_secret_names_the_field_and_where_it_looked(secrets):
    spec = make_spec()
    spec["api"]["users"][0]["token"]["secretRef"]["key"] = "nobody"
    (message,) = problems(spec, secrets)
    assert message.startswith("spec.api.users[0].token: secret api/nobody not found")
    assert "BOUNCE_SECRET_API_NOBODY" in message


def test_secret_from_environment(tmp_path):
    source = SecretSource(directory=tmp_path, environ={"BOUNCE_SECRET_BOUNCE_API_ADMIN": "from-env"})
    spec = {"api": {"users": [{"name": "admin", "token": {"secretRef": {"name": "bounce-api", "key": "admin"}},
                               "permissions": ["bounces:get"]}]}}
    config = build_config(spec, secrets=source, environ=ENV)
    assert config.users["admin"].token.reveal() == "from-env"


def test_database_url_from_secret_and_required_without_env(tmp_path, secrets):
    (tmp_path / "secrets" / "db").mkdir()
    (tmp_path / "secrets" / "db" / "url").write_text("postgresql://db.internal/bounces\n")
    spec = make_spec(database={"url": {"secretRef": {"name": "db", "key": "url"}}})
    assert build_config(spec, secrets=secrets, environ={}).database_url.reveal() == "postgresql://db.internal/bounces"
    assert problems(make_spec(), secrets, environ={}) == ["spec.database.url: is required unless DATABASE_URL is set"]


def test_secrets_never_show_in_repr(secrets):
    config = build_config(make_spec(), secrets=secrets, environ=ENV)
    text = repr(config) + str(config.users)
    assert "admin-secret-token" not in text and "postgresql://localhost/x" not in text


def test_workers_are_handed_the_validated_config_but_no_secret_value(tmp_path, secrets):
    (tmp_path / "secrets" / "postmark").mkdir()
    (tmp_path / "secrets" / "postmark" / "password").write_text("postmark-hook-password")
    spec = make_spec(webhooks={"postmark": {"enabled": True, "username": "hook",
                                            "password": {"secretRef": {"name": "postmark", "key": "password"}}}})
    config = build_config(spec, secrets=secrets, environ=ENV)
    text = handover(config)
    for value in (*TOKENS.values(), "postmark-hook-password", ENV["DATABASE_URL"]):
        assert value not in text
    # What a worker rebuilds from it, resolving the references itself, is the config `serve` validated.
    assert from_handover(text, secrets=secrets, environ=ENV) == config


def test_wrong_kind_is_refused(tmp_path, secrets):
    path = tmp_path / "cm.yaml"
    path.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    with pytest.raises(ConfigError, match="expected kind BounceConfig"):
        load_config(path, secrets=secrets, environ=ENV)


def run_cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bounce_service", *args], capture_output=True, text=True,
                          timeout=60, **kwargs)


def test_cli_exits_2_with_the_field_and_rule(tmp_path):
    manifest = yaml.safe_load((ROOT / "examples/bounceconfig.yaml").read_text())
    manifest["spec"]["actions"]["soft"]["count"] = 0
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(manifest))
    for command in ("check", "serve", "migrate"):
        result = run_cli(command, "--config", str(path), "--secrets-dir", str(ROOT / "examples/secrets"),
                         env={"DATABASE_URL": "postgresql://127.0.0.1:1/none", "PATH": "/usr/bin:/bin"})
        assert result.returncode == 2, (command, result.stderr)
        assert "spec.actions.soft.count: must be >= 1" in result.stderr


def test_cli_check_accepts_the_example():
    result = run_cli("check", "--config", str(ROOT / "examples/bounceconfig.yaml"),
                     "--secrets-dir", str(ROOT / "examples/secrets"),
                     env={"DATABASE_URL": "postgresql://127.0.0.1:1/none", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert "valid (3 API users" in result.stdout


def test_cli_exits_2_for_a_provider_key_that_cannot_work(tmp_path):
    (tmp_path / "secrets" / "sendgrid").mkdir(parents=True)
    (tmp_path / "secrets" / "sendgrid" / "key").write_text("this is not a public key")
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"webhooks": {"sendgrid": {
        "enabled": True, "verificationKey": {"secretRef": {"name": "sendgrid", "key": "key"}}}}}))
    result = run_cli("check", "--config", str(path), "--secrets-dir", str(tmp_path / "secrets"),
                     env={"DATABASE_URL": "postgresql://127.0.0.1:1/none", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 2, result.stderr
    assert "spec.webhooks.sendgrid.verificationKey" in result.stderr
    assert "this is not a public key" not in result.stderr


@pytest.mark.parametrize("url", ["postgresql://bob:S3cr%ZZetPW@127.0.0.1/db",  # a raw '%' in the password
                                 "postgresql://bob:S3cretPW@[::1/db", "postgresql://bob:S3cr@tPW@db.internal/db"])
def test_a_database_url_libpq_cannot_read_is_refused_without_quoting_it(url):
    # libpq's own messages quote the URL, and the password with it.
    for command in ("check", "migrate", "serve"):
        result = run_cli(command, "--config", str(ROOT / "examples/bounceconfig.yaml"),
                         "--secrets-dir", str(ROOT / "examples/secrets"), env={"DATABASE_URL": url, "PATH": "/usr/bin:/bin"})
        assert result.returncode == 2, (command, result.stderr)
        assert "DATABASE_URL: not a connection string libpq can read" in result.stderr
        assert "S3cr" not in result.stderr + result.stdout and "tPW" not in result.stderr + result.stdout


def test_cli_check_schema_only_needs_no_secret(tmp_path):
    result = run_cli("check", "--schema-only", "--config", str(ROOT / "examples/bounceconfig-full.yaml"),
                     env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert "valid against the CRD's schema and rules (2 mailboxes; secrets and provider keys not checked)" in result.stdout
    manifest = yaml.safe_load((ROOT / "examples/bounceconfig.yaml").read_text())
    manifest["spec"]["actions"]["soft"]["count"] = 0
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(manifest))
    result = run_cli("check", "--schema-only", "--config", str(tmp_path / "bad.yaml"), env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 2 and "spec.actions.soft.count: must be >= 1" in result.stderr
