//! The scenarios: each run is measured on a fresh namespace; figures are collected per run.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dogs_core::prelude::*;
use dogs_core::{ClaimRequest, Completion, ExecutionQuery, Finish, JobStore, NewJob, RunAt};
use serde_json::Value;
use tokio::time::Instant;

use crate::backend::{Backend, PollingOnly};
use crate::measure::{percentile, process_cpu, server_cpu, Figure};
use crate::Settings;

pub(crate) type Outcome<T> = Result<T, Box<dyn std::error::Error>>;

pub async fn run(settings: &Settings, backend: &Backend) -> Outcome<Vec<Figure>> {
    match settings.scenario.as_str() {
        "enqueue" => enqueue(settings, backend).await,
        "drain" => drain_scenario(settings, backend, false).await,
        "depth" => drain_scenario(settings, backend, true).await,
        "latency" => latency(settings, backend).await,
        "recurrent" => recurrent(settings, backend).await,
        "history" => crate::history::run(settings, backend).await,
        "overhead" => crate::overhead::run(settings, backend).await,
        "overview" => crate::cockpit::run(settings, backend).await,
        other => Err(format!("unknown scenario {other}").into()),
    }
}

pub(crate) fn namespace(run: usize) -> String {
    format!("dogs_bench_{}_{run}", std::process::id())
}

fn noop_jobs(count: usize, name: &str, run_at: impl Fn(usize) -> RunAt) -> Vec<NewJob> {
    (0..count)
        .map(|i| NewJob::new(name, Value::Null).run_at(run_at(i)))
        .collect()
}

async fn bulk(store: &dyn JobStore, jobs: Vec<NewJob>) -> Outcome<()> {
    let mut jobs = jobs;
    while !jobs.is_empty() {
        let rest = jobs.split_off(jobs.len().min(5000));
        for outcome in store.schedule_many(jobs).await? {
            outcome?;
        }
        jobs = rest;
    }
    Ok(())
}

async fn enqueue(settings: &Settings, backend: &Backend) -> Outcome<Vec<Figure>> {
    let n = settings.jobs;
    let (mut single, mut bulk_rates) = (Vec::new(), Vec::new());
    for run in 0..settings.runs {
        let ns = namespace(run);
        let store = backend.open(&ns).await?;
        let next = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let callers: Vec<_> = (0..16)
            .map(|_| {
                let (store, next) = (store.clone(), next.clone());
                tokio::spawn(async move {
                    while next.fetch_add(1, Ordering::Relaxed) < n {
                        store.schedule(NewJob::new("one", Value::Null)).await?;
                    }
                    Ok::<_, dogs_core::Error>(())
                })
            })
            .collect();
        for caller in callers {
            caller.await??;
        }
        single.push(n as f64 / started.elapsed().as_secs_f64());
        let started = Instant::now();
        bulk(&*store, noop_jobs(n, "bulk", |_| RunAt::Now)).await?;
        bulk_rates.push(n as f64 / started.elapsed().as_secs_f64());
        drop(store);
        backend.cleanup(&ns).await?;
    }
    Ok(vec![
        Figure::new(
            "enqueue one by one",
            "jobs/s",
            single,
            &format!("{n} jobs, 16 concurrent callers"),
        ),
        Figure::new(
            "enqueue in bulk",
            "jobs/s",
            bulk_rates,
            &format!("{n} jobs, schedule_many of 5,000"),
        ),
    ])
}

/// Fills the store with 1,000,000 future jobs and 100,000 failed jobs (the depth scenario).
pub(crate) async fn fill_depth(store: &dyn JobStore, future: usize, failed: usize) -> Outcome<()> {
    bulk(
        store,
        noop_jobs(future, "noop", |i| {
            RunAt::In(Duration::from_secs(86_400 + i as u64))
        }),
    )
    .await?;
    bulk(store, noop_jobs(failed, "doomed", |_| RunAt::Now)).await?;
    loop {
        let claimed = store
            .claim(&ClaimRequest::new(
                ["doomed"],
                Duration::from_secs(300),
                5000,
            ))
            .await?
            .jobs;
        if claimed.is_empty() {
            return Ok(());
        }
        let mut finishes: Vec<Finish> = claimed
            .into_iter()
            .map(|c| Finish {
                lease: c.lease,
                completion: Completion::Fail {
                    error: "filler".into(),
                    retain_for: Duration::from_secs(86_400),
                },
                execution: None,
            })
            .collect();
        // In 8 concurrent calls, so a store that saves outcomes one by one fills in reasonable
        // time (filling is not measured).
        let chunk = finishes.len().div_ceil(8);
        let mut calls = Vec::new();
        while !finishes.is_empty() {
            let rest = finishes.split_off(chunk.min(finishes.len()));
            calls.push(store.finish_many(std::mem::replace(&mut finishes, rest)));
        }
        for outcomes in futures::future::join_all(calls).await {
            for outcome in outcomes? {
                outcome?;
            }
        }
    }
}

async fn drain_scenario(
    settings: &Settings,
    backend: &Backend,
    deep: bool,
) -> Outcome<Vec<Figure>> {
    let n = settings.jobs;
    let mut figures = Vec::new();
    for slots in [32usize, 256] {
        let (mut rates, mut cpu, mut server) = (Vec::new(), Vec::new(), Vec::new());
        for run in 0..settings.runs {
            let ns = namespace(run);
            let store = backend.open(&ns).await?;
            if deep {
                fill_depth(&*store, 1_000_000, 100_000).await?;
            }
            let (rate, process, on_server) = drain_once(settings, backend, &store, slots).await?;
            rates.push(rate);
            cpu.push(process);
            server.extend(on_server);
            drop(store);
            backend.cleanup(&ns).await?;
        }
        let what = if deep { "drain, deep store" } else { "drain" };
        let set = format!(
            "{n} due no-op jobs, {slots} slots, cooldown 0, history {}{}",
            if settings.history { "kept" } else { "off" },
            if deep {
                ", with 1,000,000 future and 100,000 failed jobs stored"
            } else {
                ""
            }
        );
        figures.push(Figure::new(
            &format!("{what}, {slots} slots"),
            "jobs/s",
            rates,
            &set,
        ));
        figures.push(Figure::new(
            &format!("{what}, {slots} slots, process CPU"),
            "s/1000 jobs",
            cpu,
            &set,
        ));
        if !server.is_empty() {
            figures.push(Figure::new(
                &format!("{what}, {slots} slots, server CPU"),
                "s/1000 jobs",
                server,
                &set,
            ));
        }
    }
    Ok(figures)
}

/// One drain of `settings.jobs` due no-op jobs with `slots` slots, on `store` as it is: the rate
/// in jobs/s, the process's CPU seconds per 1,000 jobs and the server's, where it is known.
pub(crate) async fn drain_once(
    settings: &Settings,
    backend: &Backend,
    store: &Arc<dyn JobStore>,
    slots: usize,
) -> Outcome<(f64, f64, Option<f64>)> {
    enqueue_due(&**store, settings.jobs).await?;
    drain_due(settings, backend, store, slots).await
}

/// Stores `count` due no-op jobs.
pub(crate) async fn enqueue_due(store: &dyn JobStore, count: usize) -> Outcome<()> {
    bulk(store, noop_jobs(count, "noop", |_| RunAt::Now)).await
}

/// Runs workers with `slots` slots until `settings.jobs` no-op jobs have run (they are stored
/// already): the rate, and the CPU per 1,000 jobs, as [`drain_once`] returns them.
pub(crate) async fn drain_due(
    settings: &Settings,
    backend: &Backend,
    store: &Arc<dyn JobStore>,
    slots: usize,
) -> Outcome<(f64, f64, Option<f64>)> {
    let n = settings.jobs;
    let done = Arc::new(AtomicUsize::new(0));
    let counter = done.clone();
    let job = EventJob::new("noop", move |_: Value, _ctx: JobContext| {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
    });
    let job = if settings.history {
        job
    } else {
        job.save_executions_for(Duration::ZERO)
    };
    let defaults = WorkerOptions::default();
    let options = WorkerOptions {
        workers_count: slots,
        cooldown_period: Duration::ZERO,
        poll_interval: Duration::from_millis(200),
        prefetch: settings.prefetch.unwrap_or(defaults.prefetch),
        auto_extend: settings.auto_extend.unwrap_or(defaults.auto_extend),
        // The workers' own pruning is measured on its own (the history scenario), not here.
        prune_interval: None,
        ..defaults
    };
    let (cpu0, server0) = (process_cpu(), server_cpu(backend.server_process()));
    let started = Instant::now();
    let workers = start_workers(store.clone(), [job.definition()], options).await?;
    while done.load(Ordering::Relaxed) < n {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // Every handler has run; `stop` returns once their outcomes are saved.
    workers.stop().await;
    let elapsed = started.elapsed().as_secs_f64();
    let (cpu1, server1) = (process_cpu(), server_cpu(backend.server_process()));
    let server = match (server0, server1) {
        (Some(a), Some(b)) => Some((b - a) * 1000.0 / n as f64),
        _ => None,
    };
    Ok((
        n as f64 / elapsed,
        (cpu1 - cpu0) * 1000.0 / n as f64,
        server,
    ))
}

async fn latency(settings: &Settings, backend: &Backend) -> Outcome<Vec<Figure>> {
    let mut figures = Vec::new();
    // (wake-ups, scheduled through another store handle): on SQLite, another handle is what
    // another process sharing the file is, so its wake-ups come from the file, not from memory.
    let mut modes = vec![(true, false), (false, false)];
    if backend.sqlite_url("").is_some() {
        modes.push((true, true));
    }
    for (wakeups, other_handle) in modes {
        let (mut p50, mut p99, mut max) = (Vec::new(), Vec::new(), Vec::new());
        for run in 0..settings.runs {
            let ns = namespace(run);
            let inner = backend.open(&ns).await?;
            let store: Arc<dyn JobStore> = if wakeups {
                inner.clone()
            } else {
                Arc::new(PollingOnly(inner.clone()))
            };
            let scheduler = if other_handle {
                backend.open(&ns).await?
            } else {
                store.clone()
            };
            let starts: Arc<Mutex<Vec<(u64, Instant)>>> = Arc::default();
            let recorder = starts.clone();
            let job = EventJob::new("ping", move |n: u64, _ctx: JobContext| {
                let recorder = recorder.clone();
                async move {
                    if let Ok(mut starts) = recorder.lock() {
                        starts.push((n, Instant::now()));
                    }
                    Ok(())
                }
            });
            // Enough slots and no cooldown, so what is measured is pickup, not a queue.
            let options = WorkerOptions {
                workers_count: 32,
                cooldown_period: Duration::ZERO,
                ..Default::default()
            };
            let workers = start_workers(store.clone(), [job.definition()], options).await?;
            tokio::time::sleep(Duration::from_millis(500)).await;
            let mut sent = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            for n in 0..1000u64 {
                tick.tick().await;
                sent.push(Instant::now());
                schedule_job(&*scheduler, &job, &n, ScheduleOptions::now()).await?;
            }
            let deadline = Instant::now() + Duration::from_secs(30);
            while starts.lock().map(|s| s.len()).unwrap_or(0) < 1000 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            workers.stop().await;
            let mut lat: Vec<f64> = starts
                .lock()
                .map(|s| {
                    s.iter()
                        .map(|(n, at)| (*at - sent[*n as usize]).as_secs_f64() * 1000.0)
                        .collect()
                })
                .unwrap_or_default();
            lat.sort_by(f64::total_cmp);
            p50.push(percentile(&lat, 0.5));
            p99.push(percentile(&lat, 0.99));
            max.push(lat.last().copied().unwrap_or(0.0));
            drop((store, inner, scheduler));
            backend.cleanup(&ns).await?;
        }
        let mode = match (wakeups, other_handle) {
            (true, false) => "wake-ups",
            (false, _) => "polling only",
            (true, true) => "wake-ups, scheduled through a second store on the file",
        };
        let set = "1 job every 10 ms for 10 s, due now; 32 slots, cooldown 0, poll 3 s";
        figures.push(Figure::new(&format!("pickup p50, {mode}"), "ms", p50, set));
        figures.push(Figure::new(&format!("pickup p99, {mode}"), "ms", p99, set));
        figures.push(Figure::new(&format!("pickup max, {mode}"), "ms", max, set));
    }
    Ok(figures)
}

async fn recurrent(settings: &Settings, backend: &Backend) -> Outcome<Vec<Figure>> {
    let (mut p50, mut p99) = (Vec::new(), Vec::new());
    for run in 0..settings.runs {
        let ns = namespace(run);
        let store = backend.open(&ns).await?;
        let jobs: Vec<dogs_core::JobDefinition> = (0..100)
            .map(|i| {
                RecurrentJob::new(
                    format!("tick-{i}"),
                    |_ctx: JobContext| async move { Ok(()) },
                )
                .run_every(Duration::from_secs(1))
                .into()
            })
            .collect();
        let options = WorkerOptions {
            workers_count: 32,
            ..Default::default()
        };
        let workers = start_workers(store.clone(), jobs, options).await?;
        tokio::time::sleep(Duration::from_secs(30)).await;
        workers.stop().await;
        let mut late = Vec::new();
        for i in 0..100 {
            let mut records = store
                .executions(&ExecutionQuery::name(format!("tick-{i}")).limit(1000))
                .await?;
            records.reverse();
            for pair in records.windows(2) {
                let due = pair[0].ended_at + chrono::Duration::seconds(1);
                late.push((pair[1].started_at - due).num_milliseconds().max(0) as f64);
            }
        }
        late.sort_by(f64::total_cmp);
        p50.push(percentile(&late, 0.5));
        p99.push(percentile(&late, 0.99));
        drop(store);
        backend.cleanup(&ns).await?;
    }
    let set = "100 recurrent jobs, run_every 1 s, 30 s, 32 slots, default poll 3 s";
    Ok(vec![
        Figure::new("recurrent lateness p50", "ms", p50, set),
        Figure::new("recurrent lateness p99", "ms", p99, set),
    ])
}
