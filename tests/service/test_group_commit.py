"""Group commit: shared transactions, each request answered after its own events are durable."""

from __future__ import annotations

import asyncio
import re

import pytest

from bounce_service.recorder import Recorder
from tests.conftest import auth


def groups_and_requests(metrics_text: str) -> tuple[float, float]:
    count = float(re.search(r"^bounce_commit_group_requests_count (\S+)$", metrics_text, re.M).group(1))
    total = float(re.search(r"^bounce_commit_group_requests_sum (\S+)$", metrics_text, re.M).group(1))
    return count, total


async def post(client, email: str, **extra):
    return await client.post("/webhooks/bounce", auth=auth("poster"),
                             json={"email": email, "type": "soft", "source": "group", **extra})


async def test_concurrent_requests_share_transactions_and_all_are_stored(client, db):
    before_groups, before_requests = groups_and_requests((await client.get("/metrics")).text)
    responses = await asyncio.gather(*(post(client, f"g{i}@example.com") for i in range(200)))
    assert all(r.status_code == 200 for r in responses)
    # Every answered request is already durable: visible from another connection right now.
    assert db.execute("SELECT COUNT(*) AS n FROM bounces").fetchone()["n"] == 200
    groups, requests = groups_and_requests((await client.get("/metrics")).text)
    assert requests - before_requests == 200
    assert groups - before_groups < 200  # some transactions carried several requests


def group_sizes(metrics_text: str) -> dict[str, float]:
    """Cumulative bucket counts of the group-size histogram, by upper bound."""
    return {bound: float(value) for bound, value in
            re.findall(r'^bounce_commit_group_requests_bucket\{le="([^"]+)"\} (\S+)$', metrics_text, re.M)}


async def test_a_shared_transaction_takes_at_most_max_events(make_client, db):
    # The wait would gather all 16 requests into one transaction; maxEvents cuts them into fours.
    client = await make_client(service={"groupCommit": {"maxEvents": 4, "maxWait": "500ms", "flushers": 1}})
    before = group_sizes((await client.get("/metrics")).text)
    responses = await asyncio.gather(*(post(client, f"m{i}@example.com") for i in range(16)))
    assert all(r.status_code == 200 for r in responses)
    after = group_sizes((await client.get("/metrics")).text)
    groups = after["+Inf"] - before["+Inf"]
    assert after["4.0"] - before["4.0"] == groups  # none above 4 requests
    assert groups >= 4
    assert db.execute("SELECT COUNT(*) AS n FROM bounces").fetchone()["n"] == 16


# A refused value fails its request with a 500; a deadlock (which ordered locking avoids, but a trigger or a
# concurrent client of the database could cause) with a 503 to retry. Neither says anything of the others.
@pytest.mark.parametrize(("errcode", "status", "error"), [("P0001", 500, "RaiseException"), ("40P01", 503, "DeadlockDetected")])
async def test_a_failing_request_fails_alone(make_client, db, caplog, errcode, status, error):
    # A generous wait with one flusher puts all these requests into one shared transaction.
    client = await make_client(service={"groupCommit": {"maxWait": "500ms", "flushers": 1}})
    db.execute(f"""
        CREATE FUNCTION explode() RETURNS trigger LANGUAGE plpgsql AS
        $$ BEGIN IF NEW.source = 'explode' THEN RAISE EXCEPTION 'injected failure' USING ERRCODE = '{errcode}'; END IF;
        RETURN NEW; END $$;
        CREATE TRIGGER explode BEFORE INSERT ON bounces FOR EACH ROW EXECUTE FUNCTION explode();
    """)
    try:
        requests = [post(client, f"ok{i}@example.com") for i in range(30)]
        requests.insert(15, post(client, "bad@example.com", source="explode"))
        responses = await asyncio.gather(*requests)
        statuses = [r.status_code for r in responses]
        assert statuses.pop(15) == status
        assert statuses == [200] * 30
        emails = {r["email"] for r in db.execute("SELECT email FROM bounces")}
        assert emails == {f"ok{i}@example.com" for i in range(30)}
        assert f"group commit of 31 requests failed ({error}); retrying them one by one" in caplog.text
    finally:
        db.execute("DROP TRIGGER explode ON bounces; DROP FUNCTION explode()")


async def test_thresholds_stay_exact_across_replicas_with_group_commit(make_client, db):
    actions = {"hard": {"count": 3, "action": "blocklist"}}
    replicas = [await make_client(actions=actions), await make_client(actions=actions)]
    sub = db.execute("INSERT INTO subscribers (email) VALUES ('race@example.com') RETURNING id").fetchone()
    responses = await asyncio.gather(*(
        replicas[i % 2].post("/webhooks/bounce", auth=auth("poster"),
                             json={"email": "race@example.com", "type": "hard", "source": "r", "event_id": str(i)})
        for i in range(50)
    ))
    assert all(r.status_code == 200 for r in responses)
    assert db.execute("SELECT COUNT(*) AS n FROM bounces WHERE subscriber_id = %s", (sub["id"],)).fetchone()["n"] == 50
    assert db.execute("SELECT COUNT(*) AS n FROM bounces WHERE action = 'blocklist'").fetchone()["n"] == 1


async def test_one_commit_per_request_can_be_chosen(make_client, db):
    client = await make_client(service={"groupCommit": {"enabled": False}})
    assert type(client.app.state.recorder) is Recorder
    assert (await post(client, "single@example.com")).status_code == 200
    assert db.execute("SELECT COUNT(*) AS n FROM bounces").fetchone()["n"] == 1
