//! The history scenario: drains with many execution records already stored, and a drain while a
//! day of expired records is pruned, each beside a drain of the same store with none stored.

use std::time::Duration;

use chrono::{DateTime, Utc};
use dogs_core::{Execution, ExecutionStatus, JobId, JobKind};
use serde_json::Value;
use tokio::time::Instant;

use crate::backend::Backend;
use crate::measure::Figure;
use crate::scenarios::{drain_due, drain_once, enqueue_due, namespace, Outcome};
use crate::Settings;

/// Records written per fill statement or pipeline.
const FILL_BATCH: usize = 10_000;

/// How long the stored records span; the oldest day of them has expired.
const SPAN_DAYS: i64 = 7;

/// Drains at 32 and 256 slots with no records stored, `settings.runs` times each; stores
/// `settings.records` retained records and a day of expired ones on top (a week of records, the
/// oldest day expired); drains at 32 slots while the store prunes the expired day; drains the
/// deep store at 32 and 256 slots `settings.runs` times each; removes it and drains with none
/// again. The ratios divide by the median of the drains with none, before and after, so both
/// sides are measured on a server holding only what they say.
pub async fn run(settings: &Settings, backend: &Backend) -> Outcome<Vec<Figure>> {
    let records = settings.records;
    let expired = records / (SPAN_DAYS as usize - 1);
    let total = records + expired;
    let mut none = [Vec::new(), Vec::new()];
    let empty_ns = namespace(1);
    drains_with_none(settings, backend, &empty_ns, &mut none).await?;

    let deep_ns = namespace(0);
    let deep_store = backend.open(&deep_ns).await?;
    let started = Instant::now();
    fill(backend, &deep_ns, total).await?;
    eprintln!(
        "stored {total} execution records in {:.0} s",
        started.elapsed().as_secs_f64()
    );

    enqueue_due(&*deep_store, settings.jobs).await?;
    let pruner = {
        let store = deep_store.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let report = store.prune().await;
            (report, started.elapsed().as_secs_f64())
        })
    };
    let while_pruning = drain_due(settings, backend, &deep_store, 32).await?.0;
    let (report, prune_time) = pruner.await?;
    let pruned = report?.executions;

    let mut deep = [Vec::new(), Vec::new()];
    for _ in 0..settings.runs {
        for (i, slots) in [32, 256].into_iter().enumerate() {
            deep[i].push(drain_once(settings, backend, &deep_store, slots).await?.0);
        }
    }
    drop(deep_store);
    backend.cleanup(&deep_ns).await?;
    drains_with_none(settings, backend, &empty_ns, &mut none).await?;

    let none_median = |i: usize| {
        let mut rates = none[i].clone();
        rates.sort_by(f64::total_cmp);
        crate::measure::percentile(&rates, 0.5)
    };
    let ratios: Vec<Vec<f64>> = (0..2)
        .map(|i| deep[i].iter().map(|rate| rate / none_median(i)).collect())
        .collect();
    let prune_ratio = while_pruning / none_median(0);
    let set = |what: &str| {
        format!(
            "{} due no-op jobs, cooldown 0, history kept; {what}",
            settings.jobs
        )
    };
    let stored = format!("{records} execution records stored");
    let mut figures = Vec::new();
    for (i, slots) in [32, 256].into_iter().enumerate() {
        figures.push(Figure::new(
            &format!("drain, no records, {slots} slots"),
            "jobs/s",
            std::mem::take(&mut none[i]),
            &set("none stored, before and after the deep runs"),
        ));
        figures.push(Figure::new(
            &format!("drain, records stored, {slots} slots"),
            "jobs/s",
            std::mem::take(&mut deep[i]),
            &set(&stored),
        ));
        figures.push(Figure::new(
            &format!("records stored / none, {slots} slots"),
            "ratio",
            ratios[i].clone(),
            &set(&stored),
        ));
    }
    let pruning = format!(
        "{stored}, and {expired} expired ones pruned meanwhile (the store's own pruning as it \
         records, two per record on Redis, takes part)"
    );
    for (name, unit, value) in [
        ("drain while pruning, 32 slots", "jobs/s", while_pruning),
        ("while pruning / none, 32 slots", "ratio", prune_ratio),
        ("records the prune call removed", "records", pruned as f64),
        ("the prune call", "s", prune_time),
    ] {
        figures.push(Figure::new(name, unit, vec![value], &set(&pruning)));
    }
    Ok(figures)
}

/// `settings.runs` drains at 32 and at 256 slots, each of a fresh store in `namespace`, their
/// rates pushed to `rates`.
async fn drains_with_none(
    settings: &Settings,
    backend: &Backend,
    namespace: &str,
    rates: &mut [Vec<f64>; 2],
) -> Outcome<()> {
    for _ in 0..settings.runs {
        for (i, slots) in [32, 256].into_iter().enumerate() {
            let empty = backend.open(namespace).await?;
            rates[i].push(drain_once(settings, backend, &empty, slots).await?.0);
            drop(empty);
            backend.cleanup(namespace).await?;
        }
    }
    Ok(())
}

/// One stored record: the `i`-th of `count`, spread over the last week, the oldest day expired.
fn record(i: usize, count: usize, now: DateTime<Utc>) -> Execution {
    let span = chrono::Duration::days(SPAN_DAYS);
    let offset = span.num_milliseconds() * i as i64 / count.max(1) as i64;
    let started_at = now - span + chrono::Duration::milliseconds(offset);
    Execution {
        job_id: JobId::new(format!("{i}")),
        execution_id: dogs_core::execution_id(),
        name: "noop".into(),
        kind: JobKind::Event,
        priority: 0,
        tries: 1,
        unique_identifier: None,
        params: Value::Null,
        started_at,
        ended_at: started_at,
        duration: Duration::ZERO,
        status: ExecutionStatus::Success,
        error: None,
        result: None,
        worker_id: "filler".into(),
        expires_at: started_at + span - chrono::Duration::days(1),
    }
}

/// Stores `count` execution records in `namespace`'s store, written the way the store writes
/// them but in large batches (filling is not measured).
async fn fill(backend: &Backend, namespace: &str, count: usize) -> Outcome<()> {
    let now = Utc::now();
    match backend {
        Backend::Postgres(url) => {
            let store = crate::backend::postgres_as_is(url, namespace).await?;
            let sql = format!(
                "INSERT INTO \"{namespace}\".executions (execution_id, job_id, name, kind,
                     priority, tries, params, started_at, ended_at, duration_ms, status,
                     worker_id, expires_at)
                 SELECT id, job, 'noop', 'event', 0, 1, 'null'::jsonb, started, started, 0,
                     'success', 'filler', expires
                 FROM UNNEST($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[])
                     AS t(id, job, started, expires)"
            );
            let mut at = 0;
            while at < count {
                let end = (at + FILL_BATCH).min(count);
                let batch: Vec<Execution> = (at..end).map(|i| record(i, count, now)).collect();
                dogs_postgres::sqlx::query(&sql)
                    .bind(
                        batch
                            .iter()
                            .map(|e| e.execution_id.clone())
                            .collect::<Vec<_>>(),
                    )
                    .bind(
                        batch
                            .iter()
                            .map(|e| e.job_id.to_string())
                            .collect::<Vec<_>>(),
                    )
                    .bind(batch.iter().map(|e| e.started_at).collect::<Vec<_>>())
                    .bind(batch.iter().map(|e| e.expires_at).collect::<Vec<_>>())
                    .execute(store.pool())
                    .await?;
                at = end;
            }
            Ok(())
        }
        Backend::Redis(url, _) => {
            let store = dogs_redis::RedisStore::builder()
                .url(url)
                .prefix(namespace)
                .connect()
                .await?;
            let prefix = store.key_prefix().to_owned();
            let client = dogs_redis::redis::Client::open(url.as_str())?;
            // Without the default response timeout: a pipeline of thousands of records takes
            // longer than one command.
            let config = dogs_redis::redis::AsyncConnectionConfig::new().set_response_timeout(None);
            let mut conn = client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            let mut at = 0;
            while at < count {
                let end = (at + FILL_BATCH).min(count);
                let mut pipe = dogs_redis::redis::pipe();
                for i in at..end {
                    let e = record(i, count, now);
                    let json = serde_json::to_string(&e)?;
                    pipe.cmd("HSETNX")
                        .arg(format!("{prefix}:exec:{}", e.execution_id))
                        .arg("json")
                        .arg(json)
                        .ignore();
                    pipe.cmd("ZADD")
                        .arg(format!("{prefix}:execs:noop"))
                        .arg(e.started_at.timestamp_millis())
                        .arg(&e.execution_id)
                        .ignore();
                    pipe.cmd("ZADD")
                        .arg(format!("{prefix}:exec_expiry"))
                        .arg(e.expires_at.timestamp_millis())
                        .arg(&e.execution_id)
                        .ignore();
                }
                let () = pipe.query_async(&mut conn).await?;
                at = end;
            }
            Ok(())
        }
        Backend::Sqlite(..) => {
            use dogs_sqlite::sqlx::{self, Connection};
            let store = backend.open(namespace).await?;
            // The store made the file and its tables; the records go in through a connection
            // of their own, a transaction per batch.
            drop(store);
            let url = backend
                .sqlite_url(namespace)
                .ok_or("not a SQLite backend")?;
            let mut conn = sqlx::SqliteConnection::connect(&url).await?;
            let mut at = 0;
            while at < count {
                let end = (at + FILL_BATCH).min(count);
                let mut tx = conn.begin().await?;
                for i in at..end {
                    let e = record(i, count, now);
                    sqlx::query(
                        "INSERT INTO executions (execution_id, job_id, name, kind, priority, tries,
                             params, started_at, ended_at, duration_ms, status, worker_id,
                             expires_at)
                         VALUES (?1, ?2, 'noop', 'event', 0, 1, 'null', ?3, ?3, 0, 'success',
                             'filler', ?4)",
                    )
                    .bind(&e.execution_id)
                    .bind(e.job_id.to_string())
                    .bind(e.started_at.timestamp_millis())
                    .bind(e.expires_at.timestamp_millis())
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                at = end;
            }
            Ok(())
        }
        Backend::Memory | Backend::Mongo(_) => {
            Err("the history scenario measures the postgres, redis and sqlite stores".into())
        }
    }
}
