-- Job output, line by line, written while the job runs. Operational data kept beside the event
-- log (which records that the job ran, not every line it printed).
CREATE TABLE job_log_lines (
    build_id  uuid NOT NULL,
    job_id    text NOT NULL,
    seq       bigint NOT NULL,
    at        timestamptz NOT NULL,
    stream    text NOT NULL,
    text      text NOT NULL,
    CONSTRAINT job_log_lines_pkey PRIMARY KEY (build_id, job_id, seq),
    CONSTRAINT job_log_lines_stream CHECK (stream IN ('stdout', 'stderr', 'system'))
);

-- Wakes live log readers; the payload names the job: "<build id> <job id>".
CREATE FUNCTION job_log_lines_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('monkeyci_job_logs', t.build_id || ' ' || t.job_id)
    FROM (SELECT DISTINCT build_id, job_id FROM inserted) t;
    RETURN NULL;
END;
$$;

CREATE TRIGGER job_log_lines_notify_after_insert
    AFTER INSERT ON job_log_lines
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION job_log_lines_notify();
