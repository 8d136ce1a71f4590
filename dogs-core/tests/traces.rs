//! With the `opentelemetry` feature, the execution's span is a child of the span that
//! scheduled the job, through the trace context stored in the job record.
#![cfg(feature = "opentelemetry")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use dogs_core::prelude::*;
use dogs_core::testing::wait_for_execution;
use dogs_memory::MemoryStore;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporterBuilder, SdkTracerProvider};
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_execution_span_is_a_child_of_the_scheduling_span() {
    let exporter = InMemorySpanExporterBuilder::new().build();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("dogs-test")));
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let store = MemoryStore::new();
    let job = EventJob::new("traced", |_: (), _ctx: JobContext| async move {
        tracing::info!("running");
        Ok(())
    });
    // The scheduler's side: a request span, and the job scheduled inside it.
    let request = tracing::info_span!("request");
    let id = schedule_job(&store, &job, &(), ScheduleOptions::now())
        .instrument(request.clone())
        .await
        .unwrap();
    drop(request);
    let stored = store.get_job(id.id()).await.unwrap().unwrap();
    let traceparent = stored
        .trace_context
        .expect("the job carries a trace context");

    // The worker's side: nothing but the stored record links the two.
    let workers = start_workers(
        store.clone(),
        vec![job.definition()],
        WorkerOptions::default(),
    )
    .await
    .unwrap();
    wait_for_execution(&store, "traced", id.id(), Duration::from_secs(15))
        .await
        .unwrap();
    workers.stop().await;
    provider.force_flush().unwrap();

    let spans = exporter.get_finished_spans().unwrap();
    let named = |name: &str| {
        spans.iter().find(|s| s.name == name).unwrap_or_else(|| {
            panic!(
                "no span '{name}' among {:?}",
                spans.iter().map(|s| &s.name).collect::<Vec<_>>()
            )
        })
    };
    let (request, schedule, execution) =
        (named("request"), named("dogs.schedule"), named("dogs.job"));
    assert_eq!(schedule.parent_span_id, request.span_context.span_id());
    assert_eq!(
        execution.parent_span_id,
        schedule.span_context.span_id(),
        "the execution's parent is the scheduling span"
    );
    assert_eq!(
        execution.span_context.trace_id(),
        request.span_context.trace_id(),
        "one trace from the request to the execution"
    );
    assert!(traceparent.contains(&schedule.span_context.span_id().to_string()));
}
