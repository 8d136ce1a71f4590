//! The metrics a worker set reports, read through a recorder installed for this test binary.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use dogs_core::metrics::{
    FAILED, PICKUP_LATENCY, RETRIED, RUNNING, RUN_TIME, SCHEDULED, STARTED, SUCCEEDED,
};
use dogs_core::prelude::*;
use dogs_core::{ExecutionQuery, RetryBackoff};
use dogs_memory::MemoryStore;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use metrics_util::{CompositeKey, MetricKind};

type Entry = (
    CompositeKey,
    Option<metrics::Unit>,
    Option<metrics::SharedString>,
    DebugValue,
);

fn find<'a>(
    entries: &'a [Entry],
    kind: MetricKind,
    name: &str,
    job: &str,
) -> Option<&'a DebugValue> {
    entries.iter().find_map(|(key, _, _, value)| {
        let labelled = key
            .key()
            .labels()
            .any(|l| l.key() == "job" && l.value() == job);
        (key.kind() == kind && key.key().name() == name && labelled).then_some(value)
    })
}

fn counter(entries: &[Entry], name: &str, job: &str) -> u64 {
    match find(entries, MetricKind::Counter, name, job) {
        Some(DebugValue::Counter(n)) => *n,
        _ => 0,
    }
}

fn histogram_len(entries: &[Entry], name: &str, job: &str) -> usize {
    match find(entries, MetricKind::Histogram, name, job) {
        Some(DebugValue::Histogram(values)) => values.len(),
        _ => 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_set_reports_its_executions() {
    let recorder = DebuggingRecorder::new();
    let snapshotter: Snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder of this test binary");

    let store = MemoryStore::new();
    let ok = EventJob::new(
        "metered-ok",
        |_: (), _ctx: JobContext| async move { Ok(()) },
    );
    let failing = EventJob::new("metered-failing", |_: (), _ctx: JobContext| async move {
        Err::<(), _>("broken".into())
    })
    .max_tries(2);
    let options = WorkerOptions {
        poll_interval: Duration::from_millis(50),
        cooldown_period: Duration::ZERO,
        retry_backoff: RetryBackoff {
            base: Duration::from_millis(10),
            max: Duration::from_millis(10),
            jitter: 0.0,
        },
        ..WorkerOptions::default()
    };
    let workers = start_workers(
        store.clone(),
        vec![ok.definition(), failing.definition()],
        options,
    )
    .await
    .unwrap();
    for _ in 0..3 {
        schedule_job(&store, &ok, &(), ScheduleOptions::default())
            .await
            .unwrap();
    }
    schedule_job(&store, &failing, &(), ScheduleOptions::default())
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let ok_runs = store
            .executions(&ExecutionQuery::name("metered-ok"))
            .await
            .unwrap();
        let failed_runs = store
            .executions(&ExecutionQuery::name("metered-failing"))
            .await
            .unwrap();
        if ok_runs.len() == 3 && failed_runs.len() == 2 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the jobs did not run"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    workers.stop().await;

    let entries = snapshotter.snapshot().into_vec();
    assert_eq!(counter(&entries, SCHEDULED, "metered-ok"), 3);
    assert_eq!(counter(&entries, SCHEDULED, "metered-failing"), 1);
    assert_eq!(counter(&entries, STARTED, "metered-ok"), 3);
    assert_eq!(counter(&entries, SUCCEEDED, "metered-ok"), 3);
    assert_eq!(counter(&entries, STARTED, "metered-failing"), 2);
    assert_eq!(counter(&entries, RETRIED, "metered-failing"), 1);
    assert_eq!(counter(&entries, FAILED, "metered-failing"), 1);
    assert_eq!(counter(&entries, SUCCEEDED, "metered-failing"), 0);
    assert_eq!(histogram_len(&entries, PICKUP_LATENCY, "metered-ok"), 3);
    assert_eq!(histogram_len(&entries, RUN_TIME, "metered-ok"), 3);
    match find(&entries, MetricKind::Gauge, RUNNING, "metered-ok") {
        Some(DebugValue::Gauge(running)) => assert_eq!(running.into_inner(), 0.0),
        other => panic!("no running gauge: {other:?}"),
    }
}
