//! The reliability suite: faults, load and bad input, on every backend (`RELIABILITY.md`).
//!
//! Scenarios drive real worker processes (the suite's `dogs-test-worker` binary) against real
//! servers: exactly once under load, a worker killed mid-run, a store outage on a server of the
//! suite's own, clock skew, a handler far past its lease; then bad input, hand-written bad
//! records, property tests and secrets. Each scenario is a test named `<scenario>::<backend>`;
//! the memory store, which lives inside one process, takes the scenarios that do not need a
//! second process or a server; SQLite files, shared by processes of one machine with no server
//! between them, take those that need several processes but no network or second clock.
//!
//! `SOAK=1` (or `SOAK_JOBS` / `SOAK_SECONDS`) turns the load scenarios into the long soak.

pub mod clocks;
pub mod failover;
pub mod inputs;
pub mod network;
pub mod process;
pub mod proxy;
pub mod records;
pub mod scenarios;
pub mod secrets;
pub mod servers;

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use dogs_core::{JobStore, Result};
use futures::FutureExt;
use libtest_mimic::{Arguments, Failed, Trial};

use crate::backend::Backend;
use crate::env::{self, Server};

/// How to reach one backend's store: its name, its server's URL (none for memory), and how long
/// a call may wait on an unreachable server.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    /// `memory`, `postgres`, `redis`, `mongo` or `sqlite`.
    pub backend: String,
    /// The server's URL (empty for memory; for SQLite, the folder of the namespaces' files).
    pub url: String,
    /// Connection and operation timeout.
    pub timeout: Duration,
    /// Redis: how many replicas must confirm each write (0: none, the default), waiting up to
    /// half of `timeout`.
    pub wait_for_replicas: u32,
}

/// Opens a store of `settings` in `namespace`, with its timeouts set to `settings.timeout`.
pub async fn open_store(settings: &StoreSettings, namespace: &str) -> Result<Arc<dyn JobStore>> {
    let timeout = settings.timeout;
    Ok(match settings.backend.as_str() {
        "postgres" => Arc::new(
            dogs_postgres::PostgresStore::builder()
                .url(&settings.url)
                .schema(namespace)
                .max_connections(8)
                .acquire_timeout(timeout)
                .request_timeout(timeout)
                .connect()
                .await?,
        ),
        "redis" => {
            let mut builder = dogs_redis::RedisStore::builder()
                .url(&settings.url)
                .prefix(namespace)
                .response_timeout(timeout);
            if settings.wait_for_replicas > 0 {
                // Within the response timeout: `WAIT` holds its connection.
                builder = builder.wait_for_replicas(settings.wait_for_replicas, timeout / 2);
            }
            Arc::new(builder.connect().await?)
        }
        "mongo" => Arc::new(
            dogs_mongo::MongoStore::builder()
                .url(&settings.url)
                .database(namespace)
                .timeout(timeout)
                .request_timeout(timeout)
                .connect()
                .await?,
        ),
        "sqlite" => Arc::new(
            dogs_sqlite::SqliteStore::builder()
                .path(sqlite_file(&settings.url, namespace))
                .request_timeout(timeout)
                .connect()
                .await?,
        ),
        "memory" => Arc::new(dogs_memory::MemoryStore::new()),
        other => return Err(dogs_core::Error::config(format!("unknown backend {other}"))),
    })
}

/// The SQLite file of `namespace` in the folder `dir`.
pub fn sqlite_file(dir: &str, namespace: &str) -> PathBuf {
    std::path::Path::new(dir).join(format!("{namespace}.db"))
}

/// What a scenario gets: the backend, a fresh namespace, and the worker binary.
#[derive(Clone)]
pub struct Env {
    /// How to reach the store.
    pub settings: StoreSettings,
    /// This scenario's namespace.
    pub namespace: String,
    /// The `dogs-test-worker` binary.
    pub worker_bin: PathBuf,
    /// A folder of this scenario's own (removed afterwards).
    pub dir: PathBuf,
    memory: Option<Arc<dyn JobStore>>,
}

impl Env {
    /// The backend's name.
    pub fn backend(&self) -> &str {
        &self.settings.backend
    }

    /// A store handle in this scenario's namespace (the same store every time for memory).
    pub async fn store(&self) -> Arc<dyn JobStore> {
        if let Some(store) = &self.memory {
            return Arc::clone(store);
        }
        match open_store(&self.settings, &self.namespace).await {
            Ok(store) => store,
            Err(e) => panic!("opening the {} store failed: {e}", self.backend()),
        }
    }

    /// A file path inside this scenario's folder.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

type ScenarioFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// One scenario and the backends it applies to.
pub struct Scenario {
    name: &'static str,
    backends: &'static [&'static str],
    run: fn(Env) -> ScenarioFuture,
}

/// The stores on a server: the network between worker and store, and the server's own clock,
/// can fail on their own.
const SHARED: &[&str] = &["postgres", "redis", "mongo"];
/// The stores several processes share: the servers', and a SQLite file.
const PROCESSES: &[&str] = &["postgres", "redis", "mongo", "sqlite"];
const ALL: &[&str] = &["memory", "postgres", "redis", "mongo", "sqlite"];

macro_rules! scenario {
    ($name:literal, $backends:expr, $f:path) => {
        Scenario {
            name: $name,
            backends: $backends,
            run: |env| Box::pin($f(env)),
        }
    };
}

/// Every scenario, in the order of `RELIABILITY.md`.
pub fn scenarios() -> Vec<Scenario> {
    use scenarios as s;
    vec![
        scenario!("exactly_once_under_load", ALL, s::exactly_once_under_load),
        scenario!("crash", PROCESSES, s::crash),
        scenario!("store_outage", SHARED, s::store_outage),
        scenario!("store_blip", SHARED, network::store_blip),
        scenario!("stop_bound", SHARED, network::stop_bound),
        scenario!("clock_skew", SHARED, clocks::clock_skew),
        scenario!("clock_step", SHARED, clocks::clock_step),
        scenario!("failover", &["redis"], failover::failover),
        scenario!("slow_handler", ALL, s::slow_handler),
        scenario!("hostile_strings", ALL, inputs::hostile_strings),
        scenario!("large_params", ALL, inputs::large_params),
        scenario!("bad_records", PROCESSES, records::bad_records),
        scenario!(
            "params_roundtrip_property",
            ALL,
            inputs::params_roundtrip_property
        ),
        scenario!(
            "run_at_roundtrip_property",
            ALL,
            inputs::run_at_roundtrip_property
        ),
        scenario!("secrets", SHARED, secrets::secrets),
    ]
}

/// The longest one scenario may run (longer for a soak).
fn scenario_timeout() -> Duration {
    if scenarios::soak().is_some() {
        Duration::from_secs(6 * 3600)
    } else {
        Duration::from_secs(300)
    }
}

/// Runs the reliability suite and exits: one test per scenario and backend, one at a time
/// (they load the machine) unless `--test-threads` says otherwise.
pub fn run(worker_bin: &str) -> ! {
    let mut args = Arguments::from_args();
    if args.test_threads.is_none() {
        args.test_threads = Some(1);
    }
    let mut servers = Vec::new();
    // SQLite needs no server: its files go in a folder of this run's own.
    let sqlite_dir =
        std::env::temp_dir().join(format!("dogs-sqlite-reliability-{}", std::process::id()));
    let sqlite = std::fs::create_dir_all(&sqlite_dir)
        .map(|()| sqlite_dir.display().to_string())
        .map_err(|e| format!("{}: {e}", sqlite_dir.display()));
    let mut reachable: Vec<(&'static str, std::result::Result<String, String>)> =
        vec![("memory", Ok(String::new())), ("sqlite", sqlite)];
    for server in [Server::Postgres, Server::Redis, Server::Mongo] {
        match env::find_server(server) {
            Ok(handle) => {
                reachable.push((server.backend_name(), Ok(handle.url.clone())));
                servers.push(handle);
            }
            Err(reason) => {
                if !env::is_required(server.backend_name()) {
                    println!("{}: skipped: {reason}", server.backend_name());
                }
                reachable.push((server.backend_name(), Err(reason)));
            }
        }
    }
    let mut trials = Vec::new();
    for scenario in scenarios() {
        for (backend, url) in &reachable {
            if !scenario.backends.contains(backend) {
                continue;
            }
            let name = format!("{}::{backend}", scenario.name);
            let trial = match url {
                Ok(url) => {
                    let settings = StoreSettings {
                        backend: (*backend).to_owned(),
                        url: url.clone(),
                        timeout: Duration::from_secs(10),
                        wait_for_replicas: 0,
                    };
                    let (run, worker_bin) = (scenario.run, PathBuf::from(worker_bin));
                    let scenario_name = scenario.name;
                    Trial::test(name, move || {
                        run_scenario(scenario_name, settings, worker_bin, run)
                    })
                }
                Err(reason) if env::is_required(backend) => {
                    let reason = reason.clone();
                    Trial::test(name, move || {
                        Err(Failed::from(format!(
                            "required by DOGS_REQUIRE but cannot run: {reason}"
                        )))
                    })
                }
                Err(_) => Trial::test(name, || Ok(())).with_ignored_flag(true),
            };
            trials.push(trial);
        }
    }
    let conclusion = libtest_mimic::run(&args, trials);
    drop(servers);
    let _ = std::fs::remove_dir_all(&sqlite_dir);
    conclusion.exit()
}

fn run_scenario(
    name: &str,
    settings: StoreSettings,
    worker_bin: PathBuf,
    run: fn(Env) -> ScenarioFuture,
) -> std::result::Result<(), Failed> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failed::from(format!("cannot start a runtime: {e}")))?;
    let namespace = env::namespace(&format!("r_{name}"));
    let dir = std::env::temp_dir().join(&namespace);
    std::fs::create_dir_all(&dir).map_err(|e| Failed::from(format!("{}: {e}", dir.display())))?;
    let backend = settings.backend.clone();
    let outcome = runtime.block_on(async {
        let env = Env {
            memory: (backend == "memory")
                .then(|| Arc::new(dogs_memory::MemoryStore::new()) as Arc<dyn JobStore>),
            settings: settings.clone(),
            namespace: namespace.clone(),
            worker_bin,
            dir: dir.clone(),
        };
        let timeout = scenario_timeout();
        let outcome =
            tokio::time::timeout(timeout, AssertUnwindSafe(run(env)).catch_unwind()).await;
        // A store that stopped answering must fail this scenario, not hold up the rest.
        let cleanup = tokio::time::timeout(Duration::from_secs(60), cleanup(&settings, &namespace))
            .await
            .unwrap_or_else(|_| {
                Err(dogs_core::Error::unavailable(
                    "cleanup timed out after 60 s",
                ))
            });
        match outcome {
            Err(_) => Err(Failed::from(format!("timed out after {timeout:?}"))),
            Ok(Err(panic)) => Err(Failed::from(crate::harness::panic_message(panic))),
            Ok(Ok(())) => cleanup.map_err(|e| Failed::from(format!("cleanup failed: {e}"))),
        }
    });
    // Tasks a timed-out scenario left blocked are abandoned, not waited for.
    runtime.shutdown_timeout(Duration::from_secs(10));
    if outcome.is_ok() {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        eprintln!("{name}::{backend}: logs kept in {}", dir.display());
    }
    outcome
}

async fn cleanup(settings: &StoreSettings, namespace: &str) -> Result<()> {
    let url = settings.url.clone();
    match settings.backend.as_str() {
        "postgres" => {
            crate::postgres::PostgresBackend::new(url)
                .cleanup(namespace)
                .await
        }
        "redis" => {
            crate::redis::RedisBackend::new(url)
                .cleanup(namespace)
                .await
        }
        "mongo" => {
            crate::mongo::MongoBackend::new(url)
                .cleanup(namespace)
                .await
        }
        "sqlite" => crate::sqlite::remove_db(sqlite_file(&url, namespace)),
        _ => Ok(()),
    }
}
