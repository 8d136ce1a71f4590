-- The dogs schema in one SQLite file: jobs, execution records, stored settings per job name,
-- and the counters that carry wake-ups from one process to the others.
-- Times are INTEGER milliseconds since the Unix epoch; params, results and progress JSON text.

-- One row per job. `state` is where the job stands:
--   scheduled  pending, run time in the future when last written
--   pending    due (claimable); `demoted` puts it behind every other due job
--   running    leased until `locked_until` (a lease that ran out is reclaimed by a claim)
--   failed     failed for good, kept until `expires_at`
-- Completed event jobs are deleted. `id` order is scheduling order (AUTOINCREMENT: an id is
-- never given twice, even after the newest job was deleted).
CREATE TABLE jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('event', 'recurrent')),
    params TEXT NOT NULL DEFAULT 'null',
    priority INTEGER NOT NULL DEFAULT 1,
    run_at INTEGER NOT NULL,
    unique_identifier TEXT,
    tries INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL CHECK (state IN ('scheduled', 'pending', 'running', 'failed')),
    demoted INTEGER NOT NULL DEFAULT 0,
    lease_token TEXT,
    locked_until INTEGER,
    locked_by TEXT,
    last_error TEXT,
    expires_at INTEGER,
    schedule_key TEXT,
    created_at INTEGER NOT NULL,
    progress TEXT,
    trace_context TEXT
) STRICT;

-- The claim index: due jobs only, in claim order per name. Scheduled, running and failed rows
-- are not in it, so a deep queue of future or failed jobs does not slow a claim.
CREATE INDEX jobs_claim ON jobs (name, demoted, priority DESC, run_at, id)
    WHERE state = 'pending';
-- Future jobs by name and run time: a claim promotes its names' due ones reading only those,
-- and finds the earliest to say when the next job is due.
CREATE INDEX jobs_scheduled_by_name ON jobs (name, run_at) WHERE state = 'scheduled';
-- Leases by name and end: a claim reclaims its names' leases that ran out reading only those,
-- counts live leases against concurrency limits, and finds the earliest lease end.
CREATE INDEX jobs_leases_by_name ON jobs (name, locked_until) WHERE state = 'running';
-- Failed jobs by expiry, for pruning; by name, for retrying and listing them.
CREATE INDEX jobs_failed ON jobs (expires_at) WHERE state = 'failed';
CREATE INDEX jobs_failed_by_name ON jobs (name, id) WHERE state = 'failed';
-- Jobs cancelled while they ran (dogs_core::CANCELLED_ERROR) by name and the end of the lease
-- they had: until then they count against their name's concurrency limit.
CREATE INDEX jobs_cancelling ON jobs (name, locked_until)
    WHERE state = 'failed' AND last_error = 'cancelled while running';
-- A unique identifier is unique per name among live jobs; a failed job frees it.
CREATE UNIQUE INDEX jobs_unique ON jobs (name, unique_identifier)
    WHERE unique_identifier IS NOT NULL AND state <> 'failed';
-- One record per recurrent job name.
CREATE UNIQUE INDEX jobs_recurrent ON jobs (name) WHERE kind = 'recurrent';
-- A name's jobs in scheduling order, a page at a time.
CREATE INDEX jobs_by_name ON jobs (name, id);

CREATE TABLE executions (
    execution_id TEXT PRIMARY KEY,
    job_id TEXT NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    priority INTEGER NOT NULL,
    tries INTEGER NOT NULL,
    unique_identifier TEXT,
    params TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    ended_at INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    result TEXT,
    worker_id TEXT NOT NULL,
    expires_at INTEGER NOT NULL
) STRICT;
CREATE INDEX executions_by_name ON executions (name, started_at DESC, execution_id DESC);
CREATE INDEX executions_expiry ON executions (expires_at);
CREATE INDEX executions_by_end ON executions (ended_at);

-- What is stored about a job name itself: paused, a limit of executions running at once.
CREATE TABLE names (
    name TEXT PRIMARY KEY,
    paused INTEGER NOT NULL DEFAULT 0,
    concurrency_limit INTEGER CHECK (concurrency_limit > 0)
) STRICT, WITHOUT ROWID;

-- Wake-ups across processes: a commit that leaves a job due or scheduled adds one to `due`, one
-- that cancels a running job adds one to `cancelled`. Each store watches `PRAGMA data_version`
-- and, when another connection committed, reads these to tell its idle workers.
CREATE TABLE signals (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    due INTEGER NOT NULL,
    cancelled INTEGER NOT NULL
) STRICT;
INSERT INTO signals (id, due, cancelled) VALUES (1, 0, 0);
