//! What only SQLite does: each case works on the file of its namespace, with stores and raw
//! connections of its own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dogs_core::prelude::*;
use dogs_core::{
    ClaimRequest, Completion, ErrorKind, ExecutionQuery, ExecutionStatus, Finish, JobQuery,
    JobState, JobStore, NewJob,
};
use dogs_sqlite::sqlx::sqlite::SqliteConnectOptions;
use dogs_sqlite::sqlx::{self, ConnectOptions, Executor, SqliteConnection};
use dogs_sqlite::SqliteStore;
use serde_json::json;

use super::{db_path, remove_db};
use crate::harness::{Case, TestContext};
use crate::support::*;

pub(super) const LEASE: Duration = Duration::from_secs(30);

/// A successful execution record of the job `id`.
pub(super) fn record(
    id: &dogs_core::JobId,
    name: &str,
    execution_id: &str,
) -> dogs_core::Execution {
    crate::store_suite::execution(
        id,
        name,
        execution_id,
        ExecutionStatus::Success,
        chrono::Utc::now(),
    )
}

/// The SQLite-only cases.
pub fn cases() -> Vec<Case> {
    vec![
        Case::new("sqlite_claim_uses_its_index", claim_uses_its_index),
        Case::new("sqlite_several_handles_one_file", several_handles_one_file),
        Case::new("sqlite_busy_is_retried", busy_is_retried),
        Case::new("sqlite_in_memory_mode", in_memory_mode),
        Case::new("sqlite_bad_config", bad_config),
        Case::new("sqlite_concurrent_opens", concurrent_opens),
        Case::new("sqlite_matches_memory", super::differential::matches_memory),
        Case::new(
            "sqlite_claim_of_600_names",
            super::edges::claim_of_600_names,
        ),
        Case::new(
            "sqlite_claim_beside_unreadable_times",
            super::edges::claim_beside_unreadable_times,
        ),
        Case::new(
            "sqlite_retry_of_a_failure_named_cancelled",
            super::edges::retry_of_a_failure_named_cancelled,
        ),
        Case::new(
            "sqlite_memory_path_is_in_memory",
            super::edges::memory_path_is_in_memory,
        ),
        Case::new(
            "sqlite_schedule_outlives_its_runtime",
            super::edges::schedule_outlives_its_runtime,
        ),
        Case::new(
            "sqlite_schedule_given_up_is_not_stored",
            super::edges::schedule_given_up_is_not_stored,
        ),
        Case::new(
            "sqlite_wakeup_beside_own_cancel",
            super::edges::wakeup_beside_own_cancel,
        ),
        Case::new("sqlite_job_ids_run_out", super::edges::job_ids_run_out),
        Case::new(
            "sqlite_newer_schema_is_refused",
            super::edges::newer_schema_is_refused,
        ),
        Case::new(
            "sqlite_remove_all_beside_another_process",
            super::edges::remove_all_beside_another_process,
        ),
    ]
}

/// A connection of its own to the namespace's file, as another program would open it.
pub(super) async fn raw(ctx: &TestContext) -> SqliteConnection {
    SqliteConnectOptions::new()
        .filename(db_path(ctx.namespace()))
        .busy_timeout(Duration::from_secs(10))
        .connect()
        .await
        .unwrap()
}

pub(super) async fn exec(conn: &mut SqliteConnection, sql: &str) {
    conn.execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Checks the claim's plans: every read of `jobs` goes through an index (no `SCAN` of the
/// table or of a whole index), and each statement through the index made for it.
fn check_plan(plan: &str) {
    let mut statement = "";
    for line in plan.lines() {
        if !line.starts_with(' ') {
            statement = line;
            continue;
        }
        let step = line.trim();
        assert!(
            !(step.starts_with("SCAN jobs") || step.starts_with("SCAN j ")),
            "{statement} scans the jobs: {step}\n{plan}"
        );
    }
    for (statement, index) in [
        ("promote:", "jobs_scheduled_by_name"),
        ("reclaim:", "jobs_leases_by_name"),
        ("live:", "jobs_leases_by_name"),
        ("live:", "jobs_cancelling"),
        ("candidates:", "jobs_claim"),
        ("next_due:", "jobs_claim"),
        ("next_due:", "jobs_scheduled_by_name"),
        ("next_due:", "jobs_leases_by_name"),
    ] {
        let section: String = plan
            .split_inclusive('\n')
            .skip_while(|line| *line != format!("{statement}\n"))
            .skip(1)
            .take_while(|line| line.starts_with(' '))
            .collect();
        assert!(
            section.contains(index),
            "{statement} reads {index}:\n{plan}"
        );
    }
}

/// With a million future jobs (and failed and running ones) stored, the claim's
/// statements read their indexes and scan no table, and a claim returns the one due job.
pub async fn claim_uses_its_index(ctx: TestContext) {
    let store = ctx.store();
    let now = store_now(&*store).await.timestamp_millis();
    let mut conn = raw(&ctx).await;
    exec(&mut conn, "BEGIN IMMEDIATE").await;
    sqlx::query(
        "WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < 1000000)
         INSERT INTO jobs (name, kind, params, priority, run_at, state, created_at)
         SELECT CASE WHEN x % 2 = 0 THEN 'work' ELSE 'other' END, 'event', '{}', x % 5,
                ?1 + 3600000 + x * 1000, 'scheduled', ?1
         FROM g",
    )
    .bind(now)
    .execute(&mut conn)
    .await
    .unwrap();
    sqlx::query(
        "WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < 20000)
         INSERT INTO jobs (name, kind, params, run_at, state, last_error, expires_at, created_at)
         SELECT 'work', 'event', '{}', ?1, 'failed', 'x', ?1 + 86400000, ?1 FROM g",
    )
    .bind(now)
    .execute(&mut conn)
    .await
    .unwrap();
    exec(&mut conn, "COMMIT").await;
    // And through the store's bulk path: future jobs, and leases of live claims.
    let later = chrono::Duration::hours(2);
    for chunk in 0..4 {
        let jobs = (0..5000)
            .map(|i| {
                NewJob::new("work", json!({"chunk": chunk, "i": i})).run_at(RunAt::At(
                    dogs_core::truncate_millis(chrono::Utc::now() + later),
                ))
            })
            .collect();
        for outcome in store.schedule_many(jobs).await.unwrap() {
            outcome.unwrap();
        }
    }
    let due = schedule_new(&*store, NewJob::new("work", json!("due")).priority(0)).await;
    let running = schedule_new(&*store, NewJob::new("work", json!("running"))).await;
    // The highest priority first: the running one.
    let leased = claim_one(&*store, "work", LEASE).await;
    assert_eq!(leased.job.id, running);

    let sqlite = SqliteStore::open(db_path(ctx.namespace())).await.unwrap();
    let plan = sqlite.explain_claim(&["work", "other"], 32).await.unwrap();
    check_plan(&plan);
    exec(&mut conn, "ANALYZE").await;
    let sqlite = SqliteStore::open(db_path(ctx.namespace())).await.unwrap();
    let plan = sqlite.explain_claim(&["work", "other"], 32).await.unwrap();
    check_plan(&plan);

    let started = std::time::Instant::now();
    let claimed = store
        .claim(&ClaimRequest::new(["work", "other"], LEASE, 100))
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(
        claimed.jobs.iter().map(|c| &c.job.id).collect::<Vec<_>>(),
        vec![&due],
        "exactly the due job, among a million future ones"
    );
    assert!(
        took < Duration::from_secs(5),
        "a claim among a million future jobs took {took:?}"
    );
    let empty = store
        .claim(&ClaimRequest::new(["work", "other"], LEASE, 100))
        .await
        .unwrap();
    assert!(empty.jobs.is_empty());
    assert_eq!(
        empty.next_due,
        Some(leased.locked_until.min(claimed.jobs[0].locked_until)),
        "the next due is the earliest lease end"
    );
}

/// Two stores opened independently on one file (as two processes): a wake-up of one's
/// write reaches the other's workers, and racing claimers of both take every job exactly
/// once.
pub async fn several_handles_one_file(ctx: TestContext) {
    let a = ctx.store();
    let b: Arc<dyn JobStore> = Arc::new(SqliteStore::open(db_path(ctx.namespace())).await.unwrap());
    let mut wakeups = a.wakeups().expect("the SQLite store wakes workers");
    wakeups.mark_seen();
    // The poller tells once that it started (what happened before was not seen).
    tokio::time::timeout(DEADLINE, wakeups.wait())
        .await
        .expect("the poller starts");
    wakeups.mark_seen();
    let scheduled = std::time::Instant::now();
    let only = schedule_new(&*b, NewJob::new("shared", json!("one"))).await;
    tokio::time::timeout(DEADLINE, wakeups.wait())
        .await
        .expect("a write of the other store wakes this one's workers");
    assert!(
        scheduled.elapsed() < Duration::from_secs(2),
        "woken within the poll interval, not {:?}",
        scheduled.elapsed()
    );

    let claimers = (0..8).map(|i| {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        tokio::spawn(async move {
            store
                .claim(&ClaimRequest::new(["shared"], LEASE, 1))
                .await
                .unwrap()
                .jobs
        })
    });
    let won: Vec<_> = futures::future::join_all(claimers)
        .await
        .into_iter()
        .flat_map(|r| r.unwrap())
        .collect();
    assert_eq!(won.len(), 1, "one claimer wins the job");
    assert_eq!(won[0].job.id, only);
    a.complete(&won[0].lease, Completion::Remove).await.unwrap();

    let total = 300usize;
    let jobs = (0..total).map(|i| NewJob::new("many", json!(i))).collect();
    for outcome in b.schedule_many(jobs).await.unwrap() {
        outcome.unwrap();
    }
    let seen = Arc::new(Mutex::new(HashMap::<u64, usize>::new()));
    let claimers: Vec<_> = (0..8)
        .map(|i| {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            let seen = seen.clone();
            tokio::spawn(async move {
                loop {
                    let jobs = store
                        .claim(&ClaimRequest::new(["many"], LEASE, 5))
                        .await
                        .unwrap()
                        .jobs;
                    if jobs.is_empty() {
                        return;
                    }
                    let finishes = jobs
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
                    let mut seen = seen.lock().unwrap();
                    for job in jobs {
                        *seen.entry(job.job.params.as_u64().unwrap()).or_default() += 1;
                    }
                }
            })
        })
        .collect();
    for claimer in claimers {
        claimer.await.unwrap();
    }
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), total, "every job is claimed");
    assert!(seen.values().all(|n| *n == 1), "each exactly once");
}

/// While another connection holds the write lock, writes wait and then succeed: with the
/// default busy timeout (SQLite waits), with a short one (the store tries again), and a
/// store whose request timeout ends first fails with `Unavailable` having changed nothing.
pub async fn busy_is_retried(ctx: TestContext) {
    let store = ctx.store();
    let path = db_path(ctx.namespace());
    let short: Arc<dyn JobStore> = Arc::new(
        SqliteStore::builder()
            .path(&path)
            .busy_timeout(Duration::from_millis(20))
            .connect()
            .await
            .unwrap(),
    );
    let impatient: Arc<dyn JobStore> = Arc::new(
        SqliteStore::builder()
            .path(&path)
            // Longer than the request timeout: cut to it.
            .busy_timeout(Duration::from_secs(10))
            .request_timeout(Duration::from_millis(300))
            .connect()
            .await
            .unwrap(),
    );
    let mut locker = raw(&ctx).await;
    for (case, writer) in [("default", store.clone()), ("short busy timeout", short)] {
        let id = schedule_new(&*store, NewJob::new("busy", json!(case))).await;
        let claimed = claim_one(&*store, "busy", LEASE).await;
        let record = record(&id, "busy", case);
        exec(&mut locker, "BEGIN IMMEDIATE").await;
        let lease = claimed.lease.clone();
        let finishing = {
            let record = record.clone();
            tokio::spawn(async move {
                writer
                    .finish(&lease, Completion::Remove, Some(&record))
                    .await
            })
        };
        // The lock is held on purpose for a second: the write must wait for it.
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(
            !finishing.is_finished(),
            "{case}: the write waits for the lock"
        );
        assert_eq!(
            store.get_job(&id).await.unwrap().map(|j| j.state),
            Some(JobState::Running),
            "{case}: reads go on meanwhile"
        );
        exec(&mut locker, "ROLLBACK").await;
        tokio::time::timeout(DEADLINE, finishing)
            .await
            .expect("the write ends once the lock is released")
            .unwrap()
            .unwrap_or_else(|e| panic!("{case}: a write that waited for the lock failed: {e}"));
        assert!(store.get_job(&id).await.unwrap().is_none(), "{case}");
        assert_eq!(
            store
                .executions(&ExecutionQuery::name("busy").job_id(id.clone()))
                .await
                .unwrap(),
            vec![record],
            "{case}: the record is stored with it"
        );
    }

    let id = schedule_new(&*store, NewJob::new("busy", json!("impatient"))).await;
    let claimed = claim_one(&*store, "busy", LEASE).await;
    exec(&mut locker, "BEGIN IMMEDIATE").await;
    let asked = std::time::Instant::now();
    let refused = impatient
        .finish(&claimed.lease, Completion::Remove, None)
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::Unavailable, "{refused}");
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "refused within about its request timeout, not after {:?}",
        asked.elapsed()
    );
    exec(&mut locker, "ROLLBACK").await;
    let job = store
        .get_job(&id)
        .await
        .unwrap()
        .expect("nothing was changed");
    assert_eq!(job.state, JobState::Running);
    store
        .complete(&claimed.lease, Completion::Remove)
        .await
        .expect("the lease is still current");
}

/// A store in memory works end to end: clones share it, workers run its jobs, and another
/// store in memory is another database.
pub async fn in_memory_mode(_ctx: TestContext) {
    let store = SqliteStore::in_memory().await.unwrap();
    assert_eq!(store.path(), None);
    let clone = store.clone();
    let id = schedule_new(&store, NewJob::new("mem", json!({"n": 1}))).await;
    assert_eq!(
        clone.get_job(&id).await.unwrap().unwrap().params,
        json!({"n": 1}),
        "clones share the database"
    );
    let claimed = claim_one(&clone, "mem", LEASE).await;
    assert_eq!(claimed.job.id, id);
    store
        .finish(
            &claimed.lease,
            Completion::Remove,
            Some(&record(&id, "mem", "mem-1")),
        )
        .await
        .unwrap();
    assert!(clone.get_job(&id).await.unwrap().is_none());
    assert_eq!(
        store
            .executions(&ExecutionQuery::name("mem"))
            .await
            .unwrap()
            .len(),
        1
    );

    let ran = log::<u32>();
    let recorder = ran.clone();
    let job = EventJob::new("mem-worker", move |n: u32, _ctx: JobContext| {
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
        schedule_job(&clone, &job, &n, ScheduleOptions::now())
            .await
            .unwrap();
    }
    wait_until("the jobs to run", DEADLINE, || async {
        read(&ran).len() == 5
    })
    .await;
    workers.stop().await;
    let mut ran = read(&ran);
    ran.sort_unstable();
    assert_eq!(ran, vec![0, 1, 2, 3, 4]);

    let other = SqliteStore::connect("sqlite::memory:").await.unwrap();
    assert!(
        other
            .list_jobs(&JobQuery::default())
            .await
            .unwrap()
            .is_empty(),
        "another store in memory is another database"
    );
    schedule_new(&other, NewJob::new("elsewhere", json!(null))).await;
    assert!(store
        .list_jobs(&JobQuery::name("elsewhere"))
        .await
        .unwrap()
        .is_empty());
}

/// Bad settings are `Config` errors before anything is opened; a file that cannot be
/// opened is `Unavailable`, naming its path.
pub async fn bad_config(ctx: TestContext) {
    let path = db_path(&format!("{}-never", ctx.namespace()));
    let config = |outcome: dogs_core::Result<SqliteStore>, case: &str| match outcome {
        Err(e) => assert_eq!(e.kind(), ErrorKind::Config, "{case}: {e}"),
        Ok(_) => panic!("{case}: accepted"),
    };
    config(SqliteStore::builder().connect().await, "no database");
    for url in [
        "postgres://db/app",
        "sqlite://",
        "sqlite:",
        "jobs.db",
        "sqlite://jobs.db?mode=ro",
        "sqlite://bad%zz.db",
    ] {
        config(SqliteStore::connect(url).await, url);
    }
    let builder = || SqliteStore::builder().path(&path);
    config(
        builder().max_params_bytes(0).connect().await,
        "max_params_bytes 0",
    );
    config(
        builder()
            .max_params_bytes(dogs_sqlite::MAX_PARAMS_BYTES_LIMIT + 1)
            .connect()
            .await,
        "max_params_bytes over the limit",
    );
    config(
        builder().request_timeout(Duration::ZERO).connect().await,
        "request_timeout 0",
    );
    config(
        builder().request_timeout(Duration::MAX).connect().await,
        "request_timeout past 100 years",
    );
    config(
        builder().poll_interval(Duration::ZERO).connect().await,
        "poll_interval 0",
    );
    config(
        builder().busy_timeout(Duration::MAX).connect().await,
        "busy_timeout past 100 years",
    );
    config(
        SqliteStore::builder().path("a\0b.db").connect().await,
        "a NUL byte in the path",
    );
    config(
        SqliteStore::builder().path("").connect().await,
        "an empty path",
    );
    assert!(!path.exists(), "nothing was created");

    let missing = std::env::temp_dir()
        .join(format!("{}-no-such-dir", ctx.namespace()))
        .join("jobs.db");
    let error = SqliteStore::open(&missing).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");
    assert!(
        error.to_string().contains(&missing.display().to_string()),
        "the path is named: {error}"
    );
    let garbage = db_path(&format!("{}-garbage", ctx.namespace()));
    std::fs::write(&garbage, vec![0x5a_u8; 8192]).unwrap();
    let error = SqliteStore::open(&garbage).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");
    assert_eq!(
        std::fs::read(&garbage).unwrap(),
        vec![0x5a_u8; 8192],
        "a file that is no database is left as it was"
    );
    remove_db(&garbage).unwrap();
}

/// Many stores opening a new file at once: all succeed, the migrations apply once, and the
/// stores work together.
pub async fn concurrent_opens(ctx: TestContext) {
    let path = db_path(&format!("{}-fresh", ctx.namespace()));
    let opens = (0..8).map(|_| {
        let path = path.clone();
        tokio::spawn(async move { SqliteStore::open(&path).await })
    });
    let stores: Vec<SqliteStore> = futures::future::join_all(opens)
        .await
        .into_iter()
        .map(|r| {
            r.unwrap()
                .unwrap_or_else(|e| panic!("a concurrent open failed: {e}"))
        })
        .collect();
    let mut conn = SqliteConnectOptions::new()
        .filename(&path)
        .connect()
        .await
        .unwrap();
    let versions: Vec<i64> = sqlx::query_scalar("SELECT version FROM migrations")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(versions, vec![1]);
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    let id = schedule_new(&stores[0], NewJob::new("fresh", json!(1))).await;
    let claimed = claim_one(&stores[7], "fresh", LEASE).await;
    assert_eq!(claimed.job.id, id);
    stores[3]
        .finish(
            &claimed.lease,
            Completion::Remove,
            Some(&record(&id, "fresh", "fresh-1")),
        )
        .await
        .unwrap();
    let records = stores[5]
        .executions(&ExecutionQuery::name("fresh"))
        .await
        .unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].status, ExecutionStatus::Success);
    drop(stores);
    drop(conn);
    remove_db(&path).unwrap();
}
