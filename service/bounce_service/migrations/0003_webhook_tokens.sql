-- One-time signature tokens of providers that sign a token rather than the event (Mailgun signs
-- timestamp + token). In the database, not in a process, so a token one replica or worker has seen is
-- refused by all of them. The body digest tells a retry of the same request from a captured signature
-- carrying another event. Rows older than twice the provider's maxAge are pruned as new tokens arrive.
CREATE TABLE webhook_tokens (
    provider    TEXT NOT NULL,
    token       TEXT NOT NULL,
    body_sha256 BYTEA NOT NULL,
    signed_at   TIMESTAMPTZ NOT NULL,
    spent       BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (provider, token)
);
CREATE INDEX idx_webhook_tokens_signed_at ON webhook_tokens (provider, signed_at);
