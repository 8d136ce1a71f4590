//! The conformance suite on MongoDB, and what only MongoDB needs shown: `DOGS_MONGO_URL`, or a
//! container where Docker runs.

use conformance_tests::env::{find_server, Server};
use conformance_tests::mongo::{specific, MongoBackend};

fn main() {
    let server = find_server(Server::Mongo);
    let mut cases = conformance_tests::cases();
    if let Ok(server) = &server {
        cases.extend(specific::cases(&server.url));
    }
    conformance_tests::run_suite("mongo", cases, || {
        let server = server?;
        Ok((MongoBackend::new(server.url.clone()), server))
    })
}
