//! Bad input (SPEC §5): each gets a typed error at the call that caused it, and loses nothing
//! already stored.

use std::collections::HashMap;
use std::time::Duration;

use dogs_core::prelude::*;
use dogs_core::{ErrorKind, JobDefinition, JobQuery, JobStore, NewJob};
use serde_json::json;

use crate::harness::TestContext;
use crate::support::*;

fn noop(name: &str) -> EventJob<()> {
    EventJob::new(name, |_: (), _ctx: JobContext| async move { Ok(()) })
}

fn tick(name: &str) -> RecurrentJob {
    RecurrentJob::new(name, |_ctx: JobContext| async move { Ok(()) })
}

async fn expect_config_error(
    store: &std::sync::Arc<dyn JobStore>,
    jobs: Vec<JobDefinition>,
    options: WorkerOptions,
    case: &str,
) {
    match start_workers(store.clone(), jobs, options).await {
        Err(e) => assert_eq!(e.kind(), ErrorKind::Config, "{case}: {e}"),
        Ok(workers) => {
            workers.stop().await;
            panic!("{case}: start_workers accepted it");
        }
    }
}

/// Invalid definitions and options are refused by `start_workers` before anything is written.
pub async fn bad_input_definitions(ctx: TestContext) {
    let store = ctx.store();
    let kept = schedule_new(&*store, NewJob::new("existing", json!({"keep": true}))).await;
    let options = fast_options;
    let cases: Vec<(&str, Vec<JobDefinition>, WorkerOptions)> = vec![
        ("an empty job name", vec![noop("").into()], options()),
        (
            "a duplicate job name",
            vec![
                noop("twice").into(),
                tick("twice").run_every(Duration::from_secs(1)).into(),
            ],
            options(),
        ),
        (
            "a recurrent job with no schedule",
            vec![tick("none").into()],
            options(),
        ),
        (
            "a recurrent job with two schedules",
            vec![tick("two")
                .run_every(Duration::from_secs(1))
                .cron("* * * * *", "UTC")
                .into()],
            options(),
        ),
        (
            "run_every of zero",
            vec![tick("zero").run_every(Duration::ZERO).into()],
            options(),
        ),
        (
            "an invalid cron expression",
            vec![tick("cron").cron("61 * * * *", "UTC").into()],
            options(),
        ),
        (
            "an invalid timezone",
            vec![tick("tz").cron("0 * * * *", "Mars/Olympus").into()],
            options(),
        ),
        (
            "a zero lock_time on a job",
            vec![noop("lease").lock_time(Duration::ZERO).into()],
            options(),
        ),
        (
            "zero max_tries",
            vec![noop("tries").max_tries(0).into()],
            options(),
        ),
        (
            "a zero workers_count",
            vec![noop("a").into()],
            WorkerOptions {
                workers_count: 0,
                ..options()
            },
        ),
        (
            "a zero lock_time",
            vec![noop("a").into()],
            WorkerOptions {
                lock_time: Duration::ZERO,
                ..options()
            },
        ),
        ("no job at all", vec![], options()),
    ];
    for (case, jobs, options) in cases {
        expect_config_error(&store, jobs, options, case).await;
    }
    let recurrent = store.list_jobs(&JobQuery::default()).await.unwrap();
    assert_eq!(
        recurrent.len(),
        1,
        "a refused start registers no recurrent job: {recurrent:?}"
    );
    assert_eq!(recurrent[0].id, kept, "and loses nothing stored");
}

/// Bad scheduling calls get typed errors and store nothing.
pub async fn bad_input_scheduling(ctx: TestContext) {
    let store = ctx.store();
    let kept = schedule_new(
        &*store,
        NewJob::new("existing", json!(1)).unique_identifier("k"),
    )
    .await;
    let job = noop("valid");
    let kinds = [
        (
            "an empty name",
            schedule_job_by_name(&*store, "", &json!({}), ScheduleOptions::default())
                .await
                .map(|_| ()),
            ErrorKind::InvalidInput,
        ),
        (
            "a NUL byte in a name",
            schedule_job_by_name(&*store, "a\0b", &json!({}), ScheduleOptions::default())
                .await
                .map(|_| ()),
            ErrorKind::InvalidInput,
        ),
        (
            "a NUL byte in a unique identifier",
            schedule_job(
                &*store,
                &job,
                &(),
                ScheduleOptions::default().unique_identifier("x\0"),
            )
            .await
            .map(|_| ()),
            ErrorKind::InvalidInput,
        ),
        (
            "a name over the length limit",
            schedule_job_by_name(
                &*store,
                &"n".repeat(dogs_core::MAX_NAME_BYTES + 1),
                &json!({}),
                ScheduleOptions::default(),
            )
            .await
            .map(|_| ()),
            ErrorKind::InvalidInput,
        ),
        (
            "params that cannot be serialized",
            schedule_job_by_name(
                &*store,
                "valid",
                &HashMap::from([((1, 2), "tuple keys")]),
                ScheduleOptions::default(),
            )
            .await
            .map(|_| ()),
            ErrorKind::Serialization,
        ),
        (
            "params over the store's limit",
            schedule_job_by_name(
                &*store,
                "valid",
                &"x".repeat(store.max_params_bytes()),
                ScheduleOptions::default(),
            )
            .await
            .map(|_| ()),
            ErrorKind::TooLarge,
        ),
    ];
    for (case, result, kind) in kinds {
        assert_eq!(result.map_err(|e| e.kind()).err(), Some(kind), "{case}");
    }
    let jobs = store.list_jobs(&JobQuery::default()).await.unwrap();
    assert_eq!(
        jobs.iter().map(|j| &j.id).collect::<Vec<_>>(),
        vec![&kept],
        "nothing stored, nothing lost"
    );
    assert!(
        store
            .schedule(NewJob::new("existing", json!(2)).unique_identifier("k"))
            .await
            .unwrap()
            .is_duplicate(),
        "the existing job still holds its unique identifier"
    );
}

/// Every duration of the options and definitions is checked: past what a store can hold, it is a
/// `Config` error naming the field, before anything is written.
pub async fn bad_input_durations(ctx: TestContext) {
    let store = ctx.store();
    let kept = schedule_new(&*store, NewJob::new("existing", json!({"keep": true}))).await;
    let huge = Duration::MAX;
    let options = fast_options;
    let cases: Vec<(&str, Vec<JobDefinition>, WorkerOptions)> = vec![
        (
            "failed_retention",
            vec![noop("a").into()],
            WorkerOptions {
                failed_retention: huge,
                ..options()
            },
        ),
        (
            "lock_time",
            vec![noop("a").into()],
            WorkerOptions {
                lock_time: huge,
                ..options()
            },
        ),
        (
            "poll_interval",
            vec![noop("a").into()],
            WorkerOptions {
                poll_interval: huge,
                ..options()
            },
        ),
        (
            "cooldown_period",
            vec![noop("a").into()],
            WorkerOptions {
                cooldown_period: huge,
                ..options()
            },
        ),
        (
            "shutdown_grace",
            vec![noop("a").into()],
            WorkerOptions {
                shutdown_grace: Some(huge),
                ..options()
            },
        ),
        (
            "prune_interval",
            vec![noop("a").into()],
            WorkerOptions {
                prune_interval: Some(huge),
                ..options()
            },
        ),
        (
            "retry_backoff",
            vec![noop("a").into()],
            WorkerOptions {
                retry_backoff: dogs_core::RetryBackoff {
                    base: huge,
                    ..Default::default()
                },
                ..options()
            },
        ),
        (
            "retry_backoff",
            vec![noop("a").into()],
            WorkerOptions {
                retry_backoff: dogs_core::RetryBackoff {
                    jitter: f64::NAN,
                    ..Default::default()
                },
                ..options()
            },
        ),
        (
            "workers_count",
            vec![noop("a").into()],
            WorkerOptions {
                workers_count: usize::MAX,
                ..options()
            },
        ),
        (
            "lock_time",
            vec![noop("lease").lock_time(huge).into()],
            options(),
        ),
        (
            "save_executions_for",
            vec![noop("kept").save_executions_for(huge).into()],
            options(),
        ),
        (
            "run_every",
            vec![tick("forever").run_every(huge).into()],
            options(),
        ),
    ];
    for (field, jobs, options) in cases {
        match start_workers(store.clone(), jobs, options).await {
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::Config, "{field}: {e}");
                assert!(e.message().contains(field), "the error names {field}: {e}");
            }
            Ok(workers) => {
                workers.stop().await;
                panic!("{field}: start_workers accepted a duration past every store's limit");
            }
        }
    }
    let jobs = store.list_jobs(&JobQuery::default()).await.unwrap();
    assert_eq!(
        jobs.iter().map(|j| &j.id).collect::<Vec<_>>(),
        vec![&kept],
        "nothing stored, nothing lost"
    );
}

/// Run times and delays past what a store can hold are refused with `InvalidInput` naming the
/// limit, entry by entry; a handler's too long delay is cut to the limit.
pub async fn bad_input_run_times(ctx: TestContext) {
    let store = ctx.store();
    let far = [
        ("a delay past the limit", RunAt::In(Duration::MAX)),
        (
            "a run time past year 9999",
            RunAt::At(chrono::DateTime::<chrono::Utc>::MAX_UTC),
        ),
        (
            "a run time before year 1",
            RunAt::At(chrono::DateTime::<chrono::Utc>::MIN_UTC),
        ),
    ];
    for (case, run_at) in far {
        let refused = store
            .schedule(NewJob::new("far", json!({})).run_at(run_at))
            .await;
        assert_eq!(
            refused.map_err(|e| e.kind()).err(),
            Some(ErrorKind::InvalidInput),
            "{case}"
        );
        let outcomes = store
            .schedule_many(vec![
                NewJob::new("near", json!(1)),
                NewJob::new("far", json!({})).run_at(run_at),
                NewJob::new("near", json!(2)),
            ])
            .await
            .unwrap();
        let kinds: Vec<Option<ErrorKind>> = outcomes
            .iter()
            .map(|o| o.as_ref().err().map(|e| e.kind()))
            .collect();
        assert_eq!(
            kinds,
            vec![None, Some(ErrorKind::InvalidInput), None],
            "{case}: one bad entry fails alone"
        );
    }
    let counts = store.count_jobs().await.unwrap();
    assert_eq!(
        counts
            .iter()
            .map(|c| (c.name.as_str(), c.pending))
            .collect::<Vec<_>>(),
        vec![("near", 6)],
        "the good entries are stored, the bad ones not"
    );

    // Inside a handler: a too long extension is refused; a too long retry delay is cut to the
    // limit, so the job waits (for a century) instead of failing to be saved again and again.
    let extended = log::<Option<ErrorKind>>();
    let recorder = extended.clone();
    let job = EventJob::new("patient", move |_: (), ctx: JobContext| {
        let recorder = recorder.clone();
        async move {
            let outcome = ctx.extend_lock_time(Duration::MAX).await;
            push(&recorder, outcome.err().map(|e| e.kind()));
            Err::<(), _>("again, much later".into())
        }
    })
    .on_error(|_| ErrorAction::RetryIn(Duration::MAX));
    let workers = start_workers(store.clone(), [job.definition()], fast_options())
        .await
        .unwrap();
    let id = schedule_job(&*store, &job, &(), ScheduleOptions::default())
        .await
        .unwrap();
    let waiting = wait_for("the job to wait for its retry", DEADLINE, || async {
        store
            .get_job(id.id())
            .await
            .unwrap()
            .filter(|j| j.state == dogs_core::JobState::Pending && j.tries == 1)
    })
    .await;
    workers.stop().await;
    assert_eq!(read(&extended), vec![Some(ErrorKind::InvalidInput)]);
    let now = store_now(&*store).await;
    assert!(
        waiting.run_at > now + chrono::Duration::days(365 * 50),
        "the retry waits about a century: {}",
        waiting.run_at
    );
}
