-- The log's readable horizon depends only on transactions that append to it, not on every writing
-- transaction of the cluster (ARCHITECTURE.md, "Reading the log in order", has the argument).

-- The lock modes on `events` that allow writing rows to it. Every transaction that writes to the
-- log holds one of them from before its first write until it ends.
CREATE FUNCTION events_write_lock_modes() RETURNS text[] LANGUAGE sql IMMUTABLE AS $$
    SELECT ARRAY['RowExclusiveLock', 'ShareRowExclusiveLock', 'ExclusiveLock', 'AccessExclusiveLock']
$$;

-- Makes the calling transaction an appender: locks `events` for writing before the transaction has
-- an id (the rule the horizon builds on) and bounds how long it may stay open. A transaction that
-- writes another table before its first append calls this first; one that appends first needs
-- nothing (its INSERT locks `events` before it writes, and the trigger below does the rest).
CREATE FUNCTION events_begin_append(exclusive boolean DEFAULT false) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    timeout text := coalesce(nullif(current_setting('monkeyci.append_timeout', true), ''), '5s');
BEGIN
    IF current_setting('monkeyci.appending', true) IS NOT DISTINCT FROM 'on' THEN
        RETURN;
    END IF;
    IF pg_current_xact_id_if_assigned() IS NOT NULL THEN
        RAISE EXCEPTION 'this transaction wrote before it began appending to the event log'
            USING ERRCODE = 'MC002',
                  HINT = 'lock the log first: SELECT events_begin_append() as the first statement';
    END IF;
    IF exclusive THEN
        LOCK TABLE events IN EXCLUSIVE MODE;
    ELSE
        LOCK TABLE events IN ROW EXCLUSIVE MODE;
    END IF;
    PERFORM set_config('monkeyci.appending', 'on', true);
    -- An appender holds every reader of the log back while it is open: it may not stay open long.
    IF timeout <> '0' THEN
        PERFORM set_config('statement_timeout', timeout, true);
        PERFORM set_config('idle_in_transaction_session_timeout', timeout, true);
    END IF;
END $$;

CREATE FUNCTION events_before_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM events_begin_append();
    RETURN NULL;
END $$;

CREATE TRIGGER events_appender_first
    BEFORE INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_before_insert();

-- Every transaction with an id below the result has ended or never appends, and every
-- transaction that will ever append has an id at or above it.
--
-- The snapshot is taken first. A running transaction of the snapshot is passed over only when the
-- lock table, read after it, shows the transaction's own id lock and no write lock on `events` for
-- the same virtual transaction: an appender holds that write lock from before it had its id until
-- it ends, so such a transaction either never appends or ended before the lock table was read.
-- Any other running transaction, including one whose id lock is not in the table yet, holds the
-- horizon. Readers read the rows below it in a later statement (in READ COMMITTED, with a later
-- snapshot).
CREATE FUNCTION events_horizon() RETURNS xid8 LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    snap pg_snapshot := pg_current_snapshot();
    oldest xid8;
BEGIN
    -- In REPEATABLE READ or SERIALIZABLE the rows would be read with the snapshot taken here.
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'the event log is read in order only in READ COMMITTED transactions, not %',
            current_setting('transaction_isolation')
            USING ERRCODE = 'MC003';
    END IF;
    WITH locks AS MATERIALIZED (
        SELECT locktype, database, relation, transactionid, virtualtransaction, mode, granted
        FROM pg_locks
    ), bystanders AS (
        SELECT own.transactionid
        FROM locks own
        WHERE own.locktype = 'transactionid'
          AND own.mode = 'ExclusiveLock'
          AND own.granted
          AND NOT EXISTS (
              SELECT 1 FROM locks rel
              WHERE rel.virtualtransaction = own.virtualtransaction
                AND rel.locktype = 'relation'
                AND rel.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                AND rel.relation = 'events'::regclass
                AND rel.mode = ANY (events_write_lock_modes()))
    )
    SELECT min(running) INTO oldest
    FROM pg_snapshot_xip(snap) AS running
    WHERE running::xid NOT IN (SELECT transactionid FROM bystanders);
    RETURN LEAST(pg_snapshot_xmax(snap), oldest);
END $$;

-- Up to `max_rows` events after (`after_tx`, `after_position`) in log order, all of them final:
-- every event that commits later sorts after the last one returned.
CREATE FUNCTION events_after(after_tx xid8, after_position bigint, max_rows bigint) RETURNS SETOF events
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    horizon xid8 := events_horizon();
BEGIN
    -- A statement of its own: its snapshot is taken after the horizon was found.
    RETURN QUERY
        SELECT * FROM events
        WHERE (transaction_id, position) > (after_tx, after_position)
          AND transaction_id < horizon
        ORDER BY transaction_id, position
        LIMIT max_rows;
END $$;

-- The last event `events_after` can return now.
CREATE FUNCTION events_readable_head() RETURNS SETOF events LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    horizon xid8 := events_horizon();
BEGIN
    RETURN QUERY
        SELECT * FROM events
        WHERE transaction_id < horizon
        ORDER BY transaction_id DESC, position DESC
        LIMIT 1;
END $$;

-- The transactions appending to the log now, oldest first: what `/ready`, `/metrics` and
-- `monkeyci projections status` report while one holds the readable horizon back. A prepared
-- transaction has no backend (`pid` is null) but its name (`prepared`).
CREATE FUNCTION events_open_appenders()
RETURNS TABLE (pid integer, application_name text, prepared text, since timestamptz, state text)
LANGUAGE sql VOLATILE AS $$
    SELECT max(lock.pid) AS pid, max(activity.application_name) AS application_name,
           max(prepared.gid) AS prepared,
           coalesce(max(activity.xact_start), max(prepared.prepared)) AS since,
           max(activity.state) AS state
    FROM pg_locks lock
    JOIN pg_locks holder ON holder.virtualtransaction = lock.virtualtransaction
                        AND holder.locktype = 'transactionid'
                        AND holder.mode = 'ExclusiveLock'
                        AND holder.granted
    LEFT JOIN pg_stat_activity activity ON activity.pid = lock.pid
    LEFT JOIN pg_prepared_xacts prepared ON prepared.transaction = holder.transactionid
    WHERE lock.locktype = 'relation'
      AND lock.database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND lock.relation = 'events'::regclass
      AND lock.mode = ANY (events_write_lock_modes())
    GROUP BY lock.virtualtransaction
    ORDER BY since
$$;
