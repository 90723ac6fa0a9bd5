"""Every SQL statement of the service, in one place.

Statements that take a variable ORDER BY are built from a whitelist with psycopg.sql, never by string
formatting of user input.
"""

from __future__ import annotations

from psycopg import sql

# ---- recorder -----------------------------------------------------------------------------------------

LOCK_SUBSCRIBERS = """
SELECT id, uuid::text AS uuid, LOWER(email) AS email, status
FROM subscribers
WHERE uuid = ANY(%(uuids)s::uuid[]) OR LOWER(email) = ANY(%(emails)s::text[])
ORDER BY id
FOR UPDATE
"""

FIND_CAMPAIGNS = "SELECT id, uuid::text AS uuid FROM campaigns WHERE uuid = ANY(%(uuids)s::uuid[])"

INSERT_BOUNCE = """
INSERT INTO bounces (subscriber_id, email, campaign_id, type, source, meta, event_key, created_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, COALESCE(%s, NOW()))
ON CONFLICT (event_key) DO NOTHING
RETURNING id
"""

COUNT_BOUNCES = """
SELECT COUNT(*) AS n FROM bounces
WHERE subscriber_id = %(subscriber_id)s AND type = %(type)s
  AND (%(window)s::interval IS NULL OR created_at >= NOW() - %(window)s::interval)
"""

UNSUBSCRIBE_ALL_LISTS = """
UPDATE subscriber_lists SET status = 'unsubscribed', updated_at = NOW()
WHERE subscriber_id = %(subscriber_id)s AND status <> 'unsubscribed'
"""

BLOCKLIST_SUBSCRIBER = """
UPDATE subscribers SET status = 'blocklisted', updated_at = NOW()
WHERE id = %(subscriber_id)s AND status <> 'blocklisted'
"""

DELETE_SUBSCRIBER = "DELETE FROM subscribers WHERE id = %(subscriber_id)s"

MARK_ACTION = "UPDATE bounces SET action = %(action)s WHERE id = %(bounce_id)s"

# ---- mailbox scanner ----------------------------------------------------------------------------------

# One row per pass, written before the mailbox is touched and brought up to date after every batch, so a
# pass that dies midway leaves its counts (and finished_at NULL) behind.
START_MAILBOX_SCAN = "INSERT INTO mailbox_scans (mailbox) VALUES (%(mailbox)s) RETURNING id"

UPDATE_MAILBOX_SCAN = """
UPDATE mailbox_scans SET
    fetched = %(fetched)s, recorded = %(recorded)s, skipped = %(skipped)s, failed = %(failed)s,
    error = %(error)s, finished_at = CASE WHEN %(finished)s THEN NOW() END
WHERE id = %(id)s
"""

# ---- bounce queries ---------------------------------------------------------------------------------

BOUNCE_COLUMNS = sql.SQL("""
    b.id, b.type, b.source, b.meta, b.created_at, b.email, b.event_key, b.action,
    s.uuid::text AS subscriber_uuid, b.subscriber_id, s.status::text AS subscriber_status,
    CASE WHEN b.campaign_id IS NULL THEN NULL
         ELSE json_build_object('id', b.campaign_id, 'name', c.name, 'uuid', c.uuid) END AS campaign
""")

BOUNCE_JOINS = sql.SQL("""
    FROM bounces b
    LEFT JOIN subscribers s ON s.id = b.subscriber_id
    LEFT JOIN campaigns c ON c.id = b.campaign_id
""")

ORDER_COLUMNS = {
    "email": sql.SQL("b.email"),
    "campaign_name": sql.SQL("c.name"),
    "source": sql.SQL("b.source"),
    "created_at": sql.SQL("b.created_at"),
    "type": sql.SQL("b.type"),
}

FILTER_CONDITIONS = {
    "campaign_id": sql.SQL("b.campaign_id = %(campaign_id)s"),
    "subscriber_id": sql.SQL("b.subscriber_id = %(subscriber_id)s"),
    "source": sql.SQL("b.source = %(source)s"),
    "type": sql.SQL("b.type = %(type)s::bounce_type"),
    "email": sql.SQL("LOWER(b.email) = LOWER(%(email)s)"),
    "from": sql.SQL("b.created_at >= %(from)s"),
    "to": sql.SQL("b.created_at < %(to)s"),
}


def _where(filters: dict) -> sql.Composable:
    conditions = [FILTER_CONDITIONS[name] for name in FILTER_CONDITIONS if filters.get(name) is not None]
    if not conditions:
        return sql.SQL("")
    return sql.SQL(" WHERE ") + sql.SQL(" AND ").join(conditions)


def list_bounces(filters: dict, order_by: str, order: str) -> sql.Composed:
    direction = sql.SQL("ASC") if order == "asc" else sql.SQL("DESC")
    return sql.SQL(
        "SELECT {columns} {joins} {where} ORDER BY {column} {direction} NULLS LAST, b.id {direction}"
        " LIMIT %(limit)s OFFSET %(offset)s"
    ).format(
        columns=BOUNCE_COLUMNS,
        joins=BOUNCE_JOINS,
        where=_where(filters),
        column=ORDER_COLUMNS[order_by],
        direction=direction,
    )


def count_bounces(filters: dict) -> sql.Composed:
    return sql.SQL("SELECT COUNT(*) AS total FROM bounces b {where}").format(where=_where(filters))


def export_bounces(filters: dict) -> sql.Composed:
    return sql.SQL("SELECT {columns} {joins} {where} ORDER BY b.id").format(
        columns=BOUNCE_COLUMNS, joins=BOUNCE_JOINS, where=_where(filters)
    )


GET_BOUNCE = sql.SQL("SELECT {columns} {joins} WHERE b.id = %(id)s").format(
    columns=BOUNCE_COLUMNS, joins=BOUNCE_JOINS
)

SUBSCRIBER_BOUNCES = sql.SQL(
    "SELECT {columns} {joins} WHERE b.subscriber_id = %(subscriber_id)s ORDER BY b.created_at DESC, b.id DESC LIMIT 1000"
).format(columns=BOUNCE_COLUMNS, joins=BOUNCE_JOINS)

DELETE_ALL_BOUNCES = "DELETE FROM bounces"
DELETE_BOUNCES_BY_ID = "DELETE FROM bounces WHERE id = ANY(%(ids)s::bigint[])"
DELETE_SUBSCRIBER_BOUNCES = "DELETE FROM bounces WHERE subscriber_id = %(subscriber_id)s"
SUBSCRIBER_EXISTS = "SELECT 1 FROM subscribers WHERE id = %(id)s"

# The manual "blocklist every bounced subscriber": like the automatic action, it unsubscribes all lists.
BLOCKLIST_BOUNCED = """
WITH bounced AS (
    UPDATE subscribers SET status = 'blocklisted', updated_at = NOW()
    WHERE id IN (SELECT DISTINCT subscriber_id FROM bounces WHERE subscriber_id IS NOT NULL)
    RETURNING id
), lists AS (
    UPDATE subscriber_lists SET status = 'unsubscribed', updated_at = NOW()
    WHERE subscriber_id IN (SELECT id FROM bounced) AND status <> 'unsubscribed'
)
SELECT COUNT(*) AS n FROM bounced
"""

# ---- sending-system data --------------------------------------------------------------------------

SUBSCRIBER_COLUMNS = "id, uuid::text AS uuid, email, name, attribs, status::text AS status, created_at, updated_at"

UPSERT_SUBSCRIBER = f"""
INSERT INTO subscribers (uuid, email, name, attribs, status)
VALUES (COALESCE(%(uuid)s::uuid, gen_random_uuid()), %(email)s, COALESCE(%(name)s, ''),
        COALESCE(%(attribs)s, '{{}}'::jsonb), COALESCE(%(status)s::subscriber_status, 'enabled'))
ON CONFLICT (LOWER(email)) DO UPDATE SET
    name = COALESCE(%(name)s, subscribers.name),
    attribs = COALESCE(%(attribs)s, subscribers.attribs),
    status = COALESCE(%(status)s::subscriber_status, subscribers.status),
    updated_at = NOW()
RETURNING {SUBSCRIBER_COLUMNS}
"""

GET_SUBSCRIBER = f"SELECT {SUBSCRIBER_COLUMNS} FROM subscribers WHERE id = %(id)s"

SUBSCRIBER_LISTS = """
SELECT l.id, l.uuid::text AS uuid, l.name, sl.status::text AS subscription_status
FROM subscriber_lists sl JOIN lists l ON l.id = sl.list_id
WHERE sl.subscriber_id = %(id)s ORDER BY l.id
"""

UPSERT_MEMBERSHIP = """
INSERT INTO subscriber_lists (subscriber_id, list_id, status)
SELECT %(subscriber_id)s, id, %(status)s::subscription_status FROM lists WHERE uuid = %(list_uuid)s::uuid
ON CONFLICT (subscriber_id, list_id) DO UPDATE SET status = EXCLUDED.status, updated_at = NOW()
RETURNING list_id
"""

LIST_COLUMNS = "id, uuid::text AS uuid, name, created_at, updated_at"

UPSERT_LIST = f"""
INSERT INTO lists (uuid, name) VALUES (COALESCE(%(uuid)s::uuid, gen_random_uuid()), %(name)s)
ON CONFLICT (uuid) DO UPDATE SET name = EXCLUDED.name, updated_at = NOW()
RETURNING {LIST_COLUMNS}
"""

CAMPAIGN_COLUMNS = "id, uuid::text AS uuid, name, sent, created_at, updated_at"

UPSERT_CAMPAIGN = f"""
INSERT INTO campaigns (uuid, name, sent) VALUES (%(uuid)s::uuid, %(name)s, COALESCE(%(sent)s, 0))
ON CONFLICT (uuid) DO UPDATE SET
    name = EXCLUDED.name,
    sent = COALESCE(%(sent)s, campaigns.sent),
    updated_at = NOW()
RETURNING {CAMPAIGN_COLUMNS}
"""

# ---- gauges ---------------------------------------------------------------------------------------

# The most recent campaigns with enough sends to make a rate meaningful; bounces counted per type.
CAMPAIGN_RATES = """
WITH recent AS (
    SELECT id, uuid::text AS uuid, name, sent FROM campaigns
    WHERE sent >= %(min_sent)s
    ORDER BY created_at DESC, id DESC
    LIMIT %(limit)s
)
SELECT r.uuid, r.name, r.sent,
       COUNT(*) FILTER (WHERE b.type = 'hard') AS hard,
       COUNT(*) FILTER (WHERE b.type = 'soft') AS soft,
       COUNT(*) FILTER (WHERE b.type = 'complaint') AS complaint
FROM recent r LEFT JOIN bounces b ON b.campaign_id = r.id
GROUP BY r.uuid, r.name, r.sent
ORDER BY r.uuid
"""

MAILBOX_LAST_SCANS = """
SELECT mailbox, MAX(finished_at) AS finished_at FROM mailbox_scans
WHERE finished_at IS NOT NULL AND error IS NULL
GROUP BY mailbox
"""
