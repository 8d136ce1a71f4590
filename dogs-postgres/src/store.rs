//! [`PostgresStore`]: the store itself, how its statements reach the server, and the
//! [`JobStore`] implementation, whose operations are in the files named after them
//! (`schedule`, `claim`, `finish`, `read`, `remove`).

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use dogs_core::{
    async_trait, ClaimRequest, Claimed, Completion, Error, Execution, ExecutionMinute,
    ExecutionQuery, Finish, Job, JobCounts, JobId, JobQuery, JobStore, Lease, NameSettings, NewJob,
    PruneReport, RecurrentRegistration, Result, RetryBatch, Scheduled, WakeUpSender, WakeUps,
};
use sqlx::postgres::PgPool;
use sqlx::{PgConnection, Postgres};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::config::PostgresStoreBuilder;
use crate::error::{db_error, is_serialization_failure};

/// How many times a statement that meets a serialization failure or a deadlock is run again.
const SERIALIZATION_RETRIES: u32 = 8;

/// A job store on PostgreSQL. Cheap to clone: clones share the pool.
///
/// Claims lease due jobs with `FOR UPDATE SKIP LOCKED` through an index of claimable rows only;
/// every write on a claimed job checks its lease token; every time comparison uses the server's
/// clock; idle workers are woken through LISTEN/NOTIFY.
///
/// Behind a pooler in transaction pooling mode, see
/// [`PostgresStoreBuilder::transaction_pooling`].
#[derive(Clone)]
pub struct PostgresStore {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) pool: PgPool,
    /// The pool whose connection listens for wake-ups; none behind a transaction pooler
    /// without a direct URL.
    listen: Option<PgPool>,
    /// Behind a transaction pooler: the statement that begins the transaction each statement
    /// runs in (statements are then unnamed, never cached).
    pub(crate) begin: Option<String>,
    pub(crate) schema: String,
    /// The schema, quoted, as statements name it.
    pub(crate) quoted: String,
    pub(crate) max_params_bytes: usize,
    pub(crate) request_timeout: Duration,
    pub(crate) sql: Sql,
    wake: WakeUpSender,
    listener: OnceLock<()>,
    stop_listener: CancellationToken,
    _stop_on_drop: DropGuard,
}

/// The statements of every operation, with the schema filled in once.
pub(crate) struct Sql {
    pub(crate) schedule: crate::schedule::Statements,
    pub(crate) claim: String,
    pub(crate) finish: crate::finish::Statements,
    pub(crate) read: crate::read::Statements,
    pub(crate) remove: crate::remove::Statements,
    pub(crate) operate: crate::operate::Statements,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("schema", &self.inner.schema)
            .field("max_params_bytes", &self.inner.max_params_bytes)
            .field("request_timeout", &self.inner.request_timeout)
            .finish_non_exhaustive()
    }
}

/// The connection a statement of the store runs on. Behind a transaction pooler it is in a
/// transaction of its own, so that the statement's Parse and Bind, which sqlx sends in two
/// exchanges each ending with a Sync, reach the same server connection: the pooler hands a
/// client's next message to any server connection once a Sync leaves it outside a transaction.
pub(crate) enum Conn {
    /// Not behind a transaction pooler: the statement is its own transaction.
    Plain(sqlx::pool::PoolConnection<Postgres>),
    /// Behind a transaction pooler: committed once the statement succeeded.
    InTransaction(sqlx::Transaction<'static, Postgres>),
}

impl std::ops::Deref for Conn {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        match self {
            Conn::Plain(conn) => conn,
            Conn::InTransaction(tx) => tx,
        }
    }
}

impl std::ops::DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut PgConnection {
        match self {
            Conn::Plain(conn) => conn,
            Conn::InTransaction(tx) => tx,
        }
    }
}

/// The wake-up channel of a schema.
pub(crate) fn channel(schema: &str) -> String {
    format!("{schema}_wake")
}

impl PostgresStore {
    /// Connects to `url`, with the default schema `dogs`, and applies the migrations.
    pub async fn connect(url: &str) -> Result<Self> {
        PostgresStoreBuilder::default().url(url).connect().await
    }

    /// A builder for the schema, the pool and the limits.
    pub fn builder() -> PostgresStoreBuilder {
        PostgresStoreBuilder::default()
    }

    pub(crate) fn new(
        pool: PgPool,
        listen: Option<PgPool>,
        schema: String,
        max_params_bytes: usize,
        request_timeout: Duration,
        begin: Option<String>,
    ) -> Self {
        let stop_listener = CancellationToken::new();
        let quoted = format!("\"{schema}\"");
        PostgresStore {
            inner: Arc::new(Inner {
                sql: Sql {
                    schedule: crate::schedule::Statements::new(&quoted),
                    claim: format!("SELECT * FROM {quoted}.claim_capped($1, $2, $3, $4, $5)"),
                    finish: crate::finish::Statements::new(&quoted),
                    read: crate::read::Statements::new(&quoted),
                    remove: crate::remove::Statements::new(&quoted),
                    operate: crate::operate::Statements::new(&quoted),
                },
                quoted,
                pool,
                listen,
                begin,
                schema,
                max_params_bytes,
                request_timeout,
                wake: WakeUpSender::new(),
                listener: OnceLock::new(),
                _stop_on_drop: stop_listener.clone().drop_guard(),
                stop_listener,
            }),
        }
    }

    /// Applies the migrations the schema lacks. Idempotent, and safe when many processes start
    /// at once (they are serialised by an advisory lock).
    pub async fn migrate(&self) -> Result<()> {
        crate::migrate::migrate(&self.inner.pool, &self.inner.schema, self.persistent()).await
    }

    /// The pool, to share with the rest of the service.
    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// The schema that holds dogs' tables.
    pub fn schema(&self) -> &str {
        &self.inner.schema
    }

    /// Schedules an event job inside the caller's transaction: the job exists if and only if the
    /// transaction commits, and idle workers are woken when it does.
    ///
    /// A serialization failure (under `SERIALIZABLE`) aborts the caller's transaction, so it is
    /// returned (`Backend`) for the caller to retry the transaction; it is not retried here.
    ///
    /// ```no_run
    /// # async fn example(store: dogs_postgres::PostgresStore) -> Result<(), Box<dyn std::error::Error>> {
    /// use dogs_core::NewJob;
    ///
    /// let mut tx = store.pool().begin().await?;
    /// sqlx::query("INSERT INTO orders (id) VALUES (42)").execute(&mut *tx).await?;
    /// store.schedule_in(&mut tx, NewJob::new("ship-order", serde_json::json!({"order": 42}))).await?;
    /// tx.commit().await?;
    /// # Ok(()) }
    /// ```
    pub async fn schedule_in(&self, conn: &mut PgConnection, job: NewJob) -> Result<Scheduled> {
        job.validate(self.inner.max_params_bytes)?;
        self.timed("scheduling a job", self.schedule_on(conn, &job))
            .await
    }

    /// A pooled connection.
    pub(crate) async fn conn(&self) -> Result<sqlx::pool::PoolConnection<Postgres>> {
        self.inner
            .pool
            .acquire()
            .await
            .map_err(|e| db_error("getting a connection", e))
    }

    /// Whether statements are prepared once per connection and kept (named statements): not
    /// behind a transaction pooler, where the next transaction may run on another server
    /// connection that does not have them, or has another client's of the same name.
    pub(crate) fn persistent(&self) -> bool {
        self.inner.begin.is_none()
    }

    /// `work`, failing with `Unavailable` when the server does not answer within the request
    /// timeout (the connection is then dropped, not reused).
    pub(crate) async fn timed<T>(
        &self,
        what: &str,
        work: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.inner.request_timeout, work).await {
            Ok(outcome) => outcome,
            Err(_) => Err(Error::unavailable(format!(
                "PostgreSQL: {what} got no answer within {:?}",
                self.inner.request_timeout
            ))),
        }
    }

    /// A connection for one attempt of [`attempt`](Self::attempt): behind a transaction
    /// pooler, with a transaction begun on it.
    async fn attempt_conn(&self) -> Result<Conn> {
        let Some(begin) = &self.inner.begin else {
            return Ok(Conn::Plain(self.conn().await?));
        };
        self.inner
            .pool
            .begin_with(begin.clone())
            .await
            .map(Conn::InTransaction)
            .map_err(|e| db_error("beginning a transaction", e))
    }

    /// One attempt: `attempt` runs its statement on the connection it is given and hands it
    /// back with the outcome; a transaction begun for it commits when the outcome is a success,
    /// and rolls back otherwise.
    async fn attempt_once<T, F, Fut>(&self, attempt: &mut F) -> Result<T>
    where
        F: FnMut(Conn) -> Fut,
        Fut: Future<Output = (Conn, Result<T>)>,
    {
        let (conn, outcome) = attempt(self.attempt_conn().await?).await;
        let value = outcome?;
        if let Conn::InTransaction(tx) = conn {
            tx.commit()
                .await
                .map_err(|e| db_error("committing a transaction", e))?;
        }
        Ok(value)
    }

    /// Runs the statement `attempt` makes on the connection it is given (see [`Conn`]), within
    /// the request timeout, again when it meets a serialization failure or a deadlock (a
    /// database whose default isolation is `SERIALIZABLE`, or concurrent writers), with a short
    /// random pause. Each attempt runs in a transaction of its own, so running it again is
    /// safe.
    pub(crate) async fn attempt<T, F, Fut>(&self, what: &str, mut attempt: F) -> Result<T>
    where
        F: FnMut(Conn) -> Fut,
        Fut: Future<Output = (Conn, Result<T>)>,
    {
        let mut retries = 0;
        loop {
            match self.timed(what, self.attempt_once(&mut attempt)).await {
                Err(e) if retries < SERIALIZATION_RETRIES && is_serialization_failure(&e) => {
                    retries += 1;
                    let pause = Duration::from_millis(fastrand::u64(1..=5 << retries.min(5)));
                    tokio::time::sleep(pause).await;
                }
                Err(e) if is_serialization_failure(&e) => {
                    return Err(Error::unavailable(format!(
                        "PostgreSQL: {what} kept meeting serialization failures"
                    ))
                    .with_source(e))
                }
                outcome => return outcome,
            }
        }
    }

    /// Starts the LISTEN connection once, from within a runtime (workers ask for wake-ups from
    /// one).
    fn start_listener(&self) {
        let Some(listen) = &self.inner.listen else {
            return;
        };
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        self.inner.listener.get_or_init(|| {
            tokio::spawn(crate::wakeups::listen(
                listen.clone(),
                channel(&self.inner.schema),
                self.inner.wake.clone(),
                self.inner.stop_listener.clone(),
            ));
        });
    }
}

#[async_trait]
impl JobStore for PostgresStore {
    async fn now(&self) -> Result<DateTime<Utc>> {
        let sql = &format!("SELECT {}.ms_now()", self.inner.quoted);
        self.attempt(
            "reading the server's clock",
            move |mut conn: Conn| async move {
                let outcome = sqlx::query_scalar(sql)
                    .persistent(self.persistent())
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(|e| db_error("reading the server's clock", e));
                (conn, outcome)
            },
        )
        .await
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
        self.remove_own_objects().await
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

    /// `None` behind a transaction pooler without a listen URL: workers poll.
    fn wakeups(&self) -> Option<WakeUps> {
        self.inner.listen.as_ref()?;
        self.start_listener();
        Some(self.inner.wake.subscribe())
    }
}
