-- The library (content/*.md), the topics and frequency people choose, and the sunset.
ALTER TABLE profiles ADD COLUMN topics TEXT;     -- JSON array of [topics] keys
ALTER TABLE profiles ADD COLUMN frequency TEXT;  -- monthly | quarterly
-- The library items each message carried (their URLs, an item's identity, one per line), so
-- that nobody is sent an item twice: one row per message, not per item, as a newsletter run
-- writes one for each of its recipients.
CREATE TABLE library_sent (
    delivery_id INTEGER PRIMARY KEY,
    profile_id  INTEGER NOT NULL REFERENCES profiles (id) ON DELETE CASCADE,
    urls        TEXT    NOT NULL,
    sent_at     INTEGER NOT NULL
);
CREATE INDEX library_sent_profile ON library_sent (profile_id);
-- The library item a tracked link leads to (the links export reports clicks per item).
ALTER TABLE links ADD COLUMN item TEXT;
-- The status 'lapsed' (see the sunset) needs the profiles table rebuilt on SQLite, whose
-- CHECK constraints cannot be altered; the store does that with foreign keys off, which a
-- migration's transaction cannot (see store::upgrade_status_check).
