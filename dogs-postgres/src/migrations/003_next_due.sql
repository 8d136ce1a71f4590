-- Claims report when the next job of the requested names becomes claimable (the earliest run
-- time or lease end), so an idle worker looks again then instead of at its next poll; and they
-- promote and reclaim the requested names only. Both read per-name indexes, which replace the
-- global ones. Wake-ups also fire for jobs scheduled for later, so idle workers learn their time.
-- The new claim is a function of its own, `claim_next`: workers of the previous version, still
-- running during an upgrade, go on calling `claim`, which is left as it was.

CREATE INDEX jobs_scheduled_by_name ON "{schema}".jobs (name, run_at) WHERE state = 'scheduled';
CREATE INDEX jobs_leases_by_name ON "{schema}".jobs (name, locked_until) WHERE state = 'running';
DROP INDEX "{schema}".jobs_scheduled;
DROP INDEX "{schema}".jobs_leases;

-- Leases up to p_limit due jobs of the given names, each for its name's lease time, in claim
-- order. First makes their due scheduled jobs pending and reclaims their leases that ran out
-- (demoted: their execution went stale), all in one round trip. When it leases fewer than
-- p_limit, one more row, with a NULL id, carries `next_due`: the server's now when due jobs are
-- left (other claimers hold them), else the earliest run time or lease end of those names.
CREATE FUNCTION "{schema}".claim_next(p_names text[], p_lock_ms bigint[], p_limit integer, p_worker text)
RETURNS TABLE (
    id bigint, name text, kind text, params jsonb, priority integer, run_at timestamptz,
    unique_identifier text, tries integer, locked_until timestamptz, locked_by text,
    lease_token text, schedule_key text, created_at timestamptz, was_stale boolean,
    claimed_at timestamptz, next_due timestamptz
)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_now timestamptz := "{schema}".ms_now();
    v_leased integer;
BEGIN
    UPDATE "{schema}".jobs j SET state = 'pending'
    WHERE j.id IN (
        SELECT s.id FROM unnest(p_names) AS w(name)
        CROSS JOIN LATERAL (
            SELECT s.id FROM "{schema}".jobs s
            WHERE s.name = w.name AND s.state = 'scheduled' AND s.run_at <= v_now
            ORDER BY s.run_at LIMIT 10000 FOR UPDATE SKIP LOCKED
        ) s);

    UPDATE "{schema}".jobs j SET state = 'pending', demoted = true
    WHERE j.id IN (
        SELECT s.id FROM unnest(p_names) AS w(name)
        CROSS JOIN LATERAL (
            SELECT s.id FROM "{schema}".jobs s
            WHERE s.name = w.name AND s.state = 'running' AND s.locked_until <= v_now
            ORDER BY s.locked_until LIMIT 10000 FOR UPDATE SKIP LOCKED
        ) s);

    RETURN QUERY
    WITH picked AS (
{claim_candidates}
    )
    UPDATE "{schema}".jobs j SET
        state = 'running',
        -- A count written by hand at the top of the range stays there instead of overflowing.
        tries = least(j.tries, 2147483646) + 1,
        demoted = false,
        lease_token = gen_random_uuid()::text,
        locked_until = v_now + p.lock_ms * interval '1 millisecond',
        locked_by = p_worker
    FROM picked p
    WHERE j.id = p.id
    RETURNING j.id, j.name, j.kind, j.params, j.priority, j.run_at, j.unique_identifier, j.tries,
        j.locked_until, j.locked_by, j.lease_token, j.schedule_key, j.created_at, p.stale, v_now,
        NULL::timestamptz;
    GET DIAGNOSTICS v_leased = ROW_COUNT;

    IF v_leased < p_limit THEN
        RETURN QUERY SELECT NULL::bigint, NULL::text, NULL::text, NULL::jsonb, NULL::integer,
            NULL::timestamptz, NULL::text, NULL::integer, NULL::timestamptz, NULL::text,
            NULL::text, NULL::text, NULL::timestamptz, NULL::boolean, v_now,
            CASE WHEN EXISTS (
                SELECT 1 FROM "{schema}".jobs s WHERE s.name = ANY(p_names) AND s.state = 'pending'
            ) THEN v_now ELSE LEAST(
                (SELECT min(f.run_at) FROM unnest(p_names) AS w(name)
                 CROSS JOIN LATERAL (
                     SELECT s.run_at FROM "{schema}".jobs s
                     WHERE s.name = w.name AND s.state = 'scheduled'
                     ORDER BY s.run_at LIMIT 1) f),
                (SELECT min(l.locked_until) FROM unnest(p_names) AS w(name)
                 CROSS JOIN LATERAL (
                     SELECT s.locked_until FROM "{schema}".jobs s
                     WHERE s.name = w.name AND s.state = 'running'
                     ORDER BY s.locked_until LIMIT 1) l)
            ) END;
    END IF;
END $$;

-- Wake-ups for every job stored or left pending or scheduled: a due one to run, a future one
-- so idle workers learn its time from their next claim.
CREATE OR REPLACE FUNCTION "{schema}".notify_due() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM new_rows WHERE state IN ('pending', 'scheduled')) THEN
        PERFORM pg_notify('{channel}', '');
    END IF;
    RETURN NULL;
END $$;

DROP TRIGGER jobs_notify_update ON "{schema}".jobs;
CREATE TRIGGER jobs_notify_update AFTER UPDATE ON "{schema}".jobs
    FOR EACH ROW WHEN (NEW.state = 'pending' OR (NEW.state = 'scheduled'
        AND (OLD.state IS DISTINCT FROM NEW.state OR OLD.run_at IS DISTINCT FROM NEW.run_at)))
    EXECUTE FUNCTION "{schema}".notify_due_row();
