//! Records written by hand into the store, with missing or wrongly typed fields, as another
//! version or a careless script might leave them: a worker skips each with a logged error, marks
//! it failed so it is not claimed again, and goes on with the good jobs.

use std::time::Duration;

use dogs_core::{JobQuery, JobState, NewJob};
use serde_json::json;

use super::process::{log_summary, WorkerProcess, WorkerSpec};
use super::Env;
use crate::support::wait_until;

/// Writes the backend's bad records for job name `name`; returns how many.
async fn write_bad_records(env: &Env, name: &str) -> usize {
    match env.backend() {
        "postgres" => {
            use dogs_postgres::sqlx::{self, Connection};
            let mut conn = sqlx::PgConnection::connect(&env.settings.url)
                .await
                .unwrap();
            let s = &env.namespace;
            let rows = [
                // tries far out of range (the claim counts it up, still negative)
                format!(
                    "INSERT INTO \"{s}\".jobs (name, kind, params, run_at, tries, state) \
                     VALUES ('{name}', 'event', '{{}}', now(), -5, 'pending')"
                ),
            ];
            for row in &rows {
                sqlx::query(row).execute(&mut conn).await.unwrap();
            }
            rows.len()
        }
        "redis" => {
            use dogs_redis::redis;
            let client = redis::Client::open(env.settings.url.as_str()).unwrap();
            let mut conn = client.get_multiplexed_async_connection().await.unwrap();
            let p = format!("{{{}}}", env.namespace);
            let now: i64 = chrono::Utc::now().timestamp_millis();
            let bad: [(i64, Vec<(&str, String)>); 4] = [
                // no tries
                (
                    900_001,
                    vec![
                        ("name", name.into()),
                        ("kind", "event".into()),
                        ("params", "{}".into()),
                        ("priority", "1".into()),
                        ("run_at", now.to_string()),
                        ("state", "pending".into()),
                    ],
                ),
                // a run time and a priority that are not numbers
                (
                    900_002,
                    vec![
                        ("name", name.into()),
                        ("kind", "event".into()),
                        ("params", "{}".into()),
                        ("priority", "high".into()),
                        ("run_at", "soon".into()),
                        ("tries", "0".into()),
                        ("state", "pending".into()),
                    ],
                ),
                // params that are not JSON
                (
                    900_003,
                    vec![
                        ("name", name.into()),
                        ("kind", "event".into()),
                        ("params", "{not json".into()),
                        ("priority", "1".into()),
                        ("run_at", now.to_string()),
                        ("tries", "0".into()),
                        ("state", "pending".into()),
                    ],
                ),
                // in the ready set, with no job behind it
                (900_004, vec![]),
            ];
            for (id, fields) in &bad {
                if !fields.is_empty() {
                    let _: () = redis::cmd("HSET")
                        .arg(format!("{p}:job:{id}"))
                        .arg(
                            fields
                                .iter()
                                .flat_map(|(k, v)| [k.to_string(), v.clone()])
                                .collect::<Vec<_>>(),
                        )
                        .query_async(&mut conn)
                        .await
                        .unwrap();
                    let _: () = redis::cmd("ZADD")
                        .arg(format!("{p}:jobs"))
                        .arg(id)
                        .arg(id)
                        .query_async(&mut conn)
                        .await
                        .unwrap();
                    let _: () = redis::cmd("ZADD")
                        .arg(format!("{p}:byname:{name}"))
                        .arg(id)
                        .arg(id)
                        .query_async(&mut conn)
                        .await
                        .unwrap();
                }
                let member = format!("0:{:010}:{:015}:{:020}", 2_147_483_647 - 1, now.max(0), id);
                let _: () = redis::cmd("ZADD")
                    .arg(format!("{p}:ready:{name}"))
                    .arg(0)
                    .arg(member)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
            }
            bad.len()
        }
        "mongo" => {
            use dogs_mongo::mongodb::bson::{doc, DateTime};
            let client = dogs_mongo::mongodb::Client::with_uri_str(&env.settings.url)
                .await
                .unwrap();
            let jobs = client
                .database(&env.namespace)
                .collection::<dogs_mongo::mongodb::bson::Document>(
                    dogs_mongo::DEFAULT_JOBS_COLLECTION,
                );
            let now = DateTime::now();
            let docs = vec![
                // tries is text
                doc! { "name": name, "kind": "event", "params": {}, "priority": 1, "run_at": now, "tries": "three", "state": "pending", "demoted": false, "created_at": now },
                // no params, no priority, no creation time
                doc! { "name": name, "kind": "event", "run_at": now, "tries": 0_i64, "state": "pending", "demoted": false },
                // an unknown kind
                doc! { "name": name, "kind": "weekly", "params": {}, "priority": 1, "run_at": now, "tries": 0_i64, "state": "pending", "demoted": false, "created_at": now },
            ];
            let count = docs.len();
            jobs.insert_many(docs).await.unwrap();
            count
        }
        "sqlite" => {
            use dogs_sqlite::sqlx::{self, Connection};
            let path = super::sqlite_file(&env.settings.url, &env.namespace);
            let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
                .await
                .unwrap();
            let now = chrono::Utc::now().timestamp_millis();
            let insert = |params: &str, priority: i64, run_at: i64, tries: i64| {
                format!(
                    "INSERT INTO jobs (name, kind, params, priority, run_at, tries, state, created_at) \
                     VALUES ('{name}', 'event', '{params}', {priority}, {run_at}, {tries}, 'pending', {now})"
                )
            };
            let rows = [
                // params that are not JSON
                insert("{not json", 1, now, 0),
                // tries far out of range (the claim counts it up, still negative)
                insert("{}", 1, now, -5),
                // a priority past any i32
                insert("{}", 9_000_000_000_000, now, 0),
                // a run time past any date dogs can hold
                insert("{}", 1, i64::MIN + 1, 0),
            ];
            for row in &rows {
                sqlx::query(row).execute(&mut conn).await.unwrap();
            }
            rows.len()
        }
        other => panic!("no hand-written records for {other}"),
    }
}

/// Hand-written bad records beside good jobs: the good jobs run, the worker logs each bad
/// record and goes on without a crash loop, and the store stays readable.
pub async fn bad_records(env: Env) {
    let store = env.store().await;
    // The store creates its schema, indexes or scripts first, as a deployment would.
    store
        .schedule(NewJob::new("warm-up", json!({})))
        .await
        .unwrap();
    let bad = write_bad_records(&env, "work").await;
    let mut good = Vec::new();
    for i in 0..10 {
        good.push(
            crate::support::schedule_new(&*store, NewJob::new("work", json!({ "good": i })))
                .await
                .to_string(),
        );
    }
    let worker = WorkerProcess::start(
        &env,
        &WorkerSpec {
            slots: 4,
            poll: Duration::from_millis(100),
            lock: Duration::from_secs(2),
            ..WorkerSpec::new("w", "work")
        },
    );
    wait_until("the good jobs run", Duration::from_secs(30), || async {
        let started = worker.started();
        good.iter().all(|id| started.contains(id))
    })
    .await;
    // Longer than a lease and many polls: a bad record must not come back again and again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let log = worker.log();
    let (panics, problems) = log_summary(&log);
    assert_eq!(panics, 0, "no panic:\n{log}");
    assert!(
        log.contains("cannot be read"),
        "each bad record is logged:\n{log}"
    );
    assert!(
        problems <= 2 * bad,
        "{problems} warnings and errors for {bad} bad records: a bad record keeps coming back\n{log}"
    );
    let started = worker.started();
    assert_eq!(
        started.len(),
        good.len(),
        "only the good jobs ran: {started:?}"
    );
    worker.stop(Duration::from_secs(30)).await;
    // The store stays readable: listing and counting skip or show the bad records.
    let listed = store
        .list_jobs(&JobQuery {
            name: Some("work".into()),
            ..JobQuery::default()
        })
        .await
        .unwrap();
    assert!(
        listed.iter().all(|j| !good.contains(&j.id.to_string())),
        "the good jobs are done"
    );
    assert!(
        listed.iter().all(|j| j.state == JobState::Failed),
        "what is left of the bad records is failed: {listed:?}"
    );
    store.count_jobs().await.unwrap();
}
