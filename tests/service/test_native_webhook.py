"""POST /webhooks/bounce: listmonk's contract, validated, acknowledged only after commit."""

from __future__ import annotations

import orjson
import pytest

from tests.conftest import auth

CAMPAIGN = "6f1b1d4e-2c1a-4b8e-9a3f-0c2d5e7f9a10"


def rows(db) -> list[dict]:
    return db.execute(
        "SELECT b.email, b.type::text AS type, b.source, b.meta, b.subscriber_id, b.campaign_id, b.event_key,"
        " b.created_at FROM bounces b ORDER BY id"
    ).fetchall()


async def post(client, body, user: str = "poster"):
    content = body if isinstance(body, (bytes, str)) else orjson.dumps(body)
    return await client.post("/webhooks/bounce", content=content, auth=auth(user),
                             headers={"Content-Type": "application/json"})


async def test_bounce_recorded_and_visible_once_answered(client, db):
    sub = db.execute("INSERT INTO subscribers (email) VALUES ('Known@Example.com') RETURNING id").fetchone()
    campaign = db.execute("INSERT INTO campaigns (uuid, name) VALUES (%s, 'c') RETURNING id", (CAMPAIGN,)).fetchone()
    response = await post(client, {
        "email": " KNOWN@example.com ", "type": "soft", "source": "api", "campaign_uuid": CAMPAIGN,
        "meta": {"reason": "mailbox full"}, "created_at": "2026-01-31T12:00:00+01:00",
    })
    assert response.status_code == 200 and response.json() == {"data": True}
    (row,) = rows(db)  # visible from another connection: the answer came after the commit
    assert row["email"] == "known@example.com" and row["type"] == "soft" and row["source"] == "api"
    assert row["subscriber_id"] == sub["id"] and row["campaign_id"] == campaign["id"]
    assert row["meta"] == {"reason": "mailbox full"}
    assert row["created_at"].isoformat() == "2026-01-31T11:00:00+00:00"


async def test_unknown_subscriber_is_recorded_not_dropped(client, db):
    assert (await post(client, {"email": "nobody@example.com", "type": "hard", "source": "api"})).status_code == 200
    assert rows(db)[0]["subscriber_id"] is None


async def test_meta_may_be_a_json_string_holding_an_object(client, db):
    response = await post(client, {"email": "a@example.com", "type": "hard", "source": "api", "meta": '{"x": 1}'})
    assert response.status_code == 200
    assert rows(db)[0]["meta"] == {"x": 1}


async def test_event_id_makes_a_retry_idempotent(client, db):
    body = {"email": "a@example.com", "type": "hard", "source": "mta", "event_id": "q-123"}
    assert (await post(client, body)).status_code == 200
    assert (await post(client, body)).status_code == 200
    assert len(rows(db)) == 1 and rows(db)[0]["event_key"] == "native:mta:q-123"


async def test_a_batch_is_recorded_atomically(client, db):
    good = {"email": "a@example.com", "type": "hard", "source": "api"}
    response = await post(client, [good, good, {**good, "type": "nope"}])
    assert response.status_code == 400 and response.json()["message"] == "[2]: Invalid fields: type"
    assert rows(db) == []
    assert (await post(client, [good, {**good, "email": "b@example.com"}])).status_code == 200
    assert [r["email"] for r in rows(db)] == ["a@example.com", "b@example.com"]


@pytest.mark.parametrize(
    "body, message",
    [
        ({"type": "hard", "source": "api"}, "Invalid fields: email / subscriber_uuid"),
        ({"email": "not an address", "type": "hard", "source": "api"}, "Invalid email."),
        ({"email": "Name <a@example.com>", "type": "hard", "source": "api"}, "Invalid email."),
        ({"email": 42, "type": "hard", "source": "api"}, "Invalid email."),
        ({"subscriber_uuid": "1234", "type": "hard", "source": "api"}, "Invalid fields: subscriber_uuid"),
        ({"email": "a@example.com", "type": "bounce", "source": "api"}, "Invalid fields: type"),
        ({"email": "a@example.com", "type": "hard"}, "Invalid fields: source"),
        ({"email": "a@example.com", "type": "hard", "source": "  "}, "Invalid fields: source"),
        ({"email": "a@example.com", "type": "hard", "source": "api", "campaign_uuid": "campaign-7"},
         "Invalid fields: campaign_uuid"),
        ({"email": "a@example.com", "type": "hard", "source": "api", "meta": [1, 2]},
         "Invalid fields: meta (must be a JSON object)"),
        ({"email": "a@example.com", "type": "hard", "source": "api", "meta": "{broken"},
         "Invalid fields: meta (a string must hold a JSON object)"),
        ({"email": "a@example.com", "type": "hard", "source": "api", "created_at": "yesterday"},
         "Invalid fields: created_at (expected RFC 3339, e.g. 2026-01-31T12:00:00Z)"),
        ({"email": "a@example.com", "type": "hard", "source": "api", "created_at": "2026-01-31T12:00:00"},
         "Invalid fields: created_at (a time zone offset is required)"),
        # Year 10000 in UTC could be stored but never read back; a bounce from the future would count for years.
        *(({"email": "a@example.com", "type": "hard", "source": "api", "created_at": when},
           "Invalid fields: created_at (must be after 1970 and at most a day from now)")
          for when in ("9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00", "2100-01-01T00:00:00Z")),
        ("[]", "Invalid data: a batch holds 1 to 1000 bounces"),
        ('"just a string"', "Invalid data: expected a JSON object"),
        ("", "Invalid data: empty body"),
    ],
)
async def test_invalid_bodies_are_400_and_write_nothing(client, db, body, message):
    response = await post(client, body)
    assert response.status_code == 400
    assert response.json() == {"message": message}
    assert rows(db) == []


@pytest.mark.parametrize("field, value", [("source", "a\u0000b"), ("meta", {"smtp": "550\u0000"}),
                                          ("email", "a\u0000@example.com")])
async def test_values_postgresql_cannot_store_are_400(client, db, field, value):
    body = {"email": "nul@example.com", "type": "hard", "source": "api", field: value}
    response = await post(client, body)
    assert response.status_code == 400 and response.json()["message"].startswith("Invalid")
    assert rows(db) == []


async def test_malformed_json_is_400(client, db):
    response = await post(client, b'{"email": ')
    assert response.status_code == 400 and response.json()["message"].startswith("Invalid data: the body is not valid JSON (")


async def test_deeply_nested_json_is_400(client, db):
    response = await post(client, b"[" * 5000 + b"]" * 5000)
    assert response.status_code == 400


async def test_threshold_action_applies_through_the_webhook(client, db):
    sub = db.execute("INSERT INTO subscribers (email) VALUES ('c@example.com') RETURNING id").fetchone()
    assert (await post(client, {"email": "c@example.com", "type": "complaint", "source": "fbl"})).status_code == 200
    status = db.execute("SELECT status::text AS s FROM subscribers WHERE id = %s", (sub["id"],)).fetchone()["s"]
    assert status == "blocklisted"


async def test_recorded_events_are_counted_in_metrics(client, db):
    await post(client, {"email": "m@example.com", "type": "hard", "source": "metrics-test"})
    text = (await client.get("/metrics")).text
    assert 'bounce_events_total{outcome="recorded",source="metrics-test",type="hard"} 1.0' in text
    assert 'bounce_webhook_requests_total{provider="native",status="200"}' in text


async def test_free_text_sources_cannot_crowd_the_providers_out_of_the_source_label(client, db, monkeypatch):
    from bounce_service import metrics
    monkeypatch.setattr(metrics, "_sources", set())  # a fresh process's budget of free-text sources
    monkeypatch.setattr(metrics, "_event_children", {})

    def counted(text: str, source: str) -> float:
        prefix = f'bounce_events_total{{outcome="recorded",source="{source}",type="soft"}} '
        return next((float(line[len(prefix):]) for line in text.splitlines() if line.startswith(prefix)), 0.0)

    before = (await client.get("/metrics")).text
    for index in range(metrics.MAX_SOURCE_LABELS + 5):  # an authenticated sender inventing sources
        metrics.count_event("soft", f"invented-{index}", "recorded")
    metrics.count_event("soft", "ses", "recorded", 7)
    after = (await client.get("/metrics")).text
    assert counted(after, "ses") == counted(before, "ses") + 7
    assert counted(after, "other") == counted(before, "other") + 5


async def test_rejected_requests_are_counted(client, db):
    def rejected(text: str) -> float:
        prefix = 'bounce_events_total{outcome="rejected",source="native",type="unknown"} '
        return next((float(line[len(prefix):]) for line in text.splitlines() if line.startswith(prefix)), 0.0)

    before = rejected((await client.get("/metrics")).text)
    await post(client, {"email": "m@example.com", "type": "nope", "source": "x"})
    assert rejected((await client.get("/metrics")).text) == before + 1
