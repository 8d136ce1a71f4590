-- Wake-ups on updates come from a row trigger that fires only for rows left due (`WHEN`), instead
-- of a statement trigger with a transition table: the claim's update, which leaves no job due,
-- no longer copies the rows it leased into a transition table, and fires nothing.
-- PostgreSQL folds identical notifications of one transaction, so a statement that makes many
-- jobs due still sends one.
DROP TRIGGER jobs_notify_update ON "{schema}".jobs;

CREATE FUNCTION "{schema}".notify_due_row() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{channel}', '');
    RETURN NULL;
END $$;

CREATE TRIGGER jobs_notify_update AFTER UPDATE ON "{schema}".jobs
    FOR EACH ROW WHEN (NEW.state = 'pending')
    EXECUTE FUNCTION "{schema}".notify_due_row();
