-- Per-org data keys that seal the secrets events carry (envelope encryption). Mutable and
-- outside the log on purpose: destroying a key (crypto-shredding, `orgs forget`) makes the
-- org's secrets unreadable everywhere while the log stays intact, and rotating the master
-- key re-wraps these rows without touching the log.
CREATE TABLE data_keys (
    kid TEXT PRIMARY KEY,
    org_id TEXT NOT NULL,
    -- Which master key wrapped it (a fingerprint, not the key): a process holding another
    -- master refuses to add keys beside these, so one store never mixes two masters.
    master_id TEXT NOT NULL,
    -- nonce (12 bytes) ‖ AES-256-GCM(master key, data key) with the org and kid as AAD;
    -- NULL once destroyed (the row stays as a tombstone).
    wrapped_key BLOB,
    created_at TEXT NOT NULL,
    destroyed_at TEXT,
    CONSTRAINT data_keys_destroyed_has_no_key CHECK ((wrapped_key IS NULL) = (destroyed_at IS NOT NULL))
);
-- One live key per org: concurrent first uses race on this index, and one wins.
CREATE UNIQUE INDEX data_keys_one_live_per_org ON data_keys (org_id) WHERE destroyed_at IS NULL;
