//! [`MongoStore`]: the store itself, its indexes, the server's clock, how its calls reach the
//! server, and the [`JobStore`] implementation, whose operations are in the files named after
//! them (`schedule`, `claim`, `finish`, `read`, `remove`).

use std::future::IntoFuture;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use dogs_core::{
    async_trait, ClaimRequest, Claimed, Completion, Error, Execution, ExecutionMinute,
    ExecutionQuery, Finish, Job, JobCounts, JobId, JobQuery, JobStore, Lease, NameSettings, NewJob,
    PruneReport, RecurrentRegistration, Result, RetryBatch, Scheduled, WakeUpSender, WakeUps,
};
use mongodb::bson::{doc, Document};
use mongodb::options::{
    CollectionOptions, IndexOptions, ReadConcern, ReadPreference, SelectionCriteria,
    TransactionOptions, WriteConcern,
};
use mongodb::{Collection, Database, IndexModel};
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::decode::from_date;
use crate::error::mongo_error;

/// How often the server's clock is read again (between readings it is counted on from the
/// last one with this process's monotonic clock).
const CLOCK_REFRESH: Duration = Duration::from_secs(30);

/// A job store on MongoDB. Cheap to clone: clones share the client.
///
/// Claims take due jobs through the claim index and lease each one atomically; every write on a
/// claimed job checks its lease token; time is the server's clock (read from the server, and
/// counted on between readings with a monotonic clock, so a step of this machine's clock changes
/// nothing); an outcome and its record are written in one transaction where the deployment has
/// them (replica sets, sharded clusters); idle workers are woken through a change stream where
/// the deployment supports one, and poll elsewhere.
#[derive(Clone)]
pub struct MongoStore {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) database: Database,
    /// The jobs, read on the primary with read concern `majority` (`local` with a builder's write
    /// concern weaker than `majority`) and written with the store's write concern, whatever the URL or the handle says: what claims, outcomes and every
    /// decision of the store read and write.
    pub(crate) jobs: Collection<Document>,
    /// The execution records, as `jobs`.
    pub(crate) executions: Collection<Document>,
    /// What is stored about job names (paused, limits): the jobs collection's name and `_names`,
    /// as `jobs`.
    pub(crate) names: Collection<Document>,
    /// The jobs for reads that only show them (listings, counts): the URL's or the handle's
    /// read preference and read concern, so a dashboard may read a secondary.
    pub(crate) jobs_shown: Collection<Document>,
    /// The execution records for reads that only show them, as `jobs_shown`.
    pub(crate) executions_shown: Collection<Document>,
    /// The write concern of every write and transaction of the store.
    pub(crate) write_concern: WriteConcern,
    pub(crate) max_params_bytes: usize,
    pub(crate) request_timeout: Duration,
    /// The last reading of the server's clock.
    clock: Mutex<ClockReading>,
    /// A replica set or a sharded cluster: change streams and transactions.
    pub(crate) replicated: bool,
    wake: WakeUpSender,
    watcher: OnceLock<()>,
    stop: CancellationToken,
    _stop_on_drop: DropGuard,
}

impl Inner {
    /// Wakes this process's idle workers.
    pub(crate) fn wake_local(&self) {
        self.wake.notify();
    }
}

impl std::fmt::Debug for MongoStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MongoStore")
            .field("database", &self.inner.database.name())
            .field("jobs", &self.inner.jobs.name())
            .field("executions", &self.inner.executions.name())
            .field("replicated", &self.inner.replicated)
            .field("request_timeout", &self.inner.request_timeout)
            .finish_non_exhaustive()
    }
}

/// A reading of the server's clock: what it said, and this process's clocks when it was read.
#[derive(Clone, Copy)]
struct ClockReading {
    server: DateTime<Utc>,
    /// When it was read, by the monotonic clock.
    at: Instant,
    /// When it was read, by the wall clock (to notice a step of it, or a suspend).
    wall: DateTime<Utc>,
    /// When to read it again.
    until: Instant,
}

impl ClockReading {
    fn new(server: DateTime<Utc>, round_trip: Duration) -> Self {
        let at = Instant::now();
        // A slow answer says the server's time less precisely: read it again soon.
        let fresh_for = if round_trip < Duration::from_millis(500) {
            CLOCK_REFRESH
        } else {
            Duration::from_secs(1)
        };
        ClockReading {
            server,
            at,
            wall: Utc::now(),
            until: at + fresh_for,
        }
    }

    /// The server's clock now, counted on from the reading; `None` when it must be read again:
    /// the reading is old, or this machine's wall clock moved apart from its monotonic clock by
    /// more than a second since (a step, or a suspend, during which the monotonic clock stops).
    fn now(&self) -> Option<DateTime<Utc>> {
        let elapsed = self.at.elapsed();
        let wall_elapsed = (Utc::now() - self.wall).to_std().unwrap_or_default();
        let apart = wall_elapsed.abs_diff(elapsed);
        (Instant::now() < self.until && apart < Duration::from_secs(1))
            .then(|| dogs_core::add_duration(self.server, elapsed))
    }
}

/// Reads that must see the latest writes: every read of a claim, and the server's clock.
pub(crate) fn primary() -> SelectionCriteria {
    SelectionCriteria::ReadPreference(ReadPreference::Primary)
}

/// The read concern that goes with `write_concern`: `majority` (never what a failover could
/// roll back) with `w: "majority"`; otherwise `local`, since a `majority` read might not yet
/// see a write acknowledged by fewer members, a claim's own lease among them.
pub(crate) fn read_concern_for(write_concern: &WriteConcern) -> ReadConcern {
    if write_concern.w == Some(mongodb::options::Acknowledgment::Majority) {
        ReadConcern::majority()
    } else {
        ReadConcern::local()
    }
}

/// The options of the collections the store's correctness depends on: read on the primary with
/// the read concern that goes with `write_concern`, written with `write_concern`.
fn strict(write_concern: &WriteConcern) -> CollectionOptions {
    CollectionOptions::builder()
        .selection_criteria(primary())
        .read_concern(read_concern_for(write_concern))
        .write_concern(write_concern.clone())
        .build()
}

impl MongoStore {
    /// Connects to `url` (database from the URL, else `dogs`) and creates the indexes.
    pub async fn connect(url: &str) -> Result<Self> {
        crate::config::MongoStoreBuilder::default()
            .url(url)
            .connect()
            .await
    }

    /// A builder for the database, the collections and the limits.
    pub fn builder() -> crate::config::MongoStoreBuilder {
        crate::config::MongoStoreBuilder::default()
    }

    pub(crate) async fn start(
        database: Database,
        jobs: &str,
        executions: &str,
        max_params_bytes: usize,
        request_timeout: Duration,
        write_concern: WriteConcern,
        address: &str,
    ) -> Result<Self> {
        let unreachable = |e: Error| {
            Error::new(e.kind(), format!("cannot reach MongoDB at {address}")).with_source(e)
        };
        let (hello, reading) = read_clock(&database, request_timeout)
            .await
            .map_err(unreachable)?;
        let replicated =
            hello.get_str("setName").is_ok() || hello.get_str("msg").ok() == Some("isdbgrid");
        let stop = CancellationToken::new();
        let store = MongoStore {
            inner: Arc::new(Inner {
                jobs: database.collection_with_options(jobs, strict(&write_concern)),
                executions: database.collection_with_options(executions, strict(&write_concern)),
                names: database
                    .collection_with_options(&format!("{jobs}_names"), strict(&write_concern)),
                jobs_shown: database.collection(jobs),
                executions_shown: database.collection(executions),
                write_concern,
                database,
                max_params_bytes,
                request_timeout,
                clock: Mutex::new(reading),
                replicated,
                wake: WakeUpSender::new(),
                watcher: OnceLock::new(),
                _stop_on_drop: stop.clone().drop_guard(),
                stop,
            }),
        };
        store.create_indexes().await?;
        Ok(store)
    }

    /// Creates the indexes, idempotently, and drops those of earlier versions.
    async fn create_indexes(&self) -> Result<()> {
        let partial = |name: &str, filter: Document| {
            IndexOptions::builder()
                .name(name.to_owned())
                .partial_filter_expression(filter)
                .build()
        };
        let jobs = [
            IndexModel::builder()
                .keys(doc! { "name": 1, "demoted": 1, "priority": -1, "run_at": 1, "_id": 1 })
                .options(partial("claim", doc! { "state": "pending" }))
                .build(),
            IndexModel::builder()
                .keys(doc! { "name": 1, "run_at": 1 })
                .options(partial("scheduled_by_name", doc! { "state": "scheduled" }))
                .build(),
            IndexModel::builder()
                .keys(doc! { "name": 1, "locked_until": 1 })
                .options(partial("leases_by_name", doc! { "state": "running" }))
                .build(),
            IndexModel::builder()
                .keys(doc! { "ukey": 1 })
                .options(
                    IndexOptions::builder()
                        .name("unique".to_owned())
                        .unique(true)
                        .partial_filter_expression(doc! { "ukey": { "$exists": true } })
                        .build(),
                )
                .build(),
            IndexModel::builder()
                .keys(doc! { "name": 1 })
                .options(
                    IndexOptions::builder()
                        .name("recurrent".to_owned())
                        .unique(true)
                        .partial_filter_expression(doc! { "kind": "recurrent" })
                        .build(),
                )
                .build(),
            IndexModel::builder()
                .keys(doc! { "expires_at": 1 })
                .options(
                    IndexOptions::builder()
                        .name("failed_ttl".to_owned())
                        .expire_after(Duration::ZERO)
                        .build(),
                )
                .build(),
            IndexModel::builder()
                .keys(doc! { "name": 1, "_id": 1 })
                .options(IndexOptions::builder().name("by_name".to_owned()).build())
                .build(),
        ];
        self.timed(
            "creating the job indexes",
            self.inner.jobs.create_indexes(jobs),
        )
        .await?;
        // The global indexes of earlier versions, replaced by the per-name ones.
        for old in ["scheduled", "leases"] {
            let _ = self
                .timed(
                    "dropping an index of an earlier version",
                    self.inner.jobs.drop_index(old),
                )
                .await;
        }
        let executions = [
            IndexModel::builder()
                .keys(doc! { "name": 1, "started_at": -1, "_id": -1 })
                .options(IndexOptions::builder().name("history".to_owned()).build())
                .build(),
            IndexModel::builder()
                .keys(doc! { "ended_at": 1 })
                .options(IndexOptions::builder().name("by_end".to_owned()).build())
                .build(),
            IndexModel::builder()
                .keys(doc! { "expires_at": 1 })
                .options(
                    IndexOptions::builder()
                        .name("ttl".to_owned())
                        .expire_after(Duration::ZERO)
                        .build(),
                )
                .build(),
        ];
        self.timed(
            "creating the execution indexes",
            self.inner.executions.create_indexes(executions),
        )
        .await?;
        Ok(())
    }

    /// The database that holds the collections.
    pub fn database(&self) -> &Database {
        &self.inner.database
    }

    /// Whether wake-ups come from a change stream (a replica set) rather than polling alone.
    pub fn has_change_streams(&self) -> bool {
        self.inner.replicated
    }

    /// Whether an outcome and its execution record are written in one transaction (a replica
    /// set or a sharded cluster); on a standalone server they are two writes, the outcome first,
    /// so a crash between them can lose a record, never an outcome.
    pub fn has_transactions(&self) -> bool {
        self.inner.replicated
    }

    /// The options of every transaction of the store: on the primary, read concern `majority`
    /// (with the default write concern), committed with the store's write concern (whatever the
    /// URL's or the handle's defaults).
    pub(crate) fn transaction_options(&self) -> TransactionOptions {
        TransactionOptions::builder()
            .selection_criteria(primary())
            .read_concern(read_concern_for(&self.inner.write_concern))
            .write_concern(self.inner.write_concern.clone())
            .build()
    }

    /// `work`, failing with `Unavailable` when the server does not answer within the request
    /// timeout.
    pub(crate) async fn timed<T>(
        &self,
        what: &str,
        work: impl IntoFuture<Output = mongodb::error::Result<T>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.inner.request_timeout, work.into_future()).await {
            Ok(outcome) => outcome.map_err(|e| mongo_error(what, e)),
            Err(_) => Err(Error::unavailable(format!(
                "MongoDB: {what} got no answer within {:?}",
                self.inner.request_timeout
            ))),
        }
    }

    /// The server's clock: the last reading, counted on with the monotonic clock, and read
    /// again when that is old or when this machine's clocks moved apart (a step of the wall
    /// clock, a suspend). A step of this machine's wall clock changes nothing.
    pub(crate) async fn server_now(&self) -> Result<DateTime<Utc>> {
        let last = *self
            .inner
            .clock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let now = match last.now() {
            Some(now) => now,
            None => {
                let (_, reading) =
                    read_clock(&self.inner.database, self.inner.request_timeout).await?;
                *self
                    .inner
                    .clock
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = reading;
                reading.server
            }
        };
        Ok(dogs_core::truncate_millis(now))
    }

    fn start_watcher(&self) -> bool {
        if !self.inner.replicated || tokio::runtime::Handle::try_current().is_err() {
            return false;
        }
        self.inner.watcher.get_or_init(|| {
            tokio::spawn(crate::wakeups::watch(
                self.inner.jobs.clone(),
                self.inner.wake.clone(),
                self.inner.stop.clone(),
            ));
        });
        true
    }
}

/// Asks the primary `hello`: its answer, and a reading of the server's clock (`localTime`, taken
/// to be read halfway through the round trip).
async fn read_clock(database: &Database, timeout: Duration) -> Result<(Document, ClockReading)> {
    let asked = Instant::now();
    let hello = tokio::time::timeout(
        timeout,
        database
            .run_command(doc! { "hello": 1 })
            .selection_criteria(primary())
            .into_future(),
    )
    .await
    .map_err(|_| {
        Error::unavailable(format!(
            "MongoDB: reading the server's clock got no answer within {timeout:?}"
        ))
    })?
    .map_err(|e| mongo_error("reading the server's clock", e))?;
    let round_trip = asked.elapsed();
    let server = match hello.get_datetime("localTime") {
        Ok(at) => dogs_core::add_duration(from_date(*at), round_trip / 2),
        Err(_) => {
            tracing::warn!("the server does not report its clock; using this machine's");
            Utc::now()
        }
    };
    Ok((hello, ClockReading::new(server, round_trip)))
}

#[async_trait]
impl JobStore for MongoStore {
    async fn now(&self) -> Result<DateTime<Utc>> {
        self.server_now().await
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
        self.finish_one(lease, completion, None).await
    }

    async fn finish(
        &self,
        lease: &Lease,
        completion: Completion,
        execution: Option<&Execution>,
    ) -> Result<()> {
        self.finish_one(lease, completion, execution).await
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

    async fn retry(&self, id: &JobId) -> Result<bool> {
        match crate::decode::oid(id) {
            Some(oid) => self.retry_job(oid).await,
            None => Ok(false),
        }
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
        dogs_core::validate_name(name)?;
        self.change_settings(name, doc! { "paused": paused }).await
    }

    async fn set_concurrency_limit(&self, name: &str, limit: Option<u32>) -> Result<()> {
        dogs_core::validate_concurrency_limit(name, limit)?;
        let limit = match limit {
            Some(limit) => mongodb::bson::Bson::Int64(i64::from(limit)),
            None => mongodb::bson::Bson::Null,
        };
        self.change_settings(name, doc! { "concurrency_limit": limit })
            .await
    }

    async fn name_settings(&self) -> Result<Vec<NameSettings>> {
        self.read_settings(None).await
    }

    async fn set_progress(&self, lease: &Lease, progress: &serde_json::Value) -> Result<()> {
        self.store_progress(lease, progress).await
    }

    async fn executions(&self, query: &ExecutionQuery) -> Result<Vec<Execution>> {
        self.read_executions(query).await
    }

    async fn cancel(&self, id: &JobId) -> Result<bool> {
        match crate::decode::oid(id) {
            Some(id) => self.cancel_filter(doc! { "_id": id }).await,
            None => Ok(false),
        }
    }

    async fn cancel_unique(&self, name: &str, unique_identifier: &str) -> Result<bool> {
        self.cancel_filter(doc! { "ukey": crate::decode::unique_key(name, unique_identifier) })
            .await
    }

    async fn remove_all(&self) -> Result<()> {
        self.delete_documents().await
    }

    async fn prune(&self) -> Result<PruneReport> {
        self.prune_expired().await
    }

    fn wakeups(&self) -> Option<WakeUps> {
        self.start_watcher().then(|| self.inner.wake.subscribe())
    }
}
