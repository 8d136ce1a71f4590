-- The jobs a claim takes: per requested name, the first due jobs in claim order through the
-- jobs_claim index, at most that name's cap, merged and cut to the limit. Shared by the
-- claim_capped function and `PostgresStore::explain_claim`; {names}, {lock_ms}, {caps},
-- {limit} and {now} are its inputs.
SELECT c.id, w.lock_ms, (c.lease_token IS NOT NULL OR c.demoted) AS stale
FROM unnest({names}::text[], {lock_ms}::bigint[], {caps}::int[]) AS w(name, lock_ms, cap)
CROSS JOIN LATERAL (
    SELECT s.id, s.lease_token, s.demoted, s.priority, s.run_at
    FROM "{schema}".jobs s
    WHERE s.name = w.name AND s.state = 'pending' AND s.run_at <= {now}
    ORDER BY s.demoted, s.priority DESC, s.run_at, s.id
    LIMIT least({limit}, w.cap)
    FOR UPDATE SKIP LOCKED
) c
ORDER BY c.demoted, c.priority DESC, c.run_at, c.id
LIMIT {limit}
