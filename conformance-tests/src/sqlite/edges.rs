//! SQLite's edges: more names than one statement takes, times past what chrono reads, a
//! scheduling task whose runtime ended, callers that gave up, wake-ups beside a store's own
//! commits, ids running out, a removal while another process has the file open.

use std::time::Duration;

use dogs_core::{ClaimRequest, Completion, ErrorKind, JobQuery, JobState, JobStore, NewJob};
use dogs_sqlite::sqlx::sqlite::SqliteConnectOptions;
use dogs_sqlite::sqlx::{self, ConnectOptions};
use dogs_sqlite::SqliteStore;
use serde_json::json;

use super::db_path;
use super::specific::{exec, raw, LEASE};
use crate::harness::TestContext;
use crate::support::*;

/// A claim of more names than SQLite takes terms in one compound SELECT (500): due jobs of a
/// few of them, the 600th among them, are claimed, in claim order across the names.
pub async fn claim_of_600_names(ctx: TestContext) {
    let store = ctx.store();
    let names: Vec<String> = (0..600).map(|i| format!("many-{i}")).collect();
    let mut ids = Vec::new();
    for (i, priority) in [(3usize, 1), (250, 5), (420, 1), (599, 9)] {
        ids.push((
            priority,
            schedule_new(&*store, NewJob::new(&names[i], json!(i)).priority(priority)).await,
        ));
    }
    let claimed = store
        .claim(&ClaimRequest::new(
            names.iter().map(String::as_str),
            LEASE,
            10,
        ))
        .await
        .unwrap_or_else(|e| panic!("a claim of 600 names failed: {e}"));
    // Claim order: priority first, then run time and id.
    ids.sort_by_key(|(priority, _)| -priority);
    let got: Vec<_> = claimed.jobs.iter().map(|j| j.job.id.clone()).collect();
    let want: Vec<_> = ids.iter().map(|(_, id)| id.clone()).collect();
    assert_eq!(got, want, "every due job, in claim order");
    let limited = {
        for i in [10usize, 510] {
            schedule_new(&*store, NewJob::new(&names[i], json!(i))).await;
        }
        store
            .claim(&ClaimRequest::new(
                names.iter().map(String::as_str),
                LEASE,
                1,
            ))
            .await
            .unwrap()
    };
    assert_eq!(limited.jobs.len(), 1, "cut to the limit");
    assert_eq!(
        limited.jobs[0].job.name, names[10],
        "the first in claim order"
    );
}

/// Rows written by hand with times past what chrono can read (a lease end of `i64::MAX`, a
/// run time of 9e15 ms) beside due jobs: the claim still leases and returns the due jobs.
pub async fn claim_beside_unreadable_times(ctx: TestContext) {
    let store = ctx.store();
    let now = store_now(&*store).await.timestamp_millis();
    let a = schedule_new(&*store, NewJob::new("edge", json!(1))).await;
    let b = schedule_new(&*store, NewJob::new("edge", json!(2))).await;
    let mut conn = raw(&ctx).await;
    sqlx::query(
        "INSERT INTO jobs (name, kind, params, run_at, state, lease_token, locked_until,
                           locked_by, tries, created_at)
         VALUES ('edge', 'event', '{}', ?1, 'running', 'by-hand', 9223372036854775807, 'w', 1, ?1),
                ('edge', 'event', '{}', 9000000000000000, 'scheduled', NULL, NULL, NULL, 0, ?1)",
    )
    .bind(now)
    .execute(&mut conn)
    .await
    .unwrap();
    let claimed = store
        .claim(&ClaimRequest::new(["edge"], LEASE, 10))
        .await
        .unwrap_or_else(|e| panic!("a claim beside unreadable times failed: {e}"));
    let got: Vec<_> = claimed.jobs.iter().map(|j| j.job.id.clone()).collect();
    assert_eq!(got, vec![a.clone(), b.clone()], "the due jobs are claimed");
    assert!(claimed.next_due.is_some(), "something is due some day");
    for (id, job) in [&a, &b].into_iter().zip(&claimed.jobs) {
        assert_eq!(
            store.get_job(id).await.unwrap().map(|j| j.state),
            Some(JobState::Running),
            "the claim committed"
        );
        store
            .complete(&job.lease, Completion::Remove)
            .await
            .unwrap();
    }
    // Only the unreadable times are left to say when the next job is due: the claims of
    // the name, and of it with another name that has a due job, go on.
    let empty = store
        .claim(&ClaimRequest::new(["edge"], LEASE, 10))
        .await
        .unwrap_or_else(|e| panic!("a claim of the unreadable times alone failed: {e}"));
    assert!(empty.jobs.is_empty());
    let good = schedule_new(&*store, NewJob::new("edge-good", json!(3))).await;
    let claimed = store
        .claim(&ClaimRequest::new(["edge", "edge-good"], LEASE, 10))
        .await
        .unwrap_or_else(|e| panic!("a claim beside unreadable times failed: {e}"));
    let got: Vec<_> = claimed.jobs.iter().map(|j| j.job.id.clone()).collect();
    assert_eq!(got, vec![good]);
}

/// A job of name `named` with `params`, claimed and failed for good by its handler with
/// `CANCELLED_ERROR` as its own error text.
async fn fail_named_cancelled(store: &dyn JobStore, params: serde_json::Value) -> dogs_core::JobId {
    let id = schedule_new(store, NewJob::new("named", params)).await;
    let claimed = claim_one(store, "named", LEASE).await;
    store
        .finish(
            &claimed.lease,
            Completion::Fail {
                error: dogs_core::CANCELLED_ERROR.to_owned(),
                retain_for: Duration::from_secs(3600),
            },
            None,
        )
        .await
        .unwrap();
    id
}

/// A handler whose own error text is `CANCELLED_ERROR` fails its job for good: the job is
/// no cancelled one (its lease is gone), and `retry` and `retry_failed` put it back.
pub async fn retry_of_a_failure_named_cancelled(ctx: TestContext) {
    let store = ctx.store();
    for round in 0..2 {
        let id = fail_named_cancelled(&*store, json!(round)).await;
        assert_eq!(
            store.get_job(&id).await.unwrap().map(|j| j.state),
            Some(JobState::Failed)
        );
        if round == 0 {
            assert!(store
                .retry(&id)
                .await
                .unwrap_or_else(|e| panic!("retry: {e}")));
        } else {
            assert_eq!(
                store
                    .retry_failed("named")
                    .await
                    .unwrap_or_else(|e| panic!("retry_failed: {e}")),
                1
            );
        }
        assert_eq!(
            store.get_job(&id).await.unwrap().map(|j| j.state),
            Some(JobState::Pending),
            "round {round}: put back"
        );
        let again = claim_one(&*store, "named", LEASE).await;
        assert_eq!(again.job.id, id);
        store
            .complete(&again.lease, Completion::Remove)
            .await
            .unwrap();
    }
    // And cancelling such a failed job removes it.
    let id = fail_named_cancelled(&*store, json!("cancel")).await;
    assert!(store
        .cancel(&id)
        .await
        .unwrap_or_else(|e| panic!("cancel: {e}")));
}

/// `:memory:` as a path is SQLite's database in memory, shared by the store's connections,
/// not a file each pooled connection opens privately.
pub async fn memory_path_is_in_memory(_ctx: TestContext) {
    for store in [
        SqliteStore::open(":memory:").await.unwrap(),
        SqliteStore::builder()
            .path(":memory:")
            .connect()
            .await
            .unwrap(),
    ] {
        assert_eq!(store.path(), None, "in memory");
        let writes = (0..16).map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.schedule(NewJob::new("mem", json!(i))).await })
        });
        for write in futures::future::join_all(writes).await {
            write.unwrap().unwrap();
        }
        let reads = (0..8).map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.list_jobs(&JobQuery::name("mem")).await })
        });
        for read in futures::future::join_all(reads).await {
            assert_eq!(
                read.unwrap().unwrap().len(),
                16,
                "every connection sees them"
            );
        }
    }
}

/// A store whose scheduling task was dropped midway (its runtime shut down while it waited
/// for the write lock) schedules from another runtime: no call hangs.
pub async fn schedule_outlives_its_runtime(ctx: TestContext) {
    let path = db_path(ctx.namespace());
    let lock_path = path.clone();
    let store = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let store = SqliteStore::open(&lock_path).await.unwrap();
            let mut locker = SqliteConnectOptions::new()
                .filename(&lock_path)
                .connect()
                .await
                .unwrap();
            exec(&mut locker, "BEGIN IMMEDIATE").await;
            // The task is spawned, and waits for the lock; the caller gives up.
            let gave_up = tokio::time::timeout(
                Duration::from_millis(200),
                store.schedule(NewJob::new("outlive", json!("first"))),
            )
            .await;
            assert!(gave_up.is_err(), "the lock is held: {gave_up:?}");
            exec(&mut locker, "ROLLBACK").await;
            store
        })
        // The runtime is shut down here, the task in it dropped.
    })
    .join()
    .unwrap();
    let scheduled = tokio::time::timeout(
        DEADLINE,
        store.schedule(NewJob::new("outlive", json!("second"))),
    )
    .await
    .expect("schedule completes from another runtime");
    scheduled.unwrap_or_else(|e| panic!("scheduling from another runtime failed: {e}"));
}

/// A `schedule` whose caller gave up (dropped its future) before its batch began is not
/// stored; one whose caller waits is.
pub async fn schedule_given_up_is_not_stored(ctx: TestContext) {
    let store = ctx.store();
    let mut locker = raw(&ctx).await;
    exec(&mut locker, "BEGIN IMMEDIATE").await;
    let gave_up = tokio::time::timeout(
        Duration::from_millis(200),
        store.schedule(NewJob::new("given-up", json!("dropped"))),
    )
    .await;
    assert!(gave_up.is_err(), "the lock is held: {gave_up:?}");
    let kept = {
        let store = store.clone();
        tokio::spawn(async move { store.schedule(NewJob::new("given-up", json!("kept"))).await })
    };
    // The waiting call is queued (or waiting for the lock) before the lock is released.
    tokio::time::sleep(Duration::from_millis(100)).await;
    exec(&mut locker, "ROLLBACK").await;
    tokio::time::timeout(DEADLINE, kept)
        .await
        .expect("the waiting call ends")
        .unwrap()
        .unwrap();
    let params: Vec<_> = store
        .list_jobs(&JobQuery::name("given-up"))
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.params)
        .collect();
    assert_eq!(
        params,
        vec![json!("kept")],
        "the given-up job is not stored"
    );
}

/// Another store's due wake-up is not swallowed by this store's own cancel committed just
/// after it (whose counters include the other's increment).
pub async fn wakeup_beside_own_cancel(ctx: TestContext) {
    let path = db_path(ctx.namespace());
    let a = SqliteStore::builder()
        .path(&path)
        .poll_interval(Duration::from_millis(500))
        .connect()
        .await
        .unwrap();
    let b = SqliteStore::open(&path).await.unwrap();
    let running = schedule_new(&a, NewJob::new("own-cancel", json!("running"))).await;
    let claimed = claim_one(&a, "own-cancel", LEASE).await;
    assert_eq!(claimed.job.id, running);
    let mut wakeups = a.wakeups().expect("the SQLite store wakes workers");
    wakeups.mark_seen();
    tokio::time::timeout(DEADLINE, wakeups.wait())
        .await
        .expect("the poller starts");
    wakeups.mark_seen();
    schedule_new(&b, NewJob::new("elsewhere", json!("due"))).await;
    assert!(a.cancel(&running).await.unwrap());
    tokio::time::timeout(Duration::from_secs(3), wakeups.wait())
        .await
        .expect("the other store's due job wakes this store's workers");
}

/// When the largest job id is taken, scheduling fails with a typed error (nothing stored), and
/// the last id is still given.
pub async fn job_ids_run_out(ctx: TestContext) {
    let store = ctx.store();
    let now = store_now(&*store).await.timestamp_millis();
    let mut conn = raw(&ctx).await;
    sqlx::query(
        "INSERT INTO jobs (id, name, kind, params, run_at, state, created_at)
         VALUES (9223372036854775806, 'last-ids', 'event', '{}', ?1, 'pending', ?1)",
    )
    .bind(now)
    .execute(&mut conn)
    .await
    .unwrap();
    let error = store
        .schedule_many(vec![
            NewJob::new("last-ids", json!(1)),
            NewJob::new("last-ids", json!(2)),
        ])
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Backend, "{error}");
    assert_eq!(
        store
            .list_jobs(&JobQuery::name("last-ids"))
            .await
            .unwrap()
            .len(),
        1,
        "nothing was stored"
    );
    let last = schedule_new(&*store, NewJob::new("last-ids", json!(3))).await;
    assert_eq!(last, dogs_core::JobId::from("9223372036854775807"));
    let error = store
        .schedule(NewJob::new("last-ids", json!(4)))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Backend, "{error}");
}

/// A file a newer version of the store migrated (a migration this one does not know) is
/// refused with `Config` rather than written with a layout this version does not understand;
/// the file is left as it was.
pub async fn newer_schema_is_refused(ctx: TestContext) {
    ctx.store()
        .schedule(NewJob::new("kept", json!({})))
        .await
        .unwrap();
    let mut conn = raw(&ctx).await;
    exec(
        &mut conn,
        "INSERT INTO migrations (version, name, applied_at) VALUES (999, 'from a newer version', 0)",
    )
    .await;
    drop(conn);
    match SqliteStore::open(db_path(ctx.namespace())).await {
        Err(e) => assert_eq!(e.kind(), ErrorKind::Config, "{e}"),
        Ok(_) => panic!("a file of a newer version was opened"),
    }
    let mut conn = raw(&ctx).await;
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE name = 'kept'")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(jobs, 1, "the file is left as it was");
}

/// `remove_all` while another process has the file open empties the tables and keeps the
/// file: what that process schedules afterwards is in the file every later opener reads, not
/// in a deleted file only it still sees. Ids go on from where they were.
pub async fn remove_all_beside_another_process(ctx: TestContext) {
    let store = ctx.store();
    let other = SqliteStore::open(db_path(ctx.namespace())).await.unwrap();
    let removed = schedule_new(&*store, NewJob::new("gone", json!(1))).await;
    assert!(other.get_job(&removed).await.unwrap().is_some());

    store.remove_all().await.unwrap();
    let after = schedule_new(&other, NewJob::new("kept", json!(2))).await;

    let later = SqliteStore::open(db_path(ctx.namespace())).await.unwrap();
    assert!(later.get_job(&removed).await.unwrap().is_none());
    assert!(
        later.get_job(&after).await.unwrap().is_some(),
        "a job the other process scheduled after the removal is in the file"
    );
    let number = |id: &dogs_core::JobId| id.as_str().parse::<i64>().unwrap();
    assert!(number(&after) > number(&removed), "ids are not reused");
}
