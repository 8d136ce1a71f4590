//! The `dogs` binary against every store a separate process can reach: PostgreSQL, Redis,
//! MongoDB and SQLite files (the memory store lives inside one process, so it has no URL).
//!
//! Each test sets jobs up in a fresh namespace with the store crates, runs the binary on the
//! same namespace, checks what it printed, its exit code and the store's state afterwards, and
//! removes the namespace (for SQLite, whose file is the whole store, each namespace is a file of
//! its own, named by the URL with no `--namespace`). A backend whose URL (`DOGS_POSTGRES_URL`, `DOGS_REDIS_URL`,
//! `DOGS_MONGO_URL`) is missing is skipped with one line, or fails when `DOGS_REQUIRE` names it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use assert_cmd::Command;
use conformance_tests::env::{find_server, is_required, namespace, Server};
use conformance_tests::mongo::MongoBackend;
use conformance_tests::postgres::PostgresBackend;
use conformance_tests::redis::RedisBackend;
use conformance_tests::support::{claim_one, schedule_new};
use conformance_tests::Backend;
use dogs_core::{
    Completion, Execution, ExecutionStatus, JobId, JobKind, JobQuery, JobState, JobStore, NewJob,
    RunAt,
};
use predicates::prelude::*;
use serde_json::{json, Value};

const SERVERS: [Server; 3] = [Server::Postgres, Server::Redis, Server::Mongo];

/// An id no store gave: a 24-digit hex number, which is of MongoDB's id format and past
/// PostgreSQL's.
const UNKNOWN_ID: &str = "0123456789abcdef01234567";

/// Where a test's jobs live: a server's store, or a SQLite file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Server(Server),
    Sqlite,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Server(server) => server.backend_name(),
            Target::Sqlite => "sqlite",
        }
    }
}

/// The folder of the SQLite files of this test run.
fn sqlite_dir() -> PathBuf {
    std::env::temp_dir().join(format!("dogs-cli-tests-{}", std::process::id()))
}

/// The SQLite file of `namespace`, and its URL.
fn sqlite_file(namespace: &str) -> (PathBuf, String) {
    let path = sqlite_dir().join(format!("{namespace}.db"));
    let url = format!("sqlite://{}", path.display());
    (path, url)
}

/// Removes a SQLite file and its write-ahead log.
fn remove_sqlite(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        let _ = std::fs::remove_file(file);
    }
}

/// One backend's server and a fresh namespace on it, with the store opened in-process.
struct Env {
    target: Target,
    /// The server's URL (for SQLite, the namespace's file's).
    url: String,
    namespace: String,
    store: Arc<dyn JobStore>,
}

impl Env {
    /// `dogs --store URL --namespace NS`, with no store settings from the environment.
    fn dogs(&self) -> Command {
        self.dogs_in(&self.namespace)
    }

    /// The arguments that name this test's store: `--store URL --namespace NS`, or for SQLite
    /// `--store sqlite://FILE`.
    fn store_args(&self) -> Vec<String> {
        match self.target {
            Target::Server(_) => vec![
                "--store".into(),
                self.url.clone(),
                "--namespace".into(),
                self.namespace.clone(),
            ],
            Target::Sqlite => vec!["--store".into(), self.url.clone()],
        }
    }

    /// `dogs` on another namespace of the same server (for SQLite, another file).
    fn dogs_in(&self, namespace: &str) -> Command {
        let mut cmd = dogs();
        match self.target {
            Target::Server(_) => cmd.args(["--store", &self.url, "--namespace", namespace]),
            Target::Sqlite => cmd.args(["--store", &sqlite_file(namespace).1]),
        };
        cmd
    }

    /// Runs `dogs ARGS`.
    fn run(&self, args: &[&str]) -> Output {
        let mut cmd = self.dogs();
        cmd.args(args);
        tokio::task::block_in_place(|| cmd.output().unwrap())
    }

    /// Runs `dogs --json ARGS`, which must succeed, and parses what it printed.
    fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend(args);
        let output = self.run(&all);
        assert_eq!(
            code(&output),
            0,
            "{}: dogs {all:?}: {}",
            self.name(),
            stderr(&output)
        );
        serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
            panic!(
                "{}: dogs {all:?} printed no JSON ({e}): {}",
                self.name(),
                stdout(&output)
            )
        })
    }

    /// Runs `dogs ARGS` (tables), which must succeed, and returns what it printed.
    fn text(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert_eq!(
            code(&output),
            0,
            "{}: dogs {args:?}: {}",
            self.name(),
            stderr(&output)
        );
        stdout(&output)
    }

    /// Runs `dogs ARGS`, which must fail with `expected`, and returns what it printed to stderr.
    fn fails(&self, args: &[&str], expected: i32) -> String {
        let output = self.run(args);
        assert_eq!(
            code(&output),
            expected,
            "{}: dogs {args:?}: stdout {} stderr {}",
            self.name(),
            stdout(&output),
            stderr(&output)
        );
        let shown = stderr(&output);
        if expected != 2 {
            // Usage errors are clap's, with their usage line; the others are one line.
            assert_eq!(shown.trim_end().lines().count(), 1, "one line: {shown}");
        }
        shown
    }

    fn name(&self) -> &'static str {
        self.target.name()
    }

    async fn job(&self, id: &JobId) -> Option<dogs_core::Job> {
        self.store.get_job(id).await.unwrap()
    }
}

/// The binary, with no store settings from the environment.
fn dogs() -> Command {
    let mut cmd = Command::cargo_bin("dogs").unwrap();
    for variable in ["DOGS_STORE", "DOGS_NAMESPACE", "DOGS_DASHBOARD_TOKEN"] {
        cmd.env_remove(variable);
    }
    cmd.timeout(Duration::from_secs(120));
    cmd
}

fn code(output: &Output) -> i32 {
    output.status.code().unwrap_or(-1)
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn backend(server: Server, url: &str) -> Box<dyn Backend> {
    match server {
        Server::Postgres => Box::new(PostgresBackend::new(url)),
        Server::Redis => Box::new(RedisBackend::new(url)),
        Server::Mongo => Box::new(MongoBackend::new(url)),
    }
}

type Body = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Runs `body` once per backend that can be reached, each in a fresh namespace removed
/// afterwards.
fn per_backend(test: &str, body: fn(Env) -> Body) {
    on_servers(test, body);
    on_sqlite(test, body);
}

/// Runs `body` on a fresh SQLite file, removed afterwards.
fn on_sqlite(test: &str, body: fn(Env) -> Body) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let namespace = namespace(test);
    std::fs::create_dir_all(sqlite_dir()).unwrap();
    let (path, url) = sqlite_file(&namespace);
    runtime.block_on(async {
        let store: Arc<dyn JobStore> =
            Arc::new(dogs_sqlite::SqliteStore::open(&path).await.unwrap());
        let env = Env {
            target: Target::Sqlite,
            url,
            namespace: namespace.clone(),
            store,
        };
        let outcome = tokio::spawn(body(env)).await;
        remove_sqlite(&path);
        if let Err(failed) = outcome {
            std::panic::resume_unwind(failed.into_panic());
        }
    });
}

/// Runs `body` once per server that can be reached, each in a fresh namespace removed
/// afterwards.
fn on_servers(test: &str, body: fn(Env) -> Body) {
    for server in SERVERS {
        let handle = match find_server(server) {
            Ok(handle) => handle,
            Err(why) if is_required(server.backend_name()) => {
                panic!(
                    "{test} [{}]: required but cannot run: {why}",
                    server.backend_name()
                )
            }
            Err(why) => {
                println!("{test} [{}]: skipped: {why}", server.backend_name());
                continue;
            }
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let namespace = namespace(test);
        let backend = backend(server, &handle.url);
        runtime.block_on(async {
            let store = backend.open(&namespace).await.unwrap();
            let env = Env {
                target: Target::Server(server),
                url: handle.url.clone(),
                namespace: namespace.clone(),
                store,
            };
            let outcome = tokio::spawn(body(env)).await;
            let cleaned = backend.cleanup(&namespace).await;
            if let Err(failed) = outcome {
                std::panic::resume_unwind(failed.into_panic());
            }
            cleaned.unwrap();
        });
    }
}

/// The jobs [`seed`] stores.
struct Seeded {
    /// `alpha`, failed with `boom`, with one `failed` execution record.
    failed: JobId,
    /// `alpha`, leased by worker `test` for a minute.
    running: JobId,
    /// `alpha`, due, priority 5, unique identifier `u-3`.
    due: JobId,
    /// `alpha`, due in an hour.
    later: JobId,
    /// `beta`, due.
    beta: JobId,
}

/// Stores jobs of every state: see [`Seeded`].
async fn seed(store: &dyn JobStore) -> Seeded {
    let failed = fail_new(store, "alpha", json!({"n": 1}), Duration::from_secs(3600)).await;
    let running = schedule_new(store, NewJob::new("alpha", json!({"n": 2}))).await;
    let claimed = claim_one(store, "alpha", Duration::from_secs(60)).await;
    assert_eq!(claimed.job.id, running);
    let due = schedule_new(
        store,
        NewJob::new("alpha", json!({"n": 3}))
            .priority(5)
            .unique_identifier("u-3"),
    )
    .await;
    let later = schedule_new(
        store,
        NewJob::new("alpha", json!({"n": 4})).run_at(RunAt::In(Duration::from_secs(3600))),
    )
    .await;
    let beta = schedule_new(store, NewJob::new("beta", json!({}))).await;
    Seeded {
        failed,
        running,
        due,
        later,
        beta,
    }
}

/// Schedules a job of `name`, claims it (it must be the only due one of its name) and fails it
/// with `boom`, kept for `retain_for`, recording a `failed` execution that started a second ago,
/// kept as long (at least half a second).
async fn fail_new(store: &dyn JobStore, name: &str, params: Value, retain_for: Duration) -> JobId {
    let id = schedule_new(store, NewJob::new(name, params)).await;
    let claimed = claim_one(store, name, Duration::from_secs(60)).await;
    assert_eq!(claimed.job.id, id);
    // Redis removes expired records as it writes others: this one outlives the writes here.
    let keep = retain_for.max(Duration::from_millis(500));
    record(store, &id, name, ExecutionStatus::Failed, 1, keep).await;
    store
        .complete(
            &claimed.lease,
            Completion::Fail {
                error: "boom".into(),
                retain_for,
            },
        )
        .await
        .unwrap();
    id
}

/// Stores an execution record of job `id` that started `ago_secs` ago and expires `keep` after
/// it ended (a second).
async fn record(
    store: &dyn JobStore,
    id: &JobId,
    name: &str,
    status: ExecutionStatus,
    ago_secs: i64,
    keep: Duration,
) {
    let now = dogs_core::truncate_millis(store.now().await.unwrap());
    let started_at = now - chrono::Duration::seconds(ago_secs);
    let ended_at = started_at + chrono::Duration::seconds(1);
    store
        .record_execution(&Execution {
            job_id: id.clone(),
            execution_id: dogs_core::execution_id(),
            name: name.into(),
            kind: JobKind::Event,
            priority: 1,
            tries: 1,
            unique_identifier: None,
            params: json!({}),
            started_at,
            ended_at,
            duration: Duration::from_secs(1),
            status,
            error: (status != ExecutionStatus::Success).then(|| "boom".to_owned()),
            result: (status == ExecutionStatus::Success).then(|| json!({"sent": true})),
            worker_id: "worker-1".into(),
            expires_at: ended_at + chrono::Duration::from_std(keep).unwrap(),
        })
        .await
        .unwrap();
}

fn ids(jobs: &Value) -> Vec<String> {
    jobs.as_array()
        .unwrap()
        .iter()
        .map(|job| job["id"].as_str().unwrap().to_owned())
        .collect()
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

#[test]
fn stats_counts_each_name() {
    per_backend("stats", |env| {
        Box::pin(async move {
            seed(env.store.as_ref()).await;
            let stats = env.json(&["stats"]);
            assert_eq!(
                stats,
                json!([
                    {"name": "alpha", "due": 1, "scheduled": 1, "pending": 2, "running": 1,
                     "failed": 1, "paused": false},
                    {"name": "beta", "due": 1, "scheduled": 0, "pending": 1, "running": 0,
                     "failed": 0, "paused": false},
                ]),
                "{}",
                env.name()
            );
            let text = env.text(&["stats"]);
            let lines: Vec<Vec<&str>> = text
                .lines()
                .map(|l| l.split_whitespace().collect())
                .collect();
            assert_eq!(
                lines,
                vec![
                    vec!["NAME", "DUE", "SCHEDULED", "RUNNING", "FAILED", "PAUSED"],
                    vec!["alpha", "1", "1", "1", "1", "no"],
                    vec!["beta", "1", "0", "0", "0", "no"],
                ],
                "{}: {text}",
                env.name()
            );
        })
    });
}

#[test]
fn jobs_are_listed_by_page_name_and_state() {
    per_backend("jobs", |env| {
        Box::pin(async move {
            let s = seed(env.store.as_ref()).await;
            let all: Vec<String> = [&s.failed, &s.running, &s.due, &s.later, &s.beta]
                .iter()
                .map(|id| id.to_string())
                .collect();
            let mut seen = Vec::new();
            for page in ["1", "2", "3"] {
                let listed = env.json(&["jobs", "--limit", "2", "--page", page]);
                assert_eq!(listed["page"], json!(page.parse::<u64>().unwrap()));
                let next = (page != "3").then(|| page.parse::<u64>().unwrap() + 1);
                assert_eq!(
                    listed["next_page"],
                    json!(next),
                    "{}: page {page}",
                    env.name()
                );
                seen.extend(ids(&listed["jobs"]));
            }
            assert_eq!(sorted(seen), sorted(all), "{}: every job once", env.name());
            let pending = env.json(&["jobs", "--name", "alpha", "--state", "pending"]);
            assert_eq!(
                ids(&pending["jobs"]),
                vec![s.due.to_string(), s.later.to_string()],
                "{}: in scheduling order",
                env.name()
            );
            assert_eq!(pending["next_page"], Value::Null);
            let failed = env.json(&["jobs", "--state", "failed"]);
            assert_eq!(ids(&failed["jobs"]), vec![s.failed.to_string()]);
            assert_eq!(failed["jobs"][0]["last_error"], json!("boom"));
            let running = env.json(&["jobs", "--state", "running"]);
            assert_eq!(ids(&running["jobs"]), vec![s.running.to_string()]);
            let beta = env.json(&["jobs", "--name", "beta"]);
            assert_eq!(ids(&beta["jobs"]), vec![s.beta.to_string()]);

            let text = env.text(&["jobs", "--name", "alpha", "--limit", "3"]);
            let header: Vec<&str> = text
                .lines()
                .next()
                .unwrap()
                .split("  ")
                .filter(|c| !c.is_empty())
                .map(str::trim)
                .collect();
            assert_eq!(
                header,
                vec![
                    "ID",
                    "NAME",
                    "STATE",
                    "PRIORITY",
                    "RUN AT",
                    "TRIES",
                    "UNIQUE ID"
                ]
            );
            assert!(
                text.contains(&s.due.to_string()) && text.contains("u-3"),
                "{text}"
            );
            assert!(
                text.contains("dogs jobs --name alpha --limit 3 --page 2"),
                "the next page is named: {text}"
            );
            let last = env.text(&["jobs", "--name", "alpha", "--limit", "3", "--page", "2"]);
            assert!(last.contains("no more jobs"), "{last}");
            env.fails(&["jobs", "--state", "done"], 2);
            env.fails(&["jobs", "--limit", "0"], 2);
        })
    });
}

#[test]
fn job_shows_its_details_and_executions() {
    per_backend("job", |env| {
        Box::pin(async move {
            let s = seed(env.store.as_ref()).await;
            let failed = env.json(&["job", s.failed.as_str()]);
            let job = &failed["job"];
            assert_eq!(job["state"], json!("failed"), "{}: {failed}", env.name());
            assert_eq!(job["last_error"], json!("boom"));
            assert_eq!(job["params"], json!({"n": 1}));
            assert_eq!(job["tries"], json!(1));
            let executions = failed["executions"].as_array().unwrap();
            assert_eq!(executions.len(), 1, "{failed}");
            assert_eq!(executions[0]["status"], json!("failed"));
            assert_eq!(executions[0]["error"], json!("boom"));

            let running = env.json(&["job", s.running.as_str()]);
            assert_eq!(running["job"]["state"], json!("running"));
            assert_eq!(running["job"]["locked_by"], json!("test"));
            assert_eq!(running["executions"], json!([]));

            let text = env.text(&["job", s.failed.as_str()]);
            for expected in [
                "state:",
                "failed",
                "last error:",
                "boom",
                "\"n\": 1",
                "executions, newest first",
                "STATUS",
            ] {
                assert!(
                    text.contains(expected),
                    "{}: {expected} in {text}",
                    env.name()
                );
            }
            let text = env.text(&["job", s.due.as_str()]);
            assert!(
                text.contains("u-3") && text.contains("no execution records"),
                "{text}"
            );
            let text = env.text(&["job", s.running.as_str()]);
            assert!(
                text.contains("test until"),
                "the lease holder is shown: {text}"
            );

            let shown = env.fails(&["job", UNKNOWN_ID], 3);
            assert!(shown.contains(UNKNOWN_ID), "{shown}");
            env.fails(&["job", "no-such-job"], 3);
        })
    });
}

#[test]
fn executions_are_listed_newest_first() {
    per_backend("executions", |env| {
        Box::pin(async move {
            let s = seed(env.store.as_ref()).await;
            let keep = Duration::from_secs(3600);
            record(
                env.store.as_ref(),
                &s.due,
                "alpha",
                ExecutionStatus::Error,
                30,
                keep,
            )
            .await;
            record(
                env.store.as_ref(),
                &s.due,
                "alpha",
                ExecutionStatus::Success,
                10,
                keep,
            )
            .await;
            let all = env.json(&["executions", "alpha"]);
            let statuses: Vec<&str> = all
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["status"].as_str().unwrap())
                .collect();
            assert_eq!(
                statuses,
                vec!["failed", "success", "error"],
                "{}",
                env.name()
            );
            let failed = env.json(&["executions", "alpha", "--status", "failed"]);
            assert_eq!(failed.as_array().unwrap().len(), 1);
            assert_eq!(failed[0]["job_id"], json!(s.failed.to_string()));
            let newest = env.json(&["executions", "alpha", "--limit", "1"]);
            assert_eq!(newest.as_array().unwrap().len(), 1);
            assert_eq!(newest[0]["status"], json!("failed"));
            assert_eq!(env.json(&["executions", "beta"]), json!([]));

            let text = env.text(&["executions", "alpha", "--status", "error"]);
            assert!(text.starts_with("STARTED"), "{text}");
            assert!(
                text.contains(&s.due.to_string()) && text.contains("boom"),
                "{text}"
            );
            assert!(!text.contains("success"), "{text}");
            env.fails(&["executions", "alpha", "--status", "lost"], 2);
        })
    });
}

#[test]
fn retry_puts_back_a_failed_job_and_makes_a_pending_one_due() {
    per_backend("retry", |env| {
        Box::pin(async move {
            let s = seed(env.store.as_ref()).await;
            let retried = env.json(&["retry", s.failed.as_str()]);
            assert_eq!(
                retried,
                json!({"id": s.failed.to_string(), "was": "failed"})
            );
            let job = env.job(&s.failed).await.unwrap();
            assert_eq!(
                (job.state, job.tries, job.last_error),
                (JobState::Pending, 0, None),
                "{}",
                env.name()
            );

            let text = env.text(&["retry", s.later.as_str()]);
            assert!(text.contains("due now"), "{text}");
            let job = env.job(&s.later).await.unwrap();
            let now = env.store.now().await.unwrap();
            assert!(
                job.run_at <= now,
                "{}: due now, not {}",
                env.name(),
                job.run_at
            );

            let shown = env.fails(&["retry", s.running.as_str()], 4);
            assert!(shown.contains("conflict"), "{shown}");
            assert_eq!(env.job(&s.running).await.unwrap().state, JobState::Running);
            env.fails(&["retry", UNKNOWN_ID], 3);
            env.fails(&["retry"], 2);
            env.fails(&["retry", s.due.as_str(), "--name", "alpha", "--failed"], 2);
        })
    });
}

#[test]
fn retry_failed_puts_back_every_failed_job_of_a_name() {
    per_backend("retry_failed", |env| {
        Box::pin(async move {
            let store = env.store.as_ref();
            let keep = Duration::from_secs(3600);
            let first = fail_new(store, "gamma", json!(1), keep).await;
            let second = fail_new(store, "gamma", json!(2), keep).await;
            let other = fail_new(store, "delta", json!(3), keep).await;
            let retried = env.json(&["retry", "--name", "gamma", "--failed"]);
            assert_eq!(
                retried,
                json!({"name": "gamma", "retried": 2}),
                "{}",
                env.name()
            );
            for id in [&first, &second] {
                assert_eq!(env.job(id).await.unwrap().state, JobState::Pending);
            }
            assert_eq!(env.job(&other).await.unwrap().state, JobState::Failed);

            let shown = env.fails(&["retry", "--name", "gamma", "--failed"], 3);
            assert!(shown.contains("gamma"), "{shown}");
            let text = env.text(&["retry", "--name", "delta", "--failed"]);
            assert!(text.contains("put back 1 failed job of 'delta'"), "{text}");
            env.fails(&["retry", "--name", "gamma"], 2);
        })
    });
}

#[test]
fn cancel_removes_a_pending_job_and_fails_a_running_one() {
    per_backend("cancel", |env| {
        Box::pin(async move {
            let s = seed(env.store.as_ref()).await;
            let cancelled = env.json(&["cancel", s.due.as_str()]);
            assert_eq!(cancelled, json!({"id": s.due.to_string(), "removed": true}));
            assert!(env.job(&s.due).await.is_none(), "{}", env.name());
            env.fails(&["cancel", s.due.as_str()], 3);

            let text = env.text(&["cancel", s.running.as_str()]);
            assert!(text.contains("was running"), "{text}");
            let job = env.job(&s.running).await.unwrap();
            assert_eq!(job.state, JobState::Failed, "{}", env.name());
            assert_eq!(job.last_error.as_deref(), Some(dogs_core::CANCELLED_ERROR));

            let text = env.text(&["cancel", s.beta.as_str()]);
            assert!(text.contains("removed"), "{text}");
            env.fails(&["cancel", UNKNOWN_ID], 3);
        })
    });
}

#[test]
fn pause_and_resume_a_name() {
    per_backend("pause", |env| {
        Box::pin(async move {
            seed(env.store.as_ref()).await;
            assert_eq!(
                env.json(&["pause", "beta"]),
                json!({"name": "beta", "paused": true})
            );
            let settings = env.store.name_settings().await.unwrap();
            assert!(
                settings.iter().any(|s| s.name == "beta" && s.paused),
                "{}: {settings:?}",
                env.name()
            );
            let stats = env.json(&["stats"]);
            assert_eq!(stats[1]["name"], json!("beta"));
            assert_eq!(stats[1]["paused"], json!(true));
            assert_eq!(stats[0]["paused"], json!(false));
            let text = env.text(&["jobs", "--name", "beta"]);
            assert!(text.contains("pending (paused)"), "{text}");

            let text = env.text(&["resume", "beta"]);
            assert!(text.contains("resumed 'beta'"), "{text}");
            let settings = env.store.name_settings().await.unwrap();
            assert!(
                !settings.iter().any(|s| s.name == "beta" && s.paused),
                "{}: {settings:?}",
                env.name()
            );
            env.fails(&["pause", ""], 2);
        })
    });
}

#[test]
fn prune_removes_what_has_expired() {
    per_backend("prune", |env| {
        Box::pin(async move {
            let store = env.store.as_ref();
            let kept = fail_new(store, "old", json!(1), Duration::from_secs(3600)).await;
            let expired = fail_new(store, "old", json!(2), Duration::from_millis(1)).await;
            // The records of both ended now; that of `expired` expires half a second later.
            conformance_tests::support::wait_past(
                store,
                store.now().await.unwrap() + chrono::Duration::milliseconds(600),
            )
            .await;
            let report = env.json(&["prune"]);
            // MongoDB's own expiry may have removed some already.
            let jobs = report["jobs"].as_u64().unwrap();
            let records = report["executions"].as_u64().unwrap();
            if env.target == Target::Server(Server::Mongo) {
                assert!(jobs <= 1 && records <= 1, "{report}");
            } else {
                assert_eq!(
                    report,
                    json!({"jobs": 1, "executions": 1}),
                    "{}",
                    env.name()
                );
            }
            assert!(env.job(&expired).await.is_none(), "{}", env.name());
            assert!(env.job(&kept).await.is_some());
            let listed = store.list_jobs(&JobQuery::name("old")).await.unwrap();
            assert_eq!(listed.len(), 1);
            let text = env.text(&["prune"]);
            assert!(
                text.contains("removed 0 failed jobs and 0 execution records"),
                "{text}"
            );
        })
    });
}

#[test]
fn migrate_prepares_the_store() {
    per_backend("migrate", |env| {
        Box::pin(async move {
            if let Target::Server(server @ (Server::Redis | Server::Mongo)) = env.target {
                let migrated = env.json(&["migrate"]);
                assert_eq!(
                    migrated["store"],
                    json!(if server == Server::Redis {
                        "redis"
                    } else {
                        "mongo"
                    })
                );
                assert_eq!(migrated["namespace"], json!(env.namespace));
                let text = env.text(&["migrate"]);
                assert!(text.contains("no schema to migrate"), "{text}");
                return;
            }
            let fresh = namespace("migrate_fresh");
            let run = |args: &[&str]| {
                let mut cmd = env.dogs_in(&fresh);
                cmd.args(args);
                tokio::task::block_in_place(|| cmd.output().unwrap())
            };
            let refused = run(&["stats"]);
            assert_eq!(code(&refused), 1, "{}", stderr(&refused));
            let shown = stderr(&refused);
            assert!(
                shown.contains("dogs migrate") && shown.contains(&fresh),
                "{shown}"
            );
            let migrated = run(&["migrate"]);
            assert_eq!(code(&migrated), 0, "{}", stderr(&migrated));
            assert!(stdout(&migrated).contains("every migration is applied"));
            let again = run(&["--json", "migrate"]);
            assert_eq!(code(&again), 0, "{}", stderr(&again));
            let again: Value = serde_json::from_slice(&again.stdout).unwrap();
            assert_eq!(again["store"], json!(env.name()));
            let named = again["namespace"].as_str().unwrap();
            // A schema's name, or the path of a SQLite file.
            assert!(
                named == fresh || named.ends_with(&format!("{fresh}.db")),
                "{again}"
            );
            let stats = run(&["stats"]);
            assert_eq!(code(&stats), 0, "{}", stderr(&stats));
            assert_eq!(stdout(&stats).trim(), "no jobs");
            match env.target {
                Target::Sqlite => remove_sqlite(&sqlite_file(&fresh).0),
                Target::Server(_) => PostgresBackend::new(&env.url)
                    .cleanup(&fresh)
                    .await
                    .unwrap(),
            }
        })
    });
}

#[test]
fn a_store_that_cannot_be_opened_is_named_without_its_password() {
    let cases = [
        ("postgres://user:s3cr%40tpass@127.0.0.1:1/db", "127.0.0.1:1"),
        ("redis://:s3cr3tpass@127.0.0.1:1", "127.0.0.1:1"),
        ("mongodb://user:s3cr3tpass@127.0.0.1:1/db", "127.0.0.1:1"),
        (
            "mysql://user:s3cr3tpass@db.internal/app",
            "mysql://user:***@db.internal/app",
        ),
        ("s3cr3tpass", "not a URL"),
    ];
    for (url, named) in cases {
        let output = dogs()
            .args(["--store", url, "--timeout", "1", "stats"])
            .output()
            .unwrap();
        let shown = stderr(&output);
        assert_eq!(code(&output), 1, "{url}: {shown}");
        assert!(shown.contains(named), "{url}: names {named}: {shown}");
        for secret in ["s3cr", "tpass"] {
            assert!(!shown.contains(secret), "{url}: {shown}");
        }
        assert_eq!(shown.trim_end().lines().count(), 1, "{shown}");
    }
}

#[test]
fn a_sqlite_file_takes_no_namespace() {
    std::fs::create_dir_all(sqlite_dir()).unwrap();
    let (path, url) = sqlite_file(&namespace("sqlite_namespace"));
    let output = dogs()
        .args(["--store", &url, "--namespace", "billing", "migrate"])
        .output()
        .unwrap();
    let shown = stderr(&output);
    assert_eq!(code(&output), 1, "{shown}");
    assert!(shown.contains("namespace"), "{shown}");
    assert!(!path.exists(), "no file is made for a refused command");
}

#[test]
fn no_store_is_a_usage_error() {
    dogs()
        .arg("stats")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--store").and(predicate::str::contains("DOGS_STORE")));
    dogs().arg("frobnicate").assert().code(2);
}

#[test]
fn help_documents_the_exit_codes() {
    dogs().arg("--help").assert().success().stdout(
        predicate::str::contains("Exit codes:").and(predicate::str::contains("4  conflict")),
    );
}

#[test]
fn the_dashboard_refuses_open_actions_on_the_network() {
    dogs()
        .args(["dashboard", "--listen", "0.0.0.0:0"])
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("--token")
                .and(predicate::str::contains("--read-only"))
                .and(predicate::str::contains("0.0.0.0")),
        );
    dogs()
        .args(["dashboard", "--listen", "0.0.0.0:0", "--token", " "])
        .assert()
        .code(2);
    dogs()
        .args(["dashboard", "--listen", "not an address"])
        .assert()
        .code(2);
}

/// `GET path` on the dashboard at `addr`, with `token` as a bearer token; the status code.
#[cfg(feature = "dashboard")]
fn get(addr: &str, path: &str, token: Option<&str>) -> u16 {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response.split_whitespace().nth(1).unwrap_or_default();
    status
        .parse()
        .unwrap_or_else(|_| panic!("not an HTTP answer: {response}"))
}

#[cfg(feature = "dashboard")]
#[test]
fn the_dashboard_serves_until_ctrl_c() {
    per_backend("dashboard", |env| {
        Box::pin(async move {
            use std::io::BufRead;
            seed(env.store.as_ref()).await;
            let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_dogs"))
                .env_remove("DOGS_DASHBOARD_TOKEN")
                .args(env.store_args())
                .args(["dashboard", "--listen", "127.0.0.1:0", "--token", "t0ken-1"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            let mut first = String::new();
            let stdout = child.stdout.take().unwrap();
            tokio::task::block_in_place(|| {
                std::io::BufReader::new(stdout)
                    .read_line(&mut first)
                    .unwrap()
            });
            let addr = first
                .split("http://")
                .nth(1)
                .and_then(|rest| rest.split('/').next())
                .unwrap_or_else(|| panic!("no URL printed: {first}"))
                .to_owned();
            assert!(first.contains("token required"), "{first}");
            let (with, without) = tokio::task::block_in_place(|| {
                (get(&addr, "/", Some("t0ken-1")), get(&addr, "/", None))
            });
            assert_eq!(with, 200, "{}", env.name());
            assert_ne!(without, 200, "{}: the token is asked for", env.name());
            let interrupted = std::process::Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status()
                .unwrap();
            assert!(interrupted.success());
            let output = tokio::task::block_in_place(|| child.wait_with_output().unwrap());
            assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
            assert!(stderr(&output).contains("stopped"), "{}", stderr(&output));
        })
    });
}
