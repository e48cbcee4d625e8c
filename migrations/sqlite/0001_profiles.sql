-- Profiles, consent proof, events and installation settings (SQLite, the embedded default).

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE profiles (
    id              INTEGER PRIMARY KEY,
    email           TEXT    NOT NULL,
    -- lower-cased address: one profile per mailbox, however it is spelled
    email_key       TEXT    NOT NULL UNIQUE,
    status          TEXT    NOT NULL
        CHECK (status IN ('pending', 'subscribed', 'unsubscribed', 'bounced', 'complained')),
    name            TEXT,
    role            TEXT,
    products        TEXT,   -- JSON array of configured values
    employees       INTEGER,
    industry        TEXT,
    business_need   TEXT,
    challenge       TEXT,
    pcs             INTEGER,
    servers         INTEGER,
    engagement      TEXT,
    confirm_nonce   TEXT,
    source          TEXT    NOT NULL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    confirmed_at    INTEGER,
    unsubscribed_at INTEGER
);
CREATE INDEX profiles_status ON profiles (status, id);

-- Append-only proof of every opt-in and opt-out.
CREATE TABLE consents (
    id           INTEGER PRIMARY KEY,
    profile_id   INTEGER NOT NULL REFERENCES profiles (id) ON DELETE CASCADE,
    action       TEXT    NOT NULL,
    source       TEXT    NOT NULL,
    ip           TEXT,
    user_agent   TEXT,
    form_version TEXT,
    created_at   INTEGER NOT NULL
);
CREATE INDEX consents_profile ON consents (profile_id);
CREATE INDEX consents_action_time ON consents (action, created_at);
CREATE TRIGGER consents_append_only BEFORE UPDATE ON consents
BEGIN
    SELECT RAISE(ABORT, 'consents are append-only');
END;

-- What people did: profile updates now; sends, opens, clicks, unsubscribes, feedback later.
CREATE TABLE events (
    id          INTEGER PRIMARY KEY,
    profile_id  INTEGER REFERENCES profiles (id) ON DELETE SET NULL,
    kind        TEXT    NOT NULL,
    campaign    TEXT,
    run_id      INTEGER,
    delivery_id INTEGER,
    link_id     INTEGER,
    tag         TEXT,
    value       TEXT,
    user_agent  TEXT,
    automated   INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL
);
CREATE INDEX events_kind_time ON events (kind, created_at);
CREATE INDEX events_profile ON events (profile_id, kind, created_at);

-- Opt-in form views per UTC day (the top of the opt-in funnel).
CREATE TABLE form_views (
    day   INTEGER PRIMARY KEY,  -- days since 1970-01-01
    views INTEGER NOT NULL
);
