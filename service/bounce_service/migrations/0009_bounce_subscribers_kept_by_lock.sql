-- bounces.subscriber_id loses its foreign key; what the key did is done otherwise, once per statement.
--
-- The key's check on insert repeated a guarantee the recorder already holds. The recorder writes every
-- bounce, and its store statement locks (FOR UPDATE) each subscriber a batch names before inserting a row
-- that names it (queries.RECORD_BOUNCES): a subscriber cannot be deleted between the lookup and the commit.
-- The check then ran one more query per bounce to take a weaker lock on the same row, the dearest single
-- part of recording: a 20,000-line import over HTTP went from 13,679 to 16,382 rows/s without it (median
-- of 7 rounds, alternating), and each webhook event saves its ~12 µs.
--
-- Its actions are triggers on subscribers:
-- - ON DELETE SET NULL: one UPDATE per DELETE statement, for every subscriber it deleted (the key's
--   action ran one UPDATE per deleted subscriber). A bounce keeps its history, as before.
-- - TRUNCATE: the key refused `TRUNCATE subscribers` unless bounces went with it (CASCADE emptied it).
--   Now the bounces stay, without their subscriber, as a DELETE would leave them.
-- - ON UPDATE CASCADE: no code changes a subscriber's id; changing one is refused instead of followed.
--
-- What the key did and these do not: refuse a row written by hand (not through the service) that names
-- no subscriber; and when a DELETE runs in REPEATABLE READ or SERIALIZABLE while the service records a
-- bounce of the same subscriber, that bounce may keep the deleted subscriber's id. Ids are never reused
-- (a sequence draws them), so such an id matches no subscriber and reads as an unknown recipient.

ALTER TABLE bounces DROP CONSTRAINT bounces_subscriber_id_fkey;

-- Planned at each call (EXECUTE): a cached plan made for the first DELETE's one subscriber would be kept
-- for a DELETE of a hundred thousand, and the reverse would scan every bounce for one subscriber.
CREATE FUNCTION bounces_forget_deleted_subscribers() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE 'UPDATE bounces SET subscriber_id = NULL WHERE subscriber_id IN (SELECT id FROM deleted_subscribers)';
    RETURN NULL;
END
$$;

CREATE TRIGGER bounces_forget_deleted_subscribers AFTER DELETE ON subscribers
    REFERENCING OLD TABLE AS deleted_subscribers
    FOR EACH STATEMENT EXECUTE FUNCTION bounces_forget_deleted_subscribers();

CREATE FUNCTION bounces_forget_all_subscribers() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE bounces SET subscriber_id = NULL WHERE subscriber_id IS NOT NULL;
    RETURN NULL;
END
$$;

CREATE TRIGGER bounces_forget_all_subscribers AFTER TRUNCATE ON subscribers
    FOR EACH STATEMENT EXECUTE FUNCTION bounces_forget_all_subscribers();

-- Fired only by an UPDATE that names `id` in its SET list, so the status updates of thresholds and
-- imports do not pay for it.
CREATE FUNCTION subscribers_keep_their_id() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'a subscriber''s id cannot change (bounces refer to it): % -> %', OLD.id, NEW.id
        USING ERRCODE = 'restrict_violation';
END
$$;

CREATE TRIGGER subscribers_keep_their_id BEFORE UPDATE OF id ON subscribers
    FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id) EXECUTE FUNCTION subscribers_keep_their_id();
