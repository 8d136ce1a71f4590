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
