//! The Redis backend of the suite: one key prefix per namespace, on one server or on a Redis
//! Cluster.

use std::sync::Arc;

use async_trait::async_trait;
use dogs_core::{JobStore, Result};
use dogs_redis::RedisStore;

use crate::backend::Backend;

/// The variable that names a Redis Cluster for the `redis_cluster` target, as a
/// `redis+cluster://host1:port1,host2:port2` URL (`scripts/test` starts one where `redis-server`
/// is installed: 3 masters and 3 replicas on loopback).
pub const CLUSTER_URL_VARIABLE: &str = "DOGS_REDIS_CLUSTER_URL";

/// The cluster URL of `DOGS_REDIS_CLUSTER_URL`, or why there is none (no container is started
/// for a cluster).
pub fn find_cluster() -> Result<String, String> {
    std::env::var(CLUSTER_URL_VARIABLE)
        .ok()
        .filter(|url| !url.trim().is_empty())
        .ok_or_else(|| {
            format!("{CLUSTER_URL_VARIABLE} is unset (scripts/test starts a local Redis Cluster where redis-server is installed)")
        })
}

/// Runs the suite on [`RedisStore`]s, each namespace a key prefix on the server (or cluster) at
/// `url`.
#[derive(Debug, Clone)]
pub struct RedisBackend {
    url: String,
    name: &'static str,
}

impl RedisBackend {
    /// The backend for the server at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        RedisBackend {
            url: url.into(),
            name: "redis",
        }
    }

    /// The backend for the Redis Cluster at `url` (a `redis+cluster://` URL), named
    /// `redis_cluster`.
    pub fn cluster(url: impl Into<String>) -> Self {
        RedisBackend {
            url: url.into(),
            name: "redis_cluster",
        }
    }
}

#[async_trait]
impl Backend for RedisBackend {
    fn name(&self) -> &'static str {
        self.name
    }

    async fn open(&self, namespace: &str) -> Result<Arc<dyn JobStore>> {
        let store = RedisStore::builder()
            .url(&self.url)
            .prefix(namespace)
            .connect()
            .await?;
        Ok(Arc::new(store))
    }

    async fn cleanup(&self, namespace: &str) -> Result<()> {
        RedisStore::builder()
            .url(&self.url)
            .prefix(namespace)
            .connect()
            .await?
            .remove_all()
            .await
    }
}

/// What only Redis needs shown, run with the suite on the same server: each case opens its own
/// [`RedisStore`] with the case's namespace as its prefix.
pub mod specific {
    use std::time::Duration;

    use dogs_core::prelude::*;
    use dogs_core::{ClaimRequest, Completion, ErrorKind, JobStore, NewJob, RunAt};
    use dogs_redis::redis;
    use dogs_redis::RedisStore;
    use serde_json::json;

    use crate::harness::{Case, TestContext};
    use crate::support::*;

    type CaseFuture = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

    /// The Redis-only cases, for the server at `url`.
    pub fn cases(url: &str) -> Vec<Case> {
        let case = |name: &'static str, run: fn(TestContext, String) -> CaseFuture| {
            let url = url.to_owned();
            Case::new(name, move |ctx| run(ctx, url.clone()))
        };
        vec![
            case("redis_claim_cost_is_flat", |c, u| {
                Box::pin(claim_cost_is_flat(c, u))
            }),
            case("redis_keys_share_one_slot", |c, u| {
                Box::pin(keys_share_one_slot(c, u))
            }),
            case("redis_subscriber_reconnects", |c, u| {
                Box::pin(subscriber_reconnects(c, u))
            }),
            case("redis_bad_connection", |c, u| {
                Box::pin(bad_connection(c, u))
            }),
            case("redis_batch_checks_before_writing", |c, u| {
                Box::pin(batch_checks_before_writing(c, u))
            }),
            case("redis_names_filled_from_older_layout", |c, u| {
                Box::pin(names_filled_from_older_layout(c, u))
            }),
            case("redis_failed_without_expiry_listed", |c, u| {
                Box::pin(failed_without_expiry_listed(c, u))
            }),
            case("redis_remove_all_takes_prefix_literally", |c, u| {
                Box::pin(remove_all_takes_prefix_literally(c, u))
            }),
        ]
    }

    async fn open(ctx: &TestContext, url: &str) -> RedisStore {
        RedisStore::builder()
            .url(url)
            .prefix(ctx.namespace())
            .connect()
            .await
            .unwrap()
    }

    /// `remove_all` removes the keys of its own prefix only, whatever characters the prefix
    /// holds: `*`, `?`, `[` and `\` are glob characters to `SCAN MATCH`, and must not reach
    /// other prefixes' keys.
    pub async fn remove_all_takes_prefix_literally(ctx: TestContext, url: String) {
        let ns = ctx.namespace();
        let connect = |prefix: String| {
            let url = url.clone();
            async move {
                RedisStore::builder()
                    .url(url)
                    .prefix(prefix)
                    .connect()
                    .await
                    .unwrap()
            }
        };
        let hostile = [
            format!("{ns}*"),
            format!("{ns}?"),
            format!("{ns}[xy]"),
            format!("{ns}\\"),
        ];
        let others = [
            ns.to_owned(),
            format!("{ns}x"),
            format!("{ns}y"),
            format!("{ns}xy"),
        ];
        let mut stores = Vec::new();
        for prefix in hostile.iter().chain(&others) {
            let store = connect(prefix.clone()).await;
            store
                .schedule(NewJob::new("kept", json!(prefix)))
                .await
                .unwrap();
            stores.push((prefix.clone(), store));
        }
        for (prefix, store) in &stores[..hostile.len()] {
            store.remove_all().await.unwrap();
            assert!(
                store
                    .list_jobs(&JobQuery::default())
                    .await
                    .unwrap()
                    .is_empty(),
                "{prefix}: its own jobs are removed"
            );
        }
        for (prefix, store) in &stores[hostile.len()..] {
            let jobs = store.list_jobs(&JobQuery::default()).await.unwrap();
            assert_eq!(
                jobs.len(),
                1,
                "removing the glob-like prefixes left prefix {prefix} alone"
            );
            store.remove_all().await.unwrap();
        }
    }

    /// Jobs stored by a version that kept no set of names (layout 3) are counted once a store
    /// of this version has connected: the set is filled from every job at connect.
    pub async fn names_filled_from_older_layout(ctx: TestContext, url: String) {
        let store = open(&ctx, &url).await;
        let jobs = (0..2500)
            .map(|i| NewJob::new(if i % 2 == 0 { "even" } else { "odd" }, json!(i)))
            .collect();
        for outcome in store.schedule_many(jobs).await.unwrap() {
            outcome.unwrap();
        }
        let mut conn = redis::Client::open(url.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let _: () = redis::pipe()
            .del(store.key_prefix().to_owned() + ":names")
            .set(store.key_prefix().to_owned() + ":layout", 3)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(store.count_jobs().await.unwrap().is_empty());
        let reopened = open(&ctx, &url).await;
        let counts = reopened.count_jobs().await.unwrap();
        let names: Vec<(&str, u64)> = counts
            .iter()
            .map(|c| (c.name.as_str(), c.pending))
            .collect();
        assert_eq!(names, vec![("even", 1250), ("odd", 1250)]);
        let layout: i64 = redis::cmd("GET")
            .arg(store.key_prefix().to_owned() + ":layout")
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(layout, 4);

        // From layout 2, each pass over the 2,500 jobs takes 3 steps of 1,000, once.
        let _: () = redis::cmd("SET")
            .arg(store.key_prefix().to_owned() + ":layout")
            .arg(2)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(store.migrate().await.unwrap(), 6);
        assert_eq!(store.migrate().await.unwrap(), 0, "the layout is current");

        // A layout of a later version is left as it is.
        let _: () = redis::cmd("SET")
            .arg(store.key_prefix().to_owned() + ":layout")
            .arg(5)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(store.migrate().await.unwrap(), 0);
        let layout: i64 = redis::cmd("GET")
            .arg(store.key_prefix().to_owned() + ":layout")
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(layout, 5, "a later layout is not lowered");
    }

    /// A failed job whose record has no end of retention (written by hand) is read as failed
    /// by every read: counted and listed alike.
    pub async fn failed_without_expiry_listed(ctx: TestContext, url: String) {
        let store = open(&ctx, &url).await;
        schedule_new(&store, NewJob::new("work", json!(1))).await;
        let claimed = claim_one(&store, "work", Duration::from_secs(30)).await;
        store
            .complete(
                &claimed.lease,
                Completion::Fail {
                    error: "x".into(),
                    retain_for: Duration::from_secs(60),
                },
            )
            .await
            .unwrap();
        let mut conn = redis::Client::open(url.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let _: () = redis::cmd("HDEL")
            .arg(format!(
                "{}:job:{}",
                store.key_prefix(),
                claimed.job.id.as_str()
            ))
            .arg("expires_at")
            .query_async(&mut conn)
            .await
            .unwrap();
        let failed = store.count_jobs().await.unwrap()[0].failed;
        let listed = store
            .list_jobs(&dogs_core::JobQuery::name("work").state(dogs_core::JobState::Failed))
            .await
            .unwrap();
        assert_eq!((failed, listed.len()), (1, 1));
    }

    /// Schedules `due` jobs due now and claims 5, returning the claim's command count.
    async fn claim_cost(store: &RedisStore, due: usize) -> u64 {
        let jobs = (0..due).map(|i| NewJob::new("work", json!(i))).collect();
        for outcome in store.schedule_many(jobs).await.unwrap() {
            outcome.unwrap();
        }
        let claimed = store
            .claim(&ClaimRequest::new(
                ["work", "other"],
                Duration::from_secs(30),
                5,
            ))
            .await
            .unwrap()
            .jobs;
        assert_eq!(claimed.len(), 5);
        let cost = store.last_claim_commands();
        for job in claimed {
            store
                .complete(&job.lease, Completion::Remove)
                .await
                .unwrap();
        }
        cost
    }

    /// A claim runs the same number of commands with 100,000 future and 1,000 failed jobs
    /// present as with none.
    pub async fn claim_cost_is_flat(ctx: TestContext, url: String) {
        let store = open(&ctx, &url).await;
        let empty = claim_cost(&store, 10).await;
        // The 5 left from the first round are claimed now; measure with fresh ones.
        let _ = store
            .claim(&ClaimRequest::new(["work"], Duration::from_secs(30), 100))
            .await
            .unwrap()
            .jobs;

        let future: Vec<NewJob> = (0..100_000)
            .map(|i| {
                NewJob::new("work", json!(i))
                    .run_at(RunAt::In(Duration::from_secs(3600 + i)))
                    .priority(if i % 2 == 0 { 100 } else { 1 })
            })
            .collect();
        for outcome in store.schedule_many(future).await.unwrap() {
            outcome.unwrap();
        }
        for _ in 0..1000 {
            store
                .schedule(NewJob::new("doomed", json!({})))
                .await
                .unwrap();
        }
        let doomed = store
            .claim(&ClaimRequest::new(
                ["doomed"],
                Duration::from_secs(30),
                1000,
            ))
            .await
            .unwrap()
            .jobs;
        for job in doomed {
            let fail = Completion::Fail {
                error: "x".into(),
                retain_for: Duration::from_secs(3600),
            };
            store.complete(&job.lease, fail).await.unwrap();
        }
        let deep = claim_cost(&store, 10).await;
        assert_eq!(
            deep, empty,
            "a claim costs {deep} commands with a deep queue, {empty} without"
        );
    }

    /// Every key of a store carries its prefix's hash tag, so a cluster keeps them in one slot.
    pub async fn keys_share_one_slot(ctx: TestContext, url: String) {
        let store = open(&ctx, &url).await;
        let job = EventJob::new("tagged", |_: (), _ctx: JobContext| async move { Ok(()) });
        let recurrent = RecurrentJob::new("tick", |_ctx: JobContext| async move { Ok(()) })
            .run_every(Duration::from_secs(60));
        let workers = start_workers(
            store.clone(),
            [job.definition(), recurrent.into()],
            fast_options(),
        )
        .await
        .unwrap();
        let done = schedule_job(
            &store,
            &job,
            &(),
            ScheduleOptions::now().unique_identifier("u"),
        )
        .await
        .unwrap();
        schedule_job(
            &store,
            &job,
            &(),
            ScheduleOptions::run_in(Duration::from_secs(600)),
        )
        .await
        .unwrap();
        wait_until("the job to run", DEADLINE, || async {
            store.get_job(done.id()).await.unwrap().is_none()
        })
        .await;
        workers.stop().await;

        let client = redis::Client::open(url.as_str()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("*{}*", ctx.namespace()))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(
            keys.len() >= 8,
            "jobs, indexes and executions were written: {keys:?}"
        );
        let tag = format!("{{{}}}:", ctx.namespace());
        for key in &keys {
            assert!(
                key.starts_with(&tag),
                "{key} does not start with the hash tag {tag}"
            );
        }
        assert_eq!(store.key_prefix(), format!("{{{}}}", ctx.namespace()));
    }

    /// When the pub/sub connection is killed, the store subscribes again and wake-ups work.
    pub async fn subscriber_reconnects(ctx: TestContext, url: String) {
        let store = open(&ctx, &url).await;
        let started = log::<u32>();
        let recorder = started.clone();
        let job = EventJob::new("wake", move |n: u32, _ctx: JobContext| {
            let recorder = recorder.clone();
            async move {
                push(&recorder, n);
                Ok(())
            }
        });
        let options = WorkerOptions {
            poll_interval: Duration::from_secs(60),
            ..fast_options()
        };
        let workers = start_workers(store.clone(), [job.definition()], options)
            .await
            .unwrap();
        let client = redis::Client::open(url.as_str()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let channel = format!("{{{}}}:wake", ctx.namespace());
        let subscribers = |mut conn: redis::aio::MultiplexedConnection, channel: String| async move {
            let counts: Vec<(String, i64)> = redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg(&channel)
                .query_async(&mut conn)
                .await
                .unwrap();
            counts.first().map(|(_, n)| *n).unwrap_or(0)
        };
        wait_until("the subscription", DEADLINE, || async {
            subscribers(conn.clone(), channel.clone()).await == 1
        })
        .await;
        // Kills every subscriber of the server; the others reconnect just as this one must.
        let killed: i64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("pubsub")
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(killed >= 1);
        wait_until("a new subscription", DEADLINE, || async {
            subscribers(conn.clone(), channel.clone()).await == 1
        })
        .await;
        let scheduled = tokio::time::Instant::now();
        schedule_job(&store, &job, &7, ScheduleOptions::now())
            .await
            .unwrap();
        wait_until("the job to start", Duration::from_secs(10), || async {
            read(&started) == vec![7]
        })
        .await;
        workers.stop().await;
        assert!(
            scheduled.elapsed() < Duration::from_secs(5),
            "woken, not polled"
        );
    }

    /// A URL that does not parse is `Config`; a server that cannot be reached is `Unavailable`,
    /// naming the address and never the password.
    pub async fn bad_connection(_ctx: TestContext, _url: String) {
        let error = RedisStore::connect("definitely not a url")
            .await
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Config, "{error}");
        let error = RedisStore::builder()
            .url("redis://:hunter2secret@127.0.0.1:1/0")
            .response_timeout(Duration::from_secs(1))
            .connect()
            .await
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");
        let shown = format!("{error} {error:?}");
        assert!(
            shown.contains("127.0.0.1:1"),
            "the address is named: {shown}"
        );
        assert!(
            !shown.contains("hunter2secret"),
            "the password is not: {shown}"
        );
        let error = RedisStore::builder()
            .url("redis://127.0.0.1")
            .prefix("a{b}")
            .connect()
            .await
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Config);
        let builder = RedisStore::builder().url("redis://:hunter2secret@cache/0");
        assert!(!format!("{builder:?}").contains("hunter2secret"));
    }

    /// A batch of outcomes in which one job's record is corrupt (its `tries` written by hand as
    /// text): the script checks every entry before it writes anything, so the good entries apply
    /// and report so, and the corrupt one changes nothing, instead of a script error after half
    /// the writes.
    pub async fn batch_checks_before_writing(ctx: TestContext, url: String) {
        let store = open(&ctx, &url).await;
        let ids = [
            schedule_new(&store, NewJob::new("batch", json!(1))).await,
            schedule_new(&store, NewJob::new("batch", json!(2))).await,
            schedule_new(&store, NewJob::new("batch", json!(3))).await,
        ];
        let claimed = claim(&store, "batch", Duration::from_secs(30), 3).await;
        assert_eq!(claimed.len(), 3);
        let corrupt = &claimed[1];
        let client = redis::Client::open(url.as_str()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let key = format!("{}:job:{}", store.key_prefix(), corrupt.job.id);
        let _: () = redis::cmd("HSET")
            .arg(&key)
            .arg("tries")
            .arg("many")
            .query_async(&mut conn)
            .await
            .unwrap();
        let finish = |job: &dogs_core::ClaimedJob, completion| dogs_core::Finish {
            lease: job.lease.clone(),
            completion,
            execution: None,
        };
        let outcomes = store
            .finish_many(vec![
                finish(&claimed[0], Completion::Remove),
                finish(corrupt, Completion::Release),
                finish(&claimed[2], Completion::Remove),
            ])
            .await
            .expect("the batch is answered entry by entry");
        let kinds: Vec<Option<ErrorKind>> = outcomes
            .iter()
            .map(|o| o.as_ref().err().map(|e| e.kind()))
            .collect();
        assert_eq!(kinds, vec![None, Some(ErrorKind::Corrupt), None]);
        assert!(store.get_job(&claimed[0].job.id).await.unwrap().is_none());
        assert!(store.get_job(&claimed[2].job.id).await.unwrap().is_none());
        let token: Option<String> = redis::cmd("HGET")
            .arg(&key)
            .arg("token")
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(
            token.as_deref(),
            Some(corrupt.lease.token.as_str()),
            "the corrupt entry changed nothing"
        );
        assert!(ids.contains(&corrupt.job.id));
    }
}
