//! The worker process of the reliability suite: runs one worker set against a store until its
//! standard input closes, and appends one line per execution to a file, so the suite can count
//! what ran where, even after this process was killed.
//!
//! ```text
//! dogs-test-worker --backend postgres --url URL --namespace NS --out FILE
//!     [--name work] [--slots 32] [--lock-ms 30000] [--poll-ms 500] [--grace-ms 30000]
//!     [--timeout-ms 10000] [--worker-id ID] [--mode quick|hold|sleep|slow] [--slow-ms 5000]
//!     [--wait-replicas 0] [--schedule-ms N --schedule-until FILE [--schedule-delay-ms 0]]
//! ```
//!
//! With `--schedule-ms`, the process also schedules a job of its name every N ms, due
//! `--schedule-delay-ms` later, until the file `--schedule-until` exists, each with params `{"key": "<worker id>-<n>"}`, and writes
//! `scheduled <key>` once a schedule call succeeded and `refused <key> <error kind>` when it
//! failed. A handler whose params have a key writes `ran <key>` after its `start` line.
//!
//! Lines written: `start <job id> <tries> <was_stale 0|1> <its clock, in Unix ms>` when a handler
//! starts, and in `slow` mode `late <job id>` when a handler that outlived its lease returns.
//! Modes:
//! - `quick`: returns at once;
//! - `hold`: keeps its lease alive with `extend_lock_time` until the process dies;
//! - `sleep`: sleeps `--slow-ms` (yielding), then returns success;
//! - `slow`: with leases that do not renew themselves, on its first try blocks its thread for
//!   `--slow-ms`, ignoring cancellation (a handler
//!   that cannot be stopped), then returns success.
//!
//! Prints `ready <its clock, in Unix milliseconds>` on standard output once the workers run;
//! exits 0 after a graceful stop.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs::File;
use std::io::{BufRead, Write};
use std::sync::Arc;
use std::time::Duration;

use conformance_tests::reliability::{open_store, StoreSettings};
use dogs_core::prelude::*;
use serde_json::Value;

#[derive(Debug, Clone)]
struct Args {
    backend: String,
    url: String,
    namespace: String,
    out: String,
    name: String,
    slots: usize,
    lock: Duration,
    poll: Duration,
    grace: Duration,
    timeout: Duration,
    worker_id: Option<String>,
    mode: String,
    slow: Duration,
    wait_replicas: u32,
    schedule_every: Option<Duration>,
    schedule_until: Option<String>,
    schedule_delay: Duration,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        backend: String::new(),
        url: String::new(),
        namespace: String::new(),
        out: String::new(),
        name: "work".into(),
        slots: 32,
        lock: Duration::from_secs(30),
        poll: Duration::from_millis(500),
        grace: Duration::from_secs(30),
        timeout: Duration::from_secs(10),
        worker_id: None,
        mode: "quick".into(),
        slow: Duration::from_secs(5),
        wait_replicas: 0,
        schedule_every: None,
        schedule_until: None,
        schedule_delay: Duration::ZERO,
    };
    let mut it = std::env::args().skip(1);
    let ms = |v: String| -> Result<Duration, String> {
        v.parse::<u64>()
            .map(Duration::from_millis)
            .map_err(|_| format!("not a number of milliseconds: {v}"))
    };
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--backend" => args.backend = value,
            "--url" => args.url = value,
            "--namespace" => args.namespace = value,
            "--out" => args.out = value,
            "--name" => args.name = value,
            "--slots" => args.slots = value.parse().map_err(|_| "--slots takes a number")?,
            "--lock-ms" => args.lock = ms(value)?,
            "--poll-ms" => args.poll = ms(value)?,
            "--grace-ms" => args.grace = ms(value)?,
            "--timeout-ms" => args.timeout = ms(value)?,
            "--worker-id" => args.worker_id = Some(value),
            "--mode" => args.mode = value,
            "--slow-ms" => args.slow = ms(value)?,
            "--wait-replicas" => {
                args.wait_replicas = value
                    .parse()
                    .map_err(|_| "--wait-replicas takes a number")?
            }
            "--schedule-ms" => args.schedule_every = Some(ms(value)?),
            "--schedule-until" => args.schedule_until = Some(value),
            "--schedule-delay-ms" => args.schedule_delay = ms(value)?,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if args.backend.is_empty() || args.namespace.is_empty() || args.out.is_empty() {
        return Err("--backend, --namespace and --out are required".into());
    }
    if args.schedule_every.is_some() != args.schedule_until.is_some() {
        return Err("--schedule-ms and --schedule-until go together".into());
    }
    if !["quick", "hold", "sleep", "slow"].contains(&args.mode.as_str()) {
        return Err(format!("unknown mode {}", args.mode));
    }
    Ok(args)
}

/// Appends one whole line with one write, so lines of killed processes are never torn.
fn append(out: &File, line: String) {
    let mut out = out;
    if let Err(e) = out.write_all(line.as_bytes()) {
        eprintln!("dogs-test-worker: writing the execution log failed: {e}");
    }
}

fn main() {
    let args = match parse() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("dogs-test-worker: {e}");
            std::process::exit(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("a runtime");
    let code = runtime.block_on(run(args));
    drop(runtime);
    std::process::exit(code);
}

async fn run(args: Args) -> i32 {
    let settings = StoreSettings {
        backend: args.backend.clone(),
        url: args.url.clone(),
        timeout: args.timeout,
        wait_for_replicas: args.wait_replicas,
    };
    let store = match open_store(&settings, &args.namespace).await {
        Ok(store) => store,
        Err(e) => {
            eprintln!("dogs-test-worker: opening the store failed: {e}");
            return 1;
        }
    };
    let out = match std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&args.out)
    {
        Ok(out) => Arc::new(out),
        Err(e) => {
            eprintln!("dogs-test-worker: opening {} failed: {e}", args.out);
            return 1;
        }
    };
    let (mode, lock, slow) = (args.mode.clone(), args.lock, args.slow);
    let scheduler_out = Arc::clone(&out);
    let job = EventJob::new(args.name.clone(), move |params: Value, ctx: JobContext| {
        let out = Arc::clone(&out);
        let mode = mode.clone();
        async move {
            append(
                &out,
                format!(
                    "start {} {} {} {}\n",
                    ctx.id(),
                    ctx.tries(),
                    u8::from(ctx.was_stale()),
                    chrono::Utc::now().timestamp_millis()
                ),
            );
            if let Some(key) = params.get("key").and_then(Value::as_str) {
                append(&out, format!("ran {key}\n"));
            }
            match mode.as_str() {
                "hold" => loop {
                    tokio::select! {
                        _ = ctx.cancelled() => return Err("cancelled while holding".into()),
                        _ = tokio::time::sleep(lock / 4) => {}
                    }
                    ctx.extend_lock_time(lock).await?;
                },
                "sleep" => {
                    tokio::time::sleep(slow).await;
                    Ok(())
                }
                "slow" if ctx.tries() == 1 => {
                    // Blocks its thread: neither cancellation nor abort can stop it.
                    std::thread::sleep(slow);
                    append(&out, format!("late {}\n", ctx.id()));
                    Ok(())
                }
                _ => Ok(()),
            }
        }
    });
    let options = WorkerOptions {
        workers_count: args.slots,
        lock_time: args.lock,
        poll_interval: args.poll,
        cooldown_period: Duration::ZERO,
        shutdown_grace: Some(args.grace),
        worker_id: args.worker_id.clone(),
        // `slow` shows what the end of a lease does to a handler that blocks its thread; with
        // renewal (from another thread) its lease would last until it returns.
        auto_extend: args.mode != "slow",
        ..Default::default()
    };
    let workers = match start_workers(Arc::clone(&store), [job], options).await {
        Ok(workers) => workers,
        Err(e) => {
            eprintln!("dogs-test-worker: starting the workers failed: {e}");
            return 1;
        }
    };
    if let (Some(every), Some(until)) = (args.schedule_every, args.schedule_until.clone()) {
        let label = args.worker_id.clone().unwrap_or_else(|| "scheduler".into());
        let plan = Plan {
            name: args.name.clone(),
            label,
            every,
            delay: args.schedule_delay,
            until,
        };
        tokio::spawn(schedule(store, plan, scheduler_out));
    }
    // With this process's own idea of the time, so the suite can check a skewed clock took.
    println!("ready {}", chrono::Utc::now().timestamp_millis());
    let _ = std::io::stdout().flush();
    // Runs until standard input closes.
    let (closed_tx, closed_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        for line in stdin.lock().lines() {
            if line.is_err() {
                break;
            }
        }
        let _ = closed_tx.send(());
    });
    let _ = closed_rx.await;
    workers.stop().await;
    0
}

/// What the process schedules: a job of `name` every `every`, due `delay` later, keys starting
/// with `label`, until the file `until` exists.
struct Plan {
    name: String,
    label: String,
    every: Duration,
    delay: Duration,
    until: String,
}

/// Schedules as `plan` says, logging each call's outcome by its key.
async fn schedule(store: Arc<dyn dogs_core::JobStore>, plan: Plan, out: Arc<File>) {
    let Plan {
        name,
        label,
        every,
        delay,
        until,
    } = plan;
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for n in 0u64.. {
        ticks.tick().await;
        if std::path::Path::new(&until).exists() {
            return;
        }
        let key = format!("{label}-{n}");
        let job = dogs_core::NewJob::new(name.clone(), serde_json::json!({ "key": key }))
            .run_at(dogs_core::RunAt::In(delay));
        match store.schedule(job).await {
            Ok(_) => append(&out, format!("scheduled {key}\n")),
            Err(e) => append(&out, format!("refused {key} {:?}\n", e.kind())),
        }
    }
}
