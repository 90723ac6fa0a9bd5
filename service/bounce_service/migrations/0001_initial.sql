-- The data model of DESIGN.md "Data". Names follow listmonk's so its users recognise them.

CREATE TYPE subscriber_status AS ENUM ('enabled', 'disabled', 'blocklisted');
CREATE TYPE subscription_status AS ENUM ('unconfirmed', 'confirmed', 'unsubscribed');
CREATE TYPE bounce_type AS ENUM ('soft', 'hard', 'complaint');

CREATE TABLE subscribers (
    id          BIGSERIAL PRIMARY KEY,
    uuid        UUID NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    email       TEXT NOT NULL CHECK (email <> ''),
    name        TEXT NOT NULL DEFAULT '',
    attribs     JSONB NOT NULL DEFAULT '{}',
    status      subscriber_status NOT NULL DEFAULT 'enabled',
    created_at  TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT NOW()
);
CREATE UNIQUE INDEX idx_subscribers_email ON subscribers (LOWER(email));

CREATE TABLE lists (
    id          BIGSERIAL PRIMARY KEY,
    uuid        UUID NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    name        TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT NOW()
);

CREATE TABLE subscriber_lists (
    subscriber_id BIGINT NOT NULL REFERENCES subscribers (id) ON DELETE CASCADE ON UPDATE CASCADE,
    list_id       BIGINT NOT NULL REFERENCES lists (id) ON DELETE CASCADE ON UPDATE CASCADE,
    status        subscription_status NOT NULL DEFAULT 'unconfirmed',
    created_at    TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    PRIMARY KEY (subscriber_id, list_id)
);
CREATE INDEX idx_subscriber_lists_list ON subscriber_lists (list_id);

CREATE TABLE campaigns (
    id          BIGSERIAL PRIMARY KEY,
    uuid        UUID NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    name        TEXT NOT NULL,
    sent        BIGINT NOT NULL DEFAULT 0 CHECK (sent >= 0),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT NOW()
);
CREATE INDEX idx_campaigns_created ON campaigns (created_at);

-- Every bounce is kept: unknown recipients (subscriber_id NULL) too, and deleting a subscriber keeps its
-- history (SET NULL, unlike listmonk's cascade) so campaign bounce rates stay right.
CREATE TABLE bounces (
    id            BIGSERIAL PRIMARY KEY,
    subscriber_id BIGINT NULL REFERENCES subscribers (id) ON DELETE SET NULL ON UPDATE CASCADE,
    email         TEXT NOT NULL DEFAULT '',
    campaign_id   BIGINT NULL REFERENCES campaigns (id) ON DELETE SET NULL ON UPDATE CASCADE,
    type          bounce_type NOT NULL,
    source        TEXT NOT NULL CHECK (source <> ''),
    meta          JSONB NOT NULL DEFAULT '{}',
    event_key     TEXT NULL UNIQUE,
    action        TEXT NULL,          -- the threshold action this bounce fired, if it changed anything
    created_at    TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    recorded_at   TIMESTAMPTZ NOT NULL DEFAULT NOW()
);
CREATE INDEX idx_bounces_sub_type_date ON bounces (subscriber_id, type, created_at);
CREATE INDEX idx_bounces_camp_id ON bounces (campaign_id);
CREATE INDEX idx_bounces_source ON bounces (source);
CREATE INDEX idx_bounces_date ON bounces (created_at);
CREATE INDEX idx_bounces_email ON bounces (LOWER(email));

CREATE TABLE mailbox_scans (
    id          BIGSERIAL PRIMARY KEY,
    mailbox     TEXT NOT NULL,
    started_at  TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    finished_at TIMESTAMPTZ NULL,
    fetched     INTEGER NOT NULL DEFAULT 0,
    recorded    INTEGER NOT NULL DEFAULT 0,
    skipped     INTEGER NOT NULL DEFAULT 0,
    failed      INTEGER NOT NULL DEFAULT 0,
    error       TEXT NULL
);
CREATE INDEX idx_mailbox_scans_mailbox ON mailbox_scans (mailbox, started_at);
