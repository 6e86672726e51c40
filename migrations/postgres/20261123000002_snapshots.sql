-- Read-model snapshots every few hundred stream versions, so folding a long stream to a
-- version starts near it. A cache of the log: always rebuildable, never the record.
CREATE TABLE snapshots (
    stream_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    kind TEXT NOT NULL,
    doc TEXT NOT NULL,
    PRIMARY KEY (stream_id, version)
);
