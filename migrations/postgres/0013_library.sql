-- The library (content/*.md), the topics and frequency people choose, and the sunset.
ALTER TABLE profiles ADD COLUMN topics TEXT;     -- JSON array of [topics] keys
ALTER TABLE profiles ADD COLUMN frequency TEXT;  -- monthly | quarterly
-- The library items each person was sent (by URL, an item's identity), so that nobody is
-- sent an item twice.
CREATE TABLE library_sent (
    profile_id  BIGINT  NOT NULL REFERENCES profiles (id) ON DELETE CASCADE,
    url         TEXT    NOT NULL,
    delivery_id BIGINT  NOT NULL,
    sent_at     BIGINT  NOT NULL,
    PRIMARY KEY (profile_id, url)
);
-- The library item a tracked link leads to (the links export reports clicks per item).
ALTER TABLE links ADD COLUMN item TEXT;
-- Silent people who did not click the sunset's re-permission message become 'lapsed'.
ALTER TABLE profiles DROP CONSTRAINT profiles_status_check;
ALTER TABLE profiles ADD CONSTRAINT profiles_status_check
    CHECK (status IN ('pending', 'subscribed', 'unsubscribed', 'bounced', 'complained', 'lapsed'));
