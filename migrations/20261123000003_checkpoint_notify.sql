-- Announces every checkpoint move, so API servers can wait for their read models to catch up
-- (read-your-writes) without polling. Payload: "<projection> <tx>.<position>".
CREATE FUNCTION projection_checkpoints_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('monkeyci_checkpoints', NEW.name || ' ' || NEW.tx || '.' || NEW.position);
    RETURN NULL;
END;
$$;

CREATE TRIGGER projection_checkpoints_notify_after_change
    AFTER INSERT OR UPDATE ON projection_checkpoints
    FOR EACH ROW EXECUTE FUNCTION projection_checkpoints_notify();
