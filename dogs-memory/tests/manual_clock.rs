//! The manual clock drives the store: moving it makes jobs due and wakes idle workers.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dogs_core::prelude::*;
use dogs_core::JobState;
use dogs_memory::{ManualClock, MemoryStore};

#[tokio::test]
async fn advancing_the_clock_runs_due_jobs_at_once() {
    let clock = ManualClock::new("2030-06-01T12:00:00Z".parse().unwrap());
    let store = MemoryStore::builder().clock(clock.clone()).build();
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = runs.clone();
    let job = EventJob::new("later", move |_: (), _ctx: JobContext| {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    });
    let options = WorkerOptions {
        poll_interval: Duration::from_secs(3600),
        ..Default::default()
    };
    let workers = start_workers(store.clone(), [job.definition()], options)
        .await
        .unwrap();
    let scheduled = schedule_job(
        &store,
        &job,
        &(),
        ScheduleOptions::run_in(Duration::from_secs(24 * 3600)),
    )
    .await
    .unwrap();

    clock.advance(Duration::from_secs(23 * 3600));
    let job_state = store.get_job(scheduled.id()).await.unwrap().unwrap().state;
    assert_eq!(job_state, JobState::Pending, "not due an hour early");

    clock.advance(Duration::from_secs(3600));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while runs.load(Ordering::SeqCst) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the due job did not run after the clock moved"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    workers.stop().await;
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert!(store.get_job(scheduled.id()).await.unwrap().is_none());
}
