-- What operators do: a progress value on running jobs, and stored settings per job name
-- (paused, a cluster-wide limit of running executions), which claims respect.
-- The new claim is a function of its own, `claim_capped`: workers of the previous version,
-- still running during an upgrade, go on calling `claim_next`, which ignores the settings.

-- And the scheduler's trace context (a W3C traceparent), for the execution's span.
ALTER TABLE "{schema}".jobs ADD COLUMN progress jsonb, ADD COLUMN trace_context text;

CREATE TABLE "{schema}".names (
    name text PRIMARY KEY,
    paused boolean NOT NULL DEFAULT false,
    concurrency_limit integer CHECK (concurrency_limit > 0)
);

-- As claim_next, and: a paused name is left out; a name with a concurrency limit is capped at
-- the limit less its live leases, counted after its row in `names` is locked, so claimers of
-- one limited name take turns and never exceed it together; p_caps caps each name in this
-- claim (a worker set's max_parallel; p_limit for none).
CREATE FUNCTION "{schema}".claim_capped(p_names text[], p_lock_ms bigint[], p_caps integer[],
    p_limit integer, p_worker text)
RETURNS TABLE (
    id bigint, name text, kind text, params jsonb, priority integer, run_at timestamptz,
    unique_identifier text, tries integer, locked_until timestamptz, locked_by text,
    lease_token text, schedule_key text, created_at timestamptz, was_stale boolean,
    claimed_at timestamptz, next_due timestamptz, trace_context text
)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_now timestamptz := "{schema}".ms_now();
    v_leased integer;
    v_names text[] := p_names;
    v_lock bigint[] := p_lock_ms;
    v_caps integer[] := p_caps;
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

    IF EXISTS (SELECT 1 FROM "{schema}".names n WHERE n.name = ANY(p_names)) THEN
        -- Each statement of this function sees what committed before it began: the count
        -- below sees the leases of the claimer that held these locks before.
        PERFORM 1 FROM "{schema}".names n
        WHERE n.name = ANY(p_names) AND n.concurrency_limit IS NOT NULL
        ORDER BY n.name FOR UPDATE;
        SELECT coalesce(array_agg(w.name ORDER BY w.ord), '{}'),
               coalesce(array_agg(w.lock_ms ORDER BY w.ord), '{}'),
               coalesce(array_agg(CASE WHEN n.concurrency_limit IS NULL THEN w.cap
                   ELSE least(w.cap, greatest(0, n.concurrency_limit - (
                       SELECT count(*) FROM "{schema}".jobs s
                       WHERE s.name = w.name AND s.state = 'running' AND s.locked_until > v_now
                   ) - (
                       -- Cancelled while running (dogs_core::CANCELLED_ERROR), until the lease
                       -- they had ends: their handlers may still be stopping.
                       SELECT count(*) FROM "{schema}".jobs s
                       WHERE s.name = w.name AND s.state = 'failed'
                         AND s.last_error = 'cancelled while running' AND s.locked_until > v_now
                   )))::integer END ORDER BY w.ord), '{}')
        INTO v_names, v_lock, v_caps
        FROM unnest(p_names, p_lock_ms, p_caps) WITH ORDINALITY AS w(name, lock_ms, cap, ord)
        LEFT JOIN "{schema}".names n ON n.name = w.name
        WHERE NOT coalesce(n.paused, false);
    END IF;

    RETURN QUERY
    WITH picked AS (
{claim_capped_candidates}
    )
    UPDATE "{schema}".jobs j SET
        state = 'running',
        tries = least(j.tries, 2147483646) + 1,
        demoted = false,
        lease_token = gen_random_uuid()::text,
        locked_until = v_now + p.lock_ms * interval '1 millisecond',
        locked_by = p_worker
    FROM picked p
    WHERE j.id = p.id
    RETURNING j.id, j.name, j.kind, j.params, j.priority, j.run_at, j.unique_identifier, j.tries,
        j.locked_until, j.locked_by, j.lease_token, j.schedule_key, j.created_at, p.stale, v_now,
        NULL::timestamptz, j.trace_context;
    GET DIAGNOSTICS v_leased = ROW_COUNT;

    IF v_leased < p_limit THEN
        -- Paused names are left out: resuming one wakes the workers.
        RETURN QUERY SELECT NULL::bigint, NULL::text, NULL::text, NULL::jsonb, NULL::integer,
            NULL::timestamptz, NULL::text, NULL::integer, NULL::timestamptz, NULL::text,
            NULL::text, NULL::text, NULL::timestamptz, NULL::boolean, v_now,
            CASE WHEN EXISTS (
                SELECT 1 FROM "{schema}".jobs s WHERE s.name = ANY(v_names) AND s.state = 'pending'
            ) THEN v_now ELSE LEAST(
                (SELECT min(f.run_at) FROM unnest(v_names) AS w(name)
                 CROSS JOIN LATERAL (
                     SELECT s.run_at FROM "{schema}".jobs s
                     WHERE s.name = w.name AND s.state = 'scheduled'
                     ORDER BY s.run_at LIMIT 1) f),
                (SELECT min(l.locked_until) FROM unnest(v_names) AS w(name)
                 CROSS JOIN LATERAL (
                     SELECT s.locked_until FROM "{schema}".jobs s
                     WHERE s.name = w.name AND s.state = 'running'
                     ORDER BY s.locked_until LIMIT 1) l)
            ) END, NULL::text;
    END IF;
END $$;

-- Failed jobs by name, for retrying every failed job of a name.
CREATE INDEX jobs_failed_by_name ON "{schema}".jobs (name, id) WHERE state = 'failed';
