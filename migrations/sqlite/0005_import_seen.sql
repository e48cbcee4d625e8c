-- Addresses seen by an import in progress, so that an address repeated in one file is
-- reported without keeping every address of a large file in memory. Emptied at the end.
CREATE TABLE import_seen (
    import_id TEXT    NOT NULL,
    email_key TEXT    NOT NULL,
    line      INTEGER NOT NULL,
    PRIMARY KEY (import_id, email_key)
);
