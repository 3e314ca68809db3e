-- The appender check of 20261206000012 ran a PL/pgSQL function before every INSERT into `events`:
-- measured, about 10 % of the append rate at 16 writers (ARCHITECTURE.md, "Reading the log in
-- order"; BENCHMARKS.md, issue 15). Most appends need none of it: a transaction whose first write
-- is its INSERT into `events` locks `events` before it gets an id (the rule the horizon builds on)
-- by itself, and an autocommitted statement cannot idle inside its transaction. The trigger now
-- runs only when that is not so, decided in its WHEN clause (evaluated without calling PL/pgSQL):
--  * the transaction has an id already (it wrote before this statement): the check must run;
--  * the statement is not the transaction's first (BEGIN was sent before it): the transaction
--    may stay open after it, so it gets the append timeouts.
-- Either way only once per transaction: the function marks it as appending.

-- Marks the calling transaction as appending and bounds how long it may stay open.
CREATE FUNCTION events_bound_appender() RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    timeout text := coalesce(nullif(current_setting('monkeyci.append_timeout', true), ''), '5s');
BEGIN
    PERFORM set_config('monkeyci.appending', 'on', true);
    -- An appender holds every reader of the log back while it is open: it may not stay open long.
    IF timeout <> '0' THEN
        PERFORM set_config('statement_timeout', timeout, true);
        PERFORM set_config('idle_in_transaction_session_timeout', timeout, true);
    END IF;
END $$;

CREATE OR REPLACE FUNCTION events_begin_append(exclusive boolean DEFAULT false) RETURNS void
LANGUAGE plpgsql AS $$
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
    PERFORM events_bound_appender();
END $$;

-- Runs before an INSERT into `events` of a transaction not marked as appending, when the
-- transaction has an id already or the statement is not its first (see the trigger's WHEN).
CREATE OR REPLACE FUNCTION events_before_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- With an id, the transaction wrote before this statement. That is allowed only if what it
    -- wrote was events, appended when it had no id yet (their statements skipped this function:
    -- e.g. `BEGIN; INSERT …` sent as one query string); every insert made with an id passed
    -- here, and either raised or marked the transaction.
    -- (Nested, and never `pg_current_xact_id()`: that would give the transaction an id.)
    IF pg_current_xact_id_if_assigned() IS NOT NULL THEN
        IF NOT EXISTS (SELECT 1 FROM events WHERE transaction_id = pg_current_xact_id_if_assigned()) THEN
            RAISE EXCEPTION 'this transaction wrote before it began appending to the event log'
                USING ERRCODE = 'MC002',
                      HINT = 'lock the log first: SELECT events_begin_append() as the first statement';
        END IF;
    END IF;
    -- The INSERT holds its lock on `events` already.
    PERFORM events_bound_appender();
    RETURN NULL;
END $$;

DROP TRIGGER events_appender_first ON events;

CREATE TRIGGER events_appender_first
    BEFORE INSERT ON events
    FOR EACH STATEMENT
    WHEN ((pg_current_xact_id_if_assigned() IS NOT NULL OR statement_timestamp() <> transaction_timestamp())
          AND current_setting('monkeyci.appending', true) IS DISTINCT FROM 'on')
    EXECUTE FUNCTION events_before_insert();
