-- The event log, its head, inline read models, idempotency records and key usage.

-- One row holding the last global position. Appends lock it for the rest of their
-- transaction, so positions are assigned in commit order and are contiguous: a reader
-- that has seen position N has seen every event at or below N.
CREATE TABLE log_head (
    id BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (id),
    position BIGINT NOT NULL
);
INSERT INTO log_head (id, position) VALUES (TRUE, 0);

CREATE TABLE events (
    global_position BIGINT PRIMARY KEY,
    event_id UUID NOT NULL,
    stream_type TEXT NOT NULL,
    stream_id TEXT NOT NULL,
    stream_version BIGINT NOT NULL CHECK (stream_version > 0),
    event_type TEXT NOT NULL,
    schema_version INTEGER NOT NULL,
    data JSONB NOT NULL,
    metadata JSONB NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL,
    tx_id XID8 NOT NULL DEFAULT pg_current_xact_id(),
    CONSTRAINT events_event_id_key UNIQUE (event_id),
    CONSTRAINT events_stream_version_key UNIQUE (stream_id, stream_version)
);
CREATE INDEX events_stream_type_position_idx ON events (stream_type, global_position);
CREATE INDEX events_recorded_at_idx ON events (recorded_at);

-- Events are never updated or deleted.
CREATE FUNCTION events_are_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events are append-only';
END
$$;
CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_are_append_only();

CREATE TABLE read_models (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    org_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    doc TEXT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (kind, id)
);
CREATE INDEX read_models_kind_org_idx ON read_models (kind, org_id);

CREATE TABLE idempotency_keys (
    org_id TEXT NOT NULL,
    idem_key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    status INTEGER NOT NULL,
    headers TEXT NOT NULL,
    body BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (org_id, idem_key)
);

CREATE TABLE key_usage (
    key_id TEXT PRIMARY KEY,
    last_used_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE checkpoints (
    name TEXT PRIMARY KEY,
    position BIGINT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
