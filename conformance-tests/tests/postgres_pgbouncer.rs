//! The conformance suite on PostgreSQL through PgBouncer in transaction pooling mode
//! (`DOGS_PGBOUNCER_URL`, in front of the server of `DOGS_POSTGRES_URL`): stores connect through
//! the pooler and listen for wake-ups on the server itself. Then the PostgreSQL cases that make
//! sense through a pooler, and what only a pooler asks.

use conformance_tests::env::find_pgbouncer;
use conformance_tests::postgres::{specific, PostgresBackend};

fn main() {
    let server = find_pgbouncer();
    let mut cases = conformance_tests::cases();
    if let Ok(server) = &server {
        cases.extend(specific::pooled_cases(
            &server.pooler_url,
            &server.direct_url,
        ));
        cases.extend(conformance_tests::pgbouncer::cases(
            &server.pooler_url,
            &server.direct_url,
        ));
    }
    conformance_tests::run_suite("postgres_pgbouncer", cases, || {
        let server = server?;
        Ok((
            PostgresBackend::through_pgbouncer(server.pooler_url, server.direct_url),
            (),
        ))
    })
}
