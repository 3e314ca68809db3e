-- Parameter sets and ssh keys that only builds of protected refs (the repo's main branch, tags)
-- receive. Events from before carry no flag: unprotected, as they were.
ALTER TABLE param_sets ADD COLUMN protected boolean NOT NULL DEFAULT false;
ALTER TABLE ssh_keys ADD COLUMN protected boolean NOT NULL DEFAULT false;
