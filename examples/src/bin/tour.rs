//! A tour of dogs in one file: an event job with typed params and shared state, a cron job and
//! its next runs, a retry policy, the execution history, and (under `cargo test`) a test that
//! drains the queue and awaits a job: `cargo run` (or `cargo test`) `-p dogs-examples --bin tour`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dogs_core::prelude::*;
use dogs_memory::MemoryStore;
use serde::{Deserialize, Serialize};

/// The params of one job, stored as JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Invoice {
    customer: String,
    cents: u64,
}

/// What every execution is handed: a database pool or an HTTP client, in a real service.
#[derive(Clone, Default)]
struct App {
    sent: Arc<AtomicU64>,
}

/// The event job: typed params, the app's state, and a retry policy.
fn send_invoice(app: App) -> EventJob<Invoice> {
    EventJob::with_state(
        "send-invoice",
        app,
        |app: App, invoice: Invoice, ctx: JobContext| async move {
            if invoice.cents == 0 {
                return Err("an invoice of nothing".into()); // an error: retried as on_error says
            }
            if invoice.customer == "grace" && ctx.tries() == 1 {
                return Err("the gateway is busy".into()); // retried in 200 ms, below
            }
            app.sent.fetch_add(1, Ordering::Relaxed);
            Ok(format!("{} cents to {}", invoice.cents, invoice.customer))
        },
    )
    .max_tries(3)
    .on_error(|failure| match failure.error.as_str() {
        "an invoice of nothing" => ErrorAction::Dismiss, // failed for good at once
        _ if failure.tries < 3 => ErrorAction::RetryIn(Duration::from_millis(200)),
        _ => ErrorAction::Default,
    })
}

/// The recurrent job: a cron expression in a timezone.
fn nightly_report() -> RecurrentJob {
    RecurrentJob::new("nightly-report", |_ctx: JobContext| async move {
        Ok("report sent")
    })
    .cron("0 3 * * *", "Europe/Paris")
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let store = MemoryStore::new();
    let send_invoice = send_invoice(App::default());
    let report = nightly_report();

    // Check a schedule before deploying it.
    for run in report.next_runs(chrono::Utc::now(), 5)? {
        println!("nightly-report will run at {run}");
    }

    let options = WorkerOptions::new()
        .workers_count(4)
        .poll_interval(Duration::from_millis(100))
        .on_max_tries(|failure| eprintln!("{} failed for good: {}", failure.name, failure.error));
    let workers = start_workers(
        store.clone(),
        [send_invoice.definition(), report.definition()],
        options,
    )
    .await?;

    let mut ids = Vec::new();
    for (customer, cents) in [("ada", 4200), ("grace", 1700), ("nobody", 0)] {
        let invoice = Invoice {
            customer: customer.into(),
            cents,
        };
        ids.push(schedule_job(&store, &send_invoice, &invoice, ScheduleOptions::now()).await?);
    }
    for id in &ids {
        let wait = Duration::from_secs(10);
        let record = testing::wait_for_outcome(&store, "send-invoice", id, wait).await?;
        println!(
            "job {}: {:?} at try {}",
            id.id(),
            record.status,
            record.tries
        );
    }
    workers.stop().await;

    // The history: newest first, one page of at most `limit` records.
    let history = store
        .executions(&ExecutionQuery::name("send-invoice").limit(20))
        .await?;
    for record in &history {
        let outcome = record.result.clone().unwrap_or_default();
        let error = record.error.as_deref().unwrap_or("");
        println!("{:?} try {} {outcome} {error}", record.status, record.tries);
    }
    let failed = store
        .list_jobs(&JobQuery::name("send-invoice").state(JobState::Failed))
        .await?;
    println!("{} failed for good", failed.len());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drains_and_awaits_an_invoice() -> Result<(), Error> {
        let store = MemoryStore::new();
        let app = App::default();
        let job = send_invoice(app.clone());
        let invoice = Invoice {
            customer: "ada".into(),
            cents: 4200,
        };
        let id = schedule_job(&store, &job, &invoice, ScheduleOptions::now()).await?;
        assert_eq!(
            testing::scheduled_jobs(&store, "send-invoice").await?.len(),
            1
        );

        // Runs what is due, inline, and returns the records of what ran.
        let ran = testing::drain(&store, [job.definition()]).await?;
        assert_eq!(ran.len(), 1);
        assert_eq!(ran[0].status, ExecutionStatus::Success);

        let record =
            testing::wait_for_execution(&store, "send-invoice", &id, Duration::from_secs(5))
                .await?;
        assert_eq!(record.result, Some(serde_json::json!("4200 cents to ada")));
        assert_eq!(app.sent.load(Ordering::Relaxed), 1);
        assert!(store.get_job(id.id()).await?.is_none());
        Ok(())
    }
}
