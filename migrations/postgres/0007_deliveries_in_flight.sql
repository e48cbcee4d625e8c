-- The due-deliveries index held every delivery ever made, and each send moved its entry
-- twice (queued -> sending -> sent). Two partial indexes hold only what is in flight: the
-- queue, in the order it is claimed, and the claimed deliveries, by when their lease ends
-- (to put back those whose worker died). A sent delivery leaves both. Failures (rare) keep
-- an index of their own so that /metrics counts them without reading every delivery; it
-- counts sends through the `sent` events.
DROP INDEX deliveries_due;
CREATE INDEX deliveries_queued ON deliveries (next_attempt_at) WHERE status = 'queued';
CREATE INDEX deliveries_sending ON deliveries (lease_until) WHERE status = 'sending';
CREATE INDEX deliveries_failed ON deliveries (id) WHERE status = 'failed';
