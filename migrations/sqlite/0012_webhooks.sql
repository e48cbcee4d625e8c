-- The webhook queue: one row per (event, endpoint), written in the transaction of what
-- happened (at least once, across restarts and kill -9). The body is completed with the
-- person's address when it is sent, so an erased person's queued rows say nothing of them
-- (erasure deletes them). `event_id` is the Rapport-Event-Id, shared by the endpoints.
CREATE TABLE webhook_deliveries (
    id              INTEGER PRIMARY KEY,
    event_id        TEXT    NOT NULL,
    endpoint        TEXT    NOT NULL,
    kind            TEXT    NOT NULL,
    profile_id      INTEGER,
    data            TEXT    NOT NULL,
    happened_at     INTEGER NOT NULL,
    status          TEXT    NOT NULL,  -- queued, sending, sent, failed
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    give_up_at      INTEGER NOT NULL,
    lease_until     INTEGER,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    sent_at         INTEGER
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);
CREATE INDEX webhook_deliveries_profile ON webhook_deliveries (profile_id);
