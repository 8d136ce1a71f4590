//! The handler API as a service spells it: state handed to every execution, errors from any
//! `Display`, the worker set's `on_max_tries` hook set by its builder, and event and recurrent
//! jobs in one list.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dogs_core::prelude::*;
use dogs_memory::MemoryStore;

const DEADLINE: Duration = Duration::from_secs(10);

/// Waits until `done` holds, or panics at the deadline.
async fn until(what: &str, done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[derive(Clone, Default)]
struct App {
    runs: Arc<AtomicU32>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_state_hands_the_state_to_every_execution() {
    let store = MemoryStore::new();
    let app = App::default();
    let greet = EventJob::with_state(
        "greet",
        app.clone(),
        |app: App, to: String, _ctx: JobContext| async move {
            let n = app.runs.fetch_add(1, Ordering::SeqCst) + 1;
            Ok(format!("run {n}: hello, {to}"))
        },
    );
    for to in ["ada", "grace", "edsger"] {
        schedule_job(&store, &greet, &to.to_owned(), ScheduleOptions::now())
            .await
            .unwrap();
    }
    let ran = testing::drain(&store, [greet.definition()]).await.unwrap();
    assert_eq!(ran.len(), 3);
    assert!(ran.iter().all(|r| r.status == ExecutionStatus::Success));
    assert_eq!(
        app.runs.load(Ordering::SeqCst),
        3,
        "every execution saw the state the job was defined with"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recurrent_with_state_and_event_jobs_start_from_one_list() {
    let store = MemoryStore::new();
    let app = App::default();
    let tick = RecurrentJob::with_state(
        "tick",
        app.clone(),
        |app: App, _ctx: JobContext| async move {
            app.runs.fetch_add(1, Ordering::SeqCst);
            Ok(())
        },
    )
    .run_every(Duration::from_millis(20));
    let echo = EventJob::new("echo", |n: u32, _ctx: JobContext| async move { Ok(n) });
    // One spelling for both kinds.
    let jobs = [tick.definition(), echo.definition()];
    let options = WorkerOptions::new().poll_interval(Duration::from_millis(20));
    let workers = start_workers(store.clone(), jobs, options).await.unwrap();
    let id = schedule_job(&store, &echo, &7, ScheduleOptions::now())
        .await
        .unwrap();
    let record = testing::wait_for_execution(&store, "echo", &id, DEADLINE)
        .await
        .unwrap();
    assert_eq!(record.result, Some(serde_json::json!(7)));
    until("the recurrent job ran twice with its state", || {
        app.runs.load(Ordering::SeqCst) >= 2
    })
    .await;
    workers.stop().await;
}

/// An error type that is only `Display`, as some libraries' are.
struct OnlyDisplay;

impl fmt::Display for OnlyDisplay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the printer is on fire")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_errors_come_from_any_error_or_text() {
    let store = MemoryStore::new();
    // Each case fails once, for good (`Dismiss`), with its own error.
    let fail = EventJob::new("fail", |case: u32, _ctx: JobContext| async move {
        match case {
            0 => Err("a str".into()),
            1 => Err(format!("a String, case {case}").into()),
            2 => Err(handler_error(OnlyDisplay)),
            3 => {
                let parsed: u32 = "not a number".parse()?;
                Ok(parsed)
            }
            _ => {
                let boxed: Box<dyn std::error::Error> = "a Box<dyn Error>, not Send".into();
                Err(handler_error(boxed))
            }
        }
    })
    .on_error(|_| ErrorAction::Dismiss);
    for case in 0..5 {
        schedule_job(&store, &fail, &case, ScheduleOptions::now())
            .await
            .unwrap();
    }
    let ran = testing::drain(&store, [fail.definition()]).await.unwrap();
    let mut errors: Vec<(u32, String)> = ran
        .into_iter()
        .map(|r| {
            assert_eq!(r.status, ExecutionStatus::Failed);
            (
                serde_json::from_value(r.params).unwrap(),
                r.error.unwrap_or_default(),
            )
        })
        .collect();
    errors.sort();
    assert_eq!(
        errors,
        [
            (0, "a str".to_owned()),
            (1, "a String, case 1".to_owned()),
            (2, "the printer is on fire".to_owned()),
            (3, "invalid digit found in string".to_owned()),
            (4, "a Box<dyn Error>, not Send".to_owned()),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_max_tries_set_by_the_builder_is_called_once() {
    let store = MemoryStore::new();
    let failures: Arc<Mutex<Vec<ExecutionFailure>>> = Arc::default();
    let seen = failures.clone();
    let options = WorkerOptions::new()
        .poll_interval(Duration::from_millis(20))
        .retry_backoff(RetryBackoff {
            base: Duration::from_millis(1),
            max: Duration::from_millis(5),
            jitter: 0.0,
        })
        .on_max_tries(move |failure| seen.lock().unwrap().push(failure.clone()));
    let flaky = EventJob::new("flaky", |_: (), _ctx: JobContext| async move {
        Err::<(), _>("down".into())
    })
    .max_tries(2);
    let workers = start_workers(store.clone(), [flaky.definition()], options)
        .await
        .unwrap();
    let id = schedule_job(&store, &flaky, &(), ScheduleOptions::now())
        .await
        .unwrap();
    until("on_max_tries was called", || {
        !failures.lock().unwrap().is_empty()
    })
    .await;
    let job = store.get_job(id.id()).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Failed);
    workers.stop().await;
    let failures = failures.lock().unwrap();
    assert_eq!(
        failures.len(),
        1,
        "called once, when the job failed for good"
    );
    assert_eq!(
        (
            &failures[0].job_id,
            failures[0].tries,
            failures[0].error.as_str()
        ),
        (id.id(), 2, "down")
    );
}
