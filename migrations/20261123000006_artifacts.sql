-- Artifacts saved by a build's jobs, and where each ended job's log was archived (blob storage).

-- [{"id", "job_id", "key", "size", "sha256", "saved_at"}], in the order they were saved.
ALTER TABLE builds ADD COLUMN artifacts jsonb NOT NULL DEFAULT '[]';

-- {"key", "size", "sha256", "lines"} once the job's log is archived.
ALTER TABLE jobs ADD COLUMN log_archive jsonb;
