//! dogs on PostgreSQL: an order and its shipping job written in one transaction, a job that fails
//! once and is retried, and the execution history. Exits by itself.
//!
//! Run it with `cargo run -p dogs-examples --bin postgres`, against the server named by
//! `DOGS_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`). It uses the schema
//! `dogs_example`.

use std::time::Duration;

use dogs_core::prelude::*;
use dogs_postgres::sqlx;
use dogs_postgres::PostgresStore;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Params of the shipping job.
#[derive(Debug, Serialize, Deserialize)]
struct Ship {
    order: i64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("DOGS_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let store = PostgresStore::builder()
        .url(url)
        .schema("dogs_example")
        .connect()
        .await?;
    sqlx::query("CREATE TABLE IF NOT EXISTS dogs_example.orders (id bigint PRIMARY KEY)")
        .execute(store.pool())
        .await?;

    let ship = EventJob::new("ship-order", |params: Ship, ctx: JobContext| async move {
        if ctx.tries() == 1 {
            println!("  ship-order {}: carrier busy (try 1)", params.order);
            return Err("carrier API busy".into());
        }
        println!(
            "  ship-order {}: shipped (try {})",
            params.order,
            ctx.tries()
        );
        Ok(json!({ "tracking": format!("TRK-{}", params.order) }))
    });
    let options = WorkerOptions::new()
        .poll_interval(Duration::from_secs(1))
        .retry_backoff(RetryBackoff {
            base: Duration::from_millis(200),
            ..Default::default()
        });
    let workers = start_workers(store.clone(), [ship.definition()], options).await?;

    let order: i64 = sqlx::query_scalar("SELECT coalesce(max(id), 0) + 1 FROM dogs_example.orders")
        .fetch_one(store.pool())
        .await?;
    println!("order {order} and its job, in one transaction:");
    let mut tx = store.pool().begin().await?;
    sqlx::query("INSERT INTO dogs_example.orders (id) VALUES ($1)")
        .bind(order)
        .execute(&mut *tx)
        .await?;
    let job = ship.new_job(
        &Ship { order },
        ScheduleOptions::now().unique_identifier(format!("ship-{order}")),
    )?;
    let scheduled = store.schedule_in(&mut tx, job).await?;
    tx.commit().await?;
    println!("  committed: {scheduled:?}");

    testing::wait_for_execution(&store, "ship-order", &scheduled, Duration::from_secs(10)).await?;
    workers.stop().await;

    println!("execution history of job {}:", scheduled.id());
    let query = ExecutionQuery::name("ship-order").job_id(scheduled.id().clone());
    let mut records = store.executions(&query).await?;
    records.reverse();
    for record in records {
        println!(
            "  {}  try {}  {:<8} {}",
            record.started_at.format("%H:%M:%S%.3f"),
            record.tries,
            record.status.as_str(),
            record
                .error
                .or(record.result.map(|r| r.to_string()))
                .unwrap_or_default()
        );
    }
    let left = store.list_jobs(&JobQuery::name("ship-order")).await?.len();
    println!("jobs left: {left}");
    Ok(())
}
