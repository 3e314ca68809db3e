-- The audit index (read model of the `audit` projection): which events of the log belong to
-- which org, in log order. The events themselves stay in `events`; an org's audit log is a range
-- of this index joined to them by position.
CREATE TABLE audit_entries (
    org_id    uuid NOT NULL,
    tx        bigint NOT NULL,
    position  bigint NOT NULL,
    CONSTRAINT audit_entries_pkey PRIMARY KEY (org_id, tx, position)
);
