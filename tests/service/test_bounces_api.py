"""/api/bounces and /api/subscribers/{id}/bounces against real rows."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta, timezone

import orjson
import pytest

from bounce_service.routes.bounces import COUNT_CAP
from tests.conftest import auth

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)


@pytest.fixture
def seeded(db) -> dict:
    """Two subscribers, two campaigns, six bounces with distinct emails, sources, types and times."""
    alice = db.execute("INSERT INTO subscribers (email) VALUES ('alice@example.com') RETURNING id").fetchone()["id"]
    bob = db.execute("INSERT INTO subscribers (email) VALUES ('bob@example.com') RETURNING id").fetchone()["id"]
    spring = db.execute("INSERT INTO campaigns (name) VALUES ('Spring') RETURNING id").fetchone()["id"]
    autumn = db.execute("INSERT INTO campaigns (name) VALUES ('Autumn') RETURNING id").fetchone()["id"]
    specs = [
        (alice, "alice@example.com", spring, "hard", "ses"),
        (alice, "alice@example.com", autumn, "soft", "sendgrid"),
        (bob, "bob@example.com", spring, "complaint", "ses"),
        (bob, "bob@example.com", None, "soft", "mailbox"),
        (None, "carol@example.com", autumn, "soft", "ses"),
        (None, "dave@example.com", None, "hard", "postmark"),
    ]
    ids = []
    for index, (sub, email, campaign, kind, source) in enumerate(specs):
        ids.append(db.execute(
            "INSERT INTO bounces (subscriber_id, email, campaign_id, type, source, meta, created_at)"
            " VALUES (%s, %s, %s, %s, %s, '{\"n\": 1}', %s) RETURNING id",
            (sub, email, campaign, kind, source, T0 + timedelta(days=index)),
        ).fetchone()["id"])
    return {"alice": alice, "bob": bob, "spring": spring, "autumn": autumn, "ids": ids}


async def listing(client, **params) -> dict:
    response = await client.get("/api/bounces", params=params, auth=auth("viewer"))
    assert response.status_code == 200, response.text
    return response.json()["data"]


async def test_list_envelope_and_bounce_shape(client, seeded):
    data = await listing(client)
    assert data["total"] == 6 and data["page"] == 1 and data["per_page"] == 20
    newest = data["results"][0]
    assert newest["email"] == "dave@example.com" and newest["type"] == "hard" and newest["source"] == "postmark"
    assert newest["campaign"] is None and newest["subscriber_id"] is None and newest["meta"] == {"n": 1}
    alice_hard = data["results"][-1]
    assert alice_hard["campaign"]["name"] == "Spring" and alice_hard["subscriber_status"] == "enabled"
    assert alice_hard["subscriber_uuid"]


@pytest.mark.parametrize(
    "params, expected_emails",
    [
        ({"source": "ses"}, ["carol", "bob", "alice"]),
        ({"type": "soft"}, ["carol", "bob", "alice"]),
        ({"email": "ALICE@example.com"}, ["alice", "alice"]),
        ({"from": (T0 + timedelta(days=4)).isoformat()}, ["dave", "carol"]),
        ({"to": (T0 + timedelta(days=1)).isoformat()}, ["alice"]),
    ],
)
async def test_filters(client, seeded, params, expected_emails):
    data = await listing(client, **params)
    assert [r["email"].split("@")[0] for r in data["results"]] == expected_emails
    assert data["total"] == len(expected_emails)


async def test_filter_by_campaign_and_subscriber(client, seeded, db):
    assert (await listing(client, campaign_id=seeded["spring"]))["total"] == 2
    assert (await listing(client, subscriber_id=seeded["bob"]))["total"] == 2
    # The campaign alerts carry the uuid, not the id: the runbook's query takes it as it is.
    spring = db.execute("SELECT uuid::text AS u FROM campaigns WHERE id = %s", (seeded["spring"],)).fetchone()["u"]
    found = await listing(client, campaign_uuid=spring.upper())
    assert sorted(r["email"] for r in found["results"]) == ["alice@example.com", "bob@example.com"]
    assert (await listing(client, campaign_uuid="00000000-0000-4000-8000-000000000000"))["total"] == 0
    export = await client.get("/api/bounces/export", params={"campaign_uuid": spring, "format": "ndjson"}, auth=auth("viewer"))
    assert len(export.text.splitlines()) == 2


@pytest.mark.parametrize(
    "order_by, key",
    [
        ("email", lambda r: r["email"]),
        ("source", lambda r: r["source"]),
        ("created_at", lambda r: r["created_at"]),
        ("type", lambda r: ["soft", "hard", "complaint"].index(r["type"])),
        ("campaign_name", lambda r: (r["campaign"] is None, (r["campaign"] or {}).get("name", ""))),
    ],
)
async def test_every_order_by_works_both_ways(client, seeded, db, order_by, key):
    # The newest bounce sorts first by every key but created_at, so no order can pass for another.
    db.execute("INSERT INTO bounces (email, campaign_id, type, source, created_at)"
               " VALUES ('aaron@example.com', %s, 'soft', 'aaa', %s)", (seeded["autumn"], T0 + timedelta(days=30)))
    by_time = [r["id"] for r in (await listing(client, order_by="created_at", order="asc"))["results"]]
    ascending = (await listing(client, order_by=order_by, order="asc"))["results"]
    assert [key(r) for r in ascending] == sorted(key(r) for r in ascending)
    assert order_by == "created_at" or [r["id"] for r in ascending] != by_time
    descending = (await listing(client, order_by=order_by, order="desc"))["results"]
    values = [key(r) for r in descending if order_by != "campaign_name" or r["campaign"]]
    assert values == sorted(values, reverse=True)
    if order_by == "campaign_name":
        assert [r["campaign"] is None for r in descending] == [False] * 5 + [True] * 2  # NULLS LAST both ways


async def test_pagination(client, seeded):
    pages = [await listing(client, per_page=4, page=page, order="asc", order_by="created_at") for page in (1, 2, 3)]
    assert [len(p["results"]) for p in pages] == [4, 2, 0]
    assert [r["id"] for p in pages for r in p["results"]] == seeded["ids"]
    assert all(p["total"] == 6 for p in pages)


@pytest.mark.parametrize("bulk", [0, COUNT_CAP], ids=["few: sorted", "many: campaigns walked"])
@pytest.mark.parametrize("order", ["asc", "desc"])
async def test_campaign_name_pages_cover_every_bounce_once_in_order(client, seeded, db, order, bulk):
    # A second "Spring" makes a name tie, broken by campaign id; pages of 3 cut across campaigns and
    # into the campaign-less bounces, which come last whichever the direction. Beyond COUNT_CAP matches
    # the listing takes another query, which must give the same order.
    twin = db.execute("INSERT INTO campaigns (name) VALUES ('Spring') RETURNING id").fetchone()["id"]
    for email in ("erin@example.com", "frank@example.com"):
        db.execute("INSERT INTO bounces (email, campaign_id, type, source) VALUES (%s, %s, 'soft', 'ses')", (email, twin))
    db.execute("INSERT INTO bounces (email, type, source) SELECT 'x' || g || '@example.com', 'soft', 'ses'"
               " FROM generate_series(1, %s) g", (bulk,))
    pages = [await listing(client, order_by="campaign_name", order=order, per_page=3, page=page) for page in (1, 2, 3)]
    listed = [(r["campaign"] or {}).get("id") for p in pages for r in p["results"]]
    spring = sorted([seeded["spring"], twin])
    by_name = [seeded["autumn"], *spring] if order == "asc" else [*reversed(spring), seeded["autumn"]]
    assert listed == [c for c in by_name for _ in (1, 2)] + [None] * min(3, 2 + bulk)
    ids = [r["id"] for p in pages for r in p["results"]]
    for campaign in [*by_name, None]:
        mine = [i for i, c in zip(ids, listed) if c == campaign]
        assert mine == sorted(mine, reverse=order == "desc")

    filtered = await listing(client, order_by="campaign_name", order=order, source="ses", page=2, per_page=2)
    assert [r["email"] for r in filtered["results"]] == (["bob@example.com", "erin@example.com"] if order == "asc"
                                                          else ["bob@example.com", "alice@example.com"])
    assert filtered["total"] > COUNT_CAP if bulk else filtered["total"] == 5


@pytest.mark.parametrize(
    "params, message",
    [
        ({"per_page": "1001"}, "Invalid per_page: must be between 1 and 1000"),
        ({"page": "0"}, "Invalid page: must be between 1 and 1000000000000"),
        ({"page": "two"}, "Invalid page: must be an integer"),
        ({"page": "9223372036854775807"}, "Invalid page: must be between 1 and 1000000000000"),  # OFFSET past bigint
        ({"order_by": "id; DROP TABLE bounces"}, "Invalid order_by: must be one of email, campaign_name, source, created_at, type"),
        ({"order": "sideways"}, "Invalid order: must be asc or desc"),
        ({"type": "bouncy"}, "Invalid type: must be soft, hard or complaint"),
        ({"campaign_id": "x"}, "Invalid campaign_id: must be an integer"),
        ({"campaign_uuid": "spring"}, "Invalid campaign_uuid: must be a UUID"),
    ],
)
async def test_bad_list_parameters_are_400(client, seeded, params, message):
    response = await client.get("/api/bounces", params=params, auth=auth("viewer"))
    assert response.status_code == 400 and response.json() == {"message": message}


async def test_get_one_and_404(client, seeded):
    response = await client.get(f"/api/bounces/{seeded['ids'][0]}", auth=auth("viewer"))
    assert response.json()["data"]["email"] == "alice@example.com"
    missing = await client.get("/api/bounces/999999", auth=auth("viewer"))
    assert missing.status_code == 404 and missing.json() == {"message": "Bounce not found"}
    for bad in ("abc", "%C2%B2", "9223372036854775808"):  # "²" passes str.isdigit(), not int()
        invalid = await client.get(f"/api/bounces/{bad}", auth=auth("viewer"))
        assert invalid.status_code == 400 and invalid.json() == {"message": "invalid ID"}, bad
        invalid = await client.get(f"/api/subscribers/{bad}/bounces", auth=auth())
        assert invalid.status_code == 400 and invalid.json() == {"message": "invalid ID"}, bad


async def test_delete_by_ids_one_and_all(client, seeded, db):
    ids = seeded["ids"]
    response = await client.delete("/api/bounces", params=[("id", ids[0]), ("id", ids[1])], auth=auth())
    assert response.json() == {"data": True}
    assert (await listing(client))["total"] == 4
    assert (await client.delete(f"/api/bounces/{ids[2]}", auth=auth())).status_code == 200
    assert (await listing(client))["total"] == 3
    for bad in ({}, {"id": "x"}, {"id": "0"}, {"id": "\u00b2"}, {"id": "9223372036854775808"}):
        response = await client.delete("/api/bounces", params=bad, auth=auth())
        assert response.status_code == 400 and response.json() == {"message": "Invalid ID(s)"}
    assert (await client.delete("/api/bounces", params={"all": "true"}, auth=auth())).status_code == 200
    assert (await listing(client))["total"] == 0


async def test_blocklist_bounced_subscribers(client, seeded, db):
    lst = db.execute("INSERT INTO lists (name) VALUES ('news') RETURNING id").fetchone()["id"]
    db.execute("INSERT INTO subscriber_lists (subscriber_id, list_id, status) VALUES (%s, %s, 'confirmed')",
               (seeded["alice"], lst))
    clean = db.execute("INSERT INTO subscribers (email) VALUES ('clean@example.com') RETURNING id").fetchone()["id"]
    assert (await client.put("/api/bounces/blocklist", auth=auth())).json() == {"data": True}
    statuses = {r["id"]: r["status"] for r in db.execute("SELECT id, status::text AS status FROM subscribers")}
    assert statuses == {seeded["alice"]: "blocklisted", seeded["bob"]: "blocklisted", clean: "enabled"}
    assert db.execute("SELECT status::text AS s FROM subscriber_lists").fetchone()["s"] == "unsubscribed"


async def test_subscriber_bounces_get_and_delete(client, seeded):
    response = await client.get(f"/api/subscribers/{seeded['bob']}/bounces", auth=auth("viewer"))
    assert [b["type"] for b in response.json()["data"]] == ["soft", "complaint"]  # newest first
    assert (await client.delete(f"/api/subscribers/{seeded['bob']}/bounces", auth=auth())).status_code == 200
    assert (await client.get(f"/api/subscribers/{seeded['bob']}/bounces", auth=auth("viewer"))).json() == {"data": []}
    assert (await listing(client))["total"] == 4
    missing = await client.get("/api/subscribers/424242/bounces", auth=auth("viewer"))
    assert missing.status_code == 404


async def test_export_csv_and_ndjson_with_filters(client, seeded):
    response = await client.get("/api/bounces/export", params={"format": "csv", "source": "ses"}, auth=auth("viewer"))
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(response.text)))
    assert [r["email"] for r in table] == ["alice@example.com", "bob@example.com", "carol@example.com"]
    assert table[0]["campaign_name"] == "Spring" and orjson.loads(table[0]["meta"]) == {"n": 1}

    response = await client.get("/api/bounces/export", params={"format": "ndjson"}, auth=auth("viewer"))
    lines = [orjson.loads(line) for line in response.text.splitlines()]
    assert [r["id"] for r in lines] == seeded["ids"]


async def test_export_streams_many_rows(client, db):
    db.execute("INSERT INTO bounces (email, type, source) SELECT 'x' || g || '@example.com', 'soft', 'bulk'"
               " FROM generate_series(1, 5000) g")
    response = await client.get("/api/bounces/export", params={"format": "csv"}, auth=auth("viewer"))
    assert len(response.text.splitlines()) == 5001


async def test_ndjson_export_is_every_listed_bounce_exactly_in_id_order(client, seeded, db):
    # Strings JSON and COPY both escape, the bytes COPY quotes with, and non-ASCII; ids across several
    # of the export's id blocks (queries.NDJSON_ID_BLOCK), with a gap of more than one block.
    awkward = 'back\\slash "quoted" \x01\x02\x1f\t\r\n é 日本 😀'
    db.execute("INSERT INTO bounces (email, type, source, meta) VALUES (%s, 'soft', %s, %s)",
               ("we\\ird\x02@example.com", awkward, orjson.dumps({"text": awkward, "list": [awkward]}).decode()))
    db.execute("SELECT setval('bounces_id_seq', nextval('bounces_id_seq') + 2500)")
    db.execute("INSERT INTO bounces (email, type, source) SELECT 'x' || g || '@example.com', 'soft', 'bulk'"
               " FROM generate_series(1, 2500) g")
    response = await client.get("/api/bounces/export", params={"format": "ndjson"}, auth=auth("viewer"))
    assert response.status_code == 200 and response.headers["content-type"] == "application/x-ndjson"
    assert response.content.endswith(b"}\n") and b"\n\n" not in response.content
    exported = [orjson.loads(line) for line in response.content.splitlines()]
    listed = [row for page in (1, 2, 3) for row in (await listing(client, order="asc", per_page=1000, page=page))["results"]]
    assert [row["id"] for row in exported] == sorted(row["id"] for row in listed) and len(exported) == 2507
    # PostgreSQL writes created_at without trailing zeros in the fraction; the instant is the same.
    same_time = [{**row, "created_at": datetime.fromisoformat(row["created_at"])} for row in exported]
    assert same_time == sorted(({**row, "created_at": datetime.fromisoformat(row["created_at"])} for row in listed),
                               key=lambda row: row["id"])
    assert exported[6]["source"] == awkward and exported[6]["meta"] == {"text": awkward, "list": [awkward]}
    assert exported[6]["email"] == "we\\ird\x02@example.com"

    response = await client.get("/api/bounces/export", params={"format": "ndjson", "source": "bulk", "email": "x2500@example.com"},
                                auth=auth("viewer"))
    assert [orjson.loads(line)["email"] for line in response.content.splitlines()] == ["x2500@example.com"]


async def test_export_of_nothing_is_just_the_header(client, db):
    response = await client.get("/api/bounces/export", auth=auth("viewer"))
    assert response.text.splitlines() == [response.text.splitlines()[0]]
    assert response.text.startswith("id,created_at,type,source,email")


async def test_export_rejects_unknown_format(client, db):
    response = await client.get("/api/bounces/export", params={"format": "xml"}, auth=auth("viewer"))
    assert response.status_code == 400
