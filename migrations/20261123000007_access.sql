-- Who may do what: org members, users and API tokens (read models of the `orgs` and `access`
-- projections).

-- {"<user id>": "owner" | "member" | "viewer"}
ALTER TABLE orgs ADD COLUMN members jsonb NOT NULL DEFAULT '{}';

CREATE TABLE users (
    id          uuid PRIMARY KEY,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL,
    version     bigint NOT NULL
);

-- Only the SHA-256 of a token's secret is kept; a request's token is found by its hash.
CREATE TABLE api_tokens (
    id          uuid PRIMARY KEY,
    name        text NOT NULL,
    hash        text NOT NULL,
    -- 'user' (acts as user_id) or 'org' (acts in org_id with role)
    kind        text NOT NULL,
    user_id     uuid,
    org_id      uuid,
    role        text,
    expires_at  timestamptz NOT NULL,
    revoked     boolean NOT NULL,
    created_at  timestamptz NOT NULL,
    version     bigint NOT NULL
);
CREATE UNIQUE INDEX api_tokens_hash ON api_tokens (hash);
