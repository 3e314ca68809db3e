-- Projection checkpoints and the first read models. Read models are derived data: every table
-- here can be truncated and rebuilt from the event log.

CREATE TABLE projection_checkpoints (
    name              text PRIMARY KEY,
    tx                bigint NOT NULL DEFAULT 0,
    position          bigint NOT NULL DEFAULT 0,
    events_processed  bigint NOT NULL DEFAULT 0,
    updated_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE orgs (
    id          uuid PRIMARY KEY,
    name        text NOT NULL,
    slug        text NOT NULL,
    deleted     boolean NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    version     bigint NOT NULL
);
CREATE INDEX orgs_slug ON orgs (slug) WHERE NOT deleted;

CREATE TABLE repos (
    id           uuid PRIMARY KEY,
    org_id       uuid NOT NULL,
    name         text NOT NULL,
    git_url      text NOT NULL,
    main_branch  text NOT NULL,
    labels       jsonb NOT NULL,
    archived     boolean NOT NULL,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    version      bigint NOT NULL
);
CREATE INDEX repos_org ON repos (org_id, created_at, id);

CREATE TABLE builds (
    id                uuid PRIMARY KEY,
    org_id            uuid NOT NULL,
    repo_id           uuid NOT NULL,
    status            text NOT NULL,
    source            text NOT NULL,
    ref_kind          text NOT NULL,
    ref_name          text NOT NULL,
    commit_sha        text,
    params            jsonb NOT NULL,
    retry_of          uuid,
    retried_by        uuid,
    runner            text,
    cancel_requested  boolean NOT NULL,
    message           text,
    queued_at         timestamptz NOT NULL,
    started_at        timestamptz,
    finished_at       timestamptz,
    jobs_total        integer NOT NULL,
    jobs_queued       integer NOT NULL,
    jobs_blocked      integer NOT NULL,
    jobs_running      integer NOT NULL,
    jobs_succeeded    integer NOT NULL,
    jobs_failed       integer NOT NULL,
    jobs_skipped      integer NOT NULL,
    jobs_canceled     integer NOT NULL,
    updated_at        timestamptz NOT NULL,
    version           bigint NOT NULL
);
CREATE INDEX builds_repo ON builds (repo_id, queued_at DESC, id DESC);
CREATE INDEX builds_org ON builds (org_id, queued_at DESC, id DESC);
CREATE INDEX builds_unfinished ON builds (queued_at) WHERE status IN ('queued', 'running');

CREATE TABLE jobs (
    build_id      uuid NOT NULL,
    job_id        text NOT NULL,
    status        text NOT NULL,
    dependencies  jsonb NOT NULL,
    message       text,
    queued_at     timestamptz NOT NULL,
    started_at    timestamptz,
    finished_at   timestamptz,
    updated_at    timestamptz NOT NULL,
    CONSTRAINT jobs_pkey PRIMARY KEY (build_id, job_id)
);
