-- The event log: one append-only table holding every event of every stream.

CREATE TABLE events (
    position        bigint GENERATED ALWAYS AS IDENTITY,
    -- The id of the appending transaction. Readers of the whole log go in (transaction_id,
    -- position) order and stop before the oldest transaction still running, so they never
    -- pass over an event that commits later (see ARCHITECTURE.md, "Reading the log in order").
    transaction_id  xid8 NOT NULL DEFAULT pg_current_xact_id(),
    stream_id       text NOT NULL,
    stream_version  bigint NOT NULL,
    event_type      text NOT NULL,
    schema_version  integer NOT NULL,
    data            jsonb NOT NULL,
    metadata        jsonb NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT events_pkey PRIMARY KEY (position),
    CONSTRAINT events_stream_version_key UNIQUE (stream_id, stream_version),
    CONSTRAINT events_stream_version_positive CHECK (stream_version >= 1),
    CONSTRAINT events_schema_version_positive CHECK (schema_version >= 1),
    CONSTRAINT events_event_type_nonempty CHECK (event_type <> ''),
    CONSTRAINT events_data_is_object CHECK (jsonb_typeof(data) = 'object'),
    CONSTRAINT events_metadata_is_object CHECK (jsonb_typeof(metadata) = 'object')
);

CREATE INDEX events_log_order ON events (transaction_id, position);

-- Appended events are facts: the database itself refuses to change or remove them.
CREATE FUNCTION events_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the event log is append-only: % on events is refused', TG_OP
        USING ERRCODE = 'MC001';
END;
$$;

CREATE TRIGGER events_no_update_or_delete
    BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_refuse_change();

CREATE TRIGGER events_no_truncate
    BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_refuse_change();

-- Live readers are woken by a NOTIFY on 'monkeyci_events' that each process sends after its
-- appends, outside the appending transaction (see eventstore/src/signal.rs): a NOTIFY inside the
-- append would hold PostgreSQL's cluster-wide notify lock across the commit's WAL flush and make
-- all appends commit one at a time.

-- Idempotency keys: the first command sent with a key records its fingerprint and the id it
-- returned, in the same transaction as its events.
CREATE TABLE idempotency_keys (
    scope        text NOT NULL,
    key          text NOT NULL,
    command      text NOT NULL,
    fingerprint  text NOT NULL,
    result_id    text NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT idempotency_keys_pkey PRIMARY KEY (scope, key)
);
