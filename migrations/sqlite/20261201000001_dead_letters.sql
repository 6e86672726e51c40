-- Events whose side effect still failed after every retry, parked after their failure
-- outcome was appended, until `fleetledger dlq retry` asks a worker to deliver them again.
-- Mutable bookkeeping beside the log (like checkpoints), never the record: the log holds
-- every attempt's outcome.
CREATE TABLE dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    worker TEXT NOT NULL,
    event_id TEXT NOT NULL,
    org_id TEXT NOT NULL,
    stream_type TEXT NOT NULL,
    stream_id TEXT NOT NULL,
    stream_version INTEGER NOT NULL,
    event_type TEXT NOT NULL,
    global_position INTEGER NOT NULL,
    -- Deliveries tried so far, the worker's retries and every re-drive.
    attempts INTEGER NOT NULL,
    -- Re-drives that ended: the next one's outcome ids are made from it.
    redrives INTEGER NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL,
    parked_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    -- Set by `dlq retry`; a worker of this name takes the entry (claimed_by, until
    -- claimed_until, so a dead claimer's entry is taken again later) and re-drives it.
    retry_requested_at TEXT,
    claimed_by TEXT,
    claimed_until TEXT,
    UNIQUE (worker, event_id)
);
CREATE INDEX dead_letters_retry_requested ON dead_letters (worker) WHERE retry_requested_at IS NOT NULL;
