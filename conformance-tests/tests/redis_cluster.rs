//! The conformance suite on a Redis Cluster (`DOGS_REDIS_CLUSTER_URL`, 3 masters and 3 replicas
//! started by `scripts/test`), and what only a cluster needs shown.

use conformance_tests::redis::{find_cluster, RedisBackend};
use conformance_tests::redis_cluster as cluster;

fn main() {
    let url = find_cluster();
    let mut cases = conformance_tests::cases();
    if let Ok(url) = &url {
        cases.extend(cluster::cases(url));
    }
    conformance_tests::run_suite("redis_cluster", cases, || {
        Ok((RedisBackend::cluster(url?), ()))
    })
}
