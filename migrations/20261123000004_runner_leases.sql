-- Which runner is running which build, until when. Operational state, not history: the event
-- log records what happened to the build; this table only lets runners find builds whose runner
-- stopped renewing its lease.
CREATE TABLE runner_leases (
    build_id    uuid PRIMARY KEY,
    runner_id   text NOT NULL,
    expires_at  timestamptz NOT NULL
);
CREATE INDEX runner_leases_expiry ON runner_leases (expires_at);
