//! Recurrent jobs: their schedules and what follows a failed run.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dogs_core::prelude::*;
use dogs_core::{ExecutionStatus, JobQuery, JobState, JobStore, WorkerOptions};

use super::*;
use crate::harness::TestContext;

/// W-recurrent-runs
pub async fn recurrent_runs(ctx: TestContext) {
    let store = ctx.store();
    let busy = Arc::new(AtomicBool::new(false));
    let overlaps = Arc::new(AtomicUsize::new(0));
    let (b, o) = (busy.clone(), overlaps.clone());
    let every = RecurrentJob::new("every", move |_ctx: JobContext| {
        let (b, o) = (b.clone(), o.clone());
        async move {
            if b.swap(true, Ordering::SeqCst) {
                o.fetch_add(1, Ordering::SeqCst);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            b.store(false, Ordering::SeqCst);
            Ok(())
        }
    })
    .run_every(Duration::from_millis(150));
    let promised = log::<chrono::DateTime<chrono::Utc>>();
    let recorder = promised.clone();
    let next_run = RecurrentJob::new("next-run", |_ctx: JobContext| async move { Ok(()) })
        .get_next_run(move |now| {
            let at = dogs_core::truncate_millis(now + chrono::Duration::milliseconds(200));
            push(&recorder, at);
            at
        });
    let cron = RecurrentJob::new("cron", |_ctx: JobContext| async move { Ok(()) })
        .cron("* * * * * *", "Asia/Kathmandu");
    let options = WorkerOptions {
        poll_interval: Duration::from_millis(50),
        ..fast_options()
    };
    let workers = start(
        store.clone(),
        vec![every.into(), next_run.into(), cron.into()],
        options,
    )
    .await;

    let runs = wait_executions(&*store, "every", 4).await;
    for pair in runs.windows(2) {
        let gap = (pair[1].started_at - pair[0].ended_at)
            .to_std()
            .unwrap_or_default();
        assert!(
            gap >= Duration::from_millis(145),
            "run_every ran again {gap:?} after the last run ended"
        );
    }
    let runs = wait_executions(&*store, "next-run", 3).await;
    let times = read(&promised);
    for (i, run) in runs.iter().enumerate().skip(1) {
        let due = times
            .iter()
            .filter(|at| **at <= run.started_at)
            .max()
            .unwrap_or_else(|| {
                panic!(
                    "run {i} at {} started before any time get_next_run gave",
                    run.started_at
                )
            });
        let late = (run.started_at - *due).to_std().unwrap_or_default();
        assert!(
            late < Duration::from_millis(600),
            "run {i} started {late:?} after its time"
        );
    }
    let runs = wait_executions(&*store, "cron", 2).await;
    workers.stop().await;
    assert_eq!(
        overlaps.load(Ordering::SeqCst),
        0,
        "a recurrent job never overlaps itself"
    );
    let seconds: Vec<i64> = runs.iter().map(|r| r.started_at.timestamp()).collect();
    for pair in seconds.windows(2) {
        assert!(
            pair[1] > pair[0],
            "cron runs fall in distinct seconds: {seconds:?}"
        );
    }
    for run in &runs[1..] {
        let into_second = run.started_at.timestamp_subsec_millis();
        assert!(
            into_second < 700,
            "a cron run started {into_second} ms into its second"
        );
    }
}

/// W-recurrent-error
pub async fn recurrent_error(ctx: TestContext) {
    let store = ctx.store();
    let job = RecurrentJob::new("broken", |_ctx: JobContext| async move {
        Err::<(), _>("down".into())
    })
    .run_every(Duration::from_millis(150));
    let options = WorkerOptions {
        retry_backoff: dogs_core::RetryBackoff {
            base: Duration::from_secs(60),
            ..Default::default()
        },
        ..fast_options()
    };
    let workers = start(store.clone(), vec![job.into()], options).await;
    let runs = wait_executions(&*store, "broken", 3).await;
    workers.stop().await;
    assert!(runs.iter().all(|r| r.status == ExecutionStatus::Error));
    for pair in runs.windows(2) {
        let gap = (pair[1].started_at - pair[0].ended_at)
            .to_std()
            .unwrap_or_default();
        assert!(
            (Duration::from_millis(145)..Duration::from_secs(5)).contains(&gap),
            "a failed recurrent run comes back at its next normal time, not a backoff: {gap:?}"
        );
    }
    let jobs = store.list_jobs(&JobQuery::name("broken")).await.unwrap();
    assert_eq!(jobs.len(), 1);
    assert_ne!(jobs[0].state, JobState::Failed);
}

/// W-kind-from-record
pub async fn kind_from_record(ctx: TestContext) {
    let store = ctx.store();
    let runs = log::<u32>();
    let recorder = runs.clone();
    let tick = RecurrentJob::new("tick", move |ctx: JobContext| {
        let recorder = recorder.clone();
        async move {
            push(&recorder, ctx.tries());
            Ok(())
        }
    })
    .run_every(Duration::from_secs(3600));
    let workers = start(store.clone(), vec![tick.into()], fast_options()).await;
    // The recurrent record runs at once, then waits an hour.
    let record = wait_for(
        "the first run, then its next run in an hour",
        DEADLINE,
        || async {
            let now = store_now(&*store).await;
            store
                .list_jobs(&JobQuery::name("tick"))
                .await
                .unwrap()
                .into_iter()
                .find(|j| j.run_at > now + chrono::Duration::minutes(30))
        },
    )
    .await;
    // "Run it now": a one-off event job under the recurrent job's name.
    let once = schedule_job_by_name(&*store, "tick", &(), ScheduleOptions::default())
        .await
        .unwrap();
    wait_gone(&*store, once.id()).await;
    let records = wait_executions(&*store, "tick", 2).await;
    workers.stop().await;
    assert_eq!(read(&runs).len(), 2, "the one-off ran once");
    assert_eq!(records[1].job_id, *once.id());
    assert_eq!(records[1].kind, dogs_core::JobKind::Event);
    let jobs = store.list_jobs(&JobQuery::name("tick")).await.unwrap();
    assert_eq!(
        jobs.len(),
        1,
        "the recurrent record is the only record: {jobs:?}"
    );
    let after = &jobs[0];
    assert_eq!(after.id, record.id);
    assert_eq!(after.kind, dogs_core::JobKind::Recurrent);
    assert_eq!(
        (after.run_at, after.tries, after.state),
        (record.run_at, record.tries, record.state),
        "and it is untouched"
    );
}

/// `get_next_run` returning a time that is not after the run: the job runs again no sooner than
/// `poll_interval` later, instead of at once, again and again.
pub async fn next_run_not_after_waits(ctx: TestContext) {
    let store = ctx.store();
    let now_again = RecurrentJob::new("now-again", |_ctx: JobContext| async move { Ok(()) })
        .get_next_run(|now| now - chrono::Duration::seconds(1));
    let options = WorkerOptions {
        poll_interval: Duration::from_millis(300),
        ..fast_options()
    };
    let workers = start(store.clone(), vec![now_again.into()], options).await;
    let runs = wait_executions(&*store, "now-again", 3).await;
    workers.stop().await;
    for pair in runs.windows(2) {
        let gap = (pair[1].started_at - pair[0].ended_at)
            .to_std()
            .unwrap_or_default();
        assert!(
            gap >= Duration::from_millis(290),
            "ran again {gap:?} after the last run ended, sooner than poll_interval"
        );
    }
}
