-- One org's events in log order, for the ledger's feeds and the console: without it, a
-- reader of a small org scans every other org's events to find its own.
CREATE INDEX events_org_position_idx ON events ((metadata->>'org_id'), global_position);
