-- Addresses erased on request: an import never brings them back. Only a hash is kept.
CREATE TABLE suppressions (
    email_sha256 TEXT    PRIMARY KEY,
    created_at   BIGINT  NOT NULL
);
