-- The links of campaign messages: a click token names a delivery and a link, and the click
-- redirects to the URL stored here, never to one taken from the request.
CREATE TABLE links (
    id       INTEGER PRIMARY KEY,
    campaign TEXT    NOT NULL,
    url      TEXT    NOT NULL,
    tag      TEXT    NOT NULL DEFAULT '',
    UNIQUE (campaign, url, tag)
);
CREATE INDEX events_delivery ON events (delivery_id, kind);
