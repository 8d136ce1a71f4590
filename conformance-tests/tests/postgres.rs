//! The conformance suite on PostgreSQL: `DOGS_POSTGRES_URL`, or a container where Docker runs.

use conformance_tests::env::{find_server, Server};
use conformance_tests::postgres::PostgresBackend;

fn main() {
    conformance_tests::run_suite("postgres", conformance_tests::cases(), || {
        let server = find_server(Server::Postgres)?;
        Ok((PostgresBackend::new(server.url.clone()), server))
    })
}
