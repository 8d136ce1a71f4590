//! The workers (SPEC §4): one function per `W-…` id, run against every backend.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dogs_core::prelude::*;
use dogs_core::{
    ClaimRequest, ExecutionQuery, ExecutionStatus, JobId, JobQuery, JobState, JobStore, NewJob,
    WorkerOptions,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::time::Instant;

use crate::harness::TestContext;
use crate::support::*;

async fn start(
    store: Arc<dyn JobStore>,
    jobs: Vec<dogs_core::JobDefinition>,
    options: WorkerOptions,
) -> Workers {
    start_workers(store, jobs, options)
        .await
        .unwrap_or_else(|e| panic!("start_workers failed: {e}"))
}

async fn executions(store: &dyn JobStore, name: &str) -> Vec<dogs_core::Execution> {
    store
        .executions(&ExecutionQuery::name(name).limit(1000))
        .await
        .unwrap()
}

/// Waits until `name` has `count` execution records and returns them oldest first.
async fn wait_executions(
    store: &dyn JobStore,
    name: &str,
    count: usize,
) -> Vec<dogs_core::Execution> {
    let mut records = wait_for(
        &format!("{count} executions of '{name}'"),
        DEADLINE,
        || async {
            let records = executions(store, name).await;
            (records.len() >= count).then_some(records)
        },
    )
    .await;
    records.reverse();
    records
}

async fn wait_gone(store: &dyn JobStore, id: &JobId) {
    wait_until(&format!("job {id} to be removed"), DEADLINE, || async {
        store.get_job(id).await.unwrap().is_none()
    })
    .await;
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Email {
    to: String,
    attempt: u32,
}

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
    let options = WorkerOptions {
        poll_interval: Duration::from_millis(250),
        ..fast_options()
    };
    let workers = start(store.clone(), vec![job.definition()], options).await;
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
    assert!(
        delay >= Duration::from_millis(300),
        "started after {delay:?}, before its run time"
    );
    assert!(
        delay < Duration::from_millis(1300),
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

/// W-retry-policy
pub async fn retry_policy(ctx: TestContext) {
    let store = ctx.store();
    let flaky = EventJob::new("flaky", |_: (), ctx: JobContext| async move {
        if ctx.tries() < 3 {
            return Err(format!("try {} failed", ctx.tries()).into());
        }
        Ok("third time lucky")
    })
    .on_error(|_| ErrorAction::RetryIn(Duration::from_millis(10)));
    let dismissed = EventJob::new("dismissed", |_: (), _ctx: JobContext| async move {
        Err::<(), _>("permanent".into())
    })
    .on_error(|failure| {
        assert_eq!(failure.error, "permanent");
        ErrorAction::Dismiss
    });
    let exhausted = EventJob::new("exhausted", |_: (), _ctx: JobContext| async move {
        Err::<(), _>("always".into())
    })
    .max_tries(4);
    let max_tries_calls = log::<(String, u32)>();
    let recorder = max_tries_calls.clone();
    let options = WorkerOptions {
        on_max_tries: Some(Arc::new(move |failure| {
            push(&recorder, (failure.name.clone(), failure.tries))
        })),
        ..fast_options()
    };
    let workers = start(
        store.clone(),
        vec![
            flaky.definition(),
            dismissed.definition(),
            exhausted.definition(),
        ],
        options,
    )
    .await;
    let flaky_id = schedule_job(&*store, &flaky, &(), ScheduleOptions::default())
        .await
        .unwrap();
    let dismissed_id = schedule_job(&*store, &dismissed, &(), ScheduleOptions::default())
        .await
        .unwrap();
    let exhausted_id = schedule_job(&*store, &exhausted, &(), ScheduleOptions::default())
        .await
        .unwrap();

    wait_gone(&*store, flaky_id.id()).await;
    let flaky_runs = wait_executions(&*store, "flaky", 3).await;
    let statuses: Vec<_> = flaky_runs.iter().map(|e| (e.tries, e.status)).collect();
    assert_eq!(
        statuses,
        vec![
            (1, ExecutionStatus::Error),
            (2, ExecutionStatus::Error),
            (3, ExecutionStatus::Success)
        ]
    );

    let failed = |id: JobId| {
        let store = store.clone();
        async move {
            wait_for("the job to fail for good", DEADLINE, || async {
                store
                    .get_job(&id)
                    .await
                    .unwrap()
                    .filter(|j| j.state == JobState::Failed)
            })
            .await
        }
    };
    let job = failed(dismissed_id.id().clone()).await;
    assert_eq!(
        (job.tries, job.last_error.as_deref()),
        (1, Some("permanent")),
        "dismiss fails at once"
    );

    let job = failed(exhausted_id.id().clone()).await;
    assert_eq!(job.tries, 4);
    let runs = wait_executions(&*store, "exhausted", 4).await;
    let statuses: Vec<_> = runs.iter().map(|e| e.status).collect();
    assert_eq!(
        statuses,
        [
            [ExecutionStatus::Error; 3].as_slice(),
            &[ExecutionStatus::Failed]
        ]
        .concat()
    );
    for pair in runs.windows(2) {
        let base = Duration::from_millis(20 * 2u64.pow(pair[0].tries - 1));
        let gap = (pair[1].started_at - pair[0].ended_at)
            .to_std()
            .unwrap_or_default();
        assert!(
            gap + Duration::from_millis(5) >= base,
            "retry {} came {gap:?} after, sooner than its backoff {base:?}",
            pair[1].tries
        );
    }
    wait_until("on_max_tries to be called", DEADLINE, || async {
        !read(&max_tries_calls).is_empty()
    })
    .await;
    workers.stop().await;
    assert_eq!(
        read(&max_tries_calls),
        vec![("exhausted".to_owned(), 4)],
        "on_max_tries is called once"
    );
}

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
    let workers = start(store.clone(), vec![job.definition()], fast_options()).await;
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

/// W-history-recorded
pub async fn history_recorded(ctx: TestContext) {
    let store = ctx.store();
    let good = EventJob::new("good", |n: u32, _ctx: JobContext| async move {
        tokio::time::sleep(Duration::from_millis(30)).await;
        Ok(json!({ "double": n * 2 }))
    })
    .save_executions_for(Duration::from_secs(3600));
    let bad = EventJob::new("bad", |_: (), _ctx: JobContext| async move {
        Err::<(), _>("it broke".into())
    })
    .on_error(|_| ErrorAction::Dismiss);
    let silent = EventJob::new("silent", |_: (), _ctx: JobContext| async move { Ok(()) })
        .save_executions_for(Duration::ZERO);
    let workers = start(
        store.clone(),
        vec![good.definition(), bad.definition(), silent.definition()],
        fast_options(),
    )
    .await;
    let good_id = schedule_job(
        &*store,
        &good,
        &21,
        ScheduleOptions::default().unique_identifier("g"),
    )
    .await
    .unwrap();
    schedule_job(&*store, &bad, &(), ScheduleOptions::default())
        .await
        .unwrap();
    let silent_id = schedule_job(&*store, &silent, &(), ScheduleOptions::default())
        .await
        .unwrap();
    let good_runs = wait_executions(&*store, "good", 1).await;
    let bad_runs = wait_executions(&*store, "bad", 1).await;
    wait_gone(&*store, silent_id.id()).await;
    let worker_id = workers.worker_id().to_owned();
    workers.stop().await;

    let run = &good_runs[0];
    assert_eq!(run.job_id, *good_id.id());
    assert_eq!(run.status, ExecutionStatus::Success);
    assert_eq!(run.result, Some(json!({"double": 42})));
    assert_eq!(run.params, json!(21));
    assert_eq!(run.unique_identifier.as_deref(), Some("g"));
    assert_eq!((run.tries, run.error.as_ref()), (1, None));
    assert_eq!(run.worker_id, worker_id);
    assert!(run.duration >= Duration::from_millis(30));
    assert!(run.ended_at >= run.started_at);
    assert_close(
        run.expires_at,
        run.ended_at + chrono::Duration::hours(1),
        Duration::from_secs(1),
        "the record's expiry",
    );

    assert_eq!(bad_runs[0].status, ExecutionStatus::Failed);
    assert_eq!(bad_runs[0].error.as_deref(), Some("it broke"));
    assert_eq!(bad_runs[0].result, None);
    assert!(
        executions(&*store, "silent").await.is_empty(),
        "save_executions_for zero keeps none"
    );
}

#[derive(Debug, Serialize, Deserialize)]
struct Typed {
    count: u32,
}

/// W-bad-params
pub async fn bad_params(ctx: TestContext) {
    let store = ctx.store();
    let ran = log::<u32>();
    let recorder = ran.clone();
    let job = EventJob::new("typed", move |params: Typed, _ctx: JobContext| {
        let recorder = recorder.clone();
        async move {
            push(&recorder, params.count);
            Ok(())
        }
    });
    let workers = start(store.clone(), vec![job.definition()], fast_options()).await;
    let bad = schedule_job_by_name(
        &*store,
        "typed",
        &json!({"count": "many"}),
        ScheduleOptions::default(),
    )
    .await
    .unwrap();
    let failed = wait_for("the bad job to fail", DEADLINE, || async {
        store
            .get_job(bad.id())
            .await
            .unwrap()
            .filter(|j| j.state == JobState::Failed)
    })
    .await;
    assert_eq!(failed.tries, 1, "bad params fail at once, without retries");
    let error = failed.last_error.unwrap_or_default();
    assert!(
        error.contains("params") && error.contains("typed"),
        "a clear error: {error}"
    );
    let good = schedule_job(
        &*store,
        &job,
        &Typed { count: 7 },
        ScheduleOptions::default(),
    )
    .await
    .unwrap();
    wait_gone(&*store, good.id()).await;
    let runs = wait_executions(&*store, "typed", 2).await;
    workers.stop().await;
    assert_eq!(read(&ran), vec![7], "the worker goes on");
    assert_eq!(runs[0].status, ExecutionStatus::Failed);
    assert!(runs[0]
        .error
        .as_deref()
        .unwrap_or_default()
        .contains("params"));
}

/// W-panic-is-error
pub async fn panic_is_error(ctx: TestContext) {
    let store = ctx.store();
    let job = EventJob::new("panicky", |_: (), ctx: JobContext| async move {
        if ctx.tries() == 1 {
            panic!("handler exploded");
        }
        Ok("recovered")
    })
    .on_error(|_| ErrorAction::RetryIn(Duration::from_millis(10)));
    let workers = start(store.clone(), vec![job.definition()], fast_options()).await;
    let id = schedule_job(&*store, &job, &(), ScheduleOptions::default())
        .await
        .unwrap();
    wait_gone(&*store, id.id()).await;
    let runs = wait_executions(&*store, "panicky", 2).await;
    workers.stop().await;
    assert_eq!(runs[0].status, ExecutionStatus::Error);
    let error = runs[0].error.as_deref().unwrap_or_default();
    assert!(
        error.contains("panicked") && error.contains("handler exploded"),
        "{error}"
    );
    assert_eq!(
        (runs[1].status, runs[1].result.clone()),
        (ExecutionStatus::Success, Some(json!("recovered")))
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
