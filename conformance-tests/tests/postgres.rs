//! The conformance suite on PostgreSQL, and what only PostgreSQL offers: `DOGS_POSTGRES_URL`, or
//! a container where Docker runs.

use conformance_tests::env::{find_server, Server};
use conformance_tests::postgres::{specific, PostgresBackend};

fn main() {
    let server = find_server(Server::Postgres);
    let mut cases = conformance_tests::cases();
    if let Ok(server) = &server {
        cases.extend(specific::cases(&server.url));
    }
    conformance_tests::run_suite("postgres", cases, || {
        let server = server?;
        Ok((PostgresBackend::new(server.url.clone()), server))
    })
}
