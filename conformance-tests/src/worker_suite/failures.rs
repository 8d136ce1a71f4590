//! When executions fail: retries, records, bad params, panics.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dogs_core::prelude::*;
use dogs_core::{ExecutionStatus, JobId, JobQuery, JobState, JobStore, WorkerOptions};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::*;
use crate::harness::TestContext;

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

/// W-hook-panic
pub async fn hook_panic(ctx: TestContext) {
    let store = ctx.store();
    let on_error = EventJob::new("error-hook", |_: (), ctx: JobContext| async move {
        if ctx.tries() == 1 {
            return Err("first try fails".into());
        }
        Ok("retried by the default policy")
    })
    .on_error(|_| panic!("on_error exploded"));
    let on_stale = EventJob::new("stale-hook", |_: (), ctx: JobContext| async move {
        if ctx.tries() == 1 {
            ctx.cancelled().await;
        }
        Ok("ran again")
    })
    .lock_time(Duration::from_millis(300))
    .on_stale(|_| panic!("on_stale exploded"));
    let exhausted = EventJob::new("max-tries-hook", |_: (), _ctx: JobContext| async move {
        Err::<(), _>("always".into())
    })
    .max_tries(1);
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    // Panics on every call but the first, which registers the job.
    let next_run = RecurrentJob::new("next-run-hook", |_ctx: JobContext| async move { Ok(()) })
        .get_next_run(move |now| {
            if counter.fetch_add(1, Ordering::SeqCst) > 0 {
                panic!("get_next_run exploded");
            }
            now
        });
    let always = RecurrentJob::new(
        "registration-hook",
        |_ctx: JobContext| async move { Ok(()) },
    )
    .get_next_run(|_| panic!("get_next_run exploded at once"));
    let plain = EventJob::new("plain", |_: (), _ctx: JobContext| async move { Ok(()) });
    let options = WorkerOptions {
        on_max_tries: Some(Arc::new(|_| panic!("on_max_tries exploded"))),
        ..without_renewal()
    };
    let workers = start(
        store.clone(),
        vec![
            on_error.definition(),
            on_stale.definition(),
            exhausted.definition(),
            next_run.into(),
            always.into(),
            plain.definition(),
        ],
        options,
    )
    .await;
    for name in ["error-hook", "stale-hook", "max-tries-hook"] {
        schedule_job_by_name(&*store, name, &(), ScheduleOptions::default())
            .await
            .unwrap();
    }
    let runs = wait_executions(&*store, "error-hook", 2).await;
    let statuses: Vec<_> = runs.iter().map(|r| (r.tries, r.status)).collect();
    assert_eq!(
        statuses,
        vec![(1, ExecutionStatus::Error), (2, ExecutionStatus::Success)],
        "a panicking on_error is the default policy"
    );
    let runs = wait_executions(&*store, "stale-hook", 2).await;
    let statuses: Vec<_> = runs.iter().map(|r| (r.tries, r.status)).collect();
    assert_eq!(
        statuses,
        vec![(1, ExecutionStatus::Stale), (2, ExecutionStatus::Success)],
        "a panicking on_stale changes nothing"
    );
    let runs = wait_executions(&*store, "max-tries-hook", 1).await;
    assert_eq!(runs[0].status, ExecutionStatus::Failed);
    for name in ["next-run-hook", "registration-hook"] {
        let runs = wait_executions(&*store, name, 1).await;
        assert_eq!(runs[0].status, ExecutionStatus::Success, "{name}");
        // A panicking get_next_run is a schedule with no next run: retried in an hour.
        wait_until(
            &format!("{name} to be scheduled in about an hour"),
            DEADLINE,
            || async {
                let now = store_now(&*store).await;
                store
                    .list_jobs(&JobQuery::name(name))
                    .await
                    .unwrap()
                    .iter()
                    .any(|j| {
                        j.state == JobState::Pending
                            && j.run_at > now + chrono::Duration::minutes(30)
                    })
            },
        )
        .await;
    }
    let id = schedule_job_by_name(&*store, "plain", &(), ScheduleOptions::default())
        .await
        .unwrap();
    wait_gone(&*store, id.id()).await;
    workers.stop().await;
}

/// A result that not every store can keep (a NUL character, an integer past `i64::MAX`) does not
/// cost the outcome: the job is done, once, and its record says the result was not kept.
pub async fn unstorable_result(ctx: TestContext) {
    let store = ctx.store();
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = runs.clone();
    let job = EventJob::new("odd-result", move |_: (), _ctx: JobContext| {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            Ok(json!({ "text": "a\u{0}b", "big": u64::MAX }))
        }
    });
    let failing = EventJob::new("odd-error", |_: (), _ctx: JobContext| async move {
        Err::<(), _>("broken \u{0} text".into())
    })
    .on_error(|_| ErrorAction::Dismiss);
    let workers = start(
        store.clone(),
        vec![job.definition(), failing.definition()],
        fast_options(),
    )
    .await;
    let id = schedule_job(&*store, &job, &(), ScheduleOptions::default())
        .await
        .unwrap();
    let broken = schedule_job(&*store, &failing, &(), ScheduleOptions::default())
        .await
        .unwrap();
    wait_gone(&*store, id.id()).await;
    let records = wait_executions(&*store, "odd-result", 1).await;
    let failed = wait_for("the failing job to fail", DEADLINE, || async {
        store
            .get_job(broken.id())
            .await
            .unwrap()
            .filter(|j| j.state == JobState::Failed)
    })
    .await;
    workers.stop().await;
    assert_eq!(runs.load(Ordering::SeqCst), 1, "done once");
    assert_eq!(records[0].status, ExecutionStatus::Success);
    assert_eq!(records[0].result, None, "the result is not kept");
    let error = failed.last_error.unwrap_or_default();
    assert!(
        error.contains("broken") && !error.contains('\0'),
        "{error:?}"
    );
}
