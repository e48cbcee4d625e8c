-- When rapport first saw each newsletter schedule (campaign + cron expression). Catch-up
-- after downtime starts only occurrences after that moment: a new install, a new database
-- or a changed schedule never sends a "missed" run from before rapport knew of it.
CREATE TABLE schedules_seen (
    campaign TEXT NOT NULL,
    schedule TEXT NOT NULL,
    first_seen_at BIGINT NOT NULL,
    PRIMARY KEY (campaign, schedule)
);
