"""The one recorder: exactly-once storage, subscriber matching, thresholds and concurrency."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from uuid import uuid4

import orjson
import psycopg
import pytest

from bounce_service import queries
from bounce_service.config import ActionRule
from bounce_service.db import Database
from bounce_service.events import BounceEvent
from bounce_service.recorder import Named, Outcome, Recorder
from tests.conftest import blocked_on_a_lock


def add_subscriber(db, email: str, lists: int = 0, status: str = "enabled") -> dict:
    row = db.execute(
        "INSERT INTO subscribers (email, status) VALUES (%s, %s) RETURNING id, uuid::text AS uuid",
        (email, status),
    ).fetchone()
    for index in range(lists):
        list_id = db.execute("INSERT INTO lists (name) VALUES (%s) RETURNING id", (f"list {index}",)).fetchone()["id"]
        db.execute("INSERT INTO subscriber_lists (subscriber_id, list_id, status) VALUES (%s, %s, 'confirmed')",
                   (row["id"], list_id))
    return row


def subscriber(db, subscriber_id: int) -> dict | None:
    return db.execute("SELECT status::text AS status FROM subscribers WHERE id = %s", (subscriber_id,)).fetchone()


def list_statuses(db, subscriber_id: int) -> set[str]:
    rows = db.execute("SELECT status::text AS s FROM subscriber_lists WHERE subscriber_id = %s", (subscriber_id,))
    return {row["s"] for row in rows.fetchall()}


def count(db, sql: str = "SELECT COUNT(*) AS n FROM bounces", *params) -> int:
    return db.execute(sql, params).fetchone()["n"]


RULES = {
    "soft": ActionRule(count=2, action="none", window=None),
    "hard": ActionRule(count=1, action="blocklist", window=None),
    "complaint": ActionRule(count=1, action="blocklist", window=None),
}


@pytest.fixture
async def make_recorder(database_url, db):
    pools = []

    async def build(**rules: ActionRule) -> Recorder:
        database = Database(database_url, max_size=20)
        await database.pool.open(wait=True)
        pools.append(database)
        return Recorder(database, {**RULES, **rules})

    yield build
    for database in pools:
        await database.close()


def hard(email: str = "", **fields) -> BounceEvent:
    return BounceEvent(type=fields.pop("type", "hard"), source=fields.pop("source", "test"), email=email, **fields)


async def test_same_event_key_twice_is_one_row_and_one_action(make_recorder, db):
    recorder = await make_recorder()
    sub = add_subscriber(db, "a@example.com", lists=1)
    event = hard("a@example.com", event_key="sg:abc")
    first = await recorder.record([event])
    second = await recorder.record([event])
    assert first.outcomes == [Outcome.RECORDED] and second.outcomes == [Outcome.DUPLICATE]
    assert [a.action for a in first.actions] == ["blocklist"] and second.actions == []
    assert count(db) == 1
    assert subscriber(db, sub["id"])["status"] == "blocklisted"


async def test_duplicate_keys_inside_one_batch_store_one_row(make_recorder, db):
    recorder = await make_recorder()
    result = await recorder.record([hard("x@example.com", event_key="k1"), hard("x@example.com", event_key="k1")])
    assert result.outcomes == [Outcome.RECORDED, Outcome.DUPLICATE]
    assert count(db) == 1


async def test_subscriber_by_uuid_first_then_email_case_insensitively(make_recorder, db):
    recorder = await make_recorder(hard=ActionRule(1, "none", None))
    by_uuid = add_subscriber(db, "uuid@example.com")
    mixed = add_subscriber(db, "Mixed.Case@Example.COM")
    await recorder.record([
        BounceEvent(type="hard", source="t", subscriber_uuid=by_uuid["uuid"].upper()),
        hard("MIXED.case@example.com"),
        # An unknown UUID falls back to the address instead of losing the subscriber.
        BounceEvent(type="hard", source="t", email="uuid@example.com", subscriber_uuid="00000000-0000-4000-8000-000000000000"),
    ])
    rows = db.execute("SELECT subscriber_id, email FROM bounces ORDER BY id").fetchall()
    assert [r["subscriber_id"] for r in rows] == [by_uuid["id"], mixed["id"], by_uuid["id"]]
    assert rows[0]["email"] == "uuid@example.com"  # filled from the subscriber


async def test_unknown_recipient_is_stored_without_subscriber(make_recorder, db):
    recorder = await make_recorder()
    result = await recorder.record([hard("stranger@example.com")])
    assert result.outcomes == [Outcome.RECORDED] and result.actions == []
    row = db.execute("SELECT subscriber_id, email, type::text AS type FROM bounces").fetchone()
    assert row == {"subscriber_id": None, "email": "stranger@example.com", "type": "hard"}


async def test_campaign_resolved_by_uuid_and_unknown_campaign_kept_as_null(make_recorder, db):
    recorder = await make_recorder()
    campaign = db.execute("INSERT INTO campaigns (name) VALUES ('c') RETURNING id, uuid::text AS uuid").fetchone()
    await recorder.record([
        hard("a@example.com", campaign_uuid=campaign["uuid"]),
        hard("b@example.com", campaign_uuid="00000000-0000-4000-8000-000000000001"),
    ])
    assert [r["campaign_id"] for r in db.execute("SELECT campaign_id FROM bounces ORDER BY id")] == [campaign["id"], None]


async def test_every_bounce_is_stored_past_the_threshold(make_recorder, db):
    recorder = await make_recorder(soft=ActionRule(2, "unsubscribe", None))
    sub = add_subscriber(db, "s@example.com", lists=2)
    results = [await recorder.record([hard("s@example.com", type="soft")]) for _ in range(5)]
    assert count(db) == 5
    assert [len(r.actions) for r in results] == [0, 1, 0, 0, 0]
    assert list_statuses(db, sub["id"]) == {"unsubscribed"}
    assert subscriber(db, sub["id"])["status"] == "enabled"


async def test_threshold_counts_only_its_own_type(make_recorder, db):
    recorder = await make_recorder(soft=ActionRule(2, "blocklist", None), complaint=ActionRule(5, "blocklist", None))
    sub = add_subscriber(db, "t@example.com")
    await recorder.record([hard("t@example.com", type="soft"), hard("t@example.com", type="complaint")])
    assert subscriber(db, sub["id"])["status"] == "enabled"
    await recorder.record([hard("t@example.com", type="soft")])
    assert subscriber(db, sub["id"])["status"] == "blocklisted"


async def test_window_ignores_old_bounces(make_recorder, db):
    recorder = await make_recorder(soft=ActionRule(2, "blocklist", timedelta(hours=720)))
    sub = add_subscriber(db, "w@example.com")
    old = datetime.now(timezone.utc) - timedelta(days=40)
    await recorder.record([hard("w@example.com", type="soft", created_at=old)])
    await recorder.record([hard("w@example.com", type="soft")])
    assert subscriber(db, sub["id"])["status"] == "enabled"  # the old one is outside the window
    await recorder.record([hard("w@example.com", type="soft")])
    assert subscriber(db, sub["id"])["status"] == "blocklisted"


async def test_blocklist_also_unsubscribes_every_list(make_recorder, db):
    recorder = await make_recorder()
    sub = add_subscriber(db, "b@example.com", lists=3)
    result = await recorder.record([hard("b@example.com")])
    assert subscriber(db, sub["id"])["status"] == "blocklisted"
    assert list_statuses(db, sub["id"]) == {"unsubscribed"}
    action = db.execute("SELECT action FROM bounces WHERE id = %s", (result.bounce_ids[0],)).fetchone()
    assert action["action"] == "blocklist"


def moved(db, table: str, order: str, changed: str) -> list[int]:
    """Rows (matching `changed`) whose version is on neither neighbour's page, in `order`: an update moved
    them, writing a new entry into every index of the table, instead of updating them in place (HOT)."""
    rows = db.execute(f"SELECT {order} AS key, {changed} AS changed, (ctid::text::point)[0] AS page "
                      f"FROM {table} ORDER BY {order}").fetchall()
    return [row["key"] for before, row, after in zip(rows, rows[1:], rows[2:])
            if row["changed"] and row["page"] not in (before["page"], after["page"])]


async def test_a_fired_action_updates_its_rows_in_place_on_pages_just_filled(make_recorder, db):
    recorder = await make_recorder()
    for n in range(300):
        add_subscriber(db, f"page{n}@example.com", lists=1)
    result = await recorder.record([hard(f"page{n}@example.com", type="hard" if n % 20 == 10 else "soft")
                                    for n in range(300)])
    assert len(result.actions) == 15
    assert moved(db, "bounces", "id", "action IS NOT NULL") == []
    assert moved(db, "subscribers", "id", "status = 'blocklisted'") == []
    assert moved(db, "subscriber_lists", "subscriber_id", "status = 'unsubscribed'") == []


async def test_delete_removes_subscriber_but_keeps_bounce_history(make_recorder, db):
    recorder = await make_recorder(hard=ActionRule(2, "delete", None))
    sub = add_subscriber(db, "d@example.com", lists=1)
    await recorder.record([hard("d@example.com")])
    assert subscriber(db, sub["id"]) is not None
    result = await recorder.record([hard("d@example.com")])
    assert [a.action for a in result.actions] == ["delete"]
    assert subscriber(db, sub["id"]) is None
    assert count(db, "SELECT COUNT(*) AS n FROM subscriber_lists") == 0
    rows = db.execute("SELECT subscriber_id, email, action FROM bounces ORDER BY id").fetchall()
    assert rows == [{"subscriber_id": None, "email": "d@example.com", "action": None},
                    {"subscriber_id": None, "email": "d@example.com", "action": "delete"}]  # the one that fired


async def test_a_subscriber_deleted_by_one_type_is_not_acted_on_by_the_next_in_the_batch(make_recorder, db):
    recorder = await make_recorder(complaint=ActionRule(1, "delete", None))  # complaint is applied before hard
    sub = add_subscriber(db, "twice@example.com", lists=1)
    result = await recorder.record([hard("twice@example.com"), hard("twice@example.com", type="complaint")])
    assert [(a.action, a.bounce_id) for a in result.actions] == [("delete", result.bounce_ids[1])]
    assert subscriber(db, sub["id"]) is None
    rows = db.execute("SELECT type::text, subscriber_id, action FROM bounces ORDER BY id").fetchall()
    assert rows == [{"type": "hard", "subscriber_id": None, "action": None},
                    {"type": "complaint", "subscriber_id": None, "action": "delete"}]


async def test_a_bulk_import_stores_the_rows_that_record_stores(make_recorder, db):
    """record_bulk COPYs its rows and applies RECORD_BOUNCES's rules itself: the same events, from the same
    state, must leave the same rows with the same outcomes."""
    none = ActionRule(1, "none", None)
    recorder = await make_recorder(hard=none, complaint=none)
    known = add_subscriber(db, "known@example.com")
    other = add_subscriber(db, "other@example.com")
    campaign = db.execute("INSERT INTO campaigns (name) VALUES ('c') RETURNING uuid::text AS uuid").fetchone()["uuid"]
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    events = [
        hard("alias@example.com", subscriber_uuid=known["uuid"].upper(), event_key="k3"),  # uuid first; its address kept
        hard(subscriber_uuid=known["uuid"], event_key="k1"),  # no address: the subscriber's
        hard("OTHER@example.com", subscriber_uuid=str(uuid4()), event_key="k2"),  # unknown uuid: by address
        hard("stranger@example.com", campaign_uuid=campaign.upper(), event_key='q"uote\\d é'),
        hard("known@example.com", campaign_uuid=str(uuid4()), created_at=when, event_key="k0"),
        hard("other@example.com", type="complaint", event_key="k2"),  # a later line of k2: a duplicate
        hard("known@example.com", type="soft", event_key="stored"),  # stored before: a duplicate
        hard("other@example.com", type="soft"), hard("known@example.com", type="soft"),  # no key: always stored
    ]

    async def stored_by(record) -> tuple[list, list[dict]]:
        db.execute("TRUNCATE bounces")
        db.execute("INSERT INTO bounces (email, type, source, event_key) VALUES ('x@example.com', 'soft', 'test', 'stored')")
        result = await record(events)
        rows = db.execute("SELECT subscriber_id, email, campaign_id, type::text, source, meta, event_key,"
                          " CASE WHEN created_at = recorded_at THEN 'now' ELSE created_at::text END AS created_at"
                          " FROM bounces WHERE event_key IS DISTINCT FROM 'stored' ORDER BY event_key COLLATE \"C\", id").fetchall()
        return result.outcomes, rows

    outcomes, rows = await stored_by(recorder.record)
    assert await stored_by(lambda events: recorder.record_bulk(events, Named.by(events))) == (outcomes, rows)
    assert outcomes.count(Outcome.DUPLICATE) == 2 and len(rows) == 7
    assert [row["event_key"] for row in rows] == ["k0", "k1", "k2", "k3", 'q"uote\\d é', None, None]
    assert [row["subscriber_id"] for row in rows] == [known["id"], known["id"], other["id"], known["id"], None,
                                                      other["id"], known["id"]]


async def test_a_bulk_import_whose_events_name_subscribers_it_did_not_lock_is_refused(make_recorder, db):
    """record_bulk locks the subscribers `named` names; events that name others would be matched unlocked."""
    recorder = await make_recorder()
    add_subscriber(db, "unlocked@example.com")
    events = [hard("unlocked@example.com")]
    with pytest.raises(RuntimeError, match="did not lock"):
        await recorder.record_bulk(events, Named.by([hard("other@example.com")]))
    assert count(db) == 0 and subscriber(db, 1) == {"status": "enabled"}


async def test_one_delete_of_several_subscribers_keeps_their_bounces_without_them(make_recorder, db):
    recorder = await make_recorder()
    kept = add_subscriber(db, "kept@example.com")
    for email in ("gone1@example.com", "gone2@example.com"):
        add_subscriber(db, email)
    await recorder.record([hard("gone1@example.com"), hard("gone2@example.com"), hard("kept@example.com")])
    db.execute("DELETE FROM subscribers WHERE email LIKE 'gone%'")
    rows = db.execute("SELECT email, subscriber_id FROM bounces").fetchall()
    assert {row["email"]: row["subscriber_id"] for row in rows} == {
        "gone1@example.com": None, "gone2@example.com": None, "kept@example.com": kept["id"]}


async def test_truncating_subscribers_keeps_every_bounce_without_its_subscriber(make_recorder, db):
    recorder = await make_recorder()
    add_subscriber(db, "t@example.com")
    await recorder.record([hard("t@example.com"), hard("stranger@example.com")])
    db.execute("TRUNCATE subscribers CASCADE")
    assert db.execute("SELECT email, subscriber_id FROM bounces ORDER BY email").fetchall() == [
        {"email": "stranger@example.com", "subscriber_id": None}, {"email": "t@example.com", "subscriber_id": None}]


def test_a_subscribers_id_cannot_change(db):
    sub = add_subscriber(db, "fixed@example.com")
    with pytest.raises(psycopg.errors.RestrictViolation, match="id cannot change"):
        db.execute("UPDATE subscribers SET id = id + 1000 WHERE id = %s", (sub["id"],))
    db.execute("UPDATE subscribers SET id = id, status = 'blocklisted' WHERE id = %s", (sub["id"],))  # unchanged: allowed
    assert subscriber(db, sub["id"]) == {"status": "blocklisted"}


async def test_a_subscriber_deleted_while_its_bounce_is_being_recorded_loses_it_at_the_commit(make_recorder, db, database_url):
    """The recorder's lock makes the DELETE wait for the recording transaction; the DELETE then sees its bounce."""
    recorder = await make_recorder(hard=ActionRule(1, "none", None))
    sub = add_subscriber(db, "late@example.com")
    async with await psycopg.AsyncConnection.connect(database_url) as deleter:
        async with recorder.db.transaction() as conn:
            rows = orjson.dumps([Recorder._row(0, hard("late@example.com"))]).decode()
            stored = await (await conn.execute(queries.RECORD_BOUNCES, {"rows": rows})).fetchall()
            assert [row["subscriber_id"] for row in stored] == [sub["id"]]
            delete = asyncio.create_task(deleter.execute("DELETE FROM subscribers WHERE email = 'late@example.com'"))
            await blocked_on_a_lock(db, "DELETE FROM subscribers")
        await delete
        await deleter.commit()
    assert subscriber(db, sub["id"]) is None
    assert db.execute("SELECT email, subscriber_id FROM bounces").fetchall() == [
        {"email": "late@example.com", "subscriber_id": None}]


async def test_a_bounce_recorded_while_its_subscriber_is_being_deleted_is_of_an_unknown_recipient(make_recorder, db, database_url):
    recorder = await make_recorder()
    sub = add_subscriber(db, "early@example.com")
    async with await psycopg.AsyncConnection.connect(database_url) as deleter:
        await deleter.execute("DELETE FROM subscribers WHERE id = %s", (sub["id"],))
        record = asyncio.create_task(recorder.record([hard("early@example.com")]))
        await blocked_on_a_lock(db, "FOR UPDATE")
        await deleter.commit()
    result = await record
    assert result.outcomes == [Outcome.RECORDED] and result.actions == []
    assert db.execute("SELECT email, subscriber_id FROM bounces").fetchall() == [
        {"email": "early@example.com", "subscriber_id": None}]


async def test_action_none_changes_nothing(make_recorder, db):
    recorder = await make_recorder(hard=ActionRule(1, "none", None))
    sub = add_subscriber(db, "n@example.com", lists=1)
    result = await recorder.record([hard("n@example.com") for _ in range(3)])
    assert result.actions == []
    assert subscriber(db, sub["id"])["status"] == "enabled" and list_statuses(db, sub["id"]) == {"confirmed"}


async def test_fifty_concurrent_events_fire_the_action_exactly_once(make_recorder, db):
    """Two recorders with their own pools stand for two replicas racing on one subscriber."""
    rule = ActionRule(3, "blocklist", None)
    replicas = [await make_recorder(hard=rule), await make_recorder(hard=rule)]
    sub = add_subscriber(db, "race@example.com", lists=2)
    results = await asyncio.gather(*(
        replicas[i % 2].record([hard("race@example.com", event_key=f"race-{i}")]) for i in range(50)
    ))
    assert sum(len(r.actions) for r in results) == 1
    assert count(db, "SELECT COUNT(*) AS n FROM bounces WHERE subscriber_id = %s", sub["id"]) == 50
    assert count(db, "SELECT COUNT(*) AS n FROM bounces WHERE action = 'blocklist'") == 1
    assert subscriber(db, sub["id"])["status"] == "blocklisted"


async def test_a_failing_batch_stores_nothing(make_recorder, db):
    """A database error mid-batch rolls back the events already inserted in that batch."""
    recorder = await make_recorder()
    add_subscriber(db, "ok@example.com")
    db.execute("""
        CREATE FUNCTION explode() RETURNS trigger LANGUAGE plpgsql AS
        $$ BEGIN IF NEW.source = 'explode' THEN RAISE EXCEPTION 'injected failure'; END IF; RETURN NEW; END $$;
        CREATE TRIGGER explode BEFORE INSERT ON bounces FOR EACH ROW EXECUTE FUNCTION explode();
    """)
    try:
        with pytest.raises(Exception, match="injected failure"):
            await recorder.record([hard("ok@example.com"), hard("ok@example.com", source="explode")])
        assert count(db) == 0
        assert subscriber(db, 1)["status"] == "enabled"
    finally:
        db.execute("DROP TRIGGER explode ON bounces; DROP FUNCTION explode()")


def test_events_are_validated_before_sql():
    with pytest.raises(ValueError):
        BounceEvent(type="bogus", source="t", email="a@example.com")
    with pytest.raises(ValueError):
        BounceEvent(type="hard", source="t")
    with pytest.raises(ValueError):
        BounceEvent(type="hard", source="t", email="a@example.com", campaign_uuid="not-a-uuid")


async def test_exactly_count_concurrent_events_never_miss_the_threshold(make_recorder, db):
    """Without serialisation, each transaction would count only its own uncommitted row and none fire."""
    rule = ActionRule(3, "blocklist", None)
    replicas = [await make_recorder(hard=rule) for _ in range(3)]
    subs = [add_subscriber(db, f"edge{i}@example.com") for i in range(20)]
    results = await asyncio.gather(*(
        replicas[n].record([hard(f"edge{i}@example.com")]) for i in range(20) for n in range(3)
    ))
    assert sum(len(r.actions) for r in results) == 20
    assert {subscriber(db, s["id"])["status"] for s in subs} == {"blocklisted"}
