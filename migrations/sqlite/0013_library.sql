-- The library (content/*.md), the topics and frequency people choose, and the sunset.
ALTER TABLE profiles ADD COLUMN topics TEXT;     -- JSON array of [topics] keys
ALTER TABLE profiles ADD COLUMN frequency TEXT;  -- monthly | quarterly
-- The library items each person was sent (by URL, an item's identity), so that nobody is
-- sent an item twice.
CREATE TABLE library_sent (
    profile_id  INTEGER NOT NULL REFERENCES profiles (id) ON DELETE CASCADE,
    url         TEXT    NOT NULL,
    delivery_id INTEGER NOT NULL,
    sent_at     INTEGER NOT NULL,
    PRIMARY KEY (profile_id, url)
);
-- The library item a tracked link leads to (the links export reports clicks per item).
ALTER TABLE links ADD COLUMN item TEXT;
-- The status 'lapsed' (see the sunset) needs the profiles table rebuilt on SQLite, whose
-- CHECK constraints cannot be altered; the store does that with foreign keys off, which a
-- migration's transaction cannot (see store::upgrade_status_check).
