-- Confirmation emails leave through the delivery queue like every other message: each is a
-- delivery of the standing run of the system campaign '@confirmation' (campaign ids in
-- campaigns.toml cannot start with '@'), one row per person, queued again when the person
-- sends the form again.
INSERT INTO campaign_runs (campaign, period_key, origin, status, created_at)
VALUES ('@confirmation', 'standing', 'event', 'queued', 0)
ON CONFLICT (campaign, period_key) DO NOTHING;
-- A request made while its person's confirmation is being sent: when the send is recorded,
-- the delivery is queued again (due then) instead of closed, so the new request gets its email.
ALTER TABLE deliveries ADD COLUMN again_at INTEGER;

-- Messages someone is waiting for (a confirmation, a welcome, a follow-up: priority 0) are
-- claimed before a newsletter run's (priority 1), so a run of 100,000 does not hold up the
-- form's confirmation email.
ALTER TABLE deliveries ADD COLUMN priority INTEGER NOT NULL DEFAULT 1;
DROP INDEX deliveries_queued;
CREATE INDEX deliveries_queued ON deliveries (priority, next_attempt_at) WHERE status = 'queued';
