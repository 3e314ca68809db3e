-- The admin token kept across restarts: its SHA-256 (never the token), made by the first
-- `monkeyci server` started without MONKEYCI_ADMIN_TOKEN or by `monkeyci admin-token`, which
-- replaces it. Every server of the installation accepts the token whose hash is here.
ALTER TABLE installation
    ADD COLUMN admin_token_hash text,
    ADD COLUMN admin_token_made_at timestamptz;
