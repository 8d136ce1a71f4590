//! Running jobs: event jobs, delays, priorities, slots, many workers, wake-ups and shutdown.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dogs_core::prelude::*;
use dogs_core::{ExecutionStatus, JobQuery, JobState, JobStore, NewJob, WorkerOptions};
use serde_json::json;
use tokio::time::Instant;

use super::*;
use crate::harness::TestContext;

/// W-event-runs
pub async fn event_runs(ctx: TestContext) {
    let store = ctx.store();
    let seen = log::<(Email, u32)>();
    let recorder = seen.clone();
    let job = EventJob::new("send-email", move |params: Email, ctx: JobContext| {
        let recorder = recorder.clone();
        async move {
            push(&recorder, (params, ctx.tries()));
            Ok(json!({"sent": true}))
        }
    });
    let workers = start(store.clone(), vec![job.definition()], fast_options()).await;
    let params = Email {
        to: "ada@example.com".into(),
        attempt: 1,
    };
    let id = schedule_job(&*store, &job, &params, ScheduleOptions::default())
        .await
        .unwrap();
    wait_gone(&*store, id.id()).await;
    let records = wait_executions(&*store, "send-email", 1).await;
    workers.stop().await;
    assert_eq!(read(&seen), vec![(params, 1)], "ran once, with its params");
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].status, ExecutionStatus::Success);
    assert_eq!(records[0].result, Some(json!({"sent": true})));
}

/// W-run-in-delay
pub async fn run_in_delay(ctx: TestContext) {
    let store = ctx.store();
    let started = log::<Instant>();
    let recorder = started.clone();
    let job = EventJob::new("delayed", move |_: (), _ctx: JobContext| {
        let recorder = recorder.clone();
        async move {
            push(&recorder, Instant::now());
            Ok(())
        }
    });
    // The default options: the default poll_interval (3 s) must not make the job late.
    let workers = start(
        store.clone(),
        vec![job.definition()],
        WorkerOptions::default(),
    )
    .await;
    let scheduled_at = Instant::now();
    schedule_job(
        &*store,
        &job,
        &(),
        ScheduleOptions::run_in(Duration::from_millis(300)),
    )
    .await
    .unwrap();
    let at = wait_for("the delayed job to start", DEADLINE, || async {
        read(&started).first().copied()
    })
    .await;
    workers.stop().await;
    let delay = at - scheduled_at;
    // Run times are kept in whole milliseconds of the store's clock (see future_wakeup).
    assert!(
        delay + Duration::from_millis(1) >= Duration::from_millis(300),
        "started after {delay:?}, before its run time"
    );
    assert!(
        delay < Duration::from_millis(600),
        "started {delay:?} after scheduling, long after its run time"
    );
}

/// W-priority-order
pub async fn priority_order(ctx: TestContext) {
    let store = ctx.store();
    let order = log::<i32>();
    let recorder = order.clone();
    let job = EventJob::new("ranked", move |priority: i32, _ctx: JobContext| {
        let recorder = recorder.clone();
        async move {
            push(&recorder, priority);
            Ok(())
        }
    });
    for priority in [2, 9, -1, 5, 7, 1] {
        schedule_job(
            &*store,
            &job,
            &priority,
            ScheduleOptions::default().priority(priority),
        )
        .await
        .unwrap();
    }
    let options = WorkerOptions {
        workers_count: 1,
        ..fast_options()
    };
    let workers = start(store.clone(), vec![job.definition()], options).await;
    wait_until("every ranked job to run", DEADLINE, || async {
        read(&order).len() == 6
    })
    .await;
    workers.stop().await;
    assert_eq!(read(&order), vec![9, 7, 5, 2, 1, -1]);
}

/// W-concurrency-limit
pub async fn concurrency_limit(ctx: TestContext) {
    let store = ctx.store();
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let (r, m, d) = (running.clone(), most.clone(), done.clone());
    let job = EventJob::new("limited", move |_: u32, _ctx: JobContext| {
        let (r, m, d) = (r.clone(), m.clone(), d.clone());
        async move {
            let now = r.fetch_add(1, Ordering::SeqCst) + 1;
            m.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(100)).await;
            r.fetch_sub(1, Ordering::SeqCst);
            d.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    });
    for i in 0..12u32 {
        schedule_job(&*store, &job, &i, ScheduleOptions::default())
            .await
            .unwrap();
    }
    let options = WorkerOptions {
        workers_count: 3,
        ..fast_options()
    };
    let workers = start(store.clone(), vec![job.definition()], options).await;
    wait_until("all 12 jobs to run", DEADLINE, || async {
        done.load(Ordering::SeqCst) == 12
    })
    .await;
    workers.stop().await;
    assert_eq!(
        most.load(Ordering::SeqCst),
        3,
        "at most workers_count at once, and every slot used"
    );
}

/// W-exactly-once
pub async fn exactly_once(ctx: TestContext) {
    let store = ctx.store();
    let runs: Arc<std::sync::Mutex<HashMap<u32, usize>>> = Arc::default();
    let definition = |runs: Arc<std::sync::Mutex<HashMap<u32, usize>>>| {
        EventJob::new("once", move |n: u32, _ctx: JobContext| {
            let runs = runs.clone();
            async move {
                if let Ok(mut runs) = runs.lock() {
                    *runs.entry(n).or_default() += 1;
                }
                Ok(())
            }
        })
    };
    let mut sets = Vec::new();
    for _ in 0..3 {
        let handle = ctx.another_handle().await;
        sets.push(
            start(
                handle,
                vec![definition(runs.clone()).definition()],
                fast_options(),
            )
            .await,
        );
    }
    let job = definition(runs.clone());
    let entries: Vec<NewJob> = (0..300u32)
        .map(|n| job.new_job(&n, ScheduleOptions::default()).unwrap())
        .collect();
    for outcome in store.schedule_many(entries).await.unwrap() {
        outcome.unwrap();
    }
    wait_until("every job to run", DEADLINE, || async {
        runs.lock().map(|r| r.len() == 300).unwrap_or(false)
    })
    .await;
    wait_until("every job to be removed", DEADLINE, || async {
        store
            .list_jobs(&JobQuery::name("once"))
            .await
            .unwrap()
            .is_empty()
    })
    .await;
    for set in sets {
        set.stop().await;
    }
    let runs = runs.lock().map(|r| r.clone()).unwrap_or_default();
    let twice: Vec<_> = runs.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "jobs run more than once: {twice:?}");
    assert_eq!(runs.len(), 300);
}

/// W-unknown-name
pub async fn unknown_name(ctx: TestContext) {
    let store = ctx.store();
    let job = EventJob::new("known", |_: (), _ctx: JobContext| async move { Ok(()) });
    let foreign = schedule_job_by_name(
        &*store,
        "foreign",
        &json!({"for": "another service"}),
        ScheduleOptions::default().priority(100),
    )
    .await
    .unwrap();
    let workers = start(store.clone(), vec![job.definition()], fast_options()).await;
    let known = schedule_job(&*store, &job, &(), ScheduleOptions::default())
        .await
        .unwrap();
    wait_gone(&*store, known.id()).await;
    workers.stop().await;
    let left = store
        .get_job(foreign.id())
        .await
        .unwrap()
        .expect("the foreign job is left alone");
    assert_eq!(
        (left.state, left.tries),
        (JobState::Pending, 0),
        "never claimed"
    );
}

/// W-wakeup-push
pub async fn wakeup_push(ctx: TestContext) {
    let store = ctx.store();
    assert!(
        store.wakeups().is_some(),
        "the {} store can notify idle workers",
        ctx.backend()
    );
    let started = log::<(u32, Instant)>();
    let recorder = started.clone();
    let job = EventJob::new("pushed", move |n: u32, _ctx: JobContext| {
        let recorder = recorder.clone();
        async move {
            push(&recorder, (n, Instant::now()));
            Ok(())
        }
    });
    let options = WorkerOptions {
        poll_interval: Duration::from_secs(60),
        ..fast_options()
    };
    let workers = start(store.clone(), vec![job.definition()], options).await;
    schedule_job(&*store, &job, &0, ScheduleOptions::default())
        .await
        .unwrap();
    wait_until("the first job to run", DEADLINE, || async {
        read(&started).len() == 1
    })
    .await;
    let producer = ctx.another_handle().await;
    for n in 1..=3u32 {
        let scheduled = Instant::now();
        schedule_job(&*producer, &job, &n, ScheduleOptions::default())
            .await
            .unwrap();
        let at = wait_for(
            "the pushed job to start",
            Duration::from_secs(10),
            || async {
                read(&started)
                    .iter()
                    .find(|(m, _)| *m == n)
                    .map(|(_, at)| *at)
            },
        )
        .await;
        let latency = at - scheduled;
        assert!(
            latency < Duration::from_secs(2),
            "job {n} started {latency:?} after scheduling, the 60 s poll was not cut short"
        );
    }
    workers.stop().await;
}

/// W-shutdown-graceful
pub async fn shutdown_graceful(ctx: TestContext) {
    let store = ctx.store();
    let started = log::<(String, u32)>();
    let recorder = started.clone();
    let cancelled_once = Arc::new(AtomicBool::new(false));
    let once = cancelled_once.clone();
    let job = EventJob::new("shutdown", move |kind: String, ctx: JobContext| {
        let (recorder, once) = (recorder.clone(), once.clone());
        async move {
            push(&recorder, (kind.clone(), ctx.tries()));
            if kind == "endless" && !once.load(Ordering::SeqCst) {
                ctx.cancelled().await;
                once.store(true, Ordering::SeqCst);
                return Err("cancelled".into());
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            Ok(kind)
        }
    });
    let options = WorkerOptions {
        lock_time: Duration::from_secs(60),
        shutdown_grace: Some(Duration::from_millis(700)),
        ..fast_options()
    };
    let quick = schedule_job(
        &*store,
        &job,
        &"quick".to_owned(),
        ScheduleOptions::default(),
    )
    .await
    .unwrap();
    let endless = schedule_job(
        &*store,
        &job,
        &"endless".to_owned(),
        ScheduleOptions::default(),
    )
    .await
    .unwrap();
    let workers = start(store.clone(), vec![job.definition()], options.clone()).await;
    wait_until("both jobs to start", DEADLINE, || async {
        read(&started).len() == 2
    })
    .await;
    let stopping = Instant::now();
    let ((), later) = tokio::join!(workers.stop(), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        schedule_job(
            &*store,
            &job,
            &"after stop".to_owned(),
            ScheduleOptions::default(),
        )
        .await
        .unwrap()
    });
    let took = stopping.elapsed();
    assert!(
        took >= Duration::from_millis(650),
        "stop waits for the grace period: {took:?}"
    );
    assert!(
        took < Duration::from_secs(5),
        "stop ends soon after the grace period: {took:?}"
    );
    assert!(
        store.get_job(quick.id()).await.unwrap().is_none(),
        "the quick job finished within the grace"
    );
    let job_after = store
        .get_job(endless.id())
        .await
        .unwrap()
        .expect("the cancelled job is kept");
    assert_eq!(job_after.state, JobState::Pending, "its lease is released");
    assert_eq!(job_after.tries, 0, "the cancelled run's try is given back");
    assert_eq!(
        store.get_job(later.id()).await.unwrap().unwrap().tries,
        0,
        "a stopping set claims nothing more"
    );
    let runs = wait_executions(&*store, "shutdown", 2).await;
    let statuses: Vec<_> = runs.iter().map(|r| r.status).collect();
    assert!(
        statuses.contains(&ExecutionStatus::Cancelled),
        "{statuses:?}"
    );
    assert!(
        cancelled_once.load(Ordering::SeqCst),
        "the running handler saw its cancellation"
    );

    let restarted = Instant::now();
    let workers = start(store.clone(), vec![job.definition()], options).await;
    wait_gone(&*store, endless.id()).await;
    wait_gone(&*store, later.id()).await;
    workers.stop().await;
    assert!(
        restarted.elapsed() < Duration::from_secs(10),
        "another worker takes the released job at once, not after its 60 s lease"
    );
}

/// W-future-wakeup
pub async fn future_wakeup(ctx: TestContext) {
    let store = ctx.store();
    let started = log::<(u32, Instant)>();
    let recorder = started.clone();
    let job = EventJob::new("soon", move |n: u32, _ctx: JobContext| {
        let recorder = recorder.clone();
        async move {
            push(&recorder, (n, Instant::now()));
            Ok(())
        }
    });
    // The default poll_interval (3 s).
    let options = WorkerOptions {
        cooldown_period: Duration::ZERO,
        ..WorkerOptions::default()
    };
    let workers = start(store.clone(), vec![job.definition()], options).await;
    let producer = ctx.another_handle().await;
    let delay = Duration::from_millis(300);
    for n in 0..3u32 {
        // The worker set is idle: it ran everything it was given.
        schedule_job(&*producer, &job, &(100 + n), ScheduleOptions::default())
            .await
            .unwrap();
        wait_until("the idle worker to run a job due now", DEADLINE, || async {
            read(&started).iter().any(|(m, _)| *m == 100 + n)
        })
        .await;
        let scheduled = Instant::now();
        schedule_job(&*producer, &job, &n, ScheduleOptions::run_in(delay))
            .await
            .unwrap();
        let at = wait_for("the job to start", DEADLINE, || async {
            read(&started)
                .iter()
                .find(|(m, _)| *m == n)
                .map(|(_, at)| *at)
        })
        .await;
        let after = (at - scheduled).saturating_sub(delay);
        // Stores keep run times in whole milliseconds of their clock, so a job may start up to
        // a millisecond before `delay` measured from an instant taken before scheduling.
        assert!(
            at - scheduled + Duration::from_millis(1) >= delay,
            "job {n} started {:?} after scheduling, before its time",
            at - scheduled
        );
        assert!(
            after <= Duration::from_millis(150),
            "job {n} started {after:?} after its time"
        );
    }
    workers.stop().await;
}

/// A claim that returns fewer jobs than asked because other claimers won the rest is followed by
/// another claim at once, not by a wait of `poll_interval` with free slots and due jobs.
pub async fn lost_races_claim_again(ctx: TestContext) {
    let store = ctx.store();
    let done = Arc::new(AtomicUsize::new(0));
    let counter = done.clone();
    let job = EventJob::new("raced", move |_: u32, _ctx: JobContext| {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    });
    for n in 0..8u32 {
        schedule_job(&*store, &job, &n, ScheduleOptions::default())
            .await
            .unwrap();
    }
    let options = WorkerOptions {
        poll_interval: Duration::from_secs(60),
        ..fast_options()
    };
    let contended = AlteredClaims::one_at_a_time(ctx.another_handle().await);
    let started = Instant::now();
    let workers = start(Arc::new(contended), vec![job.definition()], options).await;
    wait_until("all 8 jobs to run", DEADLINE, || async {
        done.load(Ordering::SeqCst) == 8
    })
    .await;
    workers.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the due jobs ran at once, not one per 60 s poll"
    );
}
