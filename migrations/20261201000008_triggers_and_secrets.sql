-- Webhooks and schedules (read models of the `triggers` projection), parameter sets and ssh keys
-- (the `secrets` projection), and the data keys of
-- secret-holding aggregates.

-- Not a read model: nothing rebuilds it. One data key per aggregate, wrapped by a master key;
-- deleting the row destroys every value sealed with the key (crypto-shredding).
CREATE TABLE data_keys (
    owner_id       uuid PRIMARY KEY,
    master_key_id  text NOT NULL,
    wrapped        jsonb NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX data_keys_master_key ON data_keys (master_key_id);

CREATE TABLE webhooks (
    id          uuid PRIMARY KEY,
    org_id      uuid NOT NULL,
    repo_id     uuid NOT NULL,
    -- github, gitlab, bitbucket, gitea or forgejo
    host        text NOT NULL,
    -- The secret sealed with the webhook's data key: {"nonce": base64, "ciphertext": base64}.
    secret      jsonb NOT NULL,
    deleted     boolean NOT NULL,
    created_at  timestamptz NOT NULL,
    rotated_at  timestamptz,
    version     bigint NOT NULL
);
CREATE INDEX webhooks_repo ON webhooks (repo_id);

CREATE TABLE schedules (
    id          uuid PRIMARY KEY,
    org_id      uuid NOT NULL,
    repo_id     uuid NOT NULL,
    cron        text NOT NULL,
    deleted     boolean NOT NULL,
    created_at  timestamptz NOT NULL,
    -- When the cron expression was last set; ticks before it are never fired.
    since       timestamptz NOT NULL,
    version     bigint NOT NULL
);
CREATE INDEX schedules_repo ON schedules (repo_id);

-- What a git host said about the push behind a webhook build: message, author, changed files.
ALTER TABLE builds ADD COLUMN push jsonb;

-- An org's parameter sets and ssh keys (read models of the `secrets` projection): values only
-- sealed with the aggregate's data key.
CREATE TABLE param_sets (
    id          uuid PRIMARY KEY,
    org_id      uuid NOT NULL,
    name        text NOT NULL,
    -- [{"label": "value", …}, …]: a repo is chosen when all pairs of one rule hold; [] = every repo
    filter      jsonb NOT NULL,
    -- {"NAME": {"nonce": base64, "ciphertext": base64}, …}
    params      jsonb NOT NULL,
    deleted     boolean NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    version     bigint NOT NULL
);
CREATE INDEX param_sets_org ON param_sets (org_id);

CREATE TABLE ssh_keys (
    id           uuid PRIMARY KEY,
    org_id       uuid NOT NULL,
    description  text NOT NULL,
    filter       jsonb NOT NULL,
    private_key  jsonb NOT NULL,
    public_key   text NOT NULL,
    deleted      boolean NOT NULL,
    created_at   timestamptz NOT NULL,
    version      bigint NOT NULL
);
CREATE INDEX ssh_keys_org ON ssh_keys (org_id);
