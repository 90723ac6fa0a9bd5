"""Bulk paths: subscriber import by COPY, bounce import through the recorder, paging, COPY export."""

from __future__ import annotations

import asyncio
import csv
import io
from uuid import RFC_4122, UUID, uuid4
from datetime import datetime, timedelta, timezone

import orjson
import psycopg
import pytest

from bounce_service import queries
from bounce_service.routes import bounces as bounce_routes
from bounce_service.routes import data as data_routes
from tests.conftest import auth, blocked_on_a_lock

LIST_A = "11111111-1111-4111-8111-111111111111"
LIST_B = "33333333-3333-4333-8333-333333333333"
T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)


def ndjson(*objects: dict) -> bytes:
    return b"\n".join(orjson.dumps(o) for o in objects) + b"\n"


async def import_subscribers(client, body: bytes):
    return await client.post("/api/subscribers/import", content=body, auth=auth())


def subscribers(db) -> dict[str, dict]:
    rows = db.execute("SELECT email, uuid::text AS uuid, name, attribs, status::text AS status FROM subscribers")
    return {row["email"]: row for row in rows}


def memberships(db) -> set[tuple[str, str, str]]:
    rows = db.execute(
        "SELECT s.email, l.uuid::text AS list, sl.status::text AS status FROM subscriber_lists sl"
        " JOIN subscribers s ON s.id = sl.subscriber_id JOIN lists l ON l.id = sl.list_id"
    )
    return {(r["email"], r["list"], r["status"]) for r in rows}


# ---- subscriber import ----------------------------------------------------------------------------------

async def test_import_upserts_existing_subscribers_keeping_fields_a_line_leaves_out(client, db):
    db.execute("INSERT INTO subscribers (email, name, attribs, status) VALUES"
               " ('old@example.com', 'Old', '{\"plan\": \"pro\"}', 'disabled')")
    before = subscribers(db)["old@example.com"]
    response = await import_subscribers(client, ndjson(
        {"email": "OLD@example.com", "name": "Renamed"},
        {"email": "new@example.com"},
    ))
    assert response.json() == {"data": {"imported": 2}}
    after = subscribers(db)
    assert after["old@example.com"] == {**before, "name": "Renamed"}
    assert after["new@example.com"]["name"] == "" and after["new@example.com"]["attribs"] == {}
    assert after["new@example.com"]["status"] == "enabled"


async def test_new_subscribers_without_a_uuid_get_distinct_random_ones(client, db):
    response = await import_subscribers(client, ndjson(*({"email": f"n{n}@example.com"} for n in range(500))))
    assert response.status_code == 200, response.text
    uuids = [UUID(row["uuid"]) for row in subscribers(db).values()]
    assert len(set(uuids)) == 500
    assert {(u.version, u.variant) for u in uuids} == {(4, RFC_4122)}


async def test_lines_for_one_address_end_as_upserting_them_in_order_would(client, db):
    uuid = "44444444-4444-4444-8444-444444444444"
    response = await import_subscribers(client, ndjson(
        {"email": "twice@example.com", "uuid": uuid, "name": "First", "attribs": {"a": 1}},
        {"email": "other@example.com"},
        {"email": "Twice@example.com", "uuid": "55555555-5555-4555-8555-555555555555", "status": "blocklisted"},
        {"email": "twice@example.com", "name": "Last", "attribs": {"b": 2}},
        {"email": "twice@example.com", "name": None},
    ))
    assert response.status_code == 200, response.text
    row = subscribers(db)["twice@example.com"]
    assert row == {"email": "twice@example.com", "uuid": uuid, "name": "Last", "attribs": {"b": 2}, "status": "blocklisted"}
    assert len(subscribers(db)) == 2


async def test_a_bad_line_after_rows_already_sent_to_copy_imports_nothing(client, db):
    """Lines are streamed into the staging COPY as they are parsed: thousands are in PostgreSQL already
    when the bad one is read. The import still writes nothing, and the next one is served."""
    lines = [{"email": f"early{n}@example.com", "name": "x" * 100} for n in range(3000)]
    response = await import_subscribers(client, ndjson(*lines, {"email": "late@example.com", "status": "gone"}))
    assert response.status_code == 400 and response.json() == {"message": "line 3001: Invalid fields: status"}
    assert subscribers(db) == {}
    empty = await import_subscribers(client, b"\n\n")
    assert empty.status_code == 400 and empty.json() == {"message": "Invalid data: no subscribers in body"}
    assert (await import_subscribers(client, ndjson(*lines))).json() == {"data": {"imported": 3000}}


def updated_at(db) -> dict[str, object]:
    rows = db.execute("SELECT s.email, s.updated_at, sl.updated_at AS membership_updated_at FROM subscribers s"
                      " LEFT JOIN subscriber_lists sl ON sl.subscriber_id = s.id")
    return {row["email"]: (row["updated_at"], row["membership_updated_at"]) for row in rows}


async def test_reimporting_unchanged_lines_writes_nothing_and_a_change_moves_only_its_row(client, db):
    await client.post("/api/lists", json={"uuid": LIST_A, "name": "A"}, auth=auth())
    lines = [{"email": f"s{n}@example.com", "name": f"S{n}", "attribs": {"n": n}, "lists": [{"uuid": LIST_A}]}
             for n in range(3)]
    assert (await import_subscribers(client, ndjson(*lines))).status_code == 200
    before, contents = updated_at(db), (subscribers(db), memberships(db))
    # Same values again, in another case and with fields left out: nothing to change.
    again = [lines[0], {"email": "S1@EXAMPLE.COM", "lists": [{"uuid": LIST_A}]}, {**lines[2], "name": None}]
    assert (await import_subscribers(client, ndjson(*again))).json() == {"data": {"imported": 3}}
    assert updated_at(db) == before and (subscribers(db), memberships(db)) == contents
    changed = [{**lines[0], "attribs": {"n": 99}}, {**lines[1], "lists": [{"uuid": LIST_A, "status": "unsubscribed"}]}, lines[2]]
    assert (await import_subscribers(client, ndjson(*changed))).status_code == 200
    after = updated_at(db)
    assert after["s0@example.com"][0] > before["s0@example.com"][0] and after["s0@example.com"][1] == before["s0@example.com"][1]
    assert after["s1@example.com"][0] == before["s1@example.com"][0] and after["s1@example.com"][1] > before["s1@example.com"][1]
    assert after["s2@example.com"] == before["s2@example.com"]
    assert subscribers(db)["s0@example.com"]["attribs"] == {"n": 99}
    assert ("s1@example.com", LIST_A, "unsubscribed") in memberships(db)


async def test_import_sets_and_updates_list_memberships(client, db):
    for uuid, name in ((LIST_A, "A"), (LIST_B, "B")):
        await client.post("/api/lists", json={"uuid": uuid, "name": name}, auth=auth())
    await import_subscribers(client, ndjson(
        {"email": "a@example.com", "lists": [{"uuid": LIST_A}, {"uuid": LIST_B, "status": "unconfirmed"}]},
        {"email": "b@example.com", "lists": [{"uuid": LIST_B}]},
    ))
    assert memberships(db) == {
        ("a@example.com", LIST_A, "confirmed"), ("a@example.com", LIST_B, "unconfirmed"), ("b@example.com", LIST_B, "confirmed"),
    }
    await import_subscribers(client, ndjson(
        {"email": "a@example.com", "lists": [{"uuid": LIST_A, "status": "unsubscribed"}]},
        {"email": "b@example.com", "lists": [{"uuid": LIST_B, "status": "unconfirmed"}]},
        {"email": "b@example.com", "lists": [{"uuid": LIST_B, "status": "confirmed"}]},
    ))
    assert memberships(db) == {
        ("a@example.com", LIST_A, "unsubscribed"), ("a@example.com", LIST_B, "unconfirmed"), ("b@example.com", LIST_B, "confirmed"),
    }


async def test_unknown_list_names_its_line_and_imports_nothing(client, db):
    await client.post("/api/lists", json={"uuid": LIST_A, "name": "A"}, auth=auth())
    body = ndjson({"email": "a@example.com", "lists": [{"uuid": LIST_A}]}) + b"\n" + ndjson(
        {"email": "b@example.com", "lists": [{"uuid": LIST_A}, {"uuid": LIST_B}]},
        {"email": "c@example.com", "lists": [{"uuid": LIST_B}]},
    )
    response = await import_subscribers(client, body)
    # Line 2 is blank: numbers are the body's own line numbers.
    assert response.status_code == 400 and response.json() == {"message": f"line 3: Unknown list: {LIST_B}"}
    assert subscribers(db) == {} and memberships(db) == set()


async def test_uuid_of_another_subscriber_names_its_line_and_imports_nothing(client, db):
    taken = (await client.post("/api/subscribers", json={"email": "owner@example.com"}, auth=auth())).json()["data"]["uuid"]
    response = await import_subscribers(client, ndjson(
        {"email": "owner@example.com", "uuid": taken, "name": "Owner"},
        {"email": "fine@example.com"},
        {"email": "thief@example.com", "uuid": taken},
    ))
    assert response.status_code == 409
    assert response.json() == {"message": "line 3: uuid already belongs to another subscriber"}
    assert set(subscribers(db)) == {"owner@example.com"} and subscribers(db)["owner@example.com"]["name"] == ""


async def test_two_new_subscribers_with_one_uuid_is_409_on_the_second(client, db):
    uuid = "66666666-6666-4666-8666-666666666666"
    response = await import_subscribers(client, ndjson({"email": "x@example.com", "uuid": uuid}, {"email": "y@example.com", "uuid": uuid}))
    assert response.status_code == 409 and response.json()["message"].startswith("line 2: ")
    assert subscribers(db) == {}


def rescanned_per_row(plan: dict, table: str, inner: bool = False) -> bool:
    """Whether a nested loop in `plan` (EXPLAIN's JSON) scans all of `table` again for each outer row."""
    if inner and plan["Node Type"] == "Seq Scan" and plan.get("Relation Name") == table:
        return True
    return any(rescanned_per_row(child, table, inner or (plan["Node Type"] == "Nested Loop"
                                                           and child.get("Parent Relationship") == "Inner"))
               for child in plan.get("Plans", []))


def test_new_subscribers_among_many_are_joined_to_their_memberships_by_key(db):
    """The planner knows nothing of the staged rows: into tables of analysed rows, it expects
    almost none of the lines to be new. Its plan must stay linear in the import even so."""
    db.execute("INSERT INTO lists (uuid, name) VALUES (%s, 'A')", (LIST_A,))
    db.execute("INSERT INTO subscribers (email) SELECT 'old' || g || '@example.com' FROM generate_series(1, 5000) g")
    db.execute("ANALYZE subscribers, lists")
    with db.transaction():
        db.execute(queries.CREATE_IMPORT_SUBSCRIBERS)
        db.execute(queries.CREATE_IMPORT_MEMBERSHIPS)
        with db.cursor().copy(queries.COPY_IMPORT_SUBSCRIBERS) as copy:
            for n in range(500):
                copy.write_row((f"new{n}@example.com", n + 1, str(uuid4()), None, None, None))
        with db.cursor().copy(queries.COPY_IMPORT_MEMBERSHIPS) as copy:
            for n in range(500):
                copy.write_row((f"new{n}@example.com", LIST_A, n + 1, "confirmed"))
        [[plan]] = db.execute("EXPLAIN (FORMAT JSON) " + queries.INSERT_IMPORTED_SUBSCRIBERS).fetchone().values()
    assert not rescanned_per_row(plan["Plan"], "import_memberships")


# A file that starts with a known address is staged from the start; one of new addresses is copied straight
# into the subscribers table (data._import). Both must wait for the other client, then keep the file's values.
@pytest.mark.parametrize("table, starts_known, waiting", [
    ("subscribers", True, "INSERT INTO subscribers"), ("subscribers", False, "COPY subscribers"),
    ("subscriber_lists", True, "INSERT INTO subscriber_lists")])
async def test_a_row_another_client_inserts_during_the_import_gets_the_files_values(
        client, db, database_url, table, starts_known, waiting):
    await client.post("/api/lists", json={"uuid": LIST_A, "name": "A"}, auth=auth())
    if table == "subscriber_lists":
        db.execute("INSERT INTO subscribers (email) VALUES ('race@example.com')")
    if starts_known:
        db.execute("INSERT INTO subscribers (email) VALUES ('known@example.com')")
    lines = [{"email": "known@example.com"}] * starts_known + [
        {"email": "race@example.com", "name": "Ours", "lists": [{"uuid": LIST_A}]},
        {"email": "calm@example.com", "lists": [{"uuid": LIST_A}]}]
    async with await psycopg.AsyncConnection.connect(database_url) as other:
        async with other.transaction():  # committed when the import is waiting for it
            if table == "subscribers":
                await other.execute("INSERT INTO subscribers (email, name) VALUES ('race@example.com', 'Theirs')")
            else:
                await other.execute("INSERT INTO subscriber_lists (subscriber_id, list_id, status) SELECT s.id, l.id, "
                                    "'unconfirmed' FROM subscribers s, lists l WHERE s.email = 'race@example.com'")
            request = asyncio.create_task(import_subscribers(client, ndjson(*lines)))
            await blocked_on_a_lock(db, waiting)
    response = await request
    assert response.status_code == 200, response.text
    assert subscribers(db)["race@example.com"]["name"] == "Ours"
    assert set(subscribers(db)) - {"known@example.com"} == {"race@example.com", "calm@example.com"}
    assert memberships(db) == {("race@example.com", LIST_A, "confirmed"), ("calm@example.com", LIST_A, "confirmed")}


def new_lines(count: int) -> list[dict]:
    """More new addresses than an import looks up before it copies them straight into the table."""
    assert count > data_routes.PROBE_ADDRESSES
    return [{"email": f"new{n}@example.com", "lists": [{"uuid": LIST_A}]} for n in range(count)]


async def test_a_known_address_after_the_first_lines_is_updated_once_and_the_rest_added(client, db):
    await client.post("/api/lists", json={"uuid": LIST_A, "name": "A"}, auth=auth())
    db.execute("INSERT INTO subscribers (email, name) VALUES ('known@example.com', 'Before')")
    before = subscribers(db)["known@example.com"]
    lines = new_lines(data_routes.PROBE_ADDRESSES + 50)
    lines[3] = {**lines[3], "name": "First"}
    body = ndjson(*lines, {"email": "KNOWN@example.com", "name": "After", "lists": [{"uuid": LIST_A}]},
                  {"email": lines[3]["email"], "name": "Last"})
    response = await import_subscribers(client, body)
    assert response.json() == {"data": {"imported": len(lines) + 2}}
    after = subscribers(db)
    assert len(after) == len(lines) + 1 and after["known@example.com"] == {**before, "name": "After"}
    assert after[lines[3]["email"]]["name"] == "Last"
    assert len({row["uuid"] for row in after.values()}) == len(after)
    assert memberships(db) == {(email, LIST_A, "confirmed") for email in after}


async def test_a_uuid_taken_after_the_first_lines_names_its_line(client, db):
    await client.post("/api/lists", json={"uuid": LIST_A, "name": "A"}, auth=auth())
    taken = (await client.post("/api/subscribers", json={"email": "owner@example.com"}, auth=auth())).json()["data"]["uuid"]
    lines = new_lines(data_routes.PROBE_ADDRESSES + 50)
    response = await import_subscribers(client, ndjson(*lines, {"email": "thief@example.com", "uuid": taken}))
    assert response.status_code == 409
    assert response.json() == {"message": f"line {len(lines) + 1}: uuid already belongs to another subscriber"}
    assert set(subscribers(db)) == {"owner@example.com"} and memberships(db) == set()


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
async def test_a_file_of_new_subscribers_is_imported_whatever_its_line_ends(client, db, newline):
    """Each line's subscriber takes an id drawn before the copy, one per line of the body."""
    await client.post("/api/lists", json={"uuid": LIST_A, "name": "A"}, auth=auth())
    lines = new_lines(data_routes.PROBE_ADDRESSES + 50)
    response = await import_subscribers(client, newline.join(orjson.dumps(line) for line in lines))
    assert response.json() == {"data": {"imported": len(lines)}}
    assert set(subscribers(db)) == {line["email"] for line in lines}
    assert memberships(db) == {(line["email"], LIST_A, "confirmed") for line in lines}


async def test_a_value_postgresql_refuses_in_a_file_of_new_subscribers_imports_nothing(client, db):
    await client.post("/api/lists", json={"uuid": LIST_A, "name": "A"}, auth=auth())
    lines = new_lines(data_routes.PROBE_ADDRESSES + 50)
    response = await import_subscribers(client, ndjson(*lines, {"email": "nul@example.com", "name": "a\u0000b"}))
    assert response.status_code == 400 and "cannot be stored" in response.json()["message"]
    assert subscribers(db) == {} and memberships(db) == set()


# ---- bounce import --------------------------------------------------------------------------------------

def bounce(email: str, kind: str = "soft", event_id: str | None = None, **extra) -> dict:
    body = {"email": email, "type": kind, "source": "mta", **extra}
    return body | ({"event_id": event_id} if event_id else {})


async def import_bounces(client, body: bytes, user: str = "admin"):
    return await client.post("/api/bounces/import", content=body, auth=auth(user))


async def test_bounce_import_is_idempotent_and_shares_keys_with_the_webhook(client, db):
    await client.post("/webhooks/bounce", json=bounce("a@example.com", event_id="e1"), auth=auth())
    body = ndjson(*(bounce(f"{n}@example.com", event_id=f"e{n}") for n in range(1, 6)))
    first = await import_bounces(client, body)
    assert first.json() == {"data": {"imported": 5, "recorded": 4, "duplicates": 1}}  # e1 came by webhook
    again = await import_bounces(client, body)
    assert again.json() == {"data": {"imported": 5, "recorded": 0, "duplicates": 5}}
    assert db.execute("SELECT COUNT(*) AS n FROM bounces").fetchone()["n"] == 5


async def test_bounce_import_matches_subscribers_and_fires_thresholds(client, db):
    sub = db.execute("INSERT INTO subscribers (email) VALUES ('hard@example.com') RETURNING id").fetchone()["id"]
    lst = db.execute("INSERT INTO lists (name) VALUES ('news') RETURNING id").fetchone()["id"]
    db.execute("INSERT INTO subscriber_lists (subscriber_id, list_id, status) VALUES (%s, %s, 'confirmed')", (sub, lst))
    response = await import_bounces(client, ndjson(bounce("HARD@example.com", "hard"), bounce("stranger@example.com")))
    assert response.json()["data"]["recorded"] == 2
    rows = {r["email"]: r for r in db.execute("SELECT email, subscriber_id, action FROM bounces")}
    assert rows["hard@example.com"] == {"email": "hard@example.com", "subscriber_id": sub, "action": "blocklist"}
    assert rows["stranger@example.com"]["subscriber_id"] is None
    assert db.execute("SELECT status::text AS s FROM subscribers").fetchone()["s"] == "blocklisted"
    assert db.execute("SELECT status::text AS s FROM subscriber_lists").fetchone()["s"] == "unsubscribed"


async def test_a_bounce_import_line_from_the_far_future_is_refused(client, db):
    late = bounce("b@example.com", created_at="9999-12-31T23:59:59-14:00")
    response = await import_bounces(client, ndjson(bounce("a@example.com"), late))
    assert response.status_code == 400
    assert response.json() == {"message": "line 2: Invalid fields: created_at (must be after 1970 and at most a day from now)"}
    assert db.execute("SELECT COUNT(*) AS n FROM bounces").fetchone()["n"] == 0


async def test_bounce_import_is_all_or_nothing_with_line_numbers(client, db):
    """The subscribers are locked while the lines are read: thousands are locked when the bad one is
    found. Nothing is recorded, or counted, and the next import is served."""
    db.execute("INSERT INTO subscribers (email) VALUES ('a@example.com')")
    lines = [bounce("a@example.com", "hard", event_id="first", source="streamed"),
             *(bounce(f"{n}@example.com", meta={"n": n}, source="streamed") for n in range(3000))]
    response = await import_bounces(client, ndjson(*lines, bounce("b@example.com", "bouncy")))
    assert response.status_code == 400 and response.json() == {"message": "line 3002: Invalid fields: type"}
    empty = await import_bounces(client, b"\n\n")
    assert empty.status_code == 400 and empty.json() == {"message": "Invalid data: no bounces in body"}
    assert db.execute("SELECT COUNT(*) AS n FROM bounces").fetchone()["n"] == 0
    assert db.execute("SELECT status::text AS s FROM subscribers").fetchone()["s"] == "enabled"
    assert 'source="streamed"' not in (await client.get("/metrics")).text
    response = await import_bounces(client, ndjson(*lines))
    assert response.json() == {"data": {"imported": 3001, "recorded": 3001, "duplicates": 0}}
    assert db.execute("SELECT status::text AS s FROM subscribers").fetchone()["s"] == "blocklisted"


@pytest.mark.parametrize("second, third, error", [
    (bounce("a@example.com", "bouncy"), b"not json", "line 2: Invalid fields: type"),
    (b"not json", bounce("a@example.com", "bouncy"), "line 2: Invalid data: "),
    (bounce("not an address"), bounce("a@example.com", "bouncy"), "line 2: Invalid email."),
    (bounce("a@example.com", "bouncy"), bounce("not an address"), "line 2: Invalid fields: type"),
])
async def test_a_bounce_import_names_its_first_bad_line_whatever_is_wrong_with_it(client, db, second, third, error):
    """Each line's JSON and address are read first (to lock the subscribers), the rest after: an error
    of either kind is still reported for the first line that has one."""
    lines = [orjson.dumps(line) if isinstance(line, dict) else line for line in (bounce("a@example.com"), second, third)]
    response = await import_bounces(client, b"\n".join(lines))
    assert response.status_code == 400 and response.json()["message"].startswith(error), response.text
    assert db.execute("SELECT COUNT(*) AS n FROM bounces").fetchone()["n"] == 0


async def test_bounce_import_needs_bounces_manage(client, db):
    response = await import_bounces(client, ndjson(bounce("a@example.com")), user="poster")
    assert response.status_code == 403 and response.json() == {"message": "permission denied: bounces:manage"}


# ---- paging ---------------------------------------------------------------------------------------------

@pytest.fixture
def many(db) -> None:
    """90 bounces with many ties in every order column, campaigns sharing a name, and no campaign at all."""
    campaigns = [db.execute("INSERT INTO campaigns (name) VALUES (%s) RETURNING id", (name,)).fetchone()["id"]
                 for name in ("Spring", "Autumn", "Spring")]
    db.execute(
        "INSERT INTO bounces (email, campaign_id, type, source, created_at)"
        " SELECT 'u' || (g %% 7) || '@example.com', (%s::bigint[])[g %% 4 + 1],"
        " (ARRAY['soft','hard','complaint']::bounce_type[])[g %% 3 + 1], 's' || (g %% 5), %s + (g %% 11) * INTERVAL '1 hour'"
        " FROM generate_series(1, 90) g",
        ([*campaigns, None], T0),
    )


# Same-named campaigns are told apart by campaign id, so each one's bounces stay together.
REFERENCE_COLUMNS = {"email": "LOWER(b.email)", "campaign_name": "c.name {order} NULLS LAST, c.id", "source": "b.source",
                     "created_at": "b.created_at", "type": "b.type"}


@pytest.mark.parametrize("order", ["asc", "desc"])
@pytest.mark.parametrize("order_by", sorted(REFERENCE_COLUMNS))
async def test_pages_hold_the_rows_of_a_plain_order_by(client, db, many, order_by, order):
    column = REFERENCE_COLUMNS[order_by]
    expected = [r["id"] for r in db.execute(
        f"SELECT b.id FROM bounces b LEFT JOIN campaigns c ON c.id = b.campaign_id"
        f" ORDER BY {column.format(order=order)} {order} NULLS LAST, b.id {order}"
    )]
    seen = []
    for page in range(1, 15):
        data = (await client.get("/api/bounces", auth=auth("viewer"), params={
            "order_by": order_by, "order": order, "page": page, "per_page": 7})).json()["data"]
        assert data["total"] == 90 and data["page"] == page and data["per_page"] == 7
        seen += [r["id"] for r in data["results"]]
    assert seen == expected


async def test_filtered_pages_hold_the_rows_of_a_plain_query(client, db, many):
    expected = [r["id"] for r in db.execute(
        "SELECT id FROM bounces WHERE source = 's1' AND type = 'hard' ORDER BY created_at DESC, id DESC")]
    pages = [(await client.get("/api/bounces", auth=auth("viewer"), params={
        "source": "s1", "type": "hard", "page": page, "per_page": 2})).json()["data"] for page in range(1, 5)]
    assert [r["id"] for p in pages for r in p["results"]] == expected
    assert {p["total"] for p in pages} == {len(expected)}


async def test_total_beyond_the_cap_is_an_estimate_above_the_cap(client, db, many, monkeypatch):
    monkeypatch.setattr(bounce_routes, "COUNT_CAP", 10)
    data = (await client.get("/api/bounces", auth=auth("viewer"), params={"per_page": 5})).json()["data"]
    assert data["total"] > 10 and len(data["results"]) == 5
    params = {"email": "u1@example.com", "type": "hard"}
    small = (await client.get("/api/bounces", auth=auth("viewer"), params=params)).json()["data"]
    exact = db.execute("SELECT COUNT(*) AS n FROM bounces WHERE email = %(email)s AND type = %(type)s", params).fetchone()["n"]
    assert 0 < exact <= 10 and small["total"] == exact


# ---- export ---------------------------------------------------------------------------------------------

async def export(client, **params) -> str:
    response = await client.get("/api/bounces/export", params=params, auth=auth("viewer"))
    assert response.status_code == 200, response.text
    return response.text


async def test_ndjson_export_carries_every_character_of_the_json_exactly(client, db):
    meta = {"smtp": 'a "quoted" back\\slash\nnew line\ttab \\n \u00e9\u4e2d \U0001f4e7 \x01'}
    db.execute("INSERT INTO bounces (email, type, source, meta) VALUES ('x@example.com', 'hard', %s, %s)",
               ("back\\slash", orjson.dumps(meta).decode()))
    [line] = (await export(client, format="ndjson")).splitlines()
    row = orjson.loads(line)
    assert row["meta"] == meta and row["source"] == "back\\slash"
    listed = (await client.get("/api/bounces", auth=auth("viewer"))).json()["data"]["results"][0]
    # PostgreSQL drops trailing zeros of the fraction of a second: the same instant, written shorter.
    assert datetime.fromisoformat(row.pop("created_at")) == datetime.fromisoformat(listed.pop("created_at"))
    assert row == listed


async def test_exports_stream_everything_that_matches_the_filters(client, db, many):
    expected = [r["id"] for r in db.execute("SELECT id FROM bounces WHERE source = 's2' AND created_at >= %s ORDER BY id",
                                            (T0 + timedelta(hours=3),))]
    params = {"source": "s2", "from": (T0 + timedelta(hours=3)).isoformat()}
    table = list(csv.DictReader(io.StringIO(await export(client, format="csv", **params))))
    assert [int(r["id"]) for r in table] == expected
    lines = (await export(client, format="ndjson", **params)).splitlines()
    assert [orjson.loads(line)["id"] for line in lines] == expected


async def test_export_binds_filters_as_values(client, db, many):
    assert (await export(client, format="ndjson", source="s1' OR '1'='1")) == ""
    assert (await export(client, format="csv", email="U3@EXAMPLE.COM")).count("u3@example.com") == len(
        db.execute("SELECT 1 FROM bounces WHERE email = 'u3@example.com'").fetchall())


async def test_export_larger_than_one_block_arrives_whole(client, db, monkeypatch):
    monkeypatch.setattr(bounce_routes, "EXPORT_BLOCK", 1000)
    db.execute("INSERT INTO bounces (email, type, source, meta) SELECT 'x' || g || '@example.com', 'soft', 'bulk', %s"
               " FROM generate_series(1, 500) g", (orjson.dumps({"s": "a\\b"}).decode(),))
    lines = (await export(client, format="ndjson")).splitlines()
    assert len(lines) == 500 and {orjson.loads(line)["meta"]["s"] for line in lines} == {"a\\b"}


async def test_bounce_import_counts_a_repeated_line_once_and_acts_once(client, db):
    db.execute("INSERT INTO subscribers (email) VALUES ('soft@example.com')")
    body = ndjson(*(bounce("soft@example.com", event_id=f"s{n}") for n in range(4)), bounce("soft@example.com", event_id="s0"))
    response = await import_bounces(client, body)
    assert response.json() == {"data": {"imported": 5, "recorded": 4, "duplicates": 1}}
    # soft: count 2, action none in the test config; hard fires at once.
    hard = await import_bounces(client, ndjson(bounce("soft@example.com", "hard", event_id="h1")))
    assert hard.json()["data"]["recorded"] == 1
    actions = [r["action"] for r in db.execute("SELECT action FROM bounces ORDER BY id")]
    assert actions == [None, None, None, None, "blocklist"]


async def test_a_key_another_transaction_stores_during_the_bounce_import_is_a_duplicate(client, db, database_url):
    db.execute("INSERT INTO subscribers (email) VALUES ('hard@example.com')")
    async with await psycopg.AsyncConnection.connect(database_url) as other:
        async with other.transaction():  # a webhook of the same event, committed while the import waits for it
            await other.execute("INSERT INTO bounces (email, type, source, event_key) VALUES"
                                " ('hard@example.com', 'hard', 'mta', 'native:mta:e1')")
            request = asyncio.create_task(import_bounces(client, ndjson(
                bounce("hard@example.com", "hard", event_id="e1"), bounce("soft@example.com", event_id="e2"),
                bounce("soft@example.com"),
            )))
            await blocked_on_a_lock(db, "COPY bounces")
    response = await request
    assert response.json() == {"data": {"imported": 3, "recorded": 2, "duplicates": 1}}
    rows = db.execute("SELECT email, event_key FROM bounces ORDER BY id").fetchall()
    assert [(r["email"], r["event_key"]) for r in rows] == [
        ("hard@example.com", "native:mta:e1"), ("soft@example.com", "native:mta:e2"), ("soft@example.com", None)]


async def test_bounce_import_refused_by_the_database_records_nothing(client, db):
    db.execute("INSERT INTO subscribers (email) VALUES ('hard@example.com')")
    lines = [bounce("hard@example.com", "hard", event_id="h1"), *(bounce(f"{n}@example.com") for n in range(1500))]
    body = ndjson(*lines, bounce("last@example.com", meta={"smtp": "550 \u0000"}))  # valid JSON, not storable
    response = await import_bounces(client, body)
    assert response.status_code == 400 and "cannot be stored" in response.json()["message"]
    assert db.execute("SELECT COUNT(*) AS n FROM bounces").fetchone()["n"] == 0
    assert db.execute("SELECT status::text AS s FROM subscribers").fetchone()["s"] == "enabled"
