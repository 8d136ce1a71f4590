//! Bad input on every backend: hostile strings, params of 10 MB, and property tests over params
//! and run times. Everything is stored faithfully or refused with a typed error; nothing is ever
//! interpreted (only bound parameters reach SQL, only script arguments reach Lua, only BSON
//! values reach MongoDB).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use dogs_core::prelude::*;
use dogs_core::{
    ErrorKind, JobQuery, JobState, NewJob, MAX_NAME_BYTES, MAX_UNIQUE_IDENTIFIER_BYTES,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{json, Value};

use super::Env;
use crate::support::{schedule_new, wait_until};

/// Strings that break naive quoting in SQL, Lua, key layouts or BSON, and other oddities.
fn hostile() -> Vec<String> {
    vec![
        "it's".into(),
        "double \" quote".into(),
        "'; DROP TABLE jobs; --".into(),
        "\"; DROP SCHEMA public CASCADE; --".into(),
        "$1 $2 ?".into(),
        "]]..redis.call('FLUSHALL')..[[".into(),
        "') redis.call('FLUSHDB') --".into(),
        "{dogs}:job:1".into(),
        "*".into(),
        "{\"$where\": \"sleep(1000)\"}".into(),
        "$gt".into(),
        "a.b.c".into(),
        "back\\slash %s %n".into(),
        "line\nbreak\ttab\r".into(),
        "emoji 🐕‍🦺🚀 ünïcødé ﷽".into(),
        "\u{202e}right-to-left".into(),
        "x".repeat(200),
        "y".repeat(10_000),
        "nul \0 inside".into(),
    ]
}

fn expect_kind<T: std::fmt::Debug>(result: dogs_core::Result<T>, kind: ErrorKind, case: &str) {
    match result {
        Err(e) => assert_eq!(e.kind(), kind, "{case}: {e}"),
        Ok(v) => panic!("{case}: accepted ({v:?})"),
    }
}

/// Hostile job names, unique identifiers and params: stored and read back unchanged and run by
/// a worker, or refused with `InvalidInput` (NUL bytes, over the length limits); nothing else in
/// the store changes.
pub async fn hostile_strings(env: Env) {
    let store = env.store().await;
    let canary = schedule_new(&*store, NewJob::new("canary", json!({ "keep": true }))).await;
    let mut runnable = Vec::new();
    for (i, s) in hostile().into_iter().enumerate() {
        let case = format!("string {i} ({} bytes)", s.len());
        // As a job name.
        let as_name = store
            .schedule(NewJob::new(s.as_str(), json!({ "i": i })))
            .await;
        if s.contains('\0') || s.len() > MAX_NAME_BYTES {
            expect_kind(
                as_name,
                ErrorKind::InvalidInput,
                &format!("{case} as a name"),
            );
        } else {
            let Ok(Scheduled::Created(id)) = as_name else {
                panic!("{case} as a name: {as_name:?}");
            };
            let job = store.get_job(&id).await.unwrap().unwrap();
            assert_eq!(
                (job.name.as_str(), &job.params),
                (s.as_str(), &json!({ "i": i })),
                "{case}"
            );
            let listed = store
                .list_jobs(&JobQuery {
                    name: Some(s.clone()),
                    ..JobQuery::default()
                })
                .await
                .unwrap();
            assert_eq!(listed.len(), 1, "{case}: listed by name");
            runnable.push(s.clone());
        }
        // As a unique identifier.
        let unique = || NewJob::new("hostile", json!({ "i": i })).unique_identifier(s.as_str());
        let first = store.schedule(unique()).await;
        if s.contains('\0') || s.len() > MAX_UNIQUE_IDENTIFIER_BYTES {
            expect_kind(
                first,
                ErrorKind::InvalidInput,
                &format!("{case} as a unique identifier"),
            );
        } else {
            let Ok(Scheduled::Created(id)) = first else {
                panic!("{case} as a unique identifier: {first:?}");
            };
            let job = store.get_job(&id).await.unwrap().unwrap();
            assert_eq!(job.unique_identifier.as_deref(), Some(s.as_str()), "{case}");
            let again = store.schedule(unique()).await.unwrap();
            assert_eq!(again, Scheduled::Duplicate(id), "{case}: unique");
        }
        // In params, as a value and as a key.
        let params = json!({ "value": s, "nested": [{ s.clone(): s }] });
        let stored = store.schedule(NewJob::new("params", params.clone())).await;
        if s.contains('\0') {
            expect_kind(
                stored,
                ErrorKind::InvalidInput,
                &format!("{case} in params"),
            );
        } else {
            let Ok(Scheduled::Created(id)) = stored else {
                panic!("{case} in params: {stored:?}");
            };
            assert_eq!(
                store.get_job(&id).await.unwrap().unwrap().params,
                params,
                "{case}"
            );
        }
    }
    // The claims, completions and records of jobs with hostile names work too.
    let ran: Arc<Mutex<Vec<String>>> = Arc::default();
    let jobs: Vec<dogs_core::JobDefinition> = runnable
        .iter()
        .map(|name| {
            let ran = Arc::clone(&ran);
            EventJob::new(name.as_str(), move |_: Value, ctx: JobContext| {
                let ran = Arc::clone(&ran);
                async move {
                    ran.lock().unwrap().push(ctx.name().to_owned());
                    Ok(())
                }
            })
            .into()
        })
        .collect();
    let workers = start_workers(Arc::clone(&store), jobs, crate::support::fast_options())
        .await
        .unwrap();
    wait_until(
        "every hostile-named job runs",
        Duration::from_secs(30),
        || async { ran.lock().unwrap().len() >= runnable.len() },
    )
    .await;
    workers.stop().await;
    let mut ran = ran.lock().unwrap().clone();
    ran.sort();
    let mut expected = runnable.clone();
    expected.sort();
    assert_eq!(ran, expected, "each ran once, under its own name");
    let canary_job = store.get_job(&canary).await.unwrap();
    assert!(canary_job.is_some(), "nothing else in the store changed");
    let counts = store.count_jobs().await.unwrap();
    assert!(counts.iter().any(|c| c.name == "canary" && c.pending == 1));
}

/// Params of 10 MB: stored and run when the store's documented limit allows it, else refused
/// with `TooLarge`; either way nothing stored is lost.
pub async fn large_params(env: Env) {
    let store = env.store().await;
    let canary = schedule_new(&*store, NewJob::new("canary", json!(1))).await;
    let big = json!({ "blob": "x".repeat(10 * 1024 * 1024) });
    let size = dogs_core::params_size(&big);
    let outcome = store.schedule(NewJob::new("big", big.clone())).await;
    if size > store.max_params_bytes() {
        expect_kind(
            outcome,
            ErrorKind::TooLarge,
            "10 MB of params over the limit",
        );
    } else {
        let Ok(Scheduled::Created(id)) = outcome else {
            panic!(
                "10 MB of params under the limit of {}: {outcome:?}",
                store.max_params_bytes()
            );
        };
        assert!(
            store.get_job(&id).await.unwrap().unwrap().params == big,
            "read back whole"
        );
        let seen = Arc::new(Mutex::new(0usize));
        let job = {
            let seen = Arc::clone(&seen);
            EventJob::new("big", move |params: Value, _ctx: JobContext| {
                let seen = Arc::clone(&seen);
                async move {
                    *seen.lock().unwrap() = params["blob"].as_str().map_or(0, str::len);
                    Ok(())
                }
            })
        };
        let workers = start_workers(Arc::clone(&store), [job], crate::support::fast_options())
            .await
            .unwrap();
        wait_until(
            "the big job runs and is done",
            Duration::from_secs(60),
            || async { store.get_job(&id).await.unwrap().is_none() },
        )
        .await;
        workers.stop().await;
        assert_eq!(
            *seen.lock().unwrap(),
            10 * 1024 * 1024,
            "the handler got it whole"
        );
    }
    assert!(
        store.get_job(&canary).await.unwrap().is_some(),
        "nothing lost"
    );
}

/// JSON values: null, booleans, integers in the i64 range, finite floats, strings and keys of
/// any Unicode (NUL included), nested arrays and objects.
fn json_value() -> impl Strategy<Value = Value> {
    let text = prop_oneof![any::<String>(), "[$.a-z]{0,4}", "\\PC{0,12}"];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        text.clone().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(text.clone(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn has_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(has_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

/// Equal as JSON values, numbers by value (PostgreSQL's `jsonb` keeps numbers as decimals, so
/// the float 1e19 may read back as the integer 10000000000000000000).
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            x == y || (x.as_f64().is_some() && x.as_f64() == y.as_f64())
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

/// Runs `check` on `cases` values of `strategy`, shrinking a failure to a minimal one.
fn property<S, F, Fut>(cases: u32, strategy: S, check: F)
where
    S: Strategy,
    S::Value: Clone + std::fmt::Debug,
    F: Fn(S::Value) -> Fut,
    Fut: std::future::Future<Output = std::result::Result<(), String>>,
{
    let handle = tokio::runtime::Handle::current();
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let outcome = tokio::task::block_in_place(|| {
        runner.run(&strategy, |value| {
            handle.block_on(check(value)).map_err(TestCaseError::fail)
        })
    });
    if let Err(e) = outcome {
        panic!("{e}");
    }
}

/// Property: any params are stored and read back equal, or refused with `InvalidInput` when
/// they hold a NUL character (which PostgreSQL cannot store, so no store takes it).
pub async fn params_roundtrip_property(env: Env) {
    let store = env.store().await;
    property(96, json_value(), |params: Value| {
        let store = Arc::clone(&store);
        async move {
            let outcome = store.schedule(NewJob::new("prop", params.clone())).await;
            match outcome {
                Err(e) if has_nul(&params) && e.kind() == ErrorKind::InvalidInput => Ok(()),
                Err(e) => Err(format!("refused: {e}")),
                Ok(_) if has_nul(&params) => Err("a NUL character was accepted".into()),
                Ok(Scheduled::Created(id)) => {
                    let job = store.get_job(&id).await.map_err(|e| e.to_string())?;
                    let stored = job.ok_or("not found")?.params;
                    if same_json(&stored, &params) {
                        Ok(())
                    } else {
                        Err(format!("read back {stored}"))
                    }
                }
                Ok(other) => Err(format!("{other:?}")),
            }
        }
    });
}

/// Property: a job scheduled at any time between 1900 and 9999 reads back with that run time
/// (to the millisecond), and is waiting or due as that time says.
pub async fn run_at_roundtrip_property(env: Env) {
    let store = env.store().await;
    let lowest = Utc
        .with_ymd_and_hms(1900, 1, 1, 0, 0, 0)
        .unwrap()
        .timestamp_millis();
    let highest = Utc
        .with_ymd_and_hms(9999, 12, 31, 23, 59, 59)
        .unwrap()
        .timestamp_millis();
    property(96, lowest..highest, |ms: i64| {
        let store = Arc::clone(&store);
        async move {
            let at: DateTime<Utc> = DateTime::from_timestamp_millis(ms).ok_or("no such time")?;
            let id = match store
                .schedule(NewJob::new("when", json!(ms)).run_at(RunAt::At(at)))
                .await
            {
                Ok(Scheduled::Created(id)) => id,
                other => return Err(format!("{other:?}")),
            };
            let job = store
                .get_job(&id)
                .await
                .map_err(|e| e.to_string())?
                .ok_or("not found")?;
            if job.run_at != at {
                return Err(format!("read back {}", job.run_at));
            }
            let now = store.now().await.map_err(|e| e.to_string())?;
            if at > now + chrono::Duration::seconds(5) && job.state != JobState::Pending {
                return Err(format!("a future job is {:?}", job.state));
            }
            Ok(())
        }
    });
}
