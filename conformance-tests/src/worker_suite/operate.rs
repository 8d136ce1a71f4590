//! What operators and handlers ask of running executions: cancelling them, renewing their
//! leases, timing them out, snoozing, per-name limits, and progress.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dogs_core::prelude::*;
use dogs_core::{ExecutionStatus, JobQuery, JobState, JobStore, WorkerOptions, CANCELLED_ERROR};
use serde_json::json;

use super::*;
use crate::harness::TestContext;

/// A handler that waits for its cancellation, says so, then returns a late outcome.
fn waits_for_cancel(name: &str, seen: Log<String>) -> EventJob<()> {
    EventJob::new(name, move |_: (), ctx: JobContext| {
        let seen = seen.clone();
        async move {
            push(&seen, "started".to_owned());
            tokio::select! {
                _ = ctx.cancelled() => push(&seen, "cancelled".to_owned()),
                _ = tokio::time::sleep(Duration::from_secs(30)) => push(&seen, "not cancelled".to_owned()),
            }
            Ok("late")
        }
    })
}

/// Cancels `name`'s running job once it has started, and checks what the worker does.
async fn cancel_while_running(
    ctx: &TestContext,
    workers_store: Arc<dyn JobStore>,
    name: &str,
    lock_time: Duration,
    within: Duration,
) {
    let store = ctx.store();
    let seen = log::<String>();
    let job = waits_for_cancel(name, seen.clone()).lock_time(lock_time);
    let workers = start(workers_store, vec![job.definition()], fast_options()).await;
    let id = schedule_job(&*store, &job, &(), ScheduleOptions::default())
        .await
        .unwrap();
    wait_until("the job to start", DEADLINE, || async {
        !read(&seen).is_empty()
    })
    .await;
    assert!(store.cancel(id.id()).await.unwrap());
    let cancelled_at = tokio::time::Instant::now();
    wait_until("the handler to be cancelled", within, || async {
        read(&seen).len() >= 2
    })
    .await;
    assert!(cancelled_at.elapsed() <= within);
    assert_eq!(
        read(&seen),
        vec!["started".to_owned(), "cancelled".to_owned()]
    );
    let runs = wait_executions(&*store, name, 1).await;
    workers.stop().await;
    assert_eq!(runs.len(), 1);
    assert_eq!(
        runs[0].status,
        ExecutionStatus::Cancelled,
        "recorded as cancelled"
    );
    assert_eq!(runs[0].result, None);
    let job = store.get_job(id.id()).await.unwrap().unwrap();
    assert_eq!(
        (job.state, job.last_error.as_deref()),
        (JobState::Failed, Some(CANCELLED_ERROR)),
        "its late outcome is never applied"
    );
}

/// W-cancel-running
pub async fn cancel_running(ctx: TestContext) {
    // Told by the store: within its wake-up latency, long before the lease's renewal.
    cancel_while_running(
        &ctx,
        ctx.store(),
        "cancelled-told",
        Duration::from_secs(60),
        Duration::from_secs(5),
    )
    .await;
    // While the set stops (its shutdown grace), a cancellation is still seen at once.
    let store = ctx.store();
    let seen = log::<String>();
    let job =
        waits_for_cancel("cancelled-stopping", seen.clone()).lock_time(Duration::from_secs(60));
    let options = WorkerOptions {
        shutdown_grace: Some(Duration::from_secs(20)),
        ..fast_options()
    };
    let workers = start(store.clone(), vec![job.definition()], options).await;
    let id = schedule_job(&*store, &job, &(), ScheduleOptions::default())
        .await
        .unwrap();
    wait_until("the job to start", DEADLINE, || async {
        !read(&seen).is_empty()
    })
    .await;
    let stopping = tokio::spawn(workers.stop());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(store.cancel(id.id()).await.unwrap());
    wait_until(
        "the handler to be cancelled",
        Duration::from_secs(5),
        || async { read(&seen).len() >= 2 },
    )
    .await;
    stopping.await.unwrap();
    let runs = wait_executions(&*store, "cancelled-stopping", 1).await;
    assert_eq!(runs[0].status, ExecutionStatus::Cancelled);

    // Not told (a store without notices): at the next renewal, a third of the lease.
    let polling = Arc::new(AlteredClaims::polling_only(ctx.another_handle().await));
    cancel_while_running(
        &ctx,
        polling,
        "cancelled-renewal",
        Duration::from_millis(1500),
        Duration::from_secs(3),
    )
    .await;
}

/// W-auto-renew
pub async fn auto_renew(ctx: TestContext) {
    let store = ctx.store();
    let lock_time = Duration::from_millis(400);
    let job = EventJob::new("renewed", move |_: (), ctx: JobContext| async move {
        tokio::select! {
            _ = ctx.cancelled() => Err("cancelled".into()),
            _ = tokio::time::sleep(lock_time * 5) => Ok(ctx.tries()),
        }
    })
    .lock_time(lock_time);
    // On by default.
    let workers = start(store.clone(), vec![job.definition()], fast_options()).await;
    let id = schedule_job(&*store, &job, &(), ScheduleOptions::default())
        .await
        .unwrap();
    wait_gone(&*store, id.id()).await;
    let runs = wait_executions(&*store, "renewed", 1).await;
    workers.stop().await;
    let statuses: Vec<_> = runs.iter().map(|r| (r.tries, r.status)).collect();
    assert_eq!(
        statuses,
        vec![(1, ExecutionStatus::Success)],
        "a handler running 5× its lease is not stale"
    );

    // A handler's own longer extension is kept: renewals do not cut it back to lock_time.
    let extended = log::<String>();
    let recorder = extended.clone();
    let long = EventJob::new("renewed-extended", move |_: (), ctx: JobContext| {
        let recorder = recorder.clone();
        async move {
            ctx.extend_lock_time(Duration::from_secs(3)).await?;
            push(&recorder, "extended".to_owned());
            tokio::time::sleep(Duration::from_millis(2500)).await;
            Ok(())
        }
    })
    .lock_time(lock_time);
    let workers = start(store.clone(), vec![long.definition()], fast_options()).await;
    let id = schedule_job(&*store, &long, &(), ScheduleOptions::default())
        .await
        .unwrap();
    wait_until("the lease to be extended", DEADLINE, || async {
        !read(&extended).is_empty()
    })
    .await;
    // Past the first renewal, a third of the 3 s lease in.
    tokio::time::sleep(Duration::from_millis(1400)).await;
    let job = store.get_job(id.id()).await.unwrap().unwrap();
    let now = store_now(&*store).await;
    let left = job.locked_until.unwrap() - now;
    assert!(
        left > chrono::Duration::seconds(2),
        "renewals keep the 3 s extension, {left:?} left"
    );
    wait_gone(&*store, id.id()).await;
    workers.stop().await;

    // A renewal refused with LockLost cancels the handler: the store's lease is shorter than
    // the worker's (a worker that stalled), and another claimer takes the job.
    let seen = log::<String>();
    let lost = waits_for_cancel("renewal-lost", seen.clone()).lock_time(Duration::from_millis(900));
    let shortened =
        AlteredClaims::short_lease(ctx.another_handle().await, Duration::from_millis(100));
    let options = WorkerOptions {
        workers_count: 1,
        ..fast_options()
    };
    let workers = start(Arc::new(shortened), vec![lost.definition()], options).await;
    schedule_job(&*store, &lost, &(), ScheduleOptions::default())
        .await
        .unwrap();
    wait_until("the job to start", DEADLINE, || async {
        !read(&seen).is_empty()
    })
    .await;
    let taken = claim_when_due(&*store, "renewal-lost", Duration::from_secs(30)).await;
    wait_until("the handler to be cancelled", DEADLINE, || async {
        read(&seen).len() >= 2
    })
    .await;
    assert_eq!(
        read(&seen),
        vec!["started".to_owned(), "cancelled".to_owned()]
    );
    let runs = wait_executions(&*store, "renewal-lost", 1).await;
    workers.stop().await;
    assert_eq!(runs[0].status, ExecutionStatus::Stale);
    store
        .complete(&taken.lease, dogs_core::Completion::Remove)
        .await
        .unwrap();
}

/// W-run-timeout
pub async fn run_timeout(ctx: TestContext) {
    let store = ctx.store();
    let stopped = Arc::new(AtomicUsize::new(0));
    let seen = stopped.clone();
    let job = EventJob::new("timed", move |_: (), ctx: JobContext| {
        let seen = seen.clone();
        async move {
            tokio::select! {
                _ = ctx.cancelled() => { seen.fetch_add(1, Ordering::SeqCst); }
                _ = tokio::time::sleep(Duration::from_secs(30)) => {}
            }
            Ok(())
        }
    })
    .timeout(Duration::from_millis(300))
    .max_tries(2);
    let workers = start(store.clone(), vec![job.definition()], fast_options()).await;
    let id = schedule_job(&*store, &job, &(), ScheduleOptions::default())
        .await
        .unwrap();
    let runs = wait_executions(&*store, "timed", 2).await;
    workers.stop().await;
    let outcomes: Vec<_> = runs
        .iter()
        .map(|r| (r.tries, r.status, r.error.clone()))
        .collect();
    assert_eq!(
        outcomes,
        vec![
            (1, ExecutionStatus::Error, Some("timed out".to_owned())),
            (2, ExecutionStatus::Failed, Some("timed out".to_owned())),
        ],
        "a timed-out execution is an error, retried by the usual policy"
    );
    assert!(runs.iter().all(|r| r.duration < Duration::from_secs(5)));
    assert_eq!(
        stopped.load(Ordering::SeqCst),
        2,
        "its cancellation signal fired"
    );
    let failed = store.get_job(id.id()).await.unwrap().unwrap();
    assert_eq!(failed.state, JobState::Failed);
}

/// W-snooze
pub async fn snooze(ctx: TestContext) {
    let store = ctx.store();
    let runs = Arc::new(AtomicUsize::new(0));
    let tries = log::<u32>();
    let (count, recorder) = (runs.clone(), tries.clone());
    let job = EventJob::new("snoozer", move |_: (), ctx: JobContext| {
        let (count, recorder) = (count.clone(), recorder.clone());
        async move {
            push(&recorder, ctx.tries());
            if count.fetch_add(1, Ordering::SeqCst) < 2 {
                return Err(Snooze(Duration::from_millis(200)).into());
            }
            Ok("awake")
        }
    })
    // A failure would fail it for good at once: snoozing is not one.
    .max_tries(1);
    let workers = start(store.clone(), vec![job.definition()], fast_options()).await;
    let id = schedule_job(&*store, &job, &(), ScheduleOptions::default())
        .await
        .unwrap();
    wait_gone(&*store, id.id()).await;
    let records = wait_executions(&*store, "snoozer", 3).await;
    workers.stop().await;
    let statuses: Vec<_> = records.iter().map(|r| (r.tries, r.status)).collect();
    assert_eq!(
        statuses,
        vec![
            (1, ExecutionStatus::Snoozed),
            (1, ExecutionStatus::Snoozed),
            (1, ExecutionStatus::Success),
        ],
        "the try is given back each time"
    );
    assert_eq!(read(&tries), vec![1, 1, 1]);
    for pair in records.windows(2) {
        assert!(
            pair[1].started_at - pair[0].ended_at >= chrono::Duration::milliseconds(190),
            "it runs again after the delay: {:?} then {:?}",
            pair[0].ended_at,
            pair[1].started_at
        );
    }
}

/// W-name-concurrency
pub async fn name_concurrency(ctx: TestContext) {
    let store = ctx.store();
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let others_most = Arc::new(AtomicUsize::new(0));
    let others_running = Arc::new(AtomicUsize::new(0));
    let counted = |running: Arc<AtomicUsize>, most: Arc<AtomicUsize>| {
        move |_: u32, _ctx: JobContext| {
            let (running, most) = (running.clone(), most.clone());
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(150)).await;
                running.fetch_sub(1, Ordering::SeqCst);
                Ok(())
            }
        }
    };
    let limited =
        EventJob::new("limited-here", counted(running.clone(), most.clone())).max_parallel(2);
    let free = EventJob::new(
        "free-here",
        counted(others_running.clone(), others_most.clone()),
    );
    let options = WorkerOptions {
        workers_count: 8,
        ..fast_options()
    };
    let workers = start(
        store.clone(),
        vec![limited.definition(), free.definition()],
        options,
    )
    .await;
    for i in 0..10 {
        schedule_job(&*store, &limited, &i, ScheduleOptions::default())
            .await
            .unwrap();
        schedule_job(&*store, &free, &i, ScheduleOptions::default())
            .await
            .unwrap();
    }
    wait_executions(&*store, "limited-here", 10).await;
    wait_executions(&*store, "free-here", 10).await;
    workers.stop().await;
    assert_eq!(
        most.load(Ordering::SeqCst),
        2,
        "at most max_parallel run at once"
    );
    assert!(
        others_most.load(Ordering::SeqCst) > 2,
        "other names fill the other slots"
    );
    let stats = store.count_jobs().await.unwrap();
    assert!(stats.iter().all(|c| c.pending == 0 && c.running == 0));
}

/// W-progress-visible
pub async fn progress_visible(ctx: TestContext) {
    let store = ctx.store();
    let release = Arc::new(AtomicBool::new(false));
    let flag = release.clone();
    let job = EventJob::new("progressing", move |_: (), ctx: JobContext| {
        let flag = flag.clone();
        async move {
            ctx.set_progress(json!({"done": 3, "of": 10})).await?;
            while !flag.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Ok(())
        }
    });
    let workers = start(store.clone(), vec![job.definition()], fast_options()).await;
    let id = schedule_job(&*store, &job, &(), ScheduleOptions::default())
        .await
        .unwrap();
    let job = wait_for("the progress to be visible", DEADLINE, || async {
        store
            .get_job(id.id())
            .await
            .unwrap()
            .filter(|j| j.progress.is_some())
    })
    .await;
    assert_eq!(job.progress, Some(json!({"done": 3, "of": 10})));
    assert_eq!(job.state, JobState::Running);
    let listed = store
        .list_jobs(&JobQuery::name("progressing"))
        .await
        .unwrap();
    assert_eq!(listed[0].progress, Some(json!({"done": 3, "of": 10})));
    release.store(true, Ordering::SeqCst);
    wait_gone(&*store, id.id()).await;
    let runs = wait_executions(&*store, "progressing", 1).await;
    workers.stop().await;
    assert_eq!(runs[0].status, ExecutionStatus::Success);
}
