//! Claiming ahead of free slots: a backlog still runs once each within the slots, and what waits
//! locally goes back to the store when the set stops.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dogs_core::prelude::*;
use dogs_core::{ClaimRequest, JobQuery, JobState, JobStore, NewJob, WorkerOptions};
use tokio::time::Instant;

use super::*;
use crate::harness::TestContext;

/// How long a backlog may take on the slowest store.
const BACKLOG_DEADLINE: Duration = Duration::from_secs(60);

async fn schedule_backlog(store: &dyn JobStore, job: &EventJob<u32>, count: u32) {
    let entries: Vec<NewJob> = (0..count)
        .map(|n| job.new_job(&n, ScheduleOptions::default()).unwrap())
        .collect();
    for outcome in store.schedule_many(entries).await.unwrap() {
        outcome.unwrap();
    }
}

/// Two worker sets that claim ahead of their slots drain a backlog of quick jobs: each job runs
/// once, and neither set ever runs more than its `workers_count` at once.
pub async fn prefetch_runs_once(ctx: TestContext) {
    const JOBS: u32 = 600;
    const SLOTS: usize = 4;
    let store = ctx.store();
    let runs: Arc<Mutex<HashMap<u32, usize>>> = Arc::default();
    let most = Arc::new(AtomicUsize::new(0));
    let definition = |runs: Arc<Mutex<HashMap<u32, usize>>>, most: Arc<AtomicUsize>| {
        let running = Arc::new(AtomicUsize::new(0));
        EventJob::new("quick", move |n: u32, _ctx: JobContext| {
            let (runs, most, running) = (runs.clone(), most.clone(), running.clone());
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                if let Ok(mut runs) = runs.lock() {
                    *runs.entry(n).or_default() += 1;
                }
                tokio::task::yield_now().await;
                running.fetch_sub(1, Ordering::SeqCst);
                Ok(())
            }
        })
    };
    let options = WorkerOptions {
        workers_count: SLOTS,
        ..fast_options()
    };
    let mut sets = Vec::new();
    for _ in 0..2 {
        let handle = ctx.another_handle().await;
        let job = definition(runs.clone(), most.clone());
        sets.push(start(handle, vec![job.definition()], options.clone()).await);
    }
    let job = definition(runs.clone(), most.clone());
    schedule_backlog(&*store, &job, JOBS).await;
    wait_until(
        "every job of the backlog to run",
        BACKLOG_DEADLINE,
        || async {
            runs.lock()
                .map(|r| r.len() == JOBS as usize)
                .unwrap_or(false)
        },
    )
    .await;
    for set in sets {
        set.stop().await;
    }
    let runs = runs.lock().map(|r| r.clone()).unwrap_or_default();
    let twice: Vec<_> = runs.iter().filter(|(_, count)| **count > 1).collect();
    assert!(twice.is_empty(), "jobs that ran more than once: {twice:?}");
    assert!(
        most.load(Ordering::SeqCst) <= SLOTS,
        "a set ran {} jobs at once with {SLOTS} slots",
        most.load(Ordering::SeqCst)
    );
    let left = store
        .list_jobs(&dogs_core::JobQuery::default())
        .await
        .unwrap();
    assert!(left.is_empty(), "jobs left after the backlog ran: {left:?}");
}

/// A worker set with one slot claims jobs ahead of it while they run quickly; when it stops,
/// even with no shutdown grace, every job it had claimed and not started is given back at once,
/// its try with it, so any other claimer takes it without waiting for its lease to end.
pub async fn prefetch_given_back_at_stop(ctx: TestContext) {
    const JOBS: u32 = 400;
    let store = ctx.store();
    let ran = Arc::new(AtomicUsize::new(0));
    let counter = ran.clone();
    let job = EventJob::new("ahead", move |_: u32, _ctx: JobContext| {
        let counter = counter.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(2)).await;
            counter.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    });
    schedule_backlog(&*store, &job, JOBS).await;
    let options = WorkerOptions {
        workers_count: 1,
        lock_time: Duration::from_secs(60),
        shutdown_grace: Some(Duration::ZERO),
        ..fast_options()
    };
    let workers = start(store.clone(), vec![job.definition()], options).await;
    wait_until(
        "the set to hold jobs leased ahead of its one slot",
        BACKLOG_DEADLINE,
        || async {
            let counts = store.count_jobs().await.unwrap();
            counts.iter().map(|c| c.running).sum::<u64>() > 1
        },
    )
    .await;
    workers.stop().await;
    let ran = ran.load(Ordering::SeqCst);
    assert!(ran < JOBS as usize, "the backlog ran out before the stop");
    let request = ClaimRequest::new(["ahead"], Duration::from_secs(60), JOBS as usize);
    let claimed = store.claim(&request).await.unwrap();
    // With no grace, the execution under way is cancelled and released too, even when its
    // handler had done its work but returned only after the stop (it runs again, as documented).
    let not_run = JOBS as usize - ran;
    assert!(
        claimed.jobs.len() == not_run || claimed.jobs.len() == not_run + 1,
        "every job not run is claimable at once after the stop: {} claimable, {ran} of {JOBS} ran",
        claimed.jobs.len()
    );
    let tries: Vec<u32> = claimed.jobs.iter().map(|c| c.job.tries).collect();
    assert!(
        tries.iter().all(|t| *t == 1),
        "a job given back unrun keeps no try: {tries:?}"
    );
}

/// Jobs that take long are not claimed ahead: while a set of two slots runs 300 ms jobs, no job
/// stays leased without its handler having started (beyond the moment between a claim's answer
/// and the start), so the rest stay free for any other worker.
pub async fn prefetch_not_for_slow_jobs(ctx: TestContext) {
    const JOBS: u32 = 8;
    let store = ctx.store();
    let started: Arc<Mutex<std::collections::HashSet<u32>>> = Arc::default();
    let recorder = started.clone();
    let job = EventJob::new("slow", move |n: u32, _ctx: JobContext| {
        let recorder = recorder.clone();
        async move {
            if let Ok(mut started) = recorder.lock() {
                started.insert(n);
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            Ok(())
        }
    });
    schedule_backlog(&*store, &job, JOBS).await;
    let options = WorkerOptions {
        workers_count: 2,
        ..fast_options()
    };
    let workers = start(store.clone(), vec![job.definition()], options).await;
    // When each job was first seen leased with its handler not started.
    let waiting: Arc<Mutex<HashMap<u32, Instant>>> = Arc::default();
    let longest = Arc::new(Mutex::new(Duration::ZERO));
    wait_until("every slow job to start", BACKLOG_DEADLINE, || {
        let (store, started, waiting, longest) = (
            store.clone(),
            started.clone(),
            waiting.clone(),
            longest.clone(),
        );
        async move {
            let leased = store
                .list_jobs(&JobQuery::name("slow").state(JobState::Running))
                .await
                .unwrap();
            let started = started.lock().map(|s| s.clone()).unwrap_or_default();
            let now = Instant::now();
            if let (Ok(mut waiting), Ok(mut longest)) = (waiting.lock(), longest.lock()) {
                for job in leased {
                    let n: u32 = serde_json::from_value(job.params.clone()).unwrap();
                    if !started.contains(&n) {
                        let since = *waiting.entry(n).or_insert(now);
                        *longest = (*longest).max(now - since);
                    }
                }
            }
            started.len() == JOBS as usize
        }
    })
    .await;
    workers.stop().await;
    let longest = *longest.lock().unwrap();
    assert!(
        longest < Duration::from_millis(150),
        "a job stayed leased for {longest:?} without starting, with 300 ms jobs on 2 slots"
    );
}
