-- A delivery's events are found through the per-person index (every event of a delivery
-- carries the delivery's profile), so the index by delivery goes: it made every click and
-- open a second write at a random place in an index, which halved the click rate.
DROP INDEX events_delivery;
