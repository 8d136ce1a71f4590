//! [`SqliteStore`]: the store itself, how its statements reach the database (one writer, each
//! write one `BEGIN IMMEDIATE` transaction; a pool of readers), and the [`JobStore`]
//! implementation, whose operations are in the files named after them (`schedule`, `claim`,
//! `finish`, `read`, `remove`, `operate`).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use dogs_core::{
    async_trait, ClaimRequest, Claimed, Completion, Error, Execution, ExecutionMinute,
    ExecutionQuery, Finish, Job, JobCounts, JobId, JobQuery, JobStore, Lease, NameSettings, NewJob,
    PruneReport, RecurrentRegistration, Result, RetryBatch, Scheduled, WakeUpSender, WakeUps,
};
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{ConnectOptions, Sqlite, SqliteConnection, Transaction};
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::config::{Settings, SqliteStoreBuilder, Synchronous, Target};
use crate::error::{db_error, is_busy, is_busy_error};
use crate::sql::clock_now;

/// How many connections read (`get_job`, `list_jobs`, counts, executions, stats) beside the
/// one that writes.
const READ_CONNECTIONS: u32 = 4;

/// A durable job store in one SQLite file (or in memory). Cheap to clone: clones share the
/// connections.
///
/// Every write is one `BEGIN IMMEDIATE` transaction on the store's one writing connection, so
/// writes are serialised, within the process and across every process that opens the file; a
/// database locked by another process is waited for and tried again until the request timeout,
/// then `Unavailable`, and nothing is half applied. Reads run on a pool of their own (WAL mode:
/// they never wait for the writer). Every time comparison uses the machine's clock; idle
/// workers are woken at once by this store's writes and within the poll interval by other
/// processes' (see the crate documentation).
#[derive(Clone)]
pub struct SqliteStore {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    /// The one connection that writes (in memory, the one that does everything).
    write: SqlitePool,
    /// The connections that read (in memory, the writing one).
    read: SqlitePool,
    path: Option<PathBuf>,
    pub(crate) max_params_bytes: usize,
    pub(crate) request_timeout: Duration,
    poll_interval: Duration,
    /// How the poller opens its connection; `None` in memory, where no other process writes.
    poll_options: Option<SqliteConnectOptions>,
    wake: WakeUpSender,
    /// Concurrent `schedule` calls, stored together.
    pub(crate) combiner: crate::schedule::Combiner,
    /// The wake-up counters (table `signals`) this process has told its workers about.
    seen: Arc<Seen>,
    poller: OnceLock<()>,
    stop_poller: CancellationToken,
    _stop_on_drop: DropGuard,
    /// In memory: a connection that keeps the database alive whatever the pool does with its own.
    _keeper: Option<Mutex<SqliteConnection>>,
}

/// The counters of table `signals` last told to this process's workers: one is added by every
/// commit that leaves a job due or scheduled (`due`) and that cancels a running job
/// (`cancelled`), so the poller tells other processes' commits apart from this one's, and
/// wake-ups from cancellations.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    pub(crate) due: AtomicI64,
    pub(crate) cancelled: AtomicI64,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .field("max_params_bytes", &self.inner.max_params_bytes)
            .field("request_timeout", &self.inner.request_timeout)
            .field("poll_interval", &self.inner.poll_interval)
            .finish_non_exhaustive()
    }
}

/// One write: a `BEGIN IMMEDIATE` transaction, holding the database's write lock, with the
/// store's clock read once when the lock was had. Dropped without [`SqliteStore::commit`], it
/// rolls back.
pub(crate) struct Write {
    tx: Transaction<'static, Sqlite>,
    /// The store's clock for everything this transaction does.
    pub(crate) now: DateTime<Utc>,
    due: bool,
    cancelled: bool,
}

impl Write {
    /// The connection, in the transaction.
    pub(crate) fn conn(&mut self) -> &mut SqliteConnection {
        &mut self.tx
    }

    /// The store's clock, in milliseconds.
    pub(crate) fn now_ms(&self) -> i64 {
        crate::sql::ms(self.now)
    }

    /// Once committed, idle workers are woken: a job is left due, or scheduled for later (they
    /// learn its time from their next claim).
    pub(crate) fn wake(&mut self) {
        self.due = true;
    }

    /// Once committed, workers check the jobs they run: one was cancelled.
    pub(crate) fn tell_cancelled(&mut self) {
        self.cancelled = true;
    }
}

/// The options of every connection to the file at `path`.
fn file_options(path: &Path, settings: &Settings) -> SqliteConnectOptions {
    // A name SQLite would read as a URI (it is opened with SQLITE_OPEN_URI) is made a path.
    let path = match path.to_str() {
        Some(text) if text.starts_with("file:") => Path::new(".").join(path),
        _ => path.to_path_buf(),
    };
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(match settings.synchronous {
            Synchronous::Normal => SqliteSynchronous::Normal,
            Synchronous::Full => SqliteSynchronous::Full,
        })
        .busy_timeout(settings.busy_timeout)
        .foreign_keys(false)
}

impl SqliteStore {
    /// Opens the database of a URL: `sqlite://PATH` (relative), `sqlite:///PATH` (absolute)
    /// or `sqlite::memory:`; the file is created when missing, and the migrations applied.
    pub async fn connect(url: &str) -> Result<Self> {
        SqliteStoreBuilder::default().url(url).connect().await
    }

    /// Opens the database file at `path` (created when missing), and applies the migrations.
    /// `:memory:` is the database in memory of [`SqliteStore::in_memory`] (to open a file of
    /// that name, write `./:memory:`).
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        SqliteStoreBuilder::default().path(path).connect().await
    }

    /// A database in memory, for tests: every clone of the store shares it, no other process
    /// sees it, and it is gone when the last clone is dropped.
    pub async fn in_memory() -> Result<Self> {
        SqliteStoreBuilder::default().in_memory().connect().await
    }

    /// A builder for the database, its durability, its time limits and the params limit.
    pub fn builder() -> SqliteStoreBuilder {
        SqliteStoreBuilder::default()
    }

    /// The database file; `None` in memory.
    pub fn path(&self) -> Option<&Path> {
        self.inner.path.as_deref()
    }

    /// Opens the store `settings` describe and migrates it.
    pub(crate) async fn open_with(settings: Settings) -> Result<Self> {
        let pool = |max: u32| {
            SqlitePoolOptions::new()
                .max_connections(max)
                .min_connections(0)
                .acquire_timeout(settings.request_timeout)
        };
        let (write, read, path, poll_options, keeper) = match &settings.target {
            Target::File(path) => {
                let options = file_options(path, &settings);
                let write = pool(1)
                    .idle_timeout(None)
                    .max_lifetime(None)
                    .connect_lazy_with(options.clone().pragma("cache_size", "-65536"));
                // Readers never write: a bug that tried would be refused.
                let read = pool(READ_CONNECTIONS)
                    .connect_lazy_with(options.clone().pragma("query_only", "ON"));
                let poll = options.pragma("query_only", "ON");
                (write, read, Some(path.clone()), Some(poll), None)
            }
            Target::Memory => {
                let options = SqliteConnectOptions::new()
                    .filename(format!("file:dogs-memory-{}", dogs_core::random_id()))
                    .in_memory(true)
                    .shared_cache(true)
                    .busy_timeout(settings.busy_timeout)
                    .foreign_keys(false);
                let keeper = options
                    .connect()
                    .await
                    .map_err(|e| db_error("opening a database in memory", e))?;
                // One connection for everything: in a shared cache, a reader and a writer on
                // two connections would lock each other's tables.
                let write = pool(1)
                    .idle_timeout(None)
                    .max_lifetime(None)
                    .connect_lazy_with(options);
                (write.clone(), write, None, None, Some(Mutex::new(keeper)))
            }
        };
        let stop_poller = CancellationToken::new();
        let store = SqliteStore {
            inner: Arc::new(Inner {
                write,
                read,
                path,
                max_params_bytes: settings.max_params_bytes,
                request_timeout: settings.request_timeout,
                poll_interval: settings.poll_interval,
                poll_options,
                wake: WakeUpSender::new(),
                combiner: crate::schedule::Combiner::default(),
                seen: Arc::new(Seen::default()),
                poller: OnceLock::new(),
                _stop_on_drop: stop_poller.clone().drop_guard(),
                stop_poller,
                _keeper: keeper,
            }),
        };
        crate::migrate::migrate(&store).await.map_err(|e| {
            match &store.inner.path {
                // The first write opens the file: a path that cannot be opened is named.
                Some(path) => Error::new(
                    e.kind(),
                    format!("cannot open the SQLite database at {}", path.display()),
                )
                .with_source(e),
                None => e,
            }
        })?;
        Ok(store)
    }

    /// Begins a write: `BEGIN IMMEDIATE` on the writing connection, which takes the database's
    /// write lock. A database another process holds locked is tried again, with a short random
    /// pause, until the request timeout; then the write fails with `Unavailable` (and has done
    /// nothing).
    pub(crate) async fn begin(&self, what: &str) -> Result<Write> {
        let deadline = Instant::now() + self.inner.request_timeout;
        let mut attempts = 0u32;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            // Dropping `begin_with` midway is safe: sqlx rolls back a BEGIN it did not hand
            // over.
            let begun =
                tokio::time::timeout(left, self.inner.write.begin_with("BEGIN IMMEDIATE")).await;
            match begun {
                Ok(Ok(tx)) => {
                    return Ok(Write {
                        tx,
                        now: clock_now(),
                        due: false,
                        cancelled: false,
                    })
                }
                Ok(Err(e)) if is_busy(&e) => {
                    attempts = attempts.saturating_add(1);
                    if Instant::now() >= deadline {
                        return Err(Error::unavailable(format!(
                            "SQLite: {what}: the database stayed locked by another connection for {:?}",
                            self.inner.request_timeout
                        ))
                        .with_source(e));
                    }
                    let pause = Duration::from_millis(fastrand::u64(1..=(4u64 << attempts.min(5))));
                    tokio::time::sleep(
                        pause.min(deadline.saturating_duration_since(Instant::now())),
                    )
                    .await;
                }
                Ok(Err(e)) => return Err(db_error(what, e)),
                Err(_) => {
                    return Err(Error::unavailable(format!(
                        "SQLite: {what}: the write lock was not had within {:?}",
                        self.inner.request_timeout
                    )))
                }
            }
        }
    }

    /// Commits a write, adding to the wake-up counters what it asked for, and then wakes this
    /// process's workers.
    pub(crate) async fn commit(&self, mut write: Write, what: &str) -> Result<()> {
        let mut counters = None;
        if write.due || write.cancelled {
            counters = sqlx::query_as::<_, (i64, i64)>(
                "UPDATE signals SET due = due + ?1, cancelled = cancelled + ?2 WHERE id = 1
                 RETURNING due, cancelled",
            )
            .bind(i64::from(write.due))
            .bind(i64::from(write.cancelled))
            .fetch_optional(write.conn())
            .await
            .map_err(|e| db_error(what, e))?;
        }
        write.tx.commit().await.map_err(|e| db_error(what, e))?;
        // Only the counter this commit added to is marked seen: this process's workers are
        // told of that kind below, which covers other processes' additions to it too. The
        // other counter's value may hold other processes' additions this process has not told
        // its workers of: the poller does, when it looks.
        if let Some((due, cancelled)) = counters {
            if write.due {
                self.inner.seen.due.fetch_max(due, Ordering::AcqRel);
            }
            if write.cancelled {
                self.inner
                    .seen
                    .cancelled
                    .fetch_max(cancelled, Ordering::AcqRel);
            }
        }
        if write.due {
            self.inner.wake.notify();
        }
        if write.cancelled {
            self.inner.wake.notify_cancelled();
        }
        Ok(())
    }

    /// Runs a read on a reading connection, within the request timeout; a database that is
    /// busy (being recovered or checkpointed by another connection) is read again.
    pub(crate) async fn read<T, F, Fut>(&self, what: &str, mut work: F) -> Result<T>
    where
        F: FnMut(PoolConnection<Sqlite>) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let deadline = Instant::now() + self.inner.request_timeout;
        let mut attempts = 0u32;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let attempt = async {
                let conn = self
                    .inner
                    .read
                    .acquire()
                    .await
                    .map_err(|e| db_error(what, e))?;
                work(conn).await
            };
            match tokio::time::timeout(left, attempt).await {
                Ok(Err(e)) if is_busy_error(&e) && Instant::now() < deadline => {
                    attempts = attempts.saturating_add(1);
                    let pause = Duration::from_millis(fastrand::u64(1..=(4u64 << attempts.min(5))));
                    tokio::time::sleep(pause).await;
                }
                Ok(outcome) => return outcome,
                Err(_) => {
                    return Err(Error::unavailable(format!(
                        "SQLite: {what} got no answer within {:?}",
                        self.inner.request_timeout
                    )))
                }
            }
        }
    }

    /// Starts the task that looks for other processes' writes, once, from within a runtime.
    fn start_poller(&self) {
        let Some(options) = &self.inner.poll_options else {
            return;
        };
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        self.inner.poller.get_or_init(|| {
            tokio::spawn(crate::wakeups::poll(
                options.clone(),
                self.inner.poll_interval,
                self.inner.wake.clone(),
                Arc::clone(&self.inner.seen),
                self.inner.stop_poller.clone(),
            ));
        });
    }
}

#[async_trait]
impl JobStore for SqliteStore {
    async fn now(&self) -> Result<DateTime<Utc>> {
        Ok(clock_now())
    }

    fn max_params_bytes(&self) -> usize {
        self.inner.max_params_bytes
    }

    async fn schedule(&self, job: NewJob) -> Result<Scheduled> {
        self.schedule_one(job).await
    }

    async fn schedule_many(&self, jobs: Vec<NewJob>) -> Result<Vec<Result<Scheduled>>> {
        self.schedule_all(jobs).await
    }

    async fn register_recurrent(&self, job: RecurrentRegistration) -> Result<JobId> {
        self.register(job).await
    }

    async fn claim(&self, request: &ClaimRequest) -> Result<Claimed> {
        self.claim_jobs(request).await
    }

    async fn extend_lock(&self, lease: &Lease, lock_time: Duration) -> Result<DateTime<Utc>> {
        self.extend(lease, lock_time).await
    }

    async fn complete(&self, lease: &Lease, completion: Completion) -> Result<()> {
        self.fenced(lease, completion, None).await
    }

    async fn finish(
        &self,
        lease: &Lease,
        completion: Completion,
        execution: Option<&Execution>,
    ) -> Result<()> {
        self.fenced(lease, completion, execution).await
    }

    async fn finish_many(&self, items: Vec<Finish>) -> Result<Vec<Result<()>>> {
        self.finish_all(items).await
    }

    async fn record_execution(&self, execution: &Execution) -> Result<()> {
        self.record(execution).await
    }

    async fn get_job(&self, id: &JobId) -> Result<Option<Job>> {
        self.read_job(id).await
    }

    async fn list_jobs(&self, query: &JobQuery) -> Result<Vec<Job>> {
        self.read_jobs(query).await
    }

    async fn count_jobs(&self) -> Result<Vec<JobCounts>> {
        self.read_counts().await
    }

    async fn list_recurrent(&self) -> Result<Vec<Job>> {
        self.read_recurrent().await
    }

    async fn execution_stats(&self, since: DateTime<Utc>) -> Result<Vec<ExecutionMinute>> {
        self.read_stats(since).await
    }

    async fn executions(&self, query: &ExecutionQuery) -> Result<Vec<Execution>> {
        self.read_executions(query).await
    }

    async fn cancel(&self, id: &JobId) -> Result<bool> {
        self.cancel_by_id(id).await
    }

    async fn cancel_unique(&self, name: &str, unique_identifier: &str) -> Result<bool> {
        self.cancel_by_unique(name, unique_identifier).await
    }

    async fn remove_all(&self) -> Result<()> {
        self.empty_tables().await
    }

    async fn prune(&self) -> Result<PruneReport> {
        self.prune_expired().await
    }

    async fn retry(&self, id: &JobId) -> Result<bool> {
        self.retry_job(id).await
    }

    async fn retry_failed_batch(
        &self,
        name: &str,
        after: Option<&JobId>,
        limit: usize,
    ) -> Result<RetryBatch> {
        self.retry_failed_jobs(name, after, limit).await
    }

    async fn set_paused(&self, name: &str, paused: bool) -> Result<()> {
        self.set_name_paused(name, paused).await
    }

    async fn set_concurrency_limit(&self, name: &str, limit: Option<u32>) -> Result<()> {
        self.set_name_limit(name, limit).await
    }

    async fn name_settings(&self) -> Result<Vec<NameSettings>> {
        self.read_settings().await
    }

    async fn set_progress(&self, lease: &Lease, progress: &serde_json::Value) -> Result<()> {
        self.store_progress(lease, progress).await
    }

    fn wakeups(&self) -> Option<WakeUps> {
        self.start_poller();
        Some(self.inner.wake.subscribe())
    }
}
