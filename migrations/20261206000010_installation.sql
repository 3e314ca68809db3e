-- This database's id. Runners put it on every container they start, so that a runner that
-- removes the containers of builds nobody runs any more never touches those of another
-- installation sharing the same container host.
CREATE TABLE installation (
    singleton boolean PRIMARY KEY DEFAULT true CONSTRAINT installation_one_row CHECK (singleton),
    id uuid NOT NULL DEFAULT gen_random_uuid()
);
INSERT INTO installation DEFAULT VALUES;
