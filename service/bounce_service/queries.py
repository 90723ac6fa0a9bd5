"""Every SQL statement of the service, in one place.

Statements that take a variable ORDER BY are built from a whitelist with psycopg.sql, never by string
formatting of user input.
"""

from __future__ import annotations

from psycopg import sql

# ---- recorder -----------------------------------------------------------------------------------------

# The input rows of RECORD_BOUNCES, one JSON object each (recorder.Recorder._row).
BOUNCE_ROW_COLUMNS = """
    i integer, email text, subscriber_uuid uuid, campaign_uuid uuid, type bounce_type, source text,
    meta jsonb, event_key text, created_at timestamptz"""

# A whole batch in one statement (one JSON document of rows), so a shared transaction is BEGIN, this, the
# thresholds of the subscribers it touched, COMMIT.
# - The subscribers the batch names are locked first, in id order (concurrent batches cannot deadlock):
#   that serialises concurrent events for one subscriber, so a threshold fires once. `all_locked` makes
#   every lock taken before the first insert, whatever join order the planner picks.
#   The lock is also what keeps a bounce's subscriber_id pointing at a subscriber: no foreign key checks
#   it (migration 0009), and a DELETE of the subscriber waits for this transaction, then forgets it.
# - A subscriber is found by UUID first; an unknown UUID falls back to the address.
# - Rows go in in event_key order, so two transactions that share keys (a redelivery racing its original)
#   wait on each other in the same order; among equal keys the first event of the batch is stored.
# - RETURNING can only name the table's columns, so ids are drawn first (the MATERIALIZED CTE evaluates
#   nextval exactly once per row) and matched back to the input row `i`.
# - An unknown campaign UUID is kept as a NULL campaign, not refused.
# A bulk import does the same work in steps of its own (below).
RECORD_BOUNCES = f"""
WITH input AS MATERIALIZED (
    SELECT nextval('bounces_id_seq') AS id, r.*
    FROM json_to_recordset(%(rows)s::json) AS r({BOUNCE_ROW_COLUMNS})
), locked AS MATERIALIZED (
    SELECT id, uuid, LOWER(email) AS email FROM subscribers
    WHERE uuid = ANY(ARRAY(SELECT subscriber_uuid FROM input WHERE subscriber_uuid IS NOT NULL))
       OR LOWER(email) = ANY(ARRAY(SELECT email FROM input WHERE email <> ''))
    ORDER BY id
    FOR UPDATE
), all_locked AS (
    SELECT COUNT(*) FROM locked
), matched AS MATERIALIZED (
    SELECT input.*, COALESCE(by_uuid.id, by_email.id) AS subscriber_id,
           CASE WHEN input.email <> '' THEN input.email ELSE COALESCE(by_uuid.email, '') END AS address
    FROM input
    CROSS JOIN all_locked
    LEFT JOIN locked by_uuid ON by_uuid.uuid = input.subscriber_uuid
    LEFT JOIN locked by_email ON by_uuid.id IS NULL AND by_email.email = input.email
), stored AS (
    INSERT INTO bounces (id, subscriber_id, email, campaign_id, type, source, meta, event_key, created_at)
    SELECT id, subscriber_id, address, (SELECT c.id FROM campaigns c WHERE c.uuid = matched.campaign_uuid),
           type, source, meta, event_key, COALESCE(created_at, NOW())
    FROM matched ORDER BY event_key COLLATE "C", i
    ON CONFLICT (event_key) DO NOTHING
    RETURNING id, subscriber_id
)
SELECT matched.i, stored.id, stored.subscriber_id FROM stored JOIN matched USING (id)
"""

# ---- bulk import of bounces (recorder.record_bulk) ----------------------------------------------------
# An import's rows are COPYed straight into `bounces`; RECORD_BOUNCES's other work comes first, in two
# statements: the subscribers the import names, locked in id order as RECORD_BOUNCES locks them (and
# returned, for the recorder to match each row), then what every row needs: the transaction's NOW() (the
# default created_at), one id per row and the campaigns named.
LOCK_IMPORT_SUBSCRIBERS = """
SELECT id, uuid::text, LOWER(email) FROM subscribers
WHERE uuid = ANY(%(uuids)s::uuid[]) OR LOWER(email) = ANY(%(emails)s::text[])
ORDER BY id
FOR UPDATE
"""

IMPORT_DEFAULTS = """
SELECT NOW(), ARRAY(SELECT nextval('bounces_id_seq') FROM generate_series(1, %(count)s)),
       (SELECT COALESCE(json_object_agg(uuid, id), '{}') FROM campaigns WHERE uuid = ANY(%(campaigns)s::uuid[]))
"""

KNOWN_EVENT_KEYS = "SELECT event_key FROM bounces WHERE event_key = ANY(%(keys)s::text[])"

COPY_BOUNCES = "COPY bounces (id, subscriber_id, email, campaign_id, type, source, meta, event_key, created_at) FROM STDIN"

# A threshold's whole step for the subscribers of one bounce type in a batch, in one statement (one round
# trip in a transaction that a webhook batch holds open): who reached the count within the window, the
# action on them, and the mark on each one's latest bounce of the batch. An action fires only where it
# changed a row; the statement returns those subscribers. `latest` pairs each subscriber with that bounce.
# The data-modifying steps touch different tables and are all carried out, whether read or not. A
# deleted subscriber's bounces lose their subscriber_id after the statement (a trigger of migration 0009),
# the mark included.
_THRESHOLD_STEP = """
WITH latest AS (
    SELECT * FROM unnest(%(subscriber_ids)s::bigint[], %(bounce_ids)s::bigint[]) AS l(subscriber_id, bounce_id)
), reached AS (
    SELECT subscriber_id FROM bounces
    WHERE subscriber_id = ANY(%(subscriber_ids)s::bigint[]) AND type = %(type)s
      AND (%(window)s::interval IS NULL OR created_at >= NOW() - %(window)s::interval)
    GROUP BY subscriber_id
    HAVING COUNT(*) >= %(count)s
), {action}, marked AS (
    UPDATE bounces SET action = %(action)s FROM latest
    WHERE bounces.id = latest.bounce_id AND latest.subscriber_id IN (SELECT subscriber_id FROM changed)
)
SELECT DISTINCT subscriber_id FROM changed ORDER BY subscriber_id
"""

_UNSUBSCRIBE_REACHED = """unsubscribed AS (
    UPDATE subscriber_lists SET status = 'unsubscribed', updated_at = NOW()
    WHERE subscriber_id IN (SELECT subscriber_id FROM reached) AND status <> 'unsubscribed'
    RETURNING subscriber_id
)"""

THRESHOLD_STEPS = {
    "unsubscribe": _THRESHOLD_STEP.format(action=_UNSUBSCRIBE_REACHED + """,
changed AS (SELECT subscriber_id FROM unsubscribed)"""),
    "blocklist": _THRESHOLD_STEP.format(action=_UNSUBSCRIBE_REACHED + """, blocklisted AS (
    UPDATE subscribers SET status = 'blocklisted', updated_at = NOW()
    WHERE id IN (SELECT subscriber_id FROM reached) AND status <> 'blocklisted'
    RETURNING id AS subscriber_id
), changed AS (SELECT subscriber_id FROM blocklisted UNION SELECT subscriber_id FROM unsubscribed)"""),
    "delete": _THRESHOLD_STEP.format(action="""changed AS (
    DELETE FROM subscribers WHERE id IN (SELECT subscriber_id FROM reached) RETURNING id AS subscriber_id
)"""),
}

# ---- provider signature tokens (providers/_tokens.py) ---------------------------------------------------

# Claiming also prunes the provider's tokens that no signature window can accept any more.
CLAIM_TOKEN = """
WITH pruned AS (DELETE FROM webhook_tokens WHERE provider = %(provider)s AND signed_at < %(horizon)s)
INSERT INTO webhook_tokens (provider, token, body_sha256, signed_at)
VALUES (%(provider)s, %(token)s, %(digest)s, %(signed_at)s)
ON CONFLICT (provider, token) DO NOTHING
"""

FIND_TOKEN = "SELECT body_sha256, spent FROM webhook_tokens WHERE provider = %(provider)s AND token = %(token)s"

SPEND_TOKEN = "UPDATE webhook_tokens SET spent = TRUE WHERE provider = %(provider)s AND token = %(token)s"

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

BOUNCE_FIELDS = """
    b.id, b.type, b.source, b.meta, b.created_at, b.email, b.event_key, b.action,
    s.uuid::text AS subscriber_uuid, b.subscriber_id, s.status::text AS subscriber_status,
"""

BOUNCE_COLUMNS = sql.SQL(BOUNCE_FIELDS + """
    CASE WHEN b.campaign_id IS NULL THEN NULL
         ELSE json_build_object('id', b.campaign_id, 'name', c.name, 'uuid', c.uuid) END AS campaign
""")

# The subscriber and campaign of each bounce, joined onto `bounces b`.
BOUNCE_LOOKUPS = sql.SQL("""
    LEFT JOIN subscribers s ON s.id = b.subscriber_id
    LEFT JOIN campaigns c ON c.id = b.campaign_id
""")

BOUNCE_JOINS = sql.SQL("FROM bounces b {lookups}").format(lookups=BOUNCE_LOOKUPS)

# Every column but campaign_name is a NOT NULL column of `bounces` with an index on (column, id)
# (migrations 0002, 0006 and 0008; addresses are stored lower-case), which serves its order in both
# directions; "NULLS LAST" would stop PostgreSQL from reading that index backwards, so only the LEFT
# JOINed campaign name carries it.
ORDER_COLUMNS = {
    "email": sql.SQL("b.email"),
    "campaign_name": sql.SQL("c.name"),
    "source": sql.SQL("b.source"),
    "created_at": sql.SQL("b.created_at"),
    "type": sql.SQL("b.type"),
}

FILTER_CONDITIONS = {
    "campaign_id": sql.SQL("b.campaign_id = %(campaign_id)s"),
    # What the campaign alerts carry; an unknown uuid matches nothing.
    "campaign_uuid": sql.SQL("b.campaign_id = (SELECT id FROM campaigns WHERE uuid = %(campaign_uuid)s::uuid)"),
    "subscriber_id": sql.SQL("b.subscriber_id = %(subscriber_id)s"),
    "source": sql.SQL("b.source = %(source)s"),
    "type": sql.SQL("b.type = %(type)s::bounce_type"),
    "email": sql.SQL("b.email = %(email)s"),  # lower-cased by the route
    "from": sql.SQL("b.created_at >= %(from)s"),
    "to": sql.SQL("b.created_at < %(to)s"),
}


def _where(filters: dict, *extra: sql.Composable) -> sql.Composable:
    conditions = [*extra, *(FILTER_CONDITIONS[name] for name in FILTER_CONDITIONS if filters.get(name) is not None)]
    if not conditions:
        return sql.SQL("")
    return sql.SQL(" WHERE ") + sql.SQL(" AND ").join(conditions)


def _page(page_ids: sql.Composable, key: sql.Composable) -> sql.Composed:
    """The full rows of a page whose ids (and sort keys) `page_ids` chose: only they are looked up and joined."""
    return sql.SQL("SELECT {columns} FROM ({page_ids}) page JOIN bounces b ON b.id = page.id {lookups} ORDER BY {key}").format(
        columns=BOUNCE_COLUMNS, page_ids=page_ids, lookups=BOUNCE_LOOKUPS, key=key
    )


def list_bounces(filters: dict, order_by: str, order: str, *, few: bool) -> sql.Composed:
    """One page of bounces, the page's ids chosen first from ids and sort keys alone.

    With an index on (column, id) the inner query is an index-only scan, so OFFSET skips index entries:
    page 5,000 of a million rows costs milliseconds, where OFFSET over the joined rows fetched and joined
    every skipped row. `few` says the filters match few rows: sorting them all is then cheaper than
    walking every campaign (list_bounces_by_campaign), and gives the same order.
    """
    if order_by == "campaign_name" and not few:
        return list_bounces_by_campaign(filters, order)
    by_campaign = order_by == "campaign_name"
    direction = _direction(order)
    key = sql.SQL("{column} {direction}{campaign}, b.id {direction}").format(
        column=ORDER_COLUMNS[order_by], direction=direction,
        campaign=sql.SQL(" NULLS LAST, c.id {direction}").format(direction=direction) if by_campaign else sql.SQL(""),
    )
    return _page(
        sql.SQL("SELECT b.id FROM bounces b {campaigns} {where} ORDER BY {key} LIMIT %(limit)s OFFSET %(offset)s").format(
            campaigns=sql.SQL("LEFT JOIN campaigns c ON c.id = b.campaign_id" if by_campaign else ""),
            where=_where(filters), key=key
        ),
        key,
    )


def _direction(order: str) -> sql.SQL:
    return sql.SQL("ASC") if order == "asc" else sql.SQL("DESC")


def list_bounces_by_campaign(filters: dict, order: str) -> sql.Composed:
    """A page ordered by campaign name, then campaign id, then bounce id; campaign-less bounces last.

    The name lives in `campaigns`, so no index of `bounces` has this order and OFFSET would sort the
    joined table (~500 ms for a million rows). Instead `walk` visits the campaigns in order (index on
    (name, id), migration 0005), counting each one's matching bounces by index (bounces (campaign_id,
    id), migration 0006) until the page is reached; then each campaign on the page gives its slice by OFFSET within its
    own bounces, and the campaign-less ones come after all campaigns. Page 5,000 counts ~100,000 index
    entries, as OFFSET over an index does for the other orders.
    """
    direction = _direction(order)
    after = sql.SQL(">" if order == "asc" else "<")
    count = sql.SQL("(SELECT COUNT(*) FROM bounces b {where})").format(where=_where(filters, sql.SQL("b.campaign_id = c.id")))
    slice_ = sql.SQL(
        "SELECT b.id FROM bounces b {where} ORDER BY b.id {direction}"
        " LIMIT GREATEST(%(offset)s + %(limit)s - GREATEST(%(offset)s, {before}), 0)"
        " OFFSET GREATEST(%(offset)s - {before}, 0)"
    )
    page_ids = sql.SQL(
        "WITH RECURSIVE walk AS ("
        " SELECT c.name, c.id, 0::bigint AS before, {count} AS n"
        "  FROM (SELECT name, id FROM campaigns ORDER BY name {direction}, id {direction} LIMIT 1) c"
        " UNION ALL"
        " SELECT c.name, c.id, w.before + w.n, {count} FROM walk w CROSS JOIN LATERAL ("
        "  SELECT name, id FROM campaigns c WHERE (c.name, c.id) {after} (w.name, w.id)"
        "  ORDER BY name {direction}, id {direction} LIMIT 1) c"
        "  WHERE w.before + w.n < %(offset)s + %(limit)s"
        "), seen AS (SELECT COALESCE(MAX(before + n), 0) AS total FROM walk)"
        # The LIMIT only tells the planner how few rows the page has, so it looks them up by id.
        " SELECT * FROM ("
        "  SELECT 0 AS part, w.name, w.id AS campaign_id, x.id FROM walk w CROSS JOIN LATERAL ({in_campaign}) x"
        "   WHERE w.before + w.n > %(offset)s"
        "  UNION ALL"
        "  SELECT 1, NULL, NULL, x.id FROM seen CROSS JOIN LATERAL ({no_campaign}) x"
        " ) ids LIMIT %(limit)s"
    ).format(
        count=count, direction=direction, after=after,
        in_campaign=slice_.format(where=_where(filters, sql.SQL("b.campaign_id = w.id")), direction=direction,
                                  before=sql.SQL("w.before")),
        no_campaign=slice_.format(where=_where(filters, sql.SQL("b.campaign_id IS NULL")), direction=direction,
                                  before=sql.SQL("seen.total")),
    )
    return _page(page_ids, sql.SQL("page.part, page.name {direction}, page.campaign_id {direction}, page.id {direction}").format(
        direction=direction))


def count_bounces(filters: dict) -> sql.Composed:
    """Matching bounces, counted up to %(count_cap)s: an exact COUNT(*) of a million rows costs more than a page."""
    return sql.SQL("SELECT COUNT(*) AS total FROM (SELECT 1 FROM bounces b {where} LIMIT %(count_cap)s) capped").format(
        where=_where(filters)
    )


def estimate_bounces(filters: dict) -> sql.Composed:
    """The planner's estimate of the matching bounces, for totals beyond the counting cap."""
    return sql.SQL("EXPLAIN (FORMAT JSON) SELECT 1 FROM bounces b {where}").format(where=_where(filters))


# COPY is the export's fast path: PostgreSQL writes the rows and psycopg hands them over as they come,
# with no Python object per value. COPY takes no server-side parameters; psycopg binds the filters
# client-side, with the same quoting as for a literal.
def export_bounces_csv(filters: dict) -> sql.Composed:
    return sql.SQL(
        "COPY (SELECT b.id, to_json(b.created_at) #>> '{{}}' AS created_at, b.type, b.source, b.email,"
        " b.subscriber_id, s.uuid AS subscriber_uuid, s.status AS subscriber_status,"
        " b.campaign_id, c.uuid AS campaign_uuid, c.name AS campaign_name, b.event_key, b.action, b.meta"
        " {joins} {where} ORDER BY b.id) TO STDOUT WITH (FORMAT csv, HEADER)"
    ).format(joins=BOUNCE_JOINS, where=_where(filters))


# Bounce ids per COPY row of the NDJSON export. Each COPY row costs a message and a Python call on the
# way out; a row per bounce made that per-row cost, not PostgreSQL, the export's limit.
NDJSON_ID_BLOCK = 1000


def export_bounces_ndjson(filters: dict) -> sql.Composed:
    """One JSON object per line, shaped like a listed bounce; each COPY row holds the lines of a block of ids.

    row_to_json, and each campaign's object built once rather than per bounce, make PostgreSQL's part
    about a third cheaper than json_build_object per row. Blocks are id ranges, each read by the primary
    key, so nothing is sorted and PostgreSQL holds one block at a time. COPY's CSV format quotes the
    block (it holds newlines) with \x02 and leaves everything else as is; PostgreSQL's JSON never holds
    a raw control character (it writes \u0002), so deleting every \x02 gives the JSON lines exactly.

    A block's subscribers are read in one index scan of their ids (`subs`), then joined to its bounces.
    As a plain join, once the table held 200,000 subscribers, the planner merged each block of 1,000
    bounces with the subscribers' primary key from its start (50,000 index entries a block), and the
    export fell from 140,000 to 30,000 rows/s; a lookup per bounce cost a third of the export's time.
    """
    return sql.SQL(
        "COPY (SELECT block.lines FROM generate_series("
        " (SELECT MIN(id) FROM bounces) / {size}, (SELECT MAX(id) FROM bounces) / {size}) k"
        " CROSS JOIN LATERAL ("
        "  WITH b AS MATERIALIZED (SELECT * FROM bounces b {where}),"
        "  subs AS MATERIALIZED (SELECT id, uuid, status FROM subscribers"
        "   WHERE id = ANY(ARRAY(SELECT subscriber_id FROM b WHERE subscriber_id IS NOT NULL)))"
        "  SELECT string_agg(row_to_json(bounce)::text, E'\\n' ORDER BY bounce.id) AS lines"
        "  FROM (SELECT {fields} c.campaign FROM b"
        "  LEFT JOIN subs s ON s.id = b.subscriber_id"
        "  LEFT JOIN (SELECT id, json_build_object('id', id, 'name', name, 'uuid', uuid) AS campaign FROM campaigns) c"
        "  ON c.id = b.campaign_id) bounce) block"
        " WHERE block.lines IS NOT NULL) TO STDOUT WITH (FORMAT csv, DELIMITER E'\\x01', QUOTE E'\\x02')"
    ).format(
        size=sql.Literal(NDJSON_ID_BLOCK),
        fields=sql.SQL(BOUNCE_FIELDS),
        where=_where(filters, sql.SQL("b.id >= k * {size} AND b.id < (k + 1) * {size}").format(size=sql.Literal(NDJSON_ID_BLOCK))),
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

# A status left out (NULL): confirmed if new, kept if not.
UPSERT_MEMBERSHIP = """
INSERT INTO subscriber_lists (subscriber_id, list_id, status)
SELECT %(subscriber_id)s, id, COALESCE(%(status)s::subscription_status, 'confirmed') FROM lists
WHERE uuid = %(list_uuid)s::uuid
ON CONFLICT (subscriber_id, list_id) DO UPDATE
SET status = COALESCE(%(status)s::subscription_status, subscriber_lists.status), updated_at = NOW()
RETURNING list_id
"""

# Bulk import of a file with known addresses: COPY into temporary tables (one row per e-mail and per
# membership, merged in line order: routes/data.py _ImportLines), then one statement per table. It ends
# where upserting line by line would: a field a line leaves out keeps the value it had, a new subscriber
# takes the uuid of its first line. A file of new subscribers is copied straight in (COPY_NEW_SUBSCRIBERS).
CREATE_IMPORT_SUBSCRIBERS = """
CREATE TEMPORARY TABLE import_subscribers (
    email TEXT PRIMARY KEY, line INTEGER NOT NULL, uuid UUID, name TEXT, attribs JSONB, status subscriber_status
) ON COMMIT DROP
"""

# Both staging tables are keyed, so that a join on the address is never worse than an index lookup per
# row. The planner knows nothing of a temporary table's contents: into a table of 100,000 analysed
# subscribers, it expected almost none of 5,000 new ones to be new, and joined them to a memberships table
# without an index in a nested loop, a scan of every staged membership per new subscriber (4.3 s instead
# of 0.2 s, and growing with the square of the import).
CREATE_IMPORT_MEMBERSHIPS = """
CREATE TEMPORARY TABLE import_memberships (
    email TEXT NOT NULL, list_uuid UUID NOT NULL, line INTEGER NOT NULL, status subscription_status,
    PRIMARY KEY (email, list_uuid)
) ON COMMIT DROP
"""

COPY_IMPORT_SUBSCRIBERS = "COPY import_subscribers (email, line, uuid, name, attribs, status) FROM STDIN"
COPY_IMPORT_MEMBERSHIPS = "COPY import_memberships (email, list_uuid, line, status) FROM STDIN"

# Where none of an import's first addresses is known, its subscribers and their memberships go straight
# into their tables (routes/data.py _copy_new), with ids drawn first. A row that exists after all, or a
# uuid taken, fails that copy, and the import stages every line instead.
ANY_ADDRESS_KNOWN = "SELECT EXISTS (SELECT 1 FROM subscribers WHERE LOWER(email) = ANY(%(emails)s::text[])) AS known"
DRAW_SUBSCRIBER_IDS = "SELECT ARRAY(SELECT nextval('subscribers_id_seq') FROM generate_series(1, %(count)s)) AS ids"
COPY_NEW_SUBSCRIBERS = "COPY subscribers (id, uuid, email, name, attribs, status) FROM STDIN"
COPY_NEW_MEMBERSHIPS = "COPY subscriber_lists (subscriber_id, list_id, status) FROM STDIN"
LIST_IDS = "SELECT uuid::text AS uuid, id FROM lists WHERE uuid = ANY(%(uuids)s::uuid[])"

# The later lines of an address (routes/data.py _ImportLines): each field's last given value, NULL if none.
CREATE_IMPORT_LATER_LINES = """
CREATE TEMPORARY TABLE import_later_lines (
    email TEXT PRIMARY KEY, name TEXT, attribs JSONB, status subscriber_status
) ON COMMIT DROP
"""

COPY_IMPORT_LATER_LINES = "COPY import_later_lines (email, name, attribs, status) FROM STDIN"

FOLD_IMPORT_LATER_LINES = """
UPDATE import_subscribers i SET (name, attribs, status) = (
    COALESCE(later.name, i.name), COALESCE(later.attribs, i.attribs), COALESCE(later.status, i.status))
FROM import_later_lines later WHERE later.email = i.email
"""

FIRST_UNKNOWN_IMPORT_LIST = """
SELECT m.line, m.list_uuid::text AS list_uuid FROM import_memberships m
WHERE NOT EXISTS (SELECT 1 FROM lists l WHERE l.uuid = m.list_uuid)
ORDER BY m.line LIMIT 1
"""

# An import stores its staged rows in three statements, each doing only the work its rows need:
# - UPDATE_IMPORTED_SUBSCRIBERS changes the existing subscribers a line changes, and no other row;
# - UPSERT_IMPORTED_MEMBERSHIPS (below) then upserts the memberships of the subscribers that exist;
# - INSERT_IMPORTED_SUBSCRIBERS inserts the new subscribers and their memberships, matched to the ids
#   the insert returns. A plain INSERT skips what ON CONFLICT costs each row (a probe of the arbiter index
#   before the insert, a second WAL record to confirm it) and the index lookup of each new subscriber by
#   address (BENCHMARKS.md has what that saves).
# The insert fails on an address that another client inserted after its snapshot, or on a uuid taken:
# the import then retries its rows, from a savepoint, with the upserts further down, which wait for such
# rows and update them (or name the line whose uuid is taken).
# Every staged row has a uuid: the line's, or one drawn for it (routes/data.py random_uuids), which only a new
# subscriber takes. A subscriber or a membership that the import would not change is not written at all,
# nor is its updated_at moved: re-importing the sending system's whole list, the usual nightly sync, then
# costs reads, not a new version of every row and of every index entry.
UPDATE_IMPORTED_SUBSCRIBERS = """
UPDATE subscribers SET (name, attribs, status, updated_at) = (
    COALESCE(i.name, subscribers.name), COALESCE(i.attribs, subscribers.attribs),
    COALESCE(i.status, subscribers.status), NOW())
FROM import_subscribers i
WHERE LOWER(subscribers.email) = i.email
  AND (i.name IS NOT NULL AND i.name <> subscribers.name
    OR i.attribs IS NOT NULL AND i.attribs <> subscribers.attribs
    OR i.status IS NOT NULL AND i.status <> subscribers.status)
"""

INSERT_IMPORTED_SUBSCRIBERS = """
WITH new AS (
    INSERT INTO subscribers (uuid, email, name, attribs, status)
    SELECT uuid, email, COALESCE(name, ''), COALESCE(attribs, '{}'), COALESCE(status, 'enabled')
    FROM import_subscribers i
    WHERE NOT EXISTS (SELECT 1 FROM subscribers s WHERE LOWER(s.email) = i.email)
    RETURNING id, email
)
INSERT INTO subscriber_lists (subscriber_id, list_id, status)
SELECT new.id, l.id, COALESCE(m.status, 'confirmed')
FROM import_memberships m
JOIN new ON new.email = m.email
JOIN lists l ON l.uuid = m.list_uuid
"""

# The retry. EXCLUDED holds the defaults for a new subscriber, so an existing one reads its new values
# (NULL: keep the old one) back from the staging table.
UPSERT_IMPORTED_SUBSCRIBERS = """
INSERT INTO subscribers (uuid, email, name, attribs, status)
SELECT uuid, email, COALESCE(name, ''), COALESCE(attribs, '{}'), COALESCE(status, 'enabled')
FROM import_subscribers
ON CONFLICT (LOWER(email)) DO UPDATE SET (name, attribs, status, updated_at) = (
    SELECT COALESCE(i.name, subscribers.name), COALESCE(i.attribs, subscribers.attribs),
           COALESCE(i.status, subscribers.status), NOW()
    FROM import_subscribers i WHERE i.email = EXCLUDED.email
)
WHERE EXISTS (
    SELECT 1 FROM import_subscribers i WHERE i.email = EXCLUDED.email
      AND (i.name IS NOT NULL AND i.name <> subscribers.name
        OR i.attribs IS NOT NULL AND i.attribs <> subscribers.attribs
        OR i.status IS NOT NULL AND i.status <> subscribers.status)
)
"""

# A statement of its own, after the subscribers': it sees every subscriber that exists then, including
# one another client created meanwhile (the upsert waited for it).
# A membership whose lines leave its status out (NULL) is confirmed if new and left alone if it exists:
# those rows are not even offered.
UPSERT_IMPORTED_MEMBERSHIPS = """
INSERT INTO subscriber_lists (subscriber_id, list_id, status)
SELECT s.id, l.id, COALESCE(m.status, 'confirmed')
FROM import_memberships m
JOIN subscribers s ON LOWER(s.email) = m.email
JOIN lists l ON l.uuid = m.list_uuid
WHERE m.status IS NOT NULL
   OR NOT EXISTS (SELECT 1 FROM subscriber_lists e WHERE e.subscriber_id = s.id AND e.list_id = l.id)
ON CONFLICT (subscriber_id, list_id) DO UPDATE SET status = EXCLUDED.status, updated_at = NOW()
WHERE subscriber_lists.status <> EXCLUDED.status
"""

# After a uuid conflict: the first line whose new subscriber takes a uuid already taken, by an existing
# subscriber or by an earlier line's new one.
FIRST_IMPORT_UUID_CONFLICT = """
WITH new AS (
    SELECT i.line, i.uuid FROM import_subscribers i
    WHERE i.uuid IS NOT NULL AND NOT EXISTS (SELECT 1 FROM subscribers e WHERE LOWER(e.email) = LOWER(i.email))
)
SELECT MIN(n.line) AS line FROM new n
WHERE EXISTS (SELECT 1 FROM subscribers s WHERE s.uuid = n.uuid)
   OR EXISTS (SELECT 1 FROM new o WHERE o.uuid = n.uuid AND o.line < n.line)
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
SELECT r.uuid, r.name, r.sent, n.hard, n.soft, n.complaint, n.bounced, n.complained
FROM recent r CROSS JOIN LATERAL (
    -- Per campaign, rather than grouping every joined row by campaign. The rates count recipients, not
    -- events: a recipient whose message was delayed twice, then failed, is one bounced recipient.
    SELECT COUNT(*) FILTER (WHERE b.type = 'hard') AS hard,
           COUNT(*) FILTER (WHERE b.type = 'soft') AS soft,
           COUNT(*) FILTER (WHERE b.type = 'complaint') AS complaint,
           COUNT(DISTINCT b.email) FILTER (WHERE b.type <> 'complaint') AS bounced,
           COUNT(DISTINCT b.email) FILTER (WHERE b.type = 'complaint') AS complained
    FROM bounces b WHERE b.campaign_id = r.id
) n
ORDER BY r.uuid
"""

# The configured mailboxes' passes started in [since, before), each read through idx_mailbox_scans_mailbox
# (a removed mailbox's rows stay, but leave the metrics). Totals are over finished passes: a running pass
# counts once it ends.
MAILBOX_SCANS = """
SELECT m.mailbox,
       MIN(s.started_at) AS first_started_at,
       MAX(s.finished_at) FILTER (WHERE s.error IS NULL) AS last_success,
       COUNT(s.id) FILTER (WHERE s.finished_at IS NOT NULL AND s.error IS NULL AND s.failed = 0) AS success,
       COUNT(s.id) FILTER (WHERE s.finished_at IS NOT NULL AND s.error IS NULL AND s.failed > 0) AS partial,
       COUNT(s.id) FILTER (WHERE s.finished_at IS NOT NULL AND s.error IS NOT NULL) AS error,
       COALESCE(SUM(s.fetched) FILTER (WHERE s.finished_at IS NOT NULL), 0) AS fetched,
       COALESCE(SUM(s.recorded) FILTER (WHERE s.finished_at IS NOT NULL), 0) AS recorded,
       COALESCE(SUM(s.skipped) FILTER (WHERE s.finished_at IS NOT NULL), 0) AS skipped,
       COALESCE(SUM(s.failed) FILTER (WHERE s.finished_at IS NOT NULL), 0) AS failed
FROM unnest(%(mailboxes)s::text[]) AS m(mailbox)
LEFT JOIN mailbox_scans s ON s.mailbox = m.mailbox AND s.started_at >= %(since)s AND s.started_at < %(before)s
GROUP BY m.mailbox
ORDER BY m.mailbox
"""
