//! Network faults between workers and their store, through the suite's [`Proxy`]: a 2 s blip
//! while executions finish, and a store that stops answering while the workers shut down.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dogs_core::prelude::*;
use dogs_core::{ExecutionQuery, ExecutionStatus};
use serde_json::Value;

use super::process::{start_counts, WorkerProcess, WorkerSpec};
use super::proxy::{address_of, Proxy};
use super::scenarios::{remaining, schedule_batch};
use super::{open_store, Env, StoreSettings};
use crate::support::{log, push, read, wait_until};

/// The default port of a backend's server.
fn default_port(backend: &str) -> u16 {
    match backend {
        "postgres" => 5432,
        "redis" => 6379,
        _ => 27017,
    }
}

/// `env`'s settings with the store reached through `proxy`, and calls timing out after
/// `timeout`.
fn through(env: &Env, proxy: &Proxy, timeout: Duration) -> StoreSettings {
    StoreSettings {
        url: proxy.url(&env.settings.url),
        timeout,
        ..env.settings.clone()
    }
}

/// A store blip: every connection of a worker process to its store is dropped, and new ones
/// refused, for 2 s while 50 executions finish; then again for 6 s, longer than the store
/// clients' own reconnection attempts. Saving an outcome is retried until the lease would end,
/// so every outcome is saved once the store is back: no job runs twice, none is lost.
pub async fn store_blip(env: Env) {
    let store = env.store().await;
    let proxy = Proxy::start(address_of(&env.settings.url, default_port(env.backend()))).await;
    // Calls fail fast while the store is away, as they do when a server refuses connections.
    let timeout = Duration::from_millis(200);
    let proxied = Env {
        settings: through(&env, &proxy, timeout),
        ..env.clone()
    };
    let worker = WorkerProcess::start(
        &proxied,
        &WorkerSpec {
            mode: "sleep",
            slow: Duration::from_millis(1500),
            slots: 64,
            lock: Duration::from_secs(12),
            poll: Duration::from_millis(200),
            timeout,
            ..WorkerSpec::new("w", "work")
        },
    );
    let mut ids = Vec::new();
    for (round, blip) in [Duration::from_secs(2), Duration::from_secs(6)]
        .into_iter()
        .enumerate()
    {
        ids.extend(schedule_batch(&*store, "work", round * 50, 50).await);
        wait_until(
            "the worker runs the round's 50 jobs",
            Duration::from_secs(60),
            || async { worker.started().len() >= ids.len() },
        )
        .await;
        // Each handler ends 1.5 s after it started: the blip begins just before, so the
        // outcomes are saved while it lasts.
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let cut_at = Instant::now();
        proxy.cut_for(blip).await;
        wait_until(
            "every job is done once the store is back",
            Duration::from_secs(60),
            || async { remaining(&*store, "work").await == 0 },
        )
        .await;
        let counts = start_counts([&worker]);
        let twice = counts.values().filter(|n| **n > 1).count();
        println!(
            "{}: 50 executions finished during a {blip:?} blip; all saved {:.1} s after it \
             began; {twice} ran twice",
            env.backend(),
            cut_at.elapsed().as_secs_f64(),
        );
    }
    let counts = start_counts([&worker]);
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    let records = store
        .executions(&ExecutionQuery::name("work").limit(1000))
        .await
        .unwrap();
    assert!(twice.is_empty(), "jobs ran twice: {twice:?}");
    assert_eq!(counts.len(), 100, "every job ran");
    assert!(ids.iter().all(|id| counts.contains_key(id)), "none lost");
    assert_eq!(records.len(), 100, "one record per execution");
    assert!(records.iter().all(|r| r.status == ExecutionStatus::Success));
    worker.stop(Duration::from_secs(30)).await;
}

/// A store that stops answering (connections open, nothing comes back) while a worker set shuts
/// down: `stop` still returns within its grace plus a bounded save time, instead of hanging.
pub async fn stop_bound(env: Env) {
    let store = env.store().await;
    let proxy = Proxy::start(address_of(&env.settings.url, default_port(env.backend()))).await;
    let settings = through(&env, &proxy, Duration::from_secs(2));
    let proxied = open_store(&settings, &env.namespace).await.unwrap();
    let started = log::<()>();
    let recorder = started.clone();
    let job = EventJob::new("work", move |_: Value, _ctx: JobContext| {
        let recorder = recorder.clone();
        async move {
            push(&recorder, ());
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok(())
        }
    });
    let grace = Duration::from_secs(1);
    let options = WorkerOptions {
        lock_time: Duration::from_secs(30),
        poll_interval: Duration::from_millis(200),
        shutdown_grace: Some(grace),
        ..Default::default()
    };
    let workers = start_workers(Arc::clone(&proxied), [job], options)
        .await
        .unwrap();
    schedule_batch(&*store, "work", 0, 2).await;
    wait_until("the jobs start", Duration::from_secs(30), || async {
        read(&started).len() >= 2
    })
    .await;
    proxy.freeze();
    let stopping = Instant::now();
    let stopped = tokio::time::timeout(Duration::from_secs(60), workers.stop()).await;
    let took = stopping.elapsed();
    println!(
        "{}: with the store not answering, stop returned after {:.1} s (grace {grace:?})",
        env.backend(),
        took.as_secs_f64()
    );
    assert!(stopped.is_ok(), "stop hangs when the store does not answer");
    assert!(
        took < grace + dogs_core::SHUTDOWN_SAVE_TIME + Duration::from_secs(3),
        "stop took {took:?}, more than its grace and the bounded save time"
    );
}
