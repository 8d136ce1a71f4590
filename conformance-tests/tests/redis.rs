//! The conformance suite on Redis, and what only Redis needs shown: `DOGS_REDIS_URL`, or a
//! container where Docker runs.

use conformance_tests::env::{find_server, Server};
use conformance_tests::redis::{specific, RedisBackend};

fn main() {
    let server = find_server(Server::Redis);
    let mut cases = conformance_tests::cases();
    if let Ok(server) = &server {
        cases.extend(specific::cases(&server.url));
    }
    conformance_tests::run_suite("redis", cases, || {
        let server = server?;
        Ok((RedisBackend::new(server.url.clone()), server))
    })
}
