//! The testing helpers: draining runs what is due, including what handlers schedule, and
//! leaves what is due later; waiting gives up at its deadline.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use dogs_core::prelude::*;
use dogs_core::testing::{drain, scheduled_jobs, wait_for_execution};
use dogs_core::{ErrorAction, ErrorKind, ExecutionStatus, JobId};
use dogs_memory::MemoryStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_runs_what_handlers_schedule_and_leaves_what_is_due_later() {
    let store = MemoryStore::new();
    let follow_up = EventJob::new("follow-up", |n: u32, _ctx: JobContext| async move { Ok(n) });
    let chained = {
        let store = store.clone();
        let follow_up = follow_up.clone();
        EventJob::new("chained", move |n: u32, _ctx: JobContext| {
            let (store, follow_up) = (store.clone(), follow_up.clone());
            async move {
                schedule_job(&store, &follow_up, &(n + 1), ScheduleOptions::now()).await?;
                Ok(())
            }
        })
    };
    let flaky = EventJob::new("flaky", |_: (), _ctx: JobContext| async move {
        Err::<(), _>("not yet".into())
    })
    .on_error(|_| ErrorAction::RetryIn(Duration::from_secs(3600)));
    schedule_job(&store, &chained, &1, ScheduleOptions::now())
        .await
        .unwrap();
    let flaky_id = schedule_job(&store, &flaky, &(), ScheduleOptions::now())
        .await
        .unwrap();
    let later = schedule_job(
        &store,
        &follow_up,
        &9,
        ScheduleOptions::run_in(Duration::from_secs(600)),
    )
    .await
    .unwrap();

    let ran = drain(
        &store,
        [
            chained.definition(),
            follow_up.definition(),
            flaky.definition(),
        ],
    )
    .await
    .unwrap();
    let outcomes: Vec<(&str, ExecutionStatus)> =
        ran.iter().map(|r| (r.name.as_str(), r.status)).collect();
    assert_eq!(outcomes.len(), 3, "{outcomes:?}");
    assert!(outcomes.contains(&("chained", ExecutionStatus::Success)));
    assert!(outcomes.contains(&("follow-up", ExecutionStatus::Success)));
    assert!(outcomes.contains(&("flaky", ExecutionStatus::Error)));
    let follow = ran.iter().find(|r| r.name == "follow-up").unwrap();
    assert_eq!(follow.result, Some(serde_json::json!(2)));

    let left: Vec<JobId> = scheduled_jobs(&store, "follow-up")
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(left, vec![later.id().clone()], "a job due later is left");
    assert_eq!(scheduled_jobs(&store, "flaky").await.unwrap().len(), 1);
    let record = wait_for_execution(&store, "flaky", flaky_id.id(), Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(record.status, ExecutionStatus::Error);
    let none = wait_for_execution(&store, "follow-up", later.id(), Duration::from_millis(50)).await;
    assert_eq!(none.map_err(|e| e.kind()).err(), Some(ErrorKind::TimedOut));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_outcome_waits_through_retries_to_the_last_record() {
    let store = MemoryStore::new();
    // Fails its first two tries, then succeeds; "never" is retried an hour later.
    let flaky = EventJob::new("flaky", |until: u32, ctx: JobContext| async move {
        if ctx.tries() <= until {
            return Err::<u32, _>(format!("try {}", ctx.tries()).into());
        }
        Ok(ctx.tries())
    })
    .max_tries(3)
    .on_error(|failure| match failure.params.as_u64() {
        Some(9) => ErrorAction::RetryIn(Duration::from_secs(3600)),
        _ => ErrorAction::RetryIn(Duration::from_millis(10)),
    });
    let options = WorkerOptions::new().poll_interval(Duration::from_millis(10));
    let workers = start_workers(store.clone(), [flaky.definition()], options)
        .await
        .unwrap();
    let succeeds = schedule_job(&store, &flaky, &2, ScheduleOptions::now())
        .await
        .unwrap();
    let retried_later = schedule_job(&store, &flaky, &9, ScheduleOptions::now())
        .await
        .unwrap();
    let wait = Duration::from_secs(10);

    let record = testing::wait_for_outcome(&store, "flaky", &succeeds, wait)
        .await
        .unwrap();
    assert_eq!(
        (record.status, record.tries, record.result),
        (ExecutionStatus::Success, 3, Some(serde_json::json!(3))),
        "the last record, not the first try's"
    );
    let first = wait_for_execution(&store, "flaky", &retried_later, wait)
        .await
        .unwrap();
    assert_eq!(first.status, ExecutionStatus::Error);
    let pending =
        testing::wait_for_outcome(&store, "flaky", &retried_later, Duration::from_millis(100))
            .await;
    assert_eq!(
        pending.map_err(|e| e.kind()).err(),
        Some(ErrorKind::TimedOut),
        "a job retried an hour later has no outcome yet"
    );
    workers.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_outcome_returns_the_failure_of_a_job_out_of_tries() {
    let store = MemoryStore::new();
    let failing = EventJob::new("failing", |_: (), _ctx: JobContext| async move {
        Err::<(), _>("down".into())
    })
    .max_tries(2)
    .on_error(|_| ErrorAction::Default);
    let options = WorkerOptions::new()
        .poll_interval(Duration::from_millis(10))
        .retry_backoff(dogs_core::RetryBackoff {
            base: Duration::from_millis(5),
            max: Duration::from_millis(5),
            jitter: 0.0,
        });
    let workers = start_workers(store.clone(), [failing.definition()], options)
        .await
        .unwrap();
    let id = schedule_job(&store, &failing, &(), ScheduleOptions::now())
        .await
        .unwrap();
    let record = testing::wait_for_outcome(&store, "failing", &id, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!((record.status, record.tries), (ExecutionStatus::Failed, 2));
    assert_eq!(
        store.get_job(id.id()).await.unwrap().map(|j| j.state),
        Some(dogs_core::JobState::Failed)
    );
    workers.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_outcome_of_a_job_cancelled_after_a_stale_try_is_the_cancelled_try() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let store = MemoryStore::new();
    let second_started = Arc::new(AtomicBool::new(false));
    let started = second_started.clone();
    // Try 1 outlives its lease; try 2 keeps its lease and takes 300 ms to stop once cancelled,
    // so the job is failed as cancelled well before try 2's record is written.
    let slow = EventJob::new("slow", move |_: (), ctx: JobContext| {
        let started = started.clone();
        async move {
            if ctx.tries() == 1 {
                tokio::time::sleep(Duration::from_millis(400)).await;
                return Ok(());
            }
            ctx.extend_lock_time(Duration::from_secs(30)).await?;
            started.store(true, Ordering::SeqCst);
            ctx.cancelled().await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            Err("stopped".into())
        }
    })
    .lock_time(Duration::from_millis(150))
    .auto_extend(false);
    let options = WorkerOptions::new()
        .workers_count(2)
        .poll_interval(Duration::from_millis(20));
    let workers = start_workers(store.clone(), [slow.definition()], options)
        .await
        .unwrap();
    let id = schedule_job(&store, &slow, &(), ScheduleOptions::now())
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let records = store
            .executions(&dogs_core::ExecutionQuery::name("slow"))
            .await
            .unwrap();
        let stale = records
            .iter()
            .any(|r| r.status == ExecutionStatus::Stale && r.tries == 1);
        if stale && second_started.load(Ordering::SeqCst) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "try 1 went stale and try 2 started: {records:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    assert!(store.cancel(id.id()).await.unwrap());
    let record = testing::wait_for_outcome(&store, "slow", &id, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(
        (record.status, record.tries),
        (ExecutionStatus::Cancelled, 2),
        "the cancelled try's record, not the stale one before it"
    );
    workers.stop().await;
}
