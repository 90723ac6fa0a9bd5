"""Upserts of subscribers, lists and campaigns from the sending system."""

from __future__ import annotations

import orjson

from tests.conftest import auth

LIST = "11111111-1111-4111-8111-111111111111"
CAMPAIGN = "22222222-2222-4222-8222-222222222222"


async def test_subscriber_upsert_by_email_with_lists(client, db):
    await client.post("/api/lists", json={"uuid": LIST, "name": "Newsletter"}, auth=auth())
    created = await client.post("/api/subscribers", auth=auth(), json={
        "email": "New@Example.com", "name": "New", "attribs": {"plan": "pro"}, "lists": [{"uuid": LIST}],
    })
    assert created.status_code == 200, created.text
    data = created.json()["data"]
    assert data["email"] == "new@example.com" and data["status"] == "enabled"
    assert data["lists"] == [{"id": 1, "uuid": LIST, "name": "Newsletter", "subscription_status": "confirmed"}]

    updated = await client.post("/api/subscribers", auth=auth(), json={
        "email": "NEW@example.com", "name": "Renamed", "lists": [{"uuid": LIST, "status": "unsubscribed"}],
    })
    body = updated.json()["data"]
    assert body["id"] == data["id"] and body["name"] == "Renamed" and body["attribs"] == {"plan": "pro"}
    assert body["lists"][0]["subscription_status"] == "unsubscribed"
    fetched = await client.get(f"/api/subscribers/{data['id']}", auth=auth())
    assert fetched.json()["data"]["name"] == "Renamed"


async def test_subscriber_validation(client, db):
    for body, message in [
        ({"email": "nope"}, "Invalid email."),
        ({"email": "a@example.com", "status": "gone"}, "Invalid fields: status"),
        ({"email": "a@example.com", "uuid": "x"}, "Invalid fields: uuid"),
        # A pattern ending in `$` would let the newline through, to fail in PostgreSQL as a 500.
        ({"email": "a@example.com", "uuid": CAMPAIGN + "\n"}, "Invalid fields: uuid"),
        ({"email": "a@example.com", "lists": [{"uuid": LIST + "\n"}]}, "Invalid fields: lists[].uuid"),
        ({"email": "a@example.com", "lists": [{"uuid": LIST}]}, f"Unknown list: {LIST}"),
    ]:
        response = await client.post("/api/subscribers", json=body, auth=auth())
        assert response.status_code == 400 and response.json() == {"message": message}
    assert db.execute("SELECT COUNT(*) AS n FROM subscribers").fetchone()["n"] == 0


async def test_uuid_of_another_subscriber_is_409(client, db):
    first = (await client.post("/api/subscribers", json={"email": "a@example.com"}, auth=auth())).json()["data"]
    response = await client.post("/api/subscribers", json={"email": "b@example.com", "uuid": first["uuid"]}, auth=auth())
    assert response.status_code == 409


async def test_ndjson_import_is_all_or_nothing(client, db):
    lines = [orjson.dumps({"email": f"user{i}@example.com", "name": f"U{i}"}) for i in range(50)]
    bad = b"\n".join(lines[:10] + [b'{"email": "broken"}'] + lines[10:])
    response = await client.post("/api/subscribers/import", content=bad, auth=auth())
    assert response.status_code == 400 and response.json() == {"message": "line 11: Invalid email."}
    assert db.execute("SELECT COUNT(*) AS n FROM subscribers").fetchone()["n"] == 0

    response = await client.post("/api/subscribers/import", content=b"\n".join(lines) + b"\n", auth=auth())
    assert response.json() == {"data": {"imported": 50}}
    assert db.execute("SELECT COUNT(*) AS n FROM subscribers").fetchone()["n"] == 50


async def test_campaign_upsert_and_sent_count(client, db):
    created = await client.post("/api/campaigns", json={"uuid": CAMPAIGN, "name": "Launch", "sent": 1000}, auth=auth())
    assert created.json()["data"]["sent"] == 1000
    updated = await client.post("/api/campaigns", json={"uuid": CAMPAIGN, "name": "Launch", "sent": 2500}, auth=auth())
    assert updated.json()["data"]["sent"] == 2500 and updated.json()["data"]["id"] == created.json()["data"]["id"]
    for body in ({"uuid": CAMPAIGN, "name": "x", "sent": -1}, {"uuid": CAMPAIGN, "name": "x", "sent": True},
                 {"uuid": CAMPAIGN}, {"name": "no uuid"}):
        assert (await client.post("/api/campaigns", json=body, auth=auth())).status_code == 400


async def test_bounce_for_imported_subscriber_links_up(client, db):
    await client.post("/api/campaigns", json={"uuid": CAMPAIGN, "name": "Launch", "sent": 10}, auth=auth())
    sub = (await client.post("/api/subscribers", json={"email": "z@example.com"}, auth=auth())).json()["data"]
    await client.post("/webhooks/bounce", auth=auth(),
                      json={"subscriber_uuid": sub["uuid"], "campaign_uuid": CAMPAIGN, "type": "hard", "source": "x"})
    bounces = (await client.get(f"/api/subscribers/{sub['id']}/bounces", auth=auth())).json()["data"]
    assert bounces[0]["campaign"]["name"] == "Launch" and bounces[0]["email"] == "z@example.com"
    assert bounces[0]["subscriber_status"] == "blocklisted" and bounces[0]["action"] == "blocklist"


async def test_resending_a_subscriber_keeps_what_a_bounce_unsubscribed(client, db):
    """The nightly sync sends every subscriber with its lists; one that a hard bounce blocklisted (and
    unsubscribed, unlike listmonk #2870) must not come back confirmed. A status given still applies."""
    await client.post("/api/lists", json={"uuid": LIST, "name": "Newsletter"}, auth=auth())
    body = {"email": "gone@example.com", "lists": [{"uuid": LIST}]}
    assert (await client.post("/api/subscribers", json=body, auth=auth())).status_code == 200
    await client.post("/webhooks/bounce", auth=auth(), json={"email": "gone@example.com", "type": "hard", "source": "x"})

    def memberships() -> list[tuple[str, str]]:
        return [(r["s"], r["m"]) for r in db.execute(
            "SELECT s.status::text AS s, m.status::text AS m FROM subscribers s JOIN subscriber_lists m ON m.subscriber_id = s.id")]

    assert memberships() == [("blocklisted", "unsubscribed")]
    assert (await client.post("/api/subscribers", json=body, auth=auth())).status_code == 200
    assert memberships() == [("blocklisted", "unsubscribed")]
    for known in (False, True):  # an import of only known addresses is staged; one that starts new is copied
        lines = [orjson.dumps(body)] if known else [orjson.dumps({"email": "fresh@example.com"}), orjson.dumps(body)]
        response = await client.post("/api/subscribers/import", content=b"\n".join(lines), auth=auth())
        assert response.status_code == 200, response.text
        assert memberships() == [("blocklisted", "unsubscribed")]
    given = {"email": "gone@example.com", "lists": [{"uuid": LIST, "status": "confirmed"}]}
    assert (await client.post("/api/subscribers", json=given, auth=auth())).status_code == 200
    assert memberships() == [("blocklisted", "confirmed")]
