//! What a pooler in transaction pooling mode in front of PostgreSQL (PgBouncer's
//! `pool_mode = transaction`) asks of the PostgreSQL store, run with the suite through one
//! (`tests/postgres_pgbouncer.rs`): that it is really in the path and really shared, that every
//! operation stays correct when many clients share few server connections, and that without a
//! direct URL for `LISTEN` workers poll.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use dogs_core::prelude::*;
use dogs_core::{ClaimRequest, Completion, Finish, JobQuery, JobStore, NewJob};
use dogs_postgres::sqlx::{self, Executor, Row};
use dogs_postgres::PostgresStore;
use serde_json::json;

use crate::harness::{Case, TestContext};
use crate::postgres::Target;
use crate::support::*;

/// Client connections a case holds at once: more than the pooler's pool of server connections
/// (`scripts/test` gives it 4), so they must share them.
const CLIENTS: u32 = 16;

/// The cases, for the PgBouncer at `pooler_url` in front of the server at `direct_url`.
pub fn cases(pooler_url: &str, direct_url: &str) -> Vec<Case> {
    let target = Target::through_pgbouncer(pooler_url, direct_url);
    let case = |name: &'static str, run: fn(TestContext, Target) -> CaseFuture| {
        let target = target.clone();
        Case::new(name, move |ctx| run(ctx, target.clone()))
    };
    vec![
        case("pgbouncer_shares_server_connections", |c, t| {
            Box::pin(shares_server_connections(c, t))
        }),
        case("pgbouncer_concurrent_operations", |c, t| {
            Box::pin(concurrent_operations(c, t))
        }),
        case("pgbouncer_polls_without_listen_url", |c, t| {
            Box::pin(polls_without_listen_url(c, t))
        }),
    ]
}

type CaseFuture = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// A store through the pooler, with `CLIENTS` connections.
async fn open(ctx: &TestContext, target: &Target) -> PostgresStore {
    target
        .builder(ctx.namespace())
        .max_connections(CLIENTS)
        .connect()
        .await
        .unwrap()
}

/// The store's connections lead to the pooler, not to the server: `CLIENTS` of them, held at
/// once, run their statements on fewer server connections (server processes) than that.
pub async fn shares_server_connections(ctx: TestContext, target: Target) {
    let store = open(&ctx, &target).await;
    let mut held = Vec::new();
    for _ in 0..CLIENTS {
        held.push(store.pool().acquire().await.unwrap());
    }
    let mut server_processes = BTreeSet::new();
    for conn in &mut held {
        // A simple query (no parameters): one exchange, so it may run anywhere.
        let row = conn.fetch_one("SELECT pg_backend_pid()").await.unwrap();
        server_processes.insert(row.get::<i32, _>(0));
    }
    assert!(
        server_processes.len() < held.len(),
        "{} client connections held at once ran on {} server processes: no pooler shares them \
         (its pool must be smaller than {CLIENTS})",
        held.len(),
        server_processes.len()
    );
}

/// Many more concurrent operations than the pooler has server connections, of every kind the
/// workers use (scheduling one and many, claiming, renewing leases, progress, finishing in
/// batches and one at a time, reads): each succeeds, and each job is claimed and finished
/// exactly once. A statement whose parts reached two server connections would fail here, or
/// run another client's statement.
pub async fn concurrent_operations(ctx: TestContext, target: Target) {
    let store = open(&ctx, &target).await;
    let another = Arc::new(open(&ctx, &target).await);
    let (schedulers, per_scheduler) = (12u64, 20u64);
    let total = schedulers * per_scheduler;
    let scheduling: Vec<_> = (0..schedulers)
        .map(|s| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..per_scheduler / 2 {
                    let n = s * per_scheduler + i;
                    let job = NewJob::new("shared", json!(n)).unique_identifier(format!("u{n}"));
                    schedule_new(&store, job).await;
                }
                let jobs = (per_scheduler / 2..per_scheduler)
                    .map(|i| NewJob::new("shared", json!(s * per_scheduler + i)))
                    .collect();
                for outcome in store.schedule_many(jobs).await.unwrap() {
                    outcome.unwrap();
                }
                store.count_jobs().await.unwrap();
            })
        })
        .collect();
    let finished = Arc::new(std::sync::Mutex::new(BTreeMap::<u64, u32>::new()));
    let claiming: Vec<_> = (0..8)
        .map(|c| {
            let store: Arc<dyn JobStore> = if c % 2 == 0 {
                Arc::new(store.clone())
            } else {
                another.clone()
            };
            let finished = finished.clone();
            tokio::spawn(async move {
                let request = ClaimRequest::new(["shared"], Duration::from_secs(30), 4)
                    .worker_id(format!("claimer-{c}"));
                let deadline = tokio::time::Instant::now() + DEADLINE;
                loop {
                    if finished.lock().unwrap().len() as u64 >= total {
                        return;
                    }
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "timed out after {DEADLINE:?} waiting for every job to be finished"
                    );
                    let jobs = store.claim(&request).await.unwrap().jobs;
                    if jobs.is_empty() {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        continue;
                    }
                    for job in &jobs {
                        store
                            .extend_lock(&job.lease, Duration::from_secs(30))
                            .await
                            .unwrap();
                        store
                            .set_progress(&job.lease, &json!({ "claimer": c }))
                            .await
                            .unwrap();
                        let read = store.get_job(&job.job.id).await.unwrap().unwrap();
                        assert_eq!(
                            read.params, job.job.params,
                            "the job read is the claimed one"
                        );
                    }
                    let (one, batch) = jobs.split_at(1);
                    store
                        .finish(&one[0].lease, Completion::Remove, None)
                        .await
                        .unwrap();
                    let finishes = batch
                        .iter()
                        .map(|job| Finish {
                            lease: job.lease.clone(),
                            completion: Completion::Remove,
                            execution: None,
                        })
                        .collect();
                    for outcome in store.finish_many(finishes).await.unwrap() {
                        outcome.unwrap();
                    }
                    let mut finished = finished.lock().unwrap();
                    for job in &jobs {
                        *finished
                            .entry(job.job.params.as_u64().unwrap())
                            .or_default() += 1;
                    }
                }
            })
        })
        .collect();
    for task in scheduling.into_iter().chain(claiming) {
        task.await.unwrap();
    }
    let finished = finished.lock().unwrap().clone();
    assert_eq!(
        finished.keys().copied().collect::<Vec<_>>(),
        (0..total).collect::<Vec<_>>(),
        "every job finished"
    );
    assert!(
        finished.values().all(|times| *times == 1),
        "each job once: {finished:?}"
    );
    assert!(
        store
            .list_jobs(&JobQuery::name("shared"))
            .await
            .unwrap()
            .is_empty(),
        "none left"
    );
}

/// Without a direct URL for `LISTEN`, the store offers no wake-ups and listens nowhere, and
/// workers still run every job, by polling.
pub async fn polls_without_listen_url(ctx: TestContext, target: Target) {
    let store = PostgresStore::builder()
        .url(target.url())
        .schema(ctx.namespace())
        .transaction_pooling(true)
        .max_connections(4)
        .connect()
        .await
        .unwrap();
    assert!(store.wakeups().is_none(), "no wake-ups without a session");
    let ran = log::<u32>();
    let recorder = ran.clone();
    let job = EventJob::new("polled", move |n: u32, _ctx: JobContext| {
        let recorder = recorder.clone();
        async move {
            push(&recorder, n);
            Ok(())
        }
    });
    let workers = start_workers(store.clone(), [job.definition()], fast_options())
        .await
        .unwrap();
    for n in 0..5 {
        schedule_job(&store, &job, &n, ScheduleOptions::now())
            .await
            .unwrap();
    }
    schedule_job(
        &store,
        &job,
        &5,
        ScheduleOptions::run_in(Duration::from_millis(300)),
    )
    .await
    .unwrap();
    wait_until("every job to run, polled", DEADLINE, || async {
        let mut ran = read(&ran);
        ran.sort_unstable();
        ran == vec![0, 1, 2, 3, 4, 5]
    })
    .await;
    workers.stop().await;
    let listening: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE query LIKE $1 || '%'")
            .bind(format!("LISTEN \"{}_wake\"", ctx.namespace()))
            .fetch_one(&target.server_pool().await)
            .await
            .unwrap();
    assert_eq!(listening, 0, "no session listens for the store");
}
