//! What only a Redis Cluster needs shown, run with the suite on the same cluster: prefixes spread
//! over masters, wake-ups on a shard channel, and writes that wait for a replica.

use std::time::Duration;

use dogs_core::prelude::*;
use dogs_core::{ErrorKind, JobStore, NewJob};
use dogs_redis::redis;
use dogs_redis::RedisStore;
use serde_json::json;

use dogs_core::ClaimRequest;

use crate::harness::{Case, TestContext};
use crate::support::*;

type CaseFuture = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

const DEADLINE: Duration = Duration::from_secs(20);

/// The cluster-only cases, for the cluster at `url` (a `redis+cluster://` URL).
pub fn cases(url: &str) -> Vec<Case> {
    let case = |name: &'static str, run: fn(TestContext, String) -> CaseFuture| {
        let url = url.to_owned();
        Case::new(name, move |ctx| run(ctx, url.clone()))
    };
    vec![
        case("redis_cluster_prefixes_spread", |c, u| {
            Box::pin(prefixes_spread(c, u))
        }),
        case("redis_cluster_shard_channel_wakeups", |c, u| {
            Box::pin(shard_channel_wakeups(c, u))
        }),
        case("redis_cluster_writes_wait_for_replica", |c, u| {
            Box::pin(writes_wait_for_replica(c, u))
        }),
        case("redis_cluster_replica_cut_off", |c, u| {
            Box::pin(replica_cut_off(c, u))
        }),
    ]
}

/// The `host:port` of each node of a `redis+cluster://host1:port1,host2:port2` URL.
pub fn cluster_nodes(url: &str) -> Vec<String> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    let hosts = authority
        .rsplit_once('@')
        .map_or(authority, |(_, hosts)| hosts);
    hosts.split(',').map(str::to_owned).collect()
}

/// A connection to one node (`host:port`), not following the cluster's redirections.
pub async fn node_connection(address: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(format!("redis://{address}"))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// What `INFO replication` says on `conn` (empty when the node does not answer).
pub async fn replication(conn: &mut redis::aio::MultiplexedConnection) -> String {
    redis::cmd("INFO")
        .arg("replication")
        .query_async(conn)
        .await
        .unwrap_or_default()
}

/// Who serves the slot of `key`: its master's and its replicas' `host:port`.
pub async fn slot_owners(url: &str, key: &str) -> (String, Vec<String>) {
    let mut conn = node_connection(&cluster_nodes(url)[0]).await;
    let slot: i64 = redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(key)
        .query_async(&mut conn)
        .await
        .unwrap();
    let ranges: Vec<redis::Value> = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query_async(&mut conn)
        .await
        .unwrap();
    let address = |node: &redis::Value| -> String {
        let (host, port): (String, i64) = match node {
            redis::Value::Array(fields) => (
                redis::from_redis_value(fields[0].clone()).unwrap(),
                redis::from_redis_value(fields[1].clone()).unwrap(),
            ),
            other => panic!("unexpected CLUSTER SLOTS node {other:?}"),
        };
        format!("{host}:{port}")
    };
    for range in ranges {
        let redis::Value::Array(fields) = range else {
            panic!("unexpected CLUSTER SLOTS reply");
        };
        let start: i64 = redis::from_redis_value(fields[0].clone()).unwrap();
        let end: i64 = redis::from_redis_value(fields[1].clone()).unwrap();
        if (start..=end).contains(&slot) {
            let master = address(&fields[2]);
            let replicas = fields[3..].iter().map(address).collect();
            return (master, replicas);
        }
    }
    panic!("no node serves slot {slot}");
}

async fn open(url: &str, prefix: &str) -> RedisStore {
    RedisStore::builder()
        .url(url)
        .prefix(prefix)
        .connect()
        .await
        .unwrap()
}

/// Two prefixes whose slots two different masters own each hold and drain their own jobs: a
/// deployment spreads its job names over prefixes to spread load over masters.
pub async fn prefixes_spread(ctx: TestContext, url: String) {
    let first = format!("{}_0", ctx.namespace());
    let (first_master, _) = slot_owners(&url, &format!("{{{first}}}:seq")).await;
    let mut second = None;
    for i in 1..64 {
        let prefix = format!("{}_{i}", ctx.namespace());
        let (master, _) = slot_owners(&url, &format!("{{{prefix}}}:seq")).await;
        if master != first_master {
            second = Some((prefix, master));
            break;
        }
    }
    let (second, second_master) = second.expect("a prefix on another master");
    let stores = [open(&url, &first).await, open(&url, &second).await];
    let done = log::<(usize, u32)>();
    let mut workers = Vec::new();
    for (index, store) in stores.iter().enumerate() {
        let recorder = done.clone();
        let job = EventJob::new("spread", move |n: u32, _ctx: JobContext| {
            let recorder = recorder.clone();
            async move {
                push(&recorder, (index, n));
                Ok(())
            }
        });
        let jobs = (0..50).map(|n| NewJob::new("spread", json!(n))).collect();
        for outcome in store.schedule_many(jobs).await.unwrap() {
            outcome.unwrap();
        }
        workers.push(
            start_workers(store.clone(), [job.definition()], fast_options())
                .await
                .unwrap(),
        );
    }
    wait_until("both prefixes drained", DEADLINE, || async {
        read(&done).len() == 100
    })
    .await;
    for workers in workers {
        workers.stop().await;
    }
    let mut runs = read(&done);
    assert_eq!(runs.len(), 100, "100 runs in all");
    runs.sort_unstable();
    runs.dedup();
    assert_eq!(runs.len(), 100, "every job ran once");
    // Each prefix's keys live on its own master.
    for (prefix, master) in [(&first, &first_master), (&second, &second_master)] {
        let mut conn = node_connection(master).await;
        let exists: i64 = redis::cmd("EXISTS")
            .arg(format!("{{{prefix}}}:seq"))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(exists, 1, "{prefix}'s keys are on {master}");
    }
    assert_ne!(first_master, second_master);
    for store in stores {
        store.remove_all().await.unwrap();
    }
}

/// Wake-ups travel on a shard channel of the prefix's slot (`SSUBSCRIBE`/`SPUBLISH`), not on a
/// channel every node forwards: the store subscribes on the slot's master, and a job stored by
/// another handle wakes it.
pub async fn shard_channel_wakeups(ctx: TestContext, url: String) {
    let store = open(&url, ctx.namespace()).await;
    assert!(store.is_cluster());
    let mut wakeups = store.wakeups().expect("a cluster store has wake-ups");
    let channel = format!("{{{}}}:wake", ctx.namespace());
    let (master, _) = slot_owners(&url, &channel).await;
    let conn = node_connection(&master).await;
    let count = |kind: &'static str| {
        let mut conn = conn.clone();
        let channel = channel.clone();
        async move {
            let counts: Vec<(String, i64)> = redis::cmd("PUBSUB")
                .arg(kind)
                .arg(&channel)
                .query_async(&mut conn)
                .await
                .unwrap();
            counts.first().map(|(_, n)| *n).unwrap_or(0)
        }
    };
    wait_until("the shard channel subscription", DEADLINE, || async {
        count("SHARDNUMSUB").await == 1
    })
    .await;
    // The subscriber wakes everyone once it has subscribed: that notice first.
    tokio::time::timeout(DEADLINE, wakeups.wait())
        .await
        .expect("the subscriber wakes the store once subscribed");
    wakeups.mark_seen();
    for address in cluster_nodes(&url) {
        let mut conn = node_connection(&address).await;
        let counts: Vec<(String, i64)> = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(&channel)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(
            counts.first().map(|(_, n)| *n).unwrap_or(0),
            0,
            "no classic channel subscription on {address}"
        );
    }
    let other = open(&url, ctx.namespace()).await;
    other
        .schedule(NewJob::new("woken", json!(null)))
        .await
        .unwrap();
    tokio::time::timeout(DEADLINE, wakeups.wait())
        .await
        .expect("a job stored by another handle wakes the store");
}

/// With `wait_for_replicas`, a write the store acknowledged is on the slot's replica when the
/// call returns; asking for more replicas than the shard has fails with `Unavailable`, the write
/// being on the master only (nothing already stored is lost). A nonsensical setting is a
/// `Config` error.
pub async fn writes_wait_for_replica(ctx: TestContext, url: String) {
    let store = RedisStore::builder()
        .url(&url)
        .prefix(ctx.namespace())
        .wait_for_replicas(1, Duration::from_secs(2))
        .connect()
        .await
        .unwrap();
    let (_, replicas) = slot_owners(&url, &format!("{}:seq", store.key_prefix())).await;
    let mut replica = node_connection(&replicas[0]).await;
    let _: () = redis::cmd("READONLY")
        .query_async(&mut replica)
        .await
        .unwrap();
    for n in 0..20 {
        let id = store
            .schedule(NewJob::new("replicated", json!(n)))
            .await
            .unwrap()
            .id()
            .clone();
        let on_replica: i64 = redis::cmd("EXISTS")
            .arg(format!("{}:job:{id}", store.key_prefix()))
            .query_async(&mut replica)
            .await
            .unwrap();
        assert_eq!(
            on_replica, 1,
            "job {id} is on the replica when schedule returns"
        );
    }
    // Claims and outcomes wait too: the job is gone from the replica once complete returns.
    let claimed = claim_one(&store, "replicated", Duration::from_secs(30)).await;
    store
        .complete(&claimed.lease, dogs_core::Completion::Remove)
        .await
        .unwrap();
    let on_replica: i64 = redis::cmd("EXISTS")
        .arg(format!(
            "{}:job:{}",
            store.key_prefix(),
            claimed.lease.job_id.as_str()
        ))
        .query_async(&mut replica)
        .await
        .unwrap();
    assert_eq!(on_replica, 0, "the completion is on the replica");

    let greedy = RedisStore::builder()
        .url(&url)
        .prefix(ctx.namespace())
        .wait_for_replicas(
            u32::try_from(replicas.len() + 1).unwrap(),
            Duration::from_millis(200),
        )
        .connect()
        .await;
    // Connecting runs the layout migration, which does not wait: it can run again.
    let greedy = greedy.unwrap();
    let error = greedy
        .schedule(NewJob::new("unconfirmed", json!(1)))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unavailable);
    let stored = store
        .list_jobs(&dogs_core::JobQuery::name("unconfirmed"))
        .await
        .unwrap();
    assert_eq!(stored.len(), 1, "the unconfirmed write is on the master");

    for (replicas, timeout) in [
        (0, Duration::from_secs(1)),
        (1, Duration::ZERO),
        (1, Duration::MAX),
    ] {
        let error = RedisStore::builder()
            .url(&url)
            .prefix(ctx.namespace())
            .wait_for_replicas(replicas, timeout)
            .connect()
            .await
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Config);
    }
}

/// Cuts a replica off from its master (it cannot resync: its master password is wrong) until
/// dropped, which lets it resync. The master goes on accepting writes meanwhile.
pub struct CutOff {
    replica: String,
}

impl CutOff {
    /// Cuts `replica` off from `master` (both `host:port`) and waits until the master sees no
    /// replica.
    pub async fn new(master: &str, replica: &str) -> CutOff {
        let mut replica_conn = node_connection(replica).await;
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("masterauth")
            .arg("not-the-password")
            .query_async(&mut replica_conn)
            .await
            .unwrap();
        let cut = CutOff {
            replica: replica.to_owned(),
        };
        let master_conn = node_connection(master).await;
        wait_until("the master has no replica", DEADLINE, || {
            let mut conn = master_conn.clone();
            async move {
                let _: redis::RedisResult<i64> = redis::cmd("CLIENT")
                    .arg("KILL")
                    .arg("TYPE")
                    .arg("replica")
                    .query_async(&mut conn)
                    .await;
                replication(&mut conn).await.contains("connected_slaves:0")
            }
        })
        .await;
        cut
    }
}

impl Drop for CutOff {
    fn drop(&mut self) {
        let restored = redis::Client::open(format!("redis://{}", self.replica))
            .and_then(|client| client.get_connection())
            .and_then(|mut conn| {
                redis::cmd("CONFIG")
                    .arg("SET")
                    .arg("masterauth")
                    .arg("")
                    .query::<()>(&mut conn)
            });
        if let Err(e) = restored {
            eprintln!("restoring the replica {} failed: {e}", self.replica);
        }
    }
}

/// While the prefix's replica is cut off, a store that waits for it refuses writes with
/// `Unavailable`; a claim it refuses leaves its job as it was (pending, no try counted), so an
/// outage longer than `max_tries` leases cannot fail a job that never ran. Once the replica is
/// back, everything works again.
pub async fn replica_cut_off(ctx: TestContext, url: String) {
    let plain = open(&url, ctx.namespace()).await;
    let held = plain
        .schedule(NewJob::new("held", json!(1)))
        .await
        .unwrap()
        .id()
        .clone();
    let waiting = RedisStore::builder()
        .url(&url)
        .prefix(ctx.namespace())
        .wait_for_replicas(1, Duration::from_millis(300))
        .connect()
        .await
        .unwrap();
    let (master, replicas) = slot_owners(&url, &format!("{}:seq", plain.key_prefix())).await;
    let cut = CutOff::new(&master, &replicas[0]).await;
    let error = waiting
        .schedule(NewJob::new("unconfirmed", json!(2)))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unavailable);
    for _ in 0..3 {
        let error = waiting
            .claim(&ClaimRequest::new(["held"], Duration::from_secs(60), 10).worker_id("cut"))
            .await
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Unavailable);
    }
    let job = plain.get_job(&held).await.unwrap().unwrap();
    assert_eq!(
        (job.state, job.tries),
        (dogs_core::JobState::Pending, 0),
        "a refused claim leases nothing and counts no try"
    );
    drop(cut);
    let (_, replicas) = slot_owners(&url, &format!("{}:seq", plain.key_prefix())).await;
    let replica = replicas[0].clone();
    wait_until("the replica is back in sync", DEADLINE, || {
        let replica = replica.clone();
        async move {
            let mut conn = node_connection(&replica).await;
            replication(&mut conn)
                .await
                .contains("master_link_status:up")
        }
    })
    .await;
    waiting
        .schedule(NewJob::new("confirmed", json!(3)))
        .await
        .unwrap();
    let claimed = claim_one(&waiting, "held", Duration::from_secs(30)).await;
    assert_eq!(claimed.job.tries, 1);
}
