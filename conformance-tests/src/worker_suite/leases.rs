//! Leases: stale executions, extended leases, crashed workers.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dogs_core::prelude::*;
use dogs_core::{
    ClaimRequest, ExecutionStatus, JobId, JobQuery, JobState, JobStore, WorkerOptions,
};
use serde_json::json;
use tokio::time::Instant;

use super::*;
use crate::harness::TestContext;

/// W-stale-detected
pub async fn stale_detected(ctx: TestContext) {
    let store = ctx.store();
    let cancel_seen = Arc::new(AtomicBool::new(false));
    let late_outcome = Arc::new(AtomicBool::new(false));
    let stale_flags = log::<(u32, bool)>();
    let stale_calls = log::<u32>();
    let (c, l, f) = (
        cancel_seen.clone(),
        late_outcome.clone(),
        stale_flags.clone(),
    );
    let recorder = stale_calls.clone();
    let job = EventJob::new("slow", move |_: (), ctx: JobContext| {
        let (c, l, f) = (c.clone(), l.clone(), f.clone());
        async move {
            push(&f, (ctx.tries(), ctx.was_stale()));
            if ctx.tries() == 1 {
                ctx.cancelled().await;
                c.store(true, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(200)).await;
                l.store(true, Ordering::SeqCst);
                return Ok("late");
            }
            Ok("fresh")
        }
    })
    .lock_time(Duration::from_millis(300))
    .on_stale(move |failure| push(&recorder, failure.tries));
    let workers = start(store.clone(), vec![job.definition()], without_renewal()).await;
    let id = schedule_job(&*store, &job, &(), ScheduleOptions::default())
        .await
        .unwrap();
    wait_gone(&*store, id.id()).await;
    let runs = wait_executions(&*store, "slow", 2).await;
    let after_cancel = Instant::now();
    wait_until(
        "the stale handler to see its cancellation",
        DEADLINE,
        || async { cancel_seen.load(Ordering::SeqCst) },
    )
    .await;
    // The stopped handler would set its flag 200 ms after the cancellation; give it twice that.
    tokio::time::sleep_until(after_cancel + Duration::from_millis(400)).await;
    workers.stop().await;
    assert_eq!(read(&stale_calls), vec![1], "on_stale is called once");
    let statuses: Vec<_> = runs.iter().map(|r| (r.tries, r.status)).collect();
    assert_eq!(
        statuses,
        vec![(1, ExecutionStatus::Stale), (2, ExecutionStatus::Success)]
    );
    assert_eq!(
        runs[1].result,
        Some(json!("fresh")),
        "the stale run's late outcome is never applied"
    );
    assert_eq!(
        read(&stale_flags),
        vec![(1, false), (2, true)],
        "the next run has was_stale set"
    );
    assert!(
        !late_outcome.load(Ordering::SeqCst),
        "the stale handler was stopped"
    );
}

/// W-extend-keeps-alive
pub async fn extend_keeps_alive(ctx: TestContext) {
    let store = ctx.store();
    let stale_calls = Arc::new(AtomicUsize::new(0));
    let counter = stale_calls.clone();
    // Runs 1 s, three times its 600 ms lease, extending it every 100 ms.
    let job = EventJob::new("long", |_: (), ctx: JobContext| async move {
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            ctx.extend_lock_time(Duration::from_millis(600)).await?;
        }
        Ok(ctx.is_cancelled())
    })
    .lock_time(Duration::from_millis(600))
    .on_stale(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    let workers = start(store.clone(), vec![job.definition()], fast_options()).await;
    let id = schedule_job(&*store, &job, &(), ScheduleOptions::default())
        .await
        .unwrap();
    wait_gone(&*store, id.id()).await;
    let runs = wait_executions(&*store, "long", 1).await;
    workers.stop().await;
    assert_eq!(stale_calls.load(Ordering::SeqCst), 0);
    assert_eq!(runs.len(), 1);
    assert_eq!(
        (runs[0].tries, runs[0].status),
        (1, ExecutionStatus::Success)
    );
    assert_eq!(runs[0].result, Some(json!(false)), "never cancelled");
    assert!(
        runs[0].duration >= Duration::from_millis(1000),
        "it outlived its first lease"
    );
}

/// W-crash-recovery
pub async fn crash_recovery(ctx: TestContext) {
    let store = ctx.store();
    let stale_seen = log::<bool>();
    let recorder = stale_seen.clone();
    let job = EventJob::new("orphan", move |_: (), ctx: JobContext| {
        let recorder = recorder.clone();
        async move {
            push(&recorder, ctx.was_stale());
            Ok(())
        }
    });
    let id = schedule_job(&*store, &job, &(), ScheduleOptions::default())
        .await
        .unwrap();
    // A worker that claims the job and dies without a word.
    let dead = ctx.another_handle().await;
    let orphaned = dead
        .claim(&ClaimRequest::new(["orphan"], Duration::from_millis(500), 1).worker_id("dead"))
        .await
        .unwrap()
        .jobs
        .pop()
        .expect("the dying worker claims the job");
    drop(dead);
    let workers = start(store.clone(), vec![job.definition()], fast_options()).await;
    wait_gone(&*store, id.id()).await;
    let runs = wait_executions(&*store, "orphan", 1).await;
    workers.stop().await;
    assert_eq!(
        read(&stale_seen),
        vec![true],
        "it ran again once, marked was_stale"
    );
    assert!(
        runs[0].started_at >= orphaned.locked_until,
        "not before the dead worker's lease ended"
    );
    assert_eq!(runs[0].tries, 2);
}

/// Waits until the job `id` is failed for good and returns it.
async fn wait_failed(store: &dyn JobStore, id: &JobId) -> dogs_core::Job {
    wait_for(&format!("job {id} to fail for good"), DEADLINE, || async {
        store
            .get_job(id)
            .await
            .unwrap()
            .filter(|j| j.state == JobState::Failed)
    })
    .await
}

/// W-stale-counts-tries
pub async fn stale_counts_tries(ctx: TestContext) {
    let store = ctx.store();
    let max_tries_calls = log::<(String, u32)>();
    let recorder = max_tries_calls.clone();
    let starts = log::<(String, u32)>();
    let (s1, s2, s3) = (starts.clone(), starts.clone(), starts.clone());
    // Every execution outlives its lease.
    let stuck = EventJob::new("stuck", move |_: (), ctx: JobContext| {
        let starts = s1.clone();
        async move {
            push(&starts, ("stuck".to_owned(), ctx.tries()));
            ctx.cancelled().await;
            Ok(())
        }
    })
    .lock_time(Duration::from_millis(300))
    .max_tries(3);
    // Its workers die: the claims below never finish.
    let orphan = EventJob::new("doomed", move |_: (), ctx: JobContext| {
        let starts = s2.clone();
        async move {
            push(&starts, ("doomed".to_owned(), ctx.tries()));
            Ok(())
        }
    })
    .max_tries(3);
    // A recurrent job whose runs always go stale.
    let hung = RecurrentJob::new("hung", move |ctx: JobContext| {
        let starts = s3.clone();
        async move {
            push(&starts, ("hung".to_owned(), ctx.tries()));
            ctx.cancelled().await;
            Ok(())
        }
    })
    .run_every(Duration::from_secs(3600))
    .lock_time(Duration::from_millis(200));

    let doomed = schedule_job(&*store, &orphan, &(), ScheduleOptions::default())
        .await
        .unwrap();
    let dead = ctx.another_handle().await;
    for tries in 1..=3 {
        let claimed = claim_when_due(&*dead, "doomed", Duration::from_millis(200)).await;
        assert_eq!(claimed.job.tries, tries);
    }
    drop(dead);
    let options = WorkerOptions {
        on_max_tries: Some(Arc::new(move |failure| {
            push(&recorder, (failure.name.clone(), failure.tries))
        })),
        ..without_renewal()
    };
    let workers = start(
        store.clone(),
        vec![stuck.definition(), orphan.definition(), hung.into()],
        options,
    )
    .await;
    let stuck_id = schedule_job(&*store, &stuck, &(), ScheduleOptions::default())
        .await
        .unwrap();

    let job = wait_failed(&*store, stuck_id.id()).await;
    assert_eq!(job.tries, 3, "failed once claimed max_tries times");
    let error = job.last_error.unwrap_or_default();
    assert!(error.contains("max_tries"), "the reason says so: {error}");
    let job = wait_failed(&*store, doomed.id()).await;
    let error = job.last_error.unwrap_or_default();
    assert!(error.contains("max_tries"), "the reason says so: {error}");

    let record = wait_for(
        "the recurrent job back on its normal schedule",
        DEADLINE,
        || async {
            let jobs = store.list_jobs(&JobQuery::name("hung")).await.unwrap();
            let now = store_now(&*store).await;
            jobs.into_iter()
                .find(|j| j.run_at > now + chrono::Duration::minutes(30))
        },
    )
    .await;
    wait_until("on_max_tries for both event jobs", DEADLINE, || async {
        read(&max_tries_calls).len() >= 2
    })
    .await;
    workers.stop().await;
    assert_eq!(record.tries, 0, "its count starts again");
    let mut calls = read(&max_tries_calls);
    calls.sort();
    assert_eq!(
        calls,
        vec![("doomed".to_owned(), 3), ("stuck".to_owned(), 3)],
        "on_max_tries is called once per job"
    );
    let runs = read(&starts);
    let count = |name: &str| runs.iter().filter(|(n, _)| n == name).count();
    assert_eq!(count("stuck"), 3, "{runs:?}");
    assert_eq!(
        count("doomed"),
        0,
        "a job whose workers died is not run again: {runs:?}"
    );
    assert_eq!(
        count("hung"),
        dogs_core::DEFAULT_MAX_TRIES as usize,
        "stale runs in a row before its normal schedule: {runs:?}"
    );
    let records = executions(&*store, "stuck").await;
    assert_eq!(records.len(), 3);
    assert_eq!(records[0].status, ExecutionStatus::Failed, "the last one");
}

/// W-no-overlap
pub async fn no_overlap(ctx: TestContext) {
    let store = ctx.store();
    let ticks = log::<Instant>();
    let second_start = log::<Instant>();
    let definition = |ticks: Log<Instant>, second: Log<Instant>| {
        EventJob::new("overlap", move |_: (), ctx: JobContext| {
            let (ticks, second) = (ticks.clone(), second.clone());
            async move {
                if ctx.tries() > 1 {
                    push(&second, Instant::now());
                    return Ok(());
                }
                // Yields, but never looks at its cancellation.
                loop {
                    push(&ticks, Instant::now());
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        })
        .lock_time(Duration::from_millis(400))
    };
    let options = WorkerOptions {
        poll_interval: Duration::from_millis(20),
        ..without_renewal()
    };
    let mut sets = Vec::new();
    for _ in 0..2 {
        let job = definition(ticks.clone(), second_start.clone());
        sets.push(
            start(
                ctx.another_handle().await,
                vec![job.definition()],
                options.clone(),
            )
            .await,
        );
    }
    let job = definition(ticks.clone(), second_start.clone());
    let id = schedule_job(&*store, &job, &(), ScheduleOptions::default())
        .await
        .unwrap();
    wait_gone(&*store, id.id()).await;
    // The stale record is written once its handler was stopped.
    let runs = wait_executions(&*store, "overlap", 2).await;
    for set in sets {
        set.stop().await;
    }
    let started = read(&second_start)[0];
    let last_tick = read(&ticks)
        .into_iter()
        .max()
        .expect("the first run ticked");
    assert!(
        last_tick < started,
        "the stale handler still ran {:?} after the next execution started",
        last_tick - started
    );
    let statuses: Vec<_> = runs.iter().map(|r| (r.tries, r.status)).collect();
    assert_eq!(
        statuses,
        vec![(1, ExecutionStatus::Stale), (2, ExecutionStatus::Success)]
    );
}

/// W-extend-lost-cancels
pub async fn extend_lost_cancels(ctx: TestContext) {
    let store = ctx.store();
    let stolen = Arc::new(AtomicBool::new(false));
    let seen = log::<String>();
    let (flag, recorder) = (stolen.clone(), seen.clone());
    let job = EventJob::new("lost", move |_: (), ctx: JobContext| {
        let (flag, recorder) = (flag.clone(), recorder.clone());
        async move {
            push(&recorder, "started".to_owned());
            while !flag.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let extended = ctx.extend_lock_time(Duration::from_secs(10)).await;
            push(&recorder, format!("{:?}", extended.map_err(|e| e.kind())));
            tokio::select! {
                _ = ctx.cancelled() => push(&recorder, "cancelled".to_owned()),
                _ = tokio::time::sleep(Duration::from_secs(5)) => push(&recorder, "not cancelled".to_owned()),
            }
            Ok("late")
        }
    })
    .lock_time(Duration::from_secs(10));
    // The worker's idea of its lease is 10 s; the store's lease ends after 300 ms, as when a
    // worker stalls past its lease.
    let shortened =
        AlteredClaims::short_lease(ctx.another_handle().await, Duration::from_millis(300));
    // One slot, which the execution holds: the worker set does not claim the job again itself.
    let options = WorkerOptions {
        workers_count: 1,
        ..fast_options()
    };
    let workers = start(Arc::new(shortened), vec![job.definition()], options).await;
    let id = schedule_job(&*store, &job, &(), ScheduleOptions::default())
        .await
        .unwrap();
    wait_until("the job to start", DEADLINE, || async {
        !read(&seen).is_empty()
    })
    .await;
    let taken = claim_when_due(&*store, "lost", Duration::from_secs(30)).await;
    assert_eq!(taken.job.id, *id.id());
    stolen.store(true, Ordering::SeqCst);
    wait_until("the handler to report", DEADLINE, || async {
        read(&seen).len() >= 3
    })
    .await;
    assert_eq!(
        read(&seen),
        vec![
            "started".to_owned(),
            "Err(LockLost)".to_owned(),
            "cancelled".to_owned()
        ],
        "a refused extension cancels the execution"
    );
    let runs = wait_executions(&*store, "lost", 1).await;
    workers.stop().await;
    assert_eq!(runs[0].status, ExecutionStatus::Stale);
    store
        .complete(&taken.lease, dogs_core::Completion::Remove)
        .await
        .expect("the new holder is unaffected");
}
