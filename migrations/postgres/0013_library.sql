-- The library (content/*.md), the topics and frequency people choose, and the sunset.
ALTER TABLE profiles ADD COLUMN topics TEXT;     -- JSON array of [topics] keys
ALTER TABLE profiles ADD COLUMN frequency TEXT;  -- monthly | quarterly
-- The library items each message carried (their URLs, an item's identity, one per line), so
-- that nobody is sent an item twice: one row per message, not per item, as a newsletter run
-- writes one for each of its recipients.
CREATE TABLE library_sent (
    delivery_id BIGINT  PRIMARY KEY,
    profile_id  BIGINT  NOT NULL REFERENCES profiles (id) ON DELETE CASCADE,
    urls        TEXT    NOT NULL,
    sent_at     BIGINT  NOT NULL
);
CREATE INDEX library_sent_profile ON library_sent (profile_id);
-- The library item a tracked link leads to (the links export reports clicks per item).
ALTER TABLE links ADD COLUMN item TEXT;
-- Silent people who did not click the sunset's re-permission message become 'lapsed'.
ALTER TABLE profiles DROP CONSTRAINT profiles_status_check;
ALTER TABLE profiles ADD CONSTRAINT profiles_status_check
    CHECK (status IN ('pending', 'subscribed', 'unsubscribed', 'bounced', 'complained', 'lapsed'));
