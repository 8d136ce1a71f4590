//! The stores under measurement, each run in a namespace of its own.

use std::sync::Arc;

use dogs_core::{Error, JobStore, Result, WakeUps};

/// Which store to measure.
pub enum Backend {
    Memory,
    Postgres(String),
    /// A Redis server or cluster URL, and how many replicas must confirm each write.
    Redis(String, u32),
    Mongo(String),
    /// SQLite files in this folder, one per namespace, written with this `synchronous` setting.
    Sqlite(std::path::PathBuf, dogs_sqlite::Synchronous),
}

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

fn sqlite_dir() -> std::path::PathBuf {
    std::env::var_os("DOGS_SQLITE_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
}

/// The file of `namespace`'s SQLite store.
fn sqlite_file(dir: &std::path::Path, namespace: &str) -> std::path::PathBuf {
    dir.join(format!("{namespace}.db"))
}

fn cluster_url() -> String {
    env(
        "DOGS_REDIS_CLUSTER_URL",
        "redis+cluster://127.0.0.1:7100,127.0.0.1:7101,127.0.0.1:7102",
    )
}

impl Backend {
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "memory" => Backend::Memory,
            "postgres" => Backend::Postgres(env(
                "DOGS_POSTGRES_URL",
                "postgres://postgres@127.0.0.1:5432/test",
            )),
            "redis" => Backend::Redis(env("DOGS_REDIS_URL", "redis://127.0.0.1:6379"), 0),
            // A Redis Cluster (`DOGS_REDIS_CLUSTER_URL`, a `redis+cluster://` URL), without and
            // with writes that wait for a replica.
            "redis_cluster" => Backend::Redis(cluster_url(), 0),
            "redis_cluster_wait" => Backend::Redis(cluster_url(), 1),
            "mongo" => Backend::Mongo(env(
                "DOGS_MONGO_URL",
                "mongodb://127.0.0.1:27017/?directConnection=true",
            )),
            // One file per run in `DOGS_SQLITE_DIR` (default: the system's temporary folder),
            // WAL with `synchronous=NORMAL` (the default), or `FULL`.
            "sqlite" => Backend::Sqlite(sqlite_dir(), dogs_sqlite::Synchronous::Normal),
            "sqlite_full" => Backend::Sqlite(sqlite_dir(), dogs_sqlite::Synchronous::Full),
            _ => return None,
        })
    }

    /// A fresh store in `namespace`.
    pub async fn open(&self, namespace: &str) -> Result<Arc<dyn JobStore>> {
        Ok(match self {
            Backend::Memory => Arc::new(dogs_memory::MemoryStore::new()),
            Backend::Postgres(url) => Arc::new(
                dogs_postgres::PostgresStore::builder()
                    .url(url)
                    .schema(namespace)
                    .max_connections(16)
                    .connect()
                    .await?,
            ),
            Backend::Redis(url, wait) => {
                let mut builder = dogs_redis::RedisStore::builder().url(url).prefix(namespace);
                if *wait > 0 {
                    builder = builder.wait_for_replicas(*wait, std::time::Duration::from_secs(2));
                }
                Arc::new(builder.connect().await?)
            }
            Backend::Mongo(url) => Arc::new(
                dogs_mongo::MongoStore::builder()
                    .url(url)
                    .database(namespace)
                    .connect()
                    .await?,
            ),
            Backend::Sqlite(dir, synchronous) => Arc::new(
                dogs_sqlite::SqliteStore::builder()
                    .path(sqlite_file(dir, namespace))
                    .synchronous(*synchronous)
                    .connect()
                    .await?,
            ),
        })
    }

    /// Removes what a run stored.
    pub async fn cleanup(&self, namespace: &str) -> Result<()> {
        let fail = |e: String| Error::unavailable(format!("cleaning up {namespace}: {e}"));
        match self {
            Backend::Memory => Ok(()),
            Backend::Postgres(url) => {
                let store = postgres_as_is(url, namespace).await?;
                dogs_postgres::sqlx::query(&format!(
                    "DROP SCHEMA IF EXISTS \"{namespace}\" CASCADE"
                ))
                .execute(store.pool())
                .await
                .map(|_| ())
                .map_err(|e| fail(e.to_string()))
            }
            Backend::Redis(url, _) => {
                dogs_redis::RedisStore::builder()
                    .url(url)
                    .prefix(namespace)
                    .connect()
                    .await?
                    .remove_all()
                    .await
            }
            Backend::Mongo(url) => {
                let client = dogs_mongo::mongodb::Client::with_uri_str(url)
                    .await
                    .map_err(|e| fail(e.to_string()))?;
                client
                    .database(namespace)
                    .drop()
                    .await
                    .map_err(|e| fail(e.to_string()))
            }
            Backend::Sqlite(dir, _) => {
                let file = sqlite_file(dir, namespace);
                for suffix in ["", "-wal", "-shm"] {
                    let mut path = file.clone().into_os_string();
                    path.push(suffix);
                    match std::fs::remove_file(&path) {
                        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                            return Err(fail(e.to_string()))
                        }
                        _ => {}
                    }
                }
                Ok(())
            }
        }
    }

    /// The URL of `namespace`'s SQLite file, for a SQLite backend.
    pub fn sqlite_url(&self, namespace: &str) -> Option<String> {
        match self {
            Backend::Sqlite(dir, _) => Some(format!(
                "sqlite://{}",
                sqlite_file(dir, namespace).display()
            )),
            _ => None,
        }
    }

    /// The server's process name, for its CPU time (none for memory).
    pub fn server_process(&self) -> Option<&'static str> {
        match self {
            Backend::Memory | Backend::Sqlite(..) => None,
            Backend::Postgres(_) => Some("postgres"),
            Backend::Redis(..) => Some("redis-server"),
            Backend::Mongo(_) => Some("secantusd-rs"),
        }
    }
}

/// The PostgreSQL store of `namespace` as it is, without migrating it: for writing to or
/// dropping its schema directly.
pub async fn postgres_as_is(url: &str, namespace: &str) -> Result<dogs_postgres::PostgresStore> {
    dogs_postgres::PostgresStore::builder()
        .url(url)
        .schema(namespace)
        .migrate_on_connect(false)
        .connect()
        .await
}

/// A store with its wake-ups hidden, so workers only poll.
pub struct PollingOnly(pub Arc<dyn JobStore>);

#[async_trait::async_trait]
impl JobStore for PollingOnly {
    async fn now(&self) -> Result<chrono::DateTime<chrono::Utc>> {
        self.0.now().await
    }
    fn max_params_bytes(&self) -> usize {
        self.0.max_params_bytes()
    }
    async fn schedule(&self, job: dogs_core::NewJob) -> Result<dogs_core::Scheduled> {
        self.0.schedule(job).await
    }
    async fn schedule_many(
        &self,
        jobs: Vec<dogs_core::NewJob>,
    ) -> Result<Vec<Result<dogs_core::Scheduled>>> {
        self.0.schedule_many(jobs).await
    }
    async fn register_recurrent(
        &self,
        job: dogs_core::RecurrentRegistration,
    ) -> Result<dogs_core::JobId> {
        self.0.register_recurrent(job).await
    }
    async fn claim(&self, request: &dogs_core::ClaimRequest) -> Result<dogs_core::Claimed> {
        self.0.claim(request).await
    }
    async fn extend_lock(
        &self,
        lease: &dogs_core::Lease,
        lock_time: std::time::Duration,
    ) -> Result<chrono::DateTime<chrono::Utc>> {
        self.0.extend_lock(lease, lock_time).await
    }
    async fn complete(
        &self,
        lease: &dogs_core::Lease,
        completion: dogs_core::Completion,
    ) -> Result<()> {
        self.0.complete(lease, completion).await
    }
    async fn finish_many(&self, items: Vec<dogs_core::Finish>) -> Result<Vec<Result<()>>> {
        self.0.finish_many(items).await
    }
    async fn record_execution(&self, execution: &dogs_core::Execution) -> Result<()> {
        self.0.record_execution(execution).await
    }
    async fn get_job(&self, id: &dogs_core::JobId) -> Result<Option<dogs_core::Job>> {
        self.0.get_job(id).await
    }
    async fn list_jobs(&self, query: &dogs_core::JobQuery) -> Result<Vec<dogs_core::Job>> {
        self.0.list_jobs(query).await
    }
    async fn count_jobs(&self) -> Result<Vec<dogs_core::JobCounts>> {
        self.0.count_jobs().await
    }
    async fn list_recurrent(&self) -> Result<Vec<dogs_core::Job>> {
        self.0.list_recurrent().await
    }
    async fn execution_stats(
        &self,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<dogs_core::ExecutionMinute>> {
        self.0.execution_stats(since).await
    }
    async fn executions(
        &self,
        query: &dogs_core::ExecutionQuery,
    ) -> Result<Vec<dogs_core::Execution>> {
        self.0.executions(query).await
    }
    async fn cancel(&self, id: &dogs_core::JobId) -> Result<bool> {
        self.0.cancel(id).await
    }
    async fn cancel_unique(&self, name: &str, unique_identifier: &str) -> Result<bool> {
        self.0.cancel_unique(name, unique_identifier).await
    }
    async fn retry(&self, id: &dogs_core::JobId) -> dogs_core::Result<bool> {
        self.0.retry(id).await
    }
    async fn retry_failed_batch(
        &self,
        name: &str,
        after: Option<&dogs_core::JobId>,
        limit: usize,
    ) -> dogs_core::Result<dogs_core::RetryBatch> {
        self.0.retry_failed_batch(name, after, limit).await
    }
    async fn set_paused(&self, name: &str, paused: bool) -> dogs_core::Result<()> {
        self.0.set_paused(name, paused).await
    }
    async fn set_concurrency_limit(&self, name: &str, limit: Option<u32>) -> dogs_core::Result<()> {
        self.0.set_concurrency_limit(name, limit).await
    }
    async fn name_settings(&self) -> dogs_core::Result<Vec<dogs_core::NameSettings>> {
        self.0.name_settings().await
    }
    async fn set_progress(
        &self,
        lease: &dogs_core::Lease,
        progress: &serde_json::Value,
    ) -> dogs_core::Result<()> {
        self.0.set_progress(lease, progress).await
    }
    async fn prune(&self) -> Result<dogs_core::PruneReport> {
        self.0.prune().await
    }
    async fn remove_all(&self) -> Result<()> {
        self.0.remove_all().await
    }
    fn wakeups(&self) -> Option<WakeUps> {
        None
    }
}
