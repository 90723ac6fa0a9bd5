"""Secrets never leak: not into logs, error bodies, response headers or /metrics.

Known secret values go through every route (right, wrong, misplaced and missing credentials, and a
forced internal error) and everything the service emitted is searched for them.
"""

from __future__ import annotations

import base64
import logging

import httpx
import psycopg
import yaml

from bounce_service.app import ROUTES, create_app
from bounce_service.config import build_config
from bounce_service.openapi import documented_routes
from bounce_service.secrets import SecretSource
from tests.conftest import TOKENS, make_spec, write_secrets
from tests.serving import serve, stop

PROVIDER_SECRETS = {
    ("mailgun", "secret"): "mailgun-SECRET-5f1e",
    ("postmark", "password"): "postmark-SECRET-77aa",
    ("forwardemail", "secret"): "forwardemail-SECRET-9c2d",
    ("lettermint", "secret"): "lettermint-SECRET-31b0",
    ("azure", "secret"): "azure-SECRET-e4e4",
    ("resend", "secret"): "whsec_" + base64.b64encode(b"resend-SECRET-key-bytes").decode(),
}
DB_PASSWORD = "database-SECRET-pw"


def secret_values() -> list[str]:
    values = list(TOKENS.values()) + list(PROVIDER_SECRETS.values()) + [DB_PASSWORD]
    return values + [base64.b64encode(f"admin:{TOKENS['admin']}".encode()).decode()]


def secrets_and_spec(tmp_path) -> tuple[SecretSource, dict]:
    """API users and every secret-bearing provider enabled, each secret a file under tmp_path/secrets."""
    secrets = write_secrets(tmp_path / "secrets")
    webhooks = {}
    for (provider, key), value in PROVIDER_SECRETS.items():
        path = secrets.directory / provider / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(value)
        section = webhooks.setdefault(provider, {"enabled": True})
        section[key] = {"secretRef": {"name": provider, "key": key}}
    webhooks["postmark"]["username"] = "postmark"
    return secrets, make_spec(webhooks=webhooks)


def with_password(database_url: str) -> str:
    # Trust authentication ignores the password, so a URL carrying one still connects.
    return psycopg.conninfo.make_conninfo(database_url, password=DB_PASSWORD)


def build_app(tmp_path, database_url: str):
    secrets, spec = secrets_and_spec(tmp_path)
    return create_app(build_config(spec, secrets=secrets, environ={"DATABASE_URL": with_password(database_url)}))


def credentials() -> list[dict[str, str]]:
    admin = base64.b64encode(f"admin:{TOKENS['admin']}".encode()).decode()
    leaked = base64.b64encode(f"admin:{PROVIDER_SECRETS[('postmark', 'password')]}".encode()).decode()
    return [
        {},
        {"Authorization": f"Basic {admin}"},
        {"Authorization": f"Basic {leaked}"},  # a real secret used in the wrong place
        {"Authorization": f"token viewer:{TOKENS['admin']}"},
        {"Authorization": f"token nobody:{TOKENS['viewer']}"},
        {"X-Webhook-Signature": PROVIDER_SECRETS[("forwardemail", "secret")]},
    ]


def path_for(path: str, provider: str) -> str:
    return path.replace("{id}", "1").replace("{provider}", provider)


async def test_no_secret_in_logs_bodies_headers_or_metrics(tmp_path, database_url, db, caplog):
    app = build_app(tmp_path, database_url)
    seen: list[str] = []
    caplog.set_level(logging.DEBUG)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            body = {"email": "leak@example.com", "type": "hard", "source": "leak-test"}
            for method, path, _ in documented_routes(ROUTES):
                for provider in ("postmark", "mailgun", "azure", "resend"):
                    for headers in credentials():
                        response = await client.request(method.upper(), path_for(path, provider), json=body,
                                                        headers=headers, params={"code": "wrong"})
                        seen.append(response.text + repr(dict(response.headers)))
                    if "{provider}" not in path:
                        break
            # A forced internal error: the traceback is logged, and must not carry secrets either.
            recorder = app.state.recorder
            app.state.recorder = None
            response = await client.post("/webhooks/bounce", json=body, headers=credentials()[1])
            assert response.status_code == 500
            app.state.recorder = recorder
            seen.append((await client.get("/metrics")).text)
    assert len(seen) > 100
    emitted = "\n".join(seen) + caplog.text
    for secret in secret_values():
        assert secret not in emitted


def test_no_secret_in_what_the_real_service_prints(tmp_path, database_url, db):
    """`bounce-service serve` with two workers, its logs and access log captured: a secret that travels in a
    URL (Azure's `?code=`), in headers or in a body must not come out, whichever worker took the request."""
    secrets, spec = secrets_and_spec(tmp_path)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(spec))
    azure_code = PROVIDER_SECRETS[("azure", "secret")]
    output = tmp_path / "serve.log"
    with serve(with_password(database_url), workers=2, config=config, secrets_dir=secrets.directory,
               output=output) as (url, process):
        with httpx.Client(base_url=url, headers={"Connection": "close"}) as client:  # spread over both workers
            for _ in range(4):
                assert client.post("/webhooks/service/azure", params={"code": azure_code}, content=b"[]").status_code == 200
                assert client.post("/webhooks/service/azure", params={"code": "wrong"}, content=b"[]").status_code == 401
                for headers in credentials():
                    client.post("/webhooks/bounce", headers=headers,
                                json={"email": "leak@example.com", "type": "hard", "source": "leak-test"})
                    client.get("/api/bounces", headers=headers, params={"email": TOKENS["viewer"]})
                client.post("/webhooks/service/postmark", headers={"Authorization": credentials()[2]["Authorization"]},
                            json={"RecordType": "Bounce"})
                # Logged by the service in the worker that takes it (a NUL cannot be stored: 400).
                assert client.post("/webhooks/bounce", headers=credentials()[1],
                                   json={"email": "nul@example.com", "type": "hard", "source": "a\u0000b"}).status_code == 400
            metrics = client.get("/metrics").text
        code, _ = stop(process)
    assert code == 0
    printed = output.read_text()
    assert "POST /webhooks/service/azure?code=*** HTTP/1.1" in printed  # the access log was captured
    assert "INFO bounce_service.app: refused unstorable value on POST /webhooks/bounce" in printed  # and the workers' logs
    for secret in secret_values():
        assert secret not in printed and secret not in metrics
