//! The conformance suite on Redis: `DOGS_REDIS_URL`, or a container where Docker runs.

use conformance_tests::env::{find_server, Server};
use conformance_tests::redis::RedisBackend;

fn main() {
    conformance_tests::run_suite("redis", conformance_tests::cases(), || {
        let server = find_server(Server::Redis)?;
        Ok((RedisBackend::new(server.url.clone()), server))
    })
}
