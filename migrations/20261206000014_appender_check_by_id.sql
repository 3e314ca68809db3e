-- The trigger of 20261206000013 was meant to skip the appender check for an autocommitted INSERT
-- into `events`, telling it apart by `statement_timestamp() = transaction_timestamp()`. That holds
-- only over the simple query protocol: over the extended protocol (Bind and Execute are messages
-- of their own, and each sets the statement time) the two differ for every statement, so each of
-- the store's appends still ran the PL/pgSQL check (measured: `pg_stat_user_functions` counted a
-- call per insert with `pgbench -M extended`, none with `-M simple`).
--
-- The check now runs only when the inserting transaction has an id already, that is when it wrote
-- before this statement; then the rule the horizon builds on (ARCHITECTURE.md, "Reading the log
-- in order") is in question. A transaction whose first write is its INSERT into `events` keeps
-- the rule by itself, whatever came before it in the transaction.
--
-- What that no longer decides is the bound: an INSERT inside a transaction that can idle after
-- it. An appender that runs more than one statement begins with `SELECT events_begin_append()`,
-- which marks it and sets its timeouts (the store's transactional appends and `events import` do).
-- A client that writes `events` by hand after `BEGIN` without it is bounded from its second
-- insert on, and is listed by `events_open_appenders()` while it holds the log back.

-- Runs before an INSERT into `events` of a transaction that has an id and is not marked as
-- appending (see the trigger's WHEN).
CREATE OR REPLACE FUNCTION events_before_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- The transaction wrote before this statement. That is allowed only if what it wrote was
    -- events, appended when it had no id yet (their statements skipped this function); every
    -- insert made with an id passed here, and either raised or marked the transaction.
    -- (Never `pg_current_xact_id()` here: that would give a transaction without one an id.)
    IF NOT EXISTS (SELECT 1 FROM events WHERE transaction_id = pg_current_xact_id_if_assigned()) THEN
        RAISE EXCEPTION 'this transaction wrote before it began appending to the event log'
            USING ERRCODE = 'MC002',
                  HINT = 'lock the log first: SELECT events_begin_append() as the first statement';
    END IF;
    -- The INSERT holds its lock on `events` already.
    PERFORM events_bound_appender();
    RETURN NULL;
END $$;

DROP TRIGGER events_appender_first ON events;

CREATE TRIGGER events_appender_first
    BEFORE INSERT ON events
    FOR EACH STATEMENT
    WHEN (pg_current_xact_id_if_assigned() IS NOT NULL
          AND current_setting('monkeyci.appending', true) IS DISTINCT FROM 'on')
    EXECUTE FUNCTION events_before_insert();
