-- Campaign runs and deliveries (the outbox).

-- A run is one campaign for one period (scheduled newsletters), one manual send, or the
-- standing run of a triggered campaign (welcome, follow-ups). Created once per key.
CREATE TABLE campaign_runs (
    id          INTEGER PRIMARY KEY,
    campaign    TEXT    NOT NULL,
    period_key  TEXT    NOT NULL,
    origin      TEXT    NOT NULL,  -- schedule, manual, event
    status      TEXT    NOT NULL,  -- queuing, queued
    recipients  INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL,
    queued_at   INTEGER,
    UNIQUE (campaign, period_key)
);

-- One message of one run to one person: a person gets a run at most once.
CREATE TABLE deliveries (
    id              INTEGER PRIMARY KEY,
    run_id          INTEGER NOT NULL REFERENCES campaign_runs (id),
    profile_id      INTEGER NOT NULL REFERENCES profiles (id) ON DELETE CASCADE,
    campaign        TEXT    NOT NULL,
    status          TEXT    NOT NULL,  -- queued, sending, sent, failed, skipped
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    lease_until     INTEGER,
    last_error      TEXT,
    message_id      TEXT,
    sent_at         INTEGER,
    created_at      INTEGER NOT NULL,
    UNIQUE (run_id, profile_id)
);
CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at);
CREATE INDEX deliveries_profile ON deliveries (profile_id);
