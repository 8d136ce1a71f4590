//! The dogs quickstart: workers on the in-memory store running an event job, a recurrent job and
//! a job that fails and is retried; then the execution history. Exits by itself in a few seconds.
//!
//! Run it with `cargo run -p dogs-examples --bin quickstart`. With
//! `-- --store sqlite://quickstart.db` the jobs live in that SQLite file instead: each run
//! leaves a reminder due 10 s later, which the next run finds in the file and runs, and the
//! execution history grows from run to run.

use std::sync::Arc;
use std::time::Duration;

use dogs_core::prelude::*;
use dogs_memory::MemoryStore;
use dogs_sqlite::SqliteStore;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Params of the welcome email job.
#[derive(Debug, Serialize, Deserialize)]
struct Welcome {
    user: String,
    email: String,
}

/// Params of the card charge job.
#[derive(Debug, Serialize, Deserialize)]
struct Charge {
    order: u32,
    cents: u64,
}

/// Params of the reminder each run leaves for the next one.
#[derive(Debug, Serialize, Deserialize)]
struct Reminder {
    note: String,
}

/// The store the arguments name: `--store sqlite://FILE`, or memory.
async fn open_store() -> Result<(Arc<dyn JobStore>, bool), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => Ok((Arc::new(MemoryStore::new()), false)),
        [flag, url] if flag == "--store" && url.starts_with("sqlite:") => {
            println!("store: the SQLite file {url}");
            Ok((Arc::new(SqliteStore::connect(url).await?), true))
        }
        _ => Err("usage: quickstart [--store sqlite://FILE]".into()),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (store, durable) = open_store().await?;

    // What an earlier run left in the store: on SQLite, its reminder survived the restart.
    let left = store.list_jobs(&JobQuery::name("send-reminder")).await?;
    for job in &left {
        println!(
            "found from an earlier run: send-reminder {} due {}",
            job.params,
            job.run_at.format("%H:%M:%S%.3f")
        );
    }

    // An event job: typed params, a result stored in its execution record.
    let welcome = EventJob::new(
        "send-welcome",
        |params: Welcome, ctx: JobContext| async move {
            println!(
                "  ran send-welcome for {} <{}> (try {})",
                params.user,
                params.email,
                ctx.tries()
            );
            Ok(json!({ "delivered_to": params.email }))
        },
    )
    .priority(5);

    // A job that fails twice (a flaky payment network), then succeeds on its third try.
    let charge = EventJob::new(
        "charge-card",
        |params: Charge, ctx: JobContext| async move {
            if ctx.tries() < 3 {
                println!(
                    "  ran charge-card for order {}: timeout (try {})",
                    params.order,
                    ctx.tries()
                );
                return Err("payment network timed out".into());
            }
            println!(
                "  ran charge-card for order {}: charged {} cents (try {})",
                params.order,
                params.cents,
                ctx.tries()
            );
            Ok(json!({ "charged": params.cents }))
        },
    )
    .max_tries(5);

    // A recurrent job: one record in the whole store, run every second.
    let heartbeat = RecurrentJob::new("heartbeat", |_ctx: JobContext| async move {
        println!("  ran heartbeat");
        Ok(())
    })
    .run_every(Duration::from_secs(1));

    let reminder = EventJob::new(
        "send-reminder",
        |params: Reminder, _ctx: JobContext| async move {
            println!("  ran send-reminder: {}", params.note);
            Ok(())
        },
    );

    println!("scheduling:");
    let ada = Welcome {
        user: "ada".into(),
        email: "ada@example.com".into(),
    };
    let unique = ScheduleOptions::default().unique_identifier("welcome:ada");
    let first = schedule_job(&store, &welcome, &ada, unique.clone()).await?;
    println!("  send-welcome for ada: {first:?}");
    let again = schedule_job(&store, &welcome, &ada, unique).await?;
    println!("  send-welcome for ada again: {again:?} (same unique identifier, kept once)");
    let grace = Welcome {
        user: "grace".into(),
        email: "grace@example.com".into(),
    };
    let later = ScheduleOptions::run_in(Duration::from_secs(1)).priority(9);
    println!(
        "  send-welcome for grace in 1 s: {:?}",
        schedule_job(&store, &welcome, &grace, later).await?
    );
    let order = Charge {
        order: 42,
        cents: 1999,
    };
    println!(
        "  charge-card for order 42: {:?}",
        schedule_job(&store, &charge, &order, ScheduleOptions::now()).await?
    );
    let note = Reminder {
        note: format!("left at {}", chrono::Utc::now().format("%H:%M:%S")),
    };
    let next_run = schedule_job(
        &store,
        &reminder,
        &note,
        ScheduleOptions::run_in(Duration::from_secs(10)),
    )
    .await?;
    println!("  send-reminder in 10 s, for the next run: {next_run:?}");

    println!("running:");
    let options = WorkerOptions::new()
        .poll_interval(Duration::from_secs(1))
        .retry_backoff(RetryBackoff {
            base: Duration::from_millis(300),
            ..Default::default()
        });
    let jobs = [
        welcome.definition(),
        charge.definition(),
        reminder.definition(),
        heartbeat.definition(),
    ];
    let workers = start_workers(store.clone(), jobs, options).await?;

    // Wait (at most 8 s, or 15 s for a reminder an earlier run left) until every event job but
    // this run's reminder is done and the heartbeat has run three times.
    let wait = if left.is_empty() { 8 } else { 15 };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
    loop {
        let mut pending_events = store
            .list_jobs(&JobQuery::name("send-welcome"))
            .await?
            .len()
            + store.list_jobs(&JobQuery::name("charge-card")).await?.len();
        for job in &left {
            pending_events += usize::from(store.get_job(&job.id).await?.is_some());
        }
        let beats = store
            .executions(&ExecutionQuery::name("heartbeat"))
            .await?
            .len();
        if (pending_events == 0 && beats >= 3) || tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    workers.stop().await;

    println!("execution history:");
    for name in ["send-welcome", "charge-card", "send-reminder", "heartbeat"] {
        let mut records = store.executions(&ExecutionQuery::name(name)).await?;
        records.reverse();
        for record in records {
            let outcome = match (&record.result, &record.error) {
                (_, Some(error)) => error.clone(),
                (Some(serde_json::Value::Null) | None, None) => String::new(),
                (Some(result), None) => result.to_string(),
            };
            println!(
                "  {}  {:<13} try {}  {:<8} {:>4} ms  {}",
                record.started_at.format("%H:%M:%S%.3f"),
                record.name,
                record.tries,
                record.status.as_str(),
                record.duration.as_millis(),
                outcome
            );
        }
    }
    if durable {
        println!("run it again: the reminder waits in the file, and the history above stays");
    } else {
        println!("the reminder is lost with the in-memory store; with --store sqlite://FILE it waits for the next run");
    }
    Ok(())
}
