-- The library items a message carried (their URLs, one per line) move onto its delivery's
-- row: the send recorder already updates that row when the message is accepted, so the
-- items cost no statement, no row and no index entry of their own (a newsletter run wrote
-- one library_sent row per recipient; BENCHMARKS.md, "The library inside a sending run").
-- A person's items are found through the deliveries' profile index.
ALTER TABLE deliveries ADD COLUMN library_urls TEXT;
UPDATE deliveries SET library_urls = (SELECT l.urls FROM library_sent l WHERE l.delivery_id = deliveries.id)
    WHERE id IN (SELECT delivery_id FROM library_sent);
DROP TABLE library_sent;
