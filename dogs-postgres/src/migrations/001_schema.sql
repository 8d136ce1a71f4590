-- The dogs schema: jobs, execution records, the claim function and the wake-up triggers.
-- {schema} is replaced by the configured schema name (checked to be a plain identifier).

CREATE FUNCTION "{schema}".ms_now() RETURNS timestamptz
LANGUAGE sql STABLE AS $$ SELECT date_trunc('milliseconds', now()) $$;

-- One row per job. `state` is where the job stands:
--   scheduled  pending, run time in the future when last written
--   pending    due (claimable); `demoted` puts it behind every other due job
--   running    leased until `locked_until` (a lease that ran out is reclaimed by `claim`)
--   failed     failed for good, kept until `expires_at`
-- Completed event jobs are deleted. `id` order is scheduling order.
CREATE TABLE "{schema}".jobs (
    id bigserial PRIMARY KEY,
    name text NOT NULL,
    kind text NOT NULL CHECK (kind IN ('event', 'recurrent')),
    params jsonb NOT NULL DEFAULT 'null',
    priority integer NOT NULL DEFAULT 1,
    run_at timestamptz NOT NULL,
    unique_identifier text,
    tries integer NOT NULL DEFAULT 0,
    state text NOT NULL CHECK (state IN ('scheduled', 'pending', 'running', 'failed')),
    demoted boolean NOT NULL DEFAULT false,
    lease_token text,
    locked_until timestamptz,
    locked_by text,
    last_error text,
    expires_at timestamptz,
    schedule_key text,
    created_at timestamptz NOT NULL DEFAULT date_trunc('milliseconds', now())
);

-- The claim index: due jobs only, in claim order per name. Scheduled, running and failed rows are
-- not in it, so a deep queue of future or failed jobs does not slow a claim.
CREATE INDEX jobs_claim ON "{schema}".jobs (name, demoted, priority DESC, run_at, id)
    WHERE state = 'pending';
-- Future jobs by run time, so promoting the due ones reads only those.
CREATE INDEX jobs_scheduled ON "{schema}".jobs (run_at) WHERE state = 'scheduled';
-- Leases by end, so reclaiming the ones that ran out reads only those.
CREATE INDEX jobs_leases ON "{schema}".jobs (locked_until) WHERE state = 'running';
-- Failed jobs by expiry, for pruning.
CREATE INDEX jobs_failed ON "{schema}".jobs (expires_at) WHERE state = 'failed';
-- A unique identifier is unique per name among live jobs; a failed job frees it.
CREATE UNIQUE INDEX jobs_unique ON "{schema}".jobs (name, unique_identifier)
    WHERE unique_identifier IS NOT NULL AND state <> 'failed';
-- One record per recurrent job name.
CREATE UNIQUE INDEX jobs_recurrent ON "{schema}".jobs (name) WHERE kind = 'recurrent';

CREATE TABLE "{schema}".executions (
    execution_id text PRIMARY KEY,
    job_id text NOT NULL,
    name text NOT NULL,
    kind text NOT NULL,
    priority integer NOT NULL,
    tries integer NOT NULL,
    unique_identifier text,
    params jsonb NOT NULL,
    started_at timestamptz NOT NULL,
    ended_at timestamptz NOT NULL,
    duration_ms bigint NOT NULL,
    status text NOT NULL,
    error text,
    result jsonb,
    worker_id text NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX executions_by_name ON "{schema}".executions (name, started_at DESC, execution_id DESC);
CREATE INDEX executions_expiry ON "{schema}".executions (expires_at);

-- Leases up to p_limit due jobs of the given names, each for its name's lease time, in claim
-- order. First makes due scheduled jobs pending and reclaims leases that ran out (demoted: their
-- execution went stale), all in one round trip.
CREATE FUNCTION "{schema}".claim(p_names text[], p_lock_ms bigint[], p_limit integer, p_worker text)
RETURNS TABLE (
    id bigint, name text, kind text, params jsonb, priority integer, run_at timestamptz,
    unique_identifier text, tries integer, locked_until timestamptz, locked_by text,
    lease_token text, schedule_key text, created_at timestamptz, was_stale boolean,
    claimed_at timestamptz
)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_now timestamptz := "{schema}".ms_now();
BEGIN
    UPDATE "{schema}".jobs j SET state = 'pending'
    WHERE j.id IN (
        SELECT s.id FROM "{schema}".jobs s
        WHERE s.state = 'scheduled' AND s.run_at <= v_now
        ORDER BY s.run_at LIMIT 10000 FOR UPDATE SKIP LOCKED);

    UPDATE "{schema}".jobs j SET state = 'pending', demoted = true
    WHERE j.id IN (
        SELECT s.id FROM "{schema}".jobs s
        WHERE s.state = 'running' AND s.locked_until <= v_now
        ORDER BY s.locked_until LIMIT 10000 FOR UPDATE SKIP LOCKED);

    RETURN QUERY
    WITH picked AS (
{claim_candidates}
    )
    UPDATE "{schema}".jobs j SET
        state = 'running',
        tries = j.tries + 1,
        demoted = false,
        lease_token = gen_random_uuid()::text,
        locked_until = v_now + p.lock_ms * interval '1 millisecond',
        locked_by = p_worker
    FROM picked p
    WHERE j.id = p.id
    RETURNING j.id, j.name, j.kind, j.params, j.priority, j.run_at, j.unique_identifier, j.tries,
        j.locked_until, j.locked_by, j.lease_token, j.schedule_key, j.created_at, p.stale, v_now;
END $$;

-- Wake-ups: one notification per statement that leaves a due job behind (a bulk insert sends
-- one, not one per row; PostgreSQL also folds identical notifications of one transaction).
CREATE FUNCTION "{schema}".notify_due() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM new_rows WHERE state = 'pending') THEN
        PERFORM pg_notify('{channel}', '');
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER jobs_notify_insert AFTER INSERT ON "{schema}".jobs
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION "{schema}".notify_due();
CREATE TRIGGER jobs_notify_update AFTER UPDATE ON "{schema}".jobs
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION "{schema}".notify_due();
