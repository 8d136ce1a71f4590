//! [`MongoStore`]: the [`JobStore`] implementation on MongoDB.

use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use dogs_core::{
    async_trait, ClaimRequest, ClaimedJob, Completion, Error, ErrorKind, Execution, ExecutionQuery,
    ExecutionStatus, Job, JobCounts, JobId, JobKind, JobQuery, JobState, JobStore, Lease,
    LeaseToken, NewJob, PruneReport, RecurrentRegistration, Result, Scheduled, WakeUpSender,
    WakeUps,
};
use futures::TryStreamExt;
use mongodb::bson::{self, doc, oid::ObjectId, Bson, Document};
use mongodb::options::{IndexOptions, ReturnDocument};
use mongodb::{Collection, Database, IndexModel};
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::error::{code, corrupt, mongo_error, DUPLICATE_KEY};

/// How many records one pruning pass removes at a time.
const PRUNE_BATCH: i64 = 1000;
/// How often the offset to the server's clock is measured again.
const CLOCK_REFRESH: Duration = Duration::from_secs(30);

/// A job store on MongoDB. Cheap to clone: clones share the client.
///
/// Claims take due jobs through the claim index and lease each one atomically; every write on a
/// claimed job checks its lease token; time comes from the server's clock (an offset to it,
/// measured at start and kept current); idle workers are woken through a change stream where the
/// deployment supports one (replica sets), and poll elsewhere.
#[derive(Clone)]
pub struct MongoStore {
    inner: Arc<Inner>,
}

struct Inner {
    database: Database,
    jobs: Collection<Document>,
    executions: Collection<Document>,
    max_params_bytes: usize,
    /// The server's clock minus the local one, and when it was measured.
    clock: Mutex<(chrono::Duration, Instant)>,
    change_streams: bool,
    wake: WakeUpSender,
    watcher: OnceLock<()>,
    stop: CancellationToken,
    _stop_on_drop: DropGuard,
}

impl std::fmt::Debug for MongoStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MongoStore")
            .field("database", &self.inner.database.name())
            .field("jobs", &self.inner.jobs.name())
            .field("executions", &self.inner.executions.name())
            .field("change_streams", &self.inner.change_streams)
            .finish_non_exhaustive()
    }
}

fn date(at: DateTime<Utc>) -> bson::DateTime {
    bson::DateTime::from_millis(at.timestamp_millis())
}

fn from_date(at: bson::DateTime) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(at.timestamp_millis()).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn oid(id: &JobId) -> Option<ObjectId> {
    ObjectId::parse_str(id.as_str()).ok()
}

/// The field that makes (name, unique identifier) unique among live jobs.
fn unique_key(name: &str, unique: &str) -> String {
    format!("{}:{name}{unique}", name.len())
}

fn json_to_bson(value: &serde_json::Value) -> Result<Bson> {
    bson::to_bson(value).map_err(|e| {
        Error::new(ErrorKind::Serialization, "params cannot be stored as BSON").with_source(e)
    })
}

fn bson_to_json(value: Bson) -> serde_json::Value {
    value.into_relaxed_extjson()
}

fn get_str(doc: &Document, field: &str) -> Result<String> {
    doc.get_str(field)
        .map(str::to_owned)
        .map_err(|_| corrupt(&format!("a document has no text field '{field}'")))
}

fn opt_str(doc: &Document, field: &str) -> Option<String> {
    doc.get_str(field).ok().map(str::to_owned)
}

fn get_date(doc: &Document, field: &str) -> Result<DateTime<Utc>> {
    doc.get_datetime(field)
        .map(|d| from_date(*d))
        .map_err(|_| corrupt(&format!("a document has no date field '{field}'")))
}

fn opt_date(doc: &Document, field: &str) -> Option<DateTime<Utc>> {
    doc.get_datetime(field).ok().map(|d| from_date(*d))
}

fn get_int(doc: &Document, field: &str) -> Result<i64> {
    match doc.get(field) {
        Some(Bson::Int32(n)) => Ok(i64::from(*n)),
        Some(Bson::Int64(n)) => Ok(*n),
        Some(Bson::Double(n)) if n.fract() == 0.0 => Ok(*n as i64),
        _ => Err(corrupt(&format!(
            "a document has no number field '{field}'"
        ))),
    }
}

fn job_id(doc: &Document) -> Result<JobId> {
    doc.get_object_id("_id")
        .map(|id| JobId::new(id.to_hex()))
        .map_err(|_| corrupt("a job has no ObjectId"))
}

/// A job document as a [`Job`] with its state by the server's clock `now`; `None` for a failed
/// job past its retention.
fn job_from_doc(doc: Document, now: DateTime<Utc>) -> Result<Option<Job>> {
    let stored = get_str(&doc, "state")?;
    let locked_until = opt_date(&doc, "locked_until");
    let expires_at = opt_date(&doc, "expires_at");
    let state = match stored.as_str() {
        "failed" if expires_at.is_some_and(|at| at <= now) => return Ok(None),
        "failed" => JobState::Failed,
        "running" if locked_until.is_some_and(|at| at > now) => JobState::Running,
        _ => JobState::Pending,
    };
    let kind_text = get_str(&doc, "kind")?;
    Ok(Some(Job {
        id: job_id(&doc)?,
        name: get_str(&doc, "name")?,
        kind: JobKind::parse(&kind_text)
            .ok_or_else(|| corrupt(&format!("unknown kind '{kind_text}'")))?,
        params: bson_to_json(doc.get("params").cloned().unwrap_or(Bson::Null)),
        priority: i32::try_from(get_int(&doc, "priority")?).unwrap_or(0),
        run_at: get_date(&doc, "run_at")?,
        unique_identifier: opt_str(&doc, "uid"),
        tries: u32::try_from(get_int(&doc, "tries")?).unwrap_or(0),
        state,
        locked_until,
        locked_by: opt_str(&doc, "locked_by"),
        last_error: opt_str(&doc, "last_error"),
        expires_at,
        schedule_key: opt_str(&doc, "schedule_key"),
        created_at: get_date(&doc, "created_at")?,
    }))
}

fn execution_to_doc(e: &Execution) -> Result<Document> {
    Ok(doc! {
        "_id": &e.execution_id,
        "job_id": e.job_id.as_str(),
        "name": &e.name,
        "kind": e.kind.as_str(),
        "priority": e.priority,
        "tries": i64::from(e.tries),
        "uid": e.unique_identifier.as_deref().map(Bson::from).unwrap_or(Bson::Null),
        "params": json_to_bson(&e.params)?,
        "started_at": date(e.started_at),
        "ended_at": date(e.ended_at),
        "duration_ms": millis(e.duration),
        "status": e.status.as_str(),
        "error": e.error.as_deref().map(Bson::from).unwrap_or(Bson::Null),
        "result": match &e.result { Some(r) => json_to_bson(r)?, None => Bson::Null },
        "has_result": e.result.is_some(),
        "worker_id": &e.worker_id,
        "expires_at": date(e.expires_at),
    })
}

fn execution_from_doc(doc: Document) -> Result<Execution> {
    let kind_text = get_str(&doc, "kind")?;
    let status_text = get_str(&doc, "status")?;
    Ok(Execution {
        job_id: JobId::new(get_str(&doc, "job_id")?),
        execution_id: get_str(&doc, "_id")?,
        name: get_str(&doc, "name")?,
        kind: JobKind::parse(&kind_text)
            .ok_or_else(|| corrupt(&format!("unknown kind '{kind_text}'")))?,
        priority: i32::try_from(get_int(&doc, "priority")?).unwrap_or(0),
        tries: u32::try_from(get_int(&doc, "tries")?).unwrap_or(0),
        unique_identifier: opt_str(&doc, "uid"),
        params: bson_to_json(doc.get("params").cloned().unwrap_or(Bson::Null)),
        started_at: get_date(&doc, "started_at")?,
        ended_at: get_date(&doc, "ended_at")?,
        duration: Duration::from_millis(u64::try_from(get_int(&doc, "duration_ms")?).unwrap_or(0)),
        status: ExecutionStatus::parse(&status_text)
            .ok_or_else(|| corrupt(&format!("unknown status '{status_text}'")))?,
        error: opt_str(&doc, "error"),
        result: if doc.get_bool("has_result").unwrap_or(false) {
            Some(bson_to_json(
                doc.get("result").cloned().unwrap_or(Bson::Null),
            ))
        } else {
            None
        },
        worker_id: get_str(&doc, "worker_id")?,
        expires_at: get_date(&doc, "expires_at")?,
    })
}

/// Keeps what reads, logging and skipping what does not.
fn readable<T>(items: impl IntoIterator<Item = Result<Option<T>>>) -> Vec<T> {
    items
        .into_iter()
        .filter_map(|item| match item {
            Ok(value) => value,
            Err(e) => {
                tracing::error!(error = %e, "skipping a record that cannot be read");
                None
            }
        })
        .collect()
}

/// The filter of a live lease: the job with this id and token, leased (or reclaimable).
fn leased(lease: &Lease) -> Option<Document> {
    Some(doc! {
        "_id": oid(&lease.job_id)?,
        "token": lease.token.as_str(),
        "state": { "$in": ["running", "pending"] },
    })
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
        address: &str,
    ) -> Result<Self> {
        let unreachable = |e: mongodb::error::Error| {
            let error = mongo_error("connecting", e);
            Error::new(error.kind(), format!("cannot reach MongoDB at {address}"))
                .with_source(error)
        };
        let asked = Instant::now();
        let hello = database
            .run_command(doc! { "hello": 1 })
            .await
            .map_err(unreachable)?;
        let offset = clock_offset(&hello, asked);
        let change_streams = hello.get_str("setName").is_ok();
        let stop = CancellationToken::new();
        let store = MongoStore {
            inner: Arc::new(Inner {
                jobs: database.collection(jobs),
                executions: database.collection(executions),
                database,
                max_params_bytes,
                clock: Mutex::new((offset, Instant::now())),
                change_streams,
                wake: WakeUpSender::new(),
                watcher: OnceLock::new(),
                _stop_on_drop: stop.clone().drop_guard(),
                stop,
            }),
        };
        store.create_indexes().await?;
        Ok(store)
    }

    /// Creates the indexes, idempotently.
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
                .keys(doc! { "run_at": 1 })
                .options(partial("scheduled", doc! { "state": "scheduled" }))
                .build(),
            IndexModel::builder()
                .keys(doc! { "locked_until": 1 })
                .options(partial("leases", doc! { "state": "running" }))
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
        self.inner
            .jobs
            .create_indexes(jobs)
            .await
            .map_err(|e| mongo_error("creating the job indexes", e))?;
        let executions = [
            IndexModel::builder()
                .keys(doc! { "name": 1, "started_at": -1, "_id": -1 })
                .options(IndexOptions::builder().name("history".to_owned()).build())
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
        self.inner
            .executions
            .create_indexes(executions)
            .await
            .map_err(|e| mongo_error("creating the execution indexes", e))?;
        Ok(())
    }

    /// The database that holds the collections.
    pub fn database(&self) -> &Database {
        &self.inner.database
    }

    /// Whether wake-ups come from a change stream (a replica set) rather than polling alone.
    pub fn has_change_streams(&self) -> bool {
        self.inner.change_streams
    }

    /// The plan the server chooses now for a claim's candidate query (`explain`), to check on
    /// real data that claims read the `claim` index of due jobs only.
    pub async fn explain_claim(&self, names: &[&str], limit: i64) -> Result<Document> {
        let now = self.server_now().await?;
        let command = doc! {
            "explain": {
                "find": self.inner.jobs.name(),
                "filter": candidates_filter(names, now),
                "sort": claim_sort(),
                "hint": "claim",
                "limit": limit,
            },
            "verbosity": "queryPlanner",
        };
        self.inner
            .database
            .run_command(command)
            .await
            .map_err(|e| mongo_error("explaining the claim", e))
    }

    /// The server's clock: the local clock plus the measured offset, measured again when old.
    async fn server_now(&self) -> Result<DateTime<Utc>> {
        let (offset, measured) = *self
            .inner
            .clock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let offset = if measured.elapsed() > CLOCK_REFRESH {
            let asked = Instant::now();
            let hello = self
                .inner
                .database
                .run_command(doc! { "hello": 1 })
                .await
                .map_err(|e| mongo_error("reading the server's clock", e))?;
            let offset = clock_offset(&hello, asked);
            *self
                .inner
                .clock
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = (offset, Instant::now());
            offset
        } else {
            offset
        };
        Ok(dogs_core::truncate_millis(Utc::now() + offset))
    }

    fn job_doc(&self, job: &NewJob, now: DateTime<Utc>) -> Result<(ObjectId, Document)> {
        let id = ObjectId::new();
        let run_at = dogs_core::truncate_millis(job.run_at.resolve(now));
        let mut doc = doc! {
            "_id": id,
            "name": &job.name,
            "kind": "event",
            "params": json_to_bson(&job.params)?,
            "priority": job.priority,
            "run_at": date(run_at),
            "tries": 0_i64,
            "state": if run_at <= now { "pending" } else { "scheduled" },
            "demoted": false,
            "created_at": date(now),
        };
        if let Some(unique) = &job.unique_identifier {
            doc.insert("uid", unique.as_str());
            doc.insert("ukey", unique_key(&job.name, unique));
        }
        Ok((id, doc))
    }

    async fn find_live(&self, name: &str, unique: &str) -> Result<Option<JobId>> {
        let found = self
            .inner
            .jobs
            .find_one(doc! { "ukey": unique_key(name, unique) })
            .projection(doc! { "_id": 1 })
            .await
            .map_err(|e| mongo_error("finding a duplicate job", e))?;
        found.map(|d| job_id(&d)).transpose()
    }

    async fn fenced(&self, lease: &Lease, completion: Completion) -> Result<()> {
        let Some(filter) = leased(lease) else {
            return Err(Error::lock_lost(&lease.job_id));
        };
        let now = self.server_now().await?;
        let unset_lease = doc! { "$unset": ["token", "locked_until", "locked_by"] };
        let pipeline: Vec<Document> = match completion {
            Completion::Remove => {
                let deleted = self
                    .inner
                    .jobs
                    .delete_one(filter)
                    .await
                    .map_err(|e| mongo_error("removing a job", e))?;
                return if deleted.deleted_count == 1 {
                    Ok(())
                } else {
                    Err(Error::lock_lost(&lease.job_id))
                };
            }
            Completion::Reschedule {
                run_at,
                priority,
                reset_tries,
            } => {
                let at = dogs_core::truncate_millis(run_at.resolve(now));
                let mut set = doc! {
                    "run_at": date(at),
                    "state": if at <= now { "pending" } else { "scheduled" },
                    "demoted": false,
                };
                if let Some(priority) = priority {
                    set.insert("priority", priority);
                }
                if reset_tries {
                    set.insert("tries", 0_i64);
                }
                vec![doc! { "$set": set }, unset_lease]
            }
            Completion::Fail { error, retain_for } => {
                // Failing moves the document instead of updating it: some MongoDB-compatible
                // servers keep a unique index entry after an update removes the indexed field,
                // and a delete followed by an insert frees the unique identifier everywhere.
                let taken = self
                    .inner
                    .jobs
                    .find_one_and_delete(filter)
                    .await
                    .map_err(|e| mongo_error("failing a job", e))?;
                let Some(mut failed) = taken else {
                    return Err(Error::lock_lost(&lease.job_id));
                };
                for field in ["token", "locked_until", "locked_by", "ukey", "was_stale"] {
                    failed.remove(field);
                }
                failed.insert("state", "failed");
                failed.insert("demoted", false);
                failed.insert("last_error", error);
                failed.insert("expires_at", date(dogs_core::add_duration(now, retain_for)));
                self.inner
                    .jobs
                    .insert_one(failed)
                    .await
                    .map_err(|e| mongo_error("keeping a failed job", e))?;
                return Ok(());
            }
            Completion::Demote => vec![
                doc! { "$set": { "state": "pending", "demoted": true, "run_at": date(now) } },
                unset_lease,
            ],
            Completion::Release => vec![
                doc! { "$set": {
                    "tries": { "$max": [0, { "$subtract": ["$tries", 1] }] },
                    "state": { "$cond": [{ "$lte": ["$run_at", date(now)] }, "pending", "scheduled"] },
                } },
                unset_lease,
            ],
        };
        let updated = self
            .inner
            .jobs
            .update_one(filter, pipeline)
            .await
            .map_err(|e| mongo_error("saving a job's outcome", e))?;
        if updated.matched_count == 1 {
            Ok(())
        } else {
            Err(Error::lock_lost(&lease.job_id))
        }
    }

    /// Takes up to `limit` of the first due jobs: finds them in claim order, leases them in
    /// one update under a fresh token, and reads back the ones this claim won.
    async fn claim_round(
        &self,
        request: &ClaimRequest,
        names: &[&str],
        limit: i64,
        now: DateTime<Utc>,
    ) -> Result<(usize, Vec<Document>)> {
        let candidates: Vec<Document> = self
            .inner
            .jobs
            .find(candidates_filter(names, now))
            .sort(claim_sort())
            // The partial index of pending jobs; a planner that tried `by_name` first would read
            // every job of the name, future ones included.
            .hint(mongodb::options::Hint::Name("claim".to_owned()))
            .limit(limit)
            .projection(doc! { "_id": 1 })
            .await
            .map_err(|e| mongo_error("finding due jobs", e))?
            .try_collect()
            .await
            .map_err(|e| mongo_error("finding due jobs", e))?;
        let ids: Vec<ObjectId> = candidates
            .iter()
            .filter_map(|d| d.get_object_id("_id").ok())
            .collect();
        if ids.is_empty() {
            return Ok((0, Vec::new()));
        }
        // Each lease's token is this claim's random base and the job's id.
        let base = uuid::Uuid::new_v4().simple().to_string();
        let tokens: Vec<String> = ids
            .iter()
            .map(|id| format!("{base}:{}", id.to_hex()))
            .collect();
        // Each name's lease end, chosen per document (dates are computed here, not by the server).
        let branches: Vec<Document> = request
            .names
            .iter()
            .map(|n| {
                let until = date(dogs_core::add_duration(now, n.lock_time));
                doc! { "case": { "$eq": ["$name", &n.name] }, "then": until }
            })
            .collect();
        let locked_until = doc! { "$switch": { "branches": branches, "default": date(now) } };
        let update = vec![doc! { "$set": {
            "was_stale": { "$or": [{ "$ne": [{ "$type": "$token" }, "missing"] }, "$demoted"] },
            "state": "running",
            "token": { "$concat": [format!("{base}:"), { "$toString": "$_id" }] },
            "locked_until": locked_until,
            "locked_by": &request.worker_id,
            "demoted": false,
            // A count written by hand as something else stays as it is, so the update goes
            // through and the read back fails that one job alone.
            "tries": { "$cond": [
                { "$in": [{ "$type": "$tries" }, ["int", "long", "double", "decimal"]] },
                { "$add": ["$tries", 1] },
                "$tries",
            ] },
        } }];
        self.inner
            .jobs
            .update_many(
                doc! { "_id": { "$in": &ids }, "state": "pending", "run_at": { "$lte": date(now) } },
                update,
            )
            .await
            .map_err(|e| mongo_error("leasing jobs", e))?;
        let won: Vec<Document> = self
            .inner
            .jobs
            .find(doc! { "_id": { "$in": &ids }, "token": { "$in": &tokens } })
            .await
            .map_err(|e| mongo_error("reading leased jobs", e))?
            .try_collect()
            .await
            .map_err(|e| mongo_error("reading leased jobs", e))?;
        Ok((ids.len(), won))
    }

    async fn cancel_filter(&self, filter: Document) -> Result<bool> {
        let now = self.server_now().await?;
        let mut removable = filter.clone();
        removable.insert(
            "$nor",
            vec![doc! { "state": "running", "locked_until": { "$gt": date(now) } }],
        );
        let deleted = self
            .inner
            .jobs
            .delete_one(removable)
            .await
            .map_err(|e| mongo_error("cancelling a job", e))?;
        if deleted.deleted_count == 1 {
            return Ok(true);
        }
        let exists = self
            .inner
            .jobs
            .find_one(filter)
            .await
            .map_err(|e| mongo_error("cancelling a job", e))?;
        match exists {
            Some(_) => Err(Error::new(
                ErrorKind::Conflict,
                "the job is running and cannot be cancelled",
            )),
            None => Ok(false),
        }
    }

    fn start_watcher(&self) -> bool {
        if !self.inner.change_streams || tokio::runtime::Handle::try_current().is_err() {
            return false;
        }
        self.inner.watcher.get_or_init(|| {
            tokio::spawn(crate::watcher::watch(
                self.inner.jobs.clone(),
                self.inner.wake.clone(),
                self.inner.stop.clone(),
            ));
        });
        true
    }
}

/// The offset of the server's clock (`hello.localTime`) to the local one, assuming the answer
/// was made halfway through the round trip.
fn clock_offset(hello: &Document, asked: Instant) -> chrono::Duration {
    let Ok(server) = hello.get_datetime("localTime") else {
        tracing::warn!("the server does not report its clock; using the local clock");
        return chrono::Duration::zero();
    };
    let half_trip = chrono::Duration::from_std(asked.elapsed() / 2).unwrap_or_default();
    from_date(*server) + half_trip - Utc::now()
}

fn candidates_filter(names: &[&str], now: DateTime<Utc>) -> Document {
    doc! { "name": { "$in": names }, "state": "pending", "run_at": { "$lte": date(now) } }
}

fn claim_sort() -> Document {
    doc! { "demoted": 1, "priority": -1, "run_at": 1, "_id": 1 }
}

fn claimed_from_doc(doc: Document, claimed_at: DateTime<Utc>) -> Result<ClaimedJob> {
    let token = get_str(&doc, "token")?;
    let was_stale = doc.get_bool("was_stale").unwrap_or(false);
    let locked_until = get_date(&doc, "locked_until")?;
    let mut job =
        job_from_doc(doc, claimed_at)?.ok_or_else(|| corrupt("a claimed job is failed"))?;
    job.state = JobState::Running;
    Ok(ClaimedJob {
        lease: Lease {
            job_id: job.id.clone(),
            token: LeaseToken::new(token),
        },
        locked_until,
        claimed_at,
        was_stale,
        job,
    })
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
        job.validate(self.inner.max_params_bytes)?;
        let now = self.server_now().await?;
        for _ in 0..5 {
            let (id, doc) = self.job_doc(&job, now)?;
            match self.inner.jobs.insert_one(doc).await {
                Ok(_) => return Ok(Scheduled::Created(JobId::new(id.to_hex()))),
                Err(e) if code(&e) == Some(DUPLICATE_KEY) => {
                    let unique = job.unique_identifier.as_deref().unwrap_or_default();
                    if let Some(existing) = self.find_live(&job.name, unique).await? {
                        return Ok(Scheduled::Duplicate(existing));
                    }
                    // The live job went away in between: try again.
                }
                Err(e) => return Err(mongo_error("scheduling a job", e)),
            }
        }
        Err(Error::new(
            ErrorKind::Conflict,
            format!(
                "job '{}' kept conflicting with a job being removed",
                job.name
            ),
        ))
    }

    async fn schedule_many(&self, jobs: Vec<NewJob>) -> Result<Vec<Result<Scheduled>>> {
        let now = self.server_now().await?;
        let mut outcomes: Vec<Option<Result<Scheduled>>> = Vec::with_capacity(jobs.len());
        let mut docs = Vec::new();
        let mut placed: Vec<(usize, ObjectId)> = Vec::new();
        for (i, job) in jobs.iter().enumerate() {
            match job
                .validate(self.inner.max_params_bytes)
                .and_then(|()| self.job_doc(job, now))
            {
                Ok((id, doc)) => {
                    outcomes.push(None);
                    placed.push((i, id));
                    docs.push(doc);
                }
                Err(e) => outcomes.push(Some(Err(e))),
            }
        }
        let mut duplicates: Vec<usize> = Vec::new();
        if !docs.is_empty() {
            match self.inner.jobs.insert_many(docs).ordered(false).await {
                Ok(_) => {}
                Err(e) => match e.kind.as_ref() {
                    mongodb::error::ErrorKind::InsertMany(failure)
                        if failure.write_concern_error.is_none() =>
                    {
                        for write in failure.write_errors.iter().flatten() {
                            if write.code == DUPLICATE_KEY {
                                duplicates.push(write.index);
                            } else if let Some((i, _)) = placed.get(write.index) {
                                outcomes[*i] = Some(Err(Error::new(
                                    ErrorKind::Backend,
                                    format!("MongoDB refused the job: {}", write.message),
                                )));
                            }
                        }
                    }
                    _ => return Err(mongo_error("scheduling jobs", e)),
                },
            }
        }
        for (n, (i, id)) in placed.iter().enumerate() {
            if outcomes[*i].is_some() {
                continue;
            }
            if duplicates.contains(&n) {
                let job = &jobs[*i];
                let unique = job.unique_identifier.as_deref().unwrap_or_default();
                outcomes[*i] = Some(match self.find_live(&job.name, unique).await? {
                    Some(existing) => Ok(Scheduled::Duplicate(existing)),
                    None => self.schedule(job.clone()).await,
                });
            } else {
                outcomes[*i] = Some(Ok(Scheduled::Created(JobId::new(id.to_hex()))));
            }
        }
        Ok(outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Err(Error::new(ErrorKind::Backend, "no outcome"))))
            .collect())
    }

    async fn register_recurrent(&self, job: RecurrentRegistration) -> Result<JobId> {
        dogs_core::validate_name(&job.name)?;
        let now = date(self.server_now().await?);
        let next = date(dogs_core::truncate_millis(job.next_run_at));
        let is_new = doc! { "$eq": [{ "$type": "$created_at" }, "missing"] };
        let changed = doc! { "$ne": [{ "$ifNull": ["$schedule_key", ""] }, &job.schedule_key] };
        let next_state = doc! { "$cond": [{ "$lte": [next, now] }, "pending", "scheduled"] };
        let update = vec![doc! { "$set": {
            "priority": job.priority,
            "params": { "$ifNull": ["$params", Bson::Null] },
            "tries": { "$ifNull": ["$tries", 0_i64] },
            "demoted": { "$ifNull": ["$demoted", false] },
            "run_at": { "$cond": [is_new.clone(), now, { "$cond": [changed.clone(), next, "$run_at"] }] },
            "state": { "$cond": [is_new.clone(), "pending", { "$cond": [
                { "$and": [changed, { "$in": ["$state", ["scheduled", "pending"]] }] },
                next_state,
                "$state",
            ] }] },
            "schedule_key": &job.schedule_key,
            "created_at": { "$ifNull": ["$created_at", now] },
        } }];
        for _ in 0..5 {
            let result = self
                .inner
                .jobs
                .find_one_and_update(
                    doc! { "name": &job.name, "kind": "recurrent" },
                    update.clone(),
                )
                .upsert(true)
                .return_document(ReturnDocument::After)
                .projection(doc! { "_id": 1 })
                .await;
            match result {
                Ok(Some(doc)) => return job_id(&doc),
                // Some servers answer a racing upsert with no document; the next attempt
                // finds the record the other registration wrote.
                Ok(None) => continue,
                // Two registrations raced to insert; the next attempt updates the winner's.
                Err(e) if code(&e) == Some(DUPLICATE_KEY) => continue,
                Err(e) => return Err(mongo_error("registering a recurrent job", e)),
            }
        }
        Err(Error::new(
            ErrorKind::Conflict,
            format!("recurrent job '{}' kept conflicting", job.name),
        ))
    }

    async fn claim(&self, request: &ClaimRequest) -> Result<Vec<ClaimedJob>> {
        if request.limit == 0 || request.names.is_empty() {
            return Ok(Vec::new());
        }
        let now = self.server_now().await?;
        let date_now = date(now);
        // Due scheduled jobs become pending; leases that ran out are reclaimed, demoted.
        self.inner
            .jobs
            .update_many(
                doc! { "$or": [
                    { "state": "scheduled", "run_at": { "$lte": date_now } },
                    { "state": "running", "locked_until": { "$lte": date_now } },
                ] },
                vec![doc! { "$set": {
                    "demoted": { "$or": ["$demoted", { "$eq": ["$state", "running"] }] },
                    "state": "pending",
                } }],
            )
            .await
            .map_err(|e| mongo_error("promoting due jobs", e))?;
        let names: Vec<&str> = request.names.iter().map(|n| n.name.as_str()).collect();
        let mut won = Vec::new();
        for _ in 0..3 {
            let wanted = i64::try_from(request.limit - won.len()).unwrap_or(i64::MAX);
            let (seen, docs) = self.claim_round(request, &names, wanted, now).await?;
            let complete = docs.len() == seen;
            won.extend(docs);
            // Stop when every candidate was won or there were none: the queue is drained.
            if complete || won.len() >= request.limit {
                break;
            }
        }
        let mut claimed = Vec::with_capacity(won.len());
        for doc in won {
            let lease = match (doc.get_object_id("_id"), doc.get_str("token")) {
                (Ok(id), Ok(token)) => Lease {
                    job_id: JobId::new(id.to_hex()),
                    token: LeaseToken::new(token),
                },
                _ => continue,
            };
            match claimed_from_doc(doc, now) {
                Ok(job) => claimed.push(job),
                Err(e) => dogs_core::fail_unreadable(self, &lease, &e).await?,
            }
        }
        claimed.sort_by_key(|c| {
            (
                c.was_stale,
                std::cmp::Reverse(c.job.priority),
                c.job.run_at,
                c.job.id.clone(),
            )
        });
        Ok(claimed)
    }

    async fn extend_lock(&self, lease: &Lease, lock_time: Duration) -> Result<DateTime<Utc>> {
        let Some(filter) = leased(lease) else {
            return Err(Error::lock_lost(&lease.job_id));
        };
        let until = dogs_core::add_duration(self.server_now().await?, lock_time);
        let updated = self
            .inner
            .jobs
            .update_one(
                filter,
                doc! { "$set": { "locked_until": date(until), "state": "running", "demoted": false } },
            )
            .await
            .map_err(|e| mongo_error("extending a lease", e))?;
        if updated.matched_count == 1 {
            Ok(until)
        } else {
            Err(Error::lock_lost(&lease.job_id))
        }
    }

    async fn complete(&self, lease: &Lease, completion: Completion) -> Result<()> {
        self.fenced(lease, completion).await
    }

    async fn record_execution(&self, execution: &Execution) -> Result<()> {
        match self
            .inner
            .executions
            .insert_one(execution_to_doc(execution)?)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if code(&e) == Some(DUPLICATE_KEY) => Ok(()),
            Err(e) => Err(mongo_error("recording an execution", e)),
        }
    }

    async fn get_job(&self, id: &JobId) -> Result<Option<Job>> {
        let Some(id) = oid(id) else {
            return Ok(None);
        };
        let now = self.server_now().await?;
        let doc = self
            .inner
            .jobs
            .find_one(doc! { "_id": id })
            .await
            .map_err(|e| mongo_error("reading a job", e))?;
        match doc {
            Some(doc) => job_from_doc(doc, now),
            None => Ok(None),
        }
    }

    async fn list_jobs(&self, query: &JobQuery) -> Result<Vec<Job>> {
        let now = self.server_now().await?;
        let filter = match &query.name {
            Some(name) => doc! { "name": name },
            None => doc! {},
        };
        let docs: Vec<Document> = self
            .inner
            .jobs
            .find(filter)
            .await
            .map_err(|e| mongo_error("listing jobs", e))?
            .try_collect()
            .await
            .map_err(|e| mongo_error("listing jobs", e))?;
        let jobs = readable(docs.into_iter().map(|d| job_from_doc(d, now)));
        // ObjectIds in hex sort in creation order.
        Ok(query.page(jobs, |id| id.clone()))
    }

    async fn count_jobs(&self) -> Result<Vec<JobCounts>> {
        let all = JobQuery {
            limit: usize::MAX,
            ..JobQuery::default()
        };
        Ok(JobCounts::tally(self.list_jobs(&all).await?))
    }

    async fn executions(&self, query: &ExecutionQuery) -> Result<Vec<Execution>> {
        let now = self.server_now().await?;
        let mut filter = doc! { "name": &query.name, "expires_at": { "$gt": date(now) } };
        if let Some(job_id) = &query.job_id {
            filter.insert("job_id", job_id.as_str());
        }
        let docs: Vec<Document> = self
            .inner
            .executions
            .find(filter)
            .sort(doc! { "started_at": -1, "_id": -1 })
            .skip(u64::try_from(query.offset).unwrap_or(u64::MAX))
            .limit(i64::try_from(query.limit).unwrap_or(i64::MAX))
            .await
            .map_err(|e| mongo_error("reading executions", e))?
            .try_collect()
            .await
            .map_err(|e| mongo_error("reading executions", e))?;
        Ok(readable(
            docs.into_iter().map(|d| execution_from_doc(d).map(Some)),
        ))
    }

    async fn cancel(&self, id: &JobId) -> Result<bool> {
        match oid(id) {
            Some(id) => self.cancel_filter(doc! { "_id": id }).await,
            None => Ok(false),
        }
    }

    async fn cancel_unique(&self, name: &str, unique_identifier: &str) -> Result<bool> {
        self.cancel_filter(doc! { "ukey": unique_key(name, unique_identifier) })
            .await
    }

    async fn prune(&self) -> Result<PruneReport> {
        let now = date(self.server_now().await?);
        let mut report = PruneReport::default();
        for (collection, filter, count) in [
            (
                &self.inner.jobs,
                doc! { "state": "failed", "expires_at": { "$lte": now } },
                &mut report.jobs,
            ),
            (
                &self.inner.executions,
                doc! { "expires_at": { "$lte": now } },
                &mut report.executions,
            ),
        ] {
            loop {
                let batch: Vec<Document> = collection
                    .find(filter.clone())
                    .projection(doc! { "_id": 1 })
                    .limit(PRUNE_BATCH)
                    .await
                    .map_err(|e| mongo_error("pruning", e))?
                    .try_collect()
                    .await
                    .map_err(|e| mongo_error("pruning", e))?;
                let ids: Vec<Bson> = batch
                    .into_iter()
                    .filter_map(|mut d| d.remove("_id"))
                    .collect();
                if ids.is_empty() {
                    break;
                }
                let removed = collection
                    .delete_many(doc! { "_id": { "$in": &ids } })
                    .await
                    .map_err(|e| mongo_error("pruning", e))?
                    .deleted_count;
                *count += removed;
                if (ids.len() as i64) < PRUNE_BATCH {
                    break;
                }
            }
        }
        Ok(report)
    }

    fn wakeups(&self) -> Option<WakeUps> {
        self.start_watcher().then(|| self.inner.wake.subscribe())
    }
}
