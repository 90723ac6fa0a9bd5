-- A threshold's action changes rows written moments before: the bounce that fired it (`action`), the
-- subscriber (`status`) and its list memberships (`status`). No index covers those columns, so
-- PostgreSQL can update such a row in place (a HOT update: no new entry in any index), but only when
-- its page has room for the new version, and pages filled by inserts at the default fillfactor (100)
-- have none. Each of those updates then wrote a new entry into every index of its table, eight for a
-- bounce: marking 2,000 fired bounces of a 20,000-line import took ~90 ms, ~30 ms with room kept.
-- A tenth of each page is kept free. This applies to pages written from now on; pages already full stay
-- so until the table is rewritten (VACUUM FULL, pg_repack). It takes no lock that blocks reads or writes.

ALTER TABLE bounces SET (fillfactor = 90);
ALTER TABLE subscribers SET (fillfactor = 90);
ALTER TABLE subscriber_lists SET (fillfactor = 90);
