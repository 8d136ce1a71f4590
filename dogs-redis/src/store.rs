//! [`RedisStore`]: the [`JobStore`] implementation on Redis.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use dogs_core::{
    async_trait, ClaimRequest, ClaimedJob, Completion, Error, ErrorKind, Execution, ExecutionQuery,
    Finish, Job, JobCounts, JobId, JobKind, JobQuery, JobState, JobStore, Lease, LeaseToken,
    NewJob, PruneReport, RecurrentRegistration, Result, RunAt, Scheduled, WakeUpSender, WakeUps,
};
use redis::aio::ConnectionManager;
use redis::Value as RedisValue;
use serde::Deserialize;
use serde_json::Value;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::config::RedisStoreBuilder;
use crate::error::{bad_reply, parse_error, redis_error};
use crate::scripts::Scripts;

/// How many jobs one scheduling script call stores; larger batches are split.
const SCHEDULE_BATCH: usize = 500;
/// How many records one pruning script call removes.
const PRUNE_BATCH: u64 = 1000;

/// A job store on Redis. Cheap to clone: clones share the connection.
///
/// Every operation that reads and writes several keys is one Lua script, so no interleaving of
/// clients can break the contract; scripts read the server's `TIME`. All keys of one prefix share
/// a hash tag, so the store works unchanged on Redis Cluster.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    conn: ConnectionManager,
    client: Option<redis::Client>,
    /// The prefix with its hash tag: `{dogs}`.
    tag: String,
    max_params_bytes: usize,
    scripts: Scripts,
    wake: WakeUpSender,
    subscriber: OnceLock<()>,
    stop: CancellationToken,
    _stop_on_drop: DropGuard,
    last_claim_commands: AtomicU64,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.inner.tag)
            .field("max_params_bytes", &self.inner.max_params_bytes)
            .finish_non_exhaustive()
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn from_millis(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// `(run_at, delay)` arguments: an instant in ms, or '' and a delay after the server's now.
fn run_at_args(run_at: RunAt) -> (String, i64) {
    match run_at {
        RunAt::Now => (String::new(), 0),
        RunAt::At(at) => (at.timestamp_millis().to_string(), 0),
        RunAt::In(delay) => (String::new(), millis(delay)),
    }
}

/// A job as the claim script reports it, or (`unreadable`, `error`) a record it failed for good
/// because it could not read it.
#[derive(Default, Deserialize)]
#[serde(default)]
struct ClaimedRecord {
    unreadable: Option<String>,
    error: Option<String>,
    id: String,
    name: String,
    kind: String,
    params: String,
    priority: String,
    run_at: String,
    uid: Option<String>,
    tries: String,
    token: String,
    locked_until: String,
    locked_by: String,
    schedule_key: Option<String>,
    created_at: Option<String>,
    was_stale: bool,
}

/// A claimed job as the claim script reported it.
fn claimed_from_record(record: ClaimedRecord, claimed_at: DateTime<Utc>) -> Result<ClaimedJob> {
    let locked_until = from_millis(number(&record.locked_until, "locked_until")?);
    let created_at = record
        .created_at
        .as_deref()
        .ok_or_else(|| Error::new(ErrorKind::Corrupt, "Redis: a job has no 'created_at'"))?;
    let job = Job {
        id: JobId::new(record.id.clone()),
        name: record.name,
        kind: kind(&record.kind)?,
        params: params(&record.params)?,
        priority: number(&record.priority, "priority")?,
        run_at: from_millis(number(&record.run_at, "run_at")?),
        unique_identifier: record.uid,
        tries: number(&record.tries, "tries")?,
        state: JobState::Running,
        locked_until: Some(locked_until),
        locked_by: Some(record.locked_by),
        last_error: None,
        expires_at: None,
        schedule_key: record.schedule_key,
        created_at: from_millis(number(created_at, "created_at")?),
    };
    Ok(ClaimedJob {
        lease: Lease {
            job_id: job.id.clone(),
            token: LeaseToken::new(record.token),
        },
        locked_until,
        claimed_at,
        was_stale: record.was_stale,
        job,
    })
}

fn number<T: std::str::FromStr>(text: &str, what: &str) -> Result<T> {
    // Lua may render whole numbers with a trailing ".0".
    let text = text.strip_suffix(".0").unwrap_or(text);
    text.parse().map_err(|_| {
        Error::new(
            ErrorKind::Corrupt,
            format!("Redis: {what} '{text}' is not a number"),
        )
    })
}

fn params(text: &str) -> Result<Value> {
    serde_json::from_str(text).map_err(|e| {
        Error::new(ErrorKind::Corrupt, "Redis: stored params are not JSON").with_source(e)
    })
}

fn kind(text: &str) -> Result<JobKind> {
    JobKind::parse(text).ok_or_else(|| {
        Error::new(
            ErrorKind::Corrupt,
            format!("Redis: unknown job kind '{text}'"),
        )
    })
}

/// A stored job hash as a [`Job`], with its state by the server's clock `now` (ms); `None` for
/// a failed job past its retention.
fn job_from_hash(id: &str, hash: &HashMap<String, String>, now: i64) -> Result<Option<Job>> {
    let field = |name: &str| -> Result<&String> {
        hash.get(name).ok_or_else(|| {
            Error::new(
                ErrorKind::Corrupt,
                format!("Redis: job {id} has no '{name}'"),
            )
        })
    };
    let optional_ms = |name: &str| -> Result<Option<DateTime<Utc>>> {
        hash.get(name)
            .filter(|v| !v.is_empty())
            .map(|v| number::<i64>(v, name).map(from_millis))
            .transpose()
    };
    let stored_state = field("state")?.as_str();
    let locked_until = hash
        .get("locked_until")
        .filter(|v| !v.is_empty())
        .map(|v| number::<i64>(v, "locked_until"))
        .transpose()?;
    let expires_at = hash
        .get("expires_at")
        .filter(|v| !v.is_empty())
        .map(|v| number::<i64>(v, "expires_at"))
        .transpose()?;
    let state = match stored_state {
        "failed" if expires_at.is_some_and(|at| at <= now) => return Ok(None),
        "failed" => JobState::Failed,
        "running" if locked_until.is_some_and(|at| at > now) => JobState::Running,
        _ => JobState::Pending,
    };
    Ok(Some(Job {
        id: JobId::new(id),
        name: field("name")?.clone(),
        kind: kind(field("kind")?)?,
        params: params(field("params")?)?,
        priority: number(field("priority")?, "priority")?,
        run_at: from_millis(number(field("run_at")?, "run_at")?),
        unique_identifier: hash.get("uid").cloned(),
        tries: number(field("tries")?, "tries")?,
        state,
        locked_until: locked_until.map(from_millis),
        locked_by: hash.get("locked_by").cloned(),
        last_error: hash.get("last_error").cloned(),
        expires_at: optional_ms("expires_at")?,
        schedule_key: hash.get("schedule_key").cloned(),
        created_at: from_millis(number(field("created_at")?, "created_at")?),
    }))
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

impl RedisStore {
    /// Connects to `url` with the default prefix `dogs`.
    pub async fn connect(url: &str) -> Result<Self> {
        RedisStoreBuilder::default().url(url).connect().await
    }

    /// A builder for the prefix, the connection and the limits.
    pub fn builder() -> RedisStoreBuilder {
        RedisStoreBuilder::default()
    }

    pub(crate) fn new(
        conn: ConnectionManager,
        client: Option<redis::Client>,
        prefix: &str,
        max_params_bytes: usize,
    ) -> Self {
        let stop = CancellationToken::new();
        RedisStore {
            inner: Arc::new(Inner {
                conn,
                client,
                tag: format!("{{{prefix}}}"),
                max_params_bytes,
                scripts: Scripts::new(),
                wake: WakeUpSender::new(),
                subscriber: OnceLock::new(),
                _stop_on_drop: stop.clone().drop_guard(),
                stop,
                last_claim_commands: AtomicU64::new(0),
            }),
        }
    }

    /// The key prefix with its hash tag, such as `{dogs}`: every key of this store starts with
    /// it and a colon.
    pub fn key_prefix(&self) -> &str {
        &self.inner.tag
    }

    /// How many Redis commands the last claim's script ran: the cost of a claim, which does not
    /// grow with the number of future or failed jobs.
    pub fn last_claim_commands(&self) -> u64 {
        self.inner.last_claim_commands.load(Ordering::Relaxed)
    }

    fn key(&self, parts: &[&str]) -> String {
        let mut key = self.inner.tag.clone();
        for part in parts {
            key.push(':');
            key.push_str(part);
        }
        key
    }

    fn conn(&self) -> ConnectionManager {
        self.inner.conn.clone()
    }

    /// Removes every key of this store's prefix: its jobs, execution records and indexes. Keys
    /// are found with `SCAN` and removed with `UNLINK` in steps, so a prefix of millions of keys
    /// never blocks the server. Other prefixes are untouched.
    pub async fn remove_all(&self) -> Result<()> {
        let pattern = self.key(&["*"]);
        let mut conn = self.conn();
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(10_000)
                .query_async(&mut conn)
                .await
                .map_err(|e| redis_error("listing the prefix's keys", e))?;
            if !keys.is_empty() {
                let _: i64 = redis::cmd("UNLINK")
                    .arg(&keys)
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| redis_error("removing the prefix's keys", e))?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }

    async fn server_ms(&self) -> Result<i64> {
        let (secs, micros): (i64, i64) = redis::cmd("TIME")
            .query_async(&mut self.conn())
            .await
            .map_err(|e| redis_error("reading the server's clock", e))?;
        Ok(secs * 1000 + micros / 1000)
    }

    /// The hashes of `ids` with the server's time, in one round trip.
    async fn jobs_with_time(&self, ids: &[String]) -> Result<(i64, Vec<HashMap<String, String>>)> {
        let mut pipe = redis::pipe();
        pipe.cmd("TIME");
        for id in ids {
            pipe.hgetall(self.key(&["job", id]));
        }
        let mut values: Vec<RedisValue> = pipe
            .query_async(&mut self.conn())
            .await
            .map_err(|e| redis_error("reading jobs", e))?;
        if values.is_empty() {
            return Err(bad_reply("reading jobs"));
        }
        let time: (i64, i64) = redis::from_redis_value(values.remove(0))
            .map_err(|e| parse_error("the server's clock", e))?;
        let hashes = values
            .into_iter()
            .map(|v| redis::from_redis_value(v).map_err(|e| parse_error("a job", e)))
            .collect::<Result<Vec<HashMap<String, String>>>>()?;
        Ok((time.0 * 1000 + time.1 / 1000, hashes))
    }

    async fn schedule_batch(&self, jobs: &[NewJob]) -> Result<Vec<Scheduled>> {
        let mut invocation = self.inner.scripts.schedule.key(self.key(&["seq"]));
        invocation.arg(&self.inner.tag).arg(jobs.len());
        for job in jobs {
            let (at, delay) = run_at_args(job.run_at);
            invocation
                .arg(&job.name)
                .arg(job.params.to_string())
                .arg(job.priority)
                .arg(at)
                .arg(delay)
                .arg(job.unique_identifier.as_deref().unwrap_or(""));
        }
        let reply: Vec<i64> = invocation
            .invoke_async(&mut self.conn())
            .await
            .map_err(|e| redis_error("scheduling jobs", e))?;
        if reply.len() != jobs.len() * 2 {
            return Err(bad_reply("scheduling jobs"));
        }
        Ok(reply
            .chunks(2)
            .map(|pair| {
                let id = JobId::new(pair[1].to_string());
                if pair[0] == 1 {
                    Scheduled::Created(id)
                } else {
                    Scheduled::Duplicate(id)
                }
            })
            .collect())
    }

    /// The completion script's 12 arguments for one job.
    fn finish_args(item: &Finish) -> Result<Vec<String>> {
        let mut args = vec![
            item.lease.job_id.as_str().to_owned(),
            item.lease.token.as_str().to_owned(),
        ];
        let (name, a1, a2, a3, a4): (&str, String, String, String, String) = match &item.completion
        {
            Completion::Remove => (
                "remove",
                String::new(),
                String::new(),
                String::new(),
                String::new(),
            ),
            Completion::Reschedule {
                run_at,
                priority,
                reset_tries,
            } => {
                let (at, delay) = run_at_args(*run_at);
                (
                    "reschedule",
                    at,
                    delay.to_string(),
                    priority.map(|p| p.to_string()).unwrap_or_default(),
                    if *reset_tries { "1" } else { "0" }.to_owned(),
                )
            }
            Completion::Fail { error, retain_for } => (
                "fail",
                error.clone(),
                millis(*retain_for).to_string(),
                String::new(),
                String::new(),
            ),
            Completion::Demote => (
                "demote",
                String::new(),
                String::new(),
                String::new(),
                String::new(),
            ),
            Completion::Release => (
                "release",
                String::new(),
                String::new(),
                String::new(),
                String::new(),
            ),
        };
        args.extend([name.to_owned(), a1, a2, a3, a4]);
        match &item.execution {
            Some(e) => {
                let json = serde_json::to_string(e).map_err(|err| {
                    Error::serialization("the execution record cannot be serialized", err)
                })?;
                args.extend([
                    e.execution_id.clone(),
                    e.name.clone(),
                    json,
                    e.started_at.timestamp_millis().to_string(),
                    e.expires_at.timestamp_millis().to_string(),
                ]);
            }
            None => args.extend(std::iter::repeat_n(String::new(), 5)),
        }
        Ok(args)
    }

    /// Ends many claimed jobs in one script call; per job, whether its token was current.
    async fn complete_batch(&self, items: &[Finish]) -> Result<Vec<bool>> {
        let mut invocation = self.inner.scripts.complete.key(self.key(&["seq"]));
        invocation.arg(&self.inner.tag).arg(items.len());
        for item in items {
            invocation.arg(Self::finish_args(item)?);
        }
        let applied: Vec<i64> = invocation
            .invoke_async(&mut self.conn())
            .await
            .map_err(|e| redis_error("saving job outcomes", e))?;
        if applied.len() != items.len() {
            return Err(bad_reply("saving job outcomes"));
        }
        Ok(applied.into_iter().map(|a| a == 1).collect())
    }

    async fn fenced(&self, finish: Finish) -> Result<()> {
        let applied = self.complete_batch(std::slice::from_ref(&finish)).await?;
        if applied.first() == Some(&true) {
            Ok(())
        } else {
            Err(Error::lock_lost(&finish.lease.job_id))
        }
    }

    async fn cancel_where(&self, mode: &str, a: &str, b: &str) -> Result<bool> {
        let outcome: i64 = self
            .inner
            .scripts
            .cancel
            .key(self.key(&["seq"]))
            .arg(&self.inner.tag)
            .arg(mode)
            .arg(a)
            .arg(b)
            .invoke_async(&mut self.conn())
            .await
            .map_err(|e| redis_error("cancelling a job", e))?;
        match outcome {
            1 => Ok(true),
            -1 => Err(Error::new(
                ErrorKind::Conflict,
                "the job is running and cannot be cancelled",
            )),
            _ => Ok(false),
        }
    }

    /// Starts the wake-up subscription once, from within a runtime (workers ask for wake-ups from
    /// one).
    fn start_subscriber(&self) -> bool {
        let Some(client) = &self.inner.client else {
            return false;
        };
        if tokio::runtime::Handle::try_current().is_err() {
            return false;
        }
        self.inner.subscriber.get_or_init(|| {
            tokio::spawn(crate::subscriber::subscribe(
                client.clone(),
                self.key(&["wake"]),
                self.inner.wake.clone(),
                self.inner.stop.clone(),
            ));
        });
        true
    }
}

#[async_trait]
impl JobStore for RedisStore {
    async fn now(&self) -> Result<DateTime<Utc>> {
        self.server_ms().await.map(from_millis)
    }

    fn max_params_bytes(&self) -> usize {
        self.inner.max_params_bytes
    }

    async fn schedule(&self, job: NewJob) -> Result<Scheduled> {
        job.validate(self.inner.max_params_bytes)?;
        let mut outcomes = self.schedule_batch(std::slice::from_ref(&job)).await?;
        outcomes.pop().ok_or_else(|| bad_reply("scheduling a job"))
    }

    async fn schedule_many(&self, jobs: Vec<NewJob>) -> Result<Vec<Result<Scheduled>>> {
        let mut outcomes: Vec<Option<Result<Scheduled>>> = Vec::with_capacity(jobs.len());
        let mut valid: Vec<(usize, NewJob)> = Vec::new();
        for (i, job) in jobs.into_iter().enumerate() {
            match job.validate(self.inner.max_params_bytes) {
                Ok(()) => {
                    outcomes.push(None);
                    valid.push((i, job));
                }
                Err(e) => outcomes.push(Some(Err(e))),
            }
        }
        for chunk in valid.chunks(SCHEDULE_BATCH) {
            let batch: Vec<NewJob> = chunk.iter().map(|(_, job)| job.clone()).collect();
            let scheduled = self.schedule_batch(&batch).await?;
            for ((i, _), outcome) in chunk.iter().zip(scheduled) {
                if let Some(slot) = outcomes.get_mut(*i) {
                    *slot = Some(Ok(outcome));
                }
            }
        }
        Ok(outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Err(bad_reply("scheduling jobs"))))
            .collect())
    }

    async fn register_recurrent(&self, job: RecurrentRegistration) -> Result<JobId> {
        dogs_core::validate_name(&job.name)?;
        let id: i64 = self
            .inner
            .scripts
            .register
            .key(self.key(&["seq"]))
            .arg(&self.inner.tag)
            .arg(&job.name)
            .arg(job.priority)
            .arg(&job.schedule_key)
            .arg(job.next_run_at.timestamp_millis())
            .invoke_async(&mut self.conn())
            .await
            .map_err(|e| redis_error("registering a recurrent job", e))?;
        Ok(JobId::new(id.to_string()))
    }

    async fn claim(&self, request: &ClaimRequest) -> Result<Vec<ClaimedJob>> {
        if request.limit == 0 || request.names.is_empty() {
            return Ok(Vec::new());
        }
        let token_base = uuid::Uuid::new_v4().simple().to_string();
        let mut invocation = self.inner.scripts.claim.key(self.key(&["seq"]));
        invocation
            .arg(&self.inner.tag)
            .arg(request.limit)
            .arg(&request.worker_id)
            .arg(&token_base);
        for name in &request.names {
            invocation.arg(&name.name).arg(millis(name.lock_time));
        }
        let reply: Vec<RedisValue> = invocation
            .invoke_async(&mut self.conn())
            .await
            .map_err(|e| redis_error("claiming jobs", e))?;
        let mut reply = reply.into_iter();
        let now: i64 = reply
            .next()
            .and_then(|v| redis::from_redis_value(v).ok())
            .ok_or_else(|| bad_reply("claiming jobs"))?;
        let commands: u64 = reply
            .next()
            .and_then(|v| redis::from_redis_value(v).ok())
            .ok_or_else(|| bad_reply("claiming jobs"))?;
        self.inner
            .last_claim_commands
            .store(commands, Ordering::Relaxed);
        let claimed_at = from_millis(now);
        let mut claimed = Vec::new();
        for value in reply {
            let text: String =
                redis::from_redis_value(value).map_err(|e| parse_error("a claimed job", e))?;
            let record: ClaimedRecord = serde_json::from_str(&text).map_err(|e| {
                Error::new(ErrorKind::Corrupt, "Redis: a claimed job cannot be read").with_source(e)
            })?;
            if let Some(id) = &record.unreadable {
                // The script failed it for good already; say so here.
                tracing::error!(
                    job.id = %id,
                    error = record.error.as_deref().unwrap_or_default(),
                    "a claimed job record cannot be read; it is failed for good"
                );
                continue;
            }
            let lease = Lease {
                job_id: JobId::new(record.id.clone()),
                token: LeaseToken::new(record.token.clone()),
            };
            match claimed_from_record(record, claimed_at) {
                Ok(job) => claimed.push(job),
                Err(e) => dogs_core::fail_unreadable(self, &lease, &e).await?,
            }
        }
        Ok(claimed)
    }

    async fn extend_lock(&self, lease: &Lease, lock_time: Duration) -> Result<DateTime<Utc>> {
        let until: i64 = self
            .inner
            .scripts
            .extend
            .key(self.key(&["seq"]))
            .arg(&self.inner.tag)
            .arg(lease.job_id.as_str())
            .arg(lease.token.as_str())
            .arg(millis(lock_time))
            .invoke_async(&mut self.conn())
            .await
            .map_err(|e| redis_error("extending a lease", e))?;
        if until < 0 {
            return Err(Error::lock_lost(&lease.job_id));
        }
        Ok(from_millis(until))
    }

    async fn complete(&self, lease: &Lease, completion: Completion) -> Result<()> {
        self.fenced(Finish {
            lease: lease.clone(),
            completion,
            execution: None,
        })
        .await
    }

    async fn finish(
        &self,
        lease: &Lease,
        completion: Completion,
        execution: Option<&Execution>,
    ) -> Result<()> {
        self.fenced(Finish {
            lease: lease.clone(),
            completion,
            execution: execution.cloned(),
        })
        .await
    }

    async fn finish_many(&self, items: Vec<Finish>) -> Result<Vec<Result<()>>> {
        let mut outcomes = Vec::with_capacity(items.len());
        for chunk in items.chunks(SCHEDULE_BATCH) {
            let applied = self.complete_batch(chunk).await?;
            for (item, applied) in chunk.iter().zip(applied) {
                outcomes.push(if applied {
                    Ok(())
                } else {
                    Err(Error::lock_lost(&item.lease.job_id))
                });
            }
        }
        Ok(outcomes)
    }

    async fn record_execution(&self, e: &Execution) -> Result<()> {
        let json = serde_json::to_string(e).map_err(|err| {
            Error::serialization("the execution record cannot be serialized", err)
        })?;
        let _: i64 = self
            .inner
            .scripts
            .record
            .key(self.key(&["seq"]))
            .arg(&self.inner.tag)
            .arg(&e.execution_id)
            .arg(&e.name)
            .arg(json)
            .arg(e.started_at.timestamp_millis())
            .arg(e.expires_at.timestamp_millis())
            .invoke_async(&mut self.conn())
            .await
            .map_err(|err| redis_error("recording an execution", err))?;
        Ok(())
    }

    async fn get_job(&self, id: &JobId) -> Result<Option<Job>> {
        if id.as_str().parse::<u64>().is_err() {
            return Ok(None);
        }
        let (now, mut hashes) = self.jobs_with_time(&[id.as_str().to_owned()]).await?;
        match hashes.pop() {
            Some(hash) if !hash.is_empty() => job_from_hash(id.as_str(), &hash, now),
            _ => Ok(None),
        }
    }

    async fn list_jobs(&self, query: &JobQuery) -> Result<Vec<Job>> {
        let index = match &query.name {
            Some(name) => self.key(&["byname", name]),
            None => self.key(&["jobs"]),
        };
        let ids: Vec<String> = redis::cmd("ZRANGE")
            .arg(index)
            .arg(0)
            .arg(-1)
            .query_async(&mut self.conn())
            .await
            .map_err(|e| redis_error("listing jobs", e))?;
        let (now, hashes) = self.jobs_with_time(&ids).await?;
        let jobs = readable(
            ids.iter()
                .zip(&hashes)
                .filter(|(_, hash)| !hash.is_empty())
                .map(|(id, hash)| job_from_hash(id, hash, now)),
        );
        Ok(query.page(jobs, |id| id.as_str().parse::<u64>().unwrap_or(u64::MAX)))
    }

    async fn count_jobs(&self) -> Result<Vec<JobCounts>> {
        let all = JobQuery {
            limit: usize::MAX,
            ..JobQuery::default()
        };
        Ok(JobCounts::tally(self.list_jobs(&all).await?))
    }

    async fn executions(&self, query: &ExecutionQuery) -> Result<Vec<Execution>> {
        let now = self.server_ms().await?;
        let ids: Vec<String> = redis::cmd("ZRANGE")
            .arg(self.key(&["execs", &query.name]))
            .arg("+inf")
            .arg("-inf")
            .arg("BYSCORE")
            .arg("REV")
            .query_async(&mut self.conn())
            .await
            .map_err(|e| redis_error("reading executions", e))?;
        let mut found = Vec::new();
        let mut skipped = 0;
        for chunk in ids.chunks(200) {
            let mut pipe = redis::pipe();
            for id in chunk {
                pipe.hget(self.key(&["exec", id]), "json");
            }
            let jsons: Vec<Option<String>> = pipe
                .query_async(&mut self.conn())
                .await
                .map_err(|e| redis_error("reading executions", e))?;
            let records = readable(jsons.into_iter().flatten().map(|json| {
                serde_json::from_str::<Execution>(&json)
                    .map(Some)
                    .map_err(|e| {
                        Error::new(
                            ErrorKind::Corrupt,
                            "Redis: an execution record cannot be read",
                        )
                        .with_source(e)
                    })
            }));
            for record in records {
                if record.expires_at.timestamp_millis() <= now
                    || query.job_id.as_ref().is_some_and(|id| *id != record.job_id)
                {
                    continue;
                }
                if skipped < query.offset {
                    skipped += 1;
                    continue;
                }
                found.push(record);
                if found.len() >= query.limit {
                    return Ok(found);
                }
            }
        }
        Ok(found)
    }

    async fn cancel(&self, id: &JobId) -> Result<bool> {
        if id.as_str().parse::<u64>().is_err() {
            return Ok(false);
        }
        self.cancel_where("id", id.as_str(), "").await
    }

    async fn cancel_unique(&self, name: &str, unique_identifier: &str) -> Result<bool> {
        self.cancel_where("unique", name, unique_identifier).await
    }

    async fn prune(&self) -> Result<PruneReport> {
        let mut report = PruneReport::default();
        loop {
            let (jobs, executions): (u64, u64) = self
                .inner
                .scripts
                .prune
                .key(self.key(&["seq"]))
                .arg(&self.inner.tag)
                .arg(PRUNE_BATCH)
                .invoke_async(&mut self.conn())
                .await
                .map_err(|e| redis_error("pruning", e))?;
            report.jobs += jobs;
            report.executions += executions;
            if jobs < PRUNE_BATCH && executions < PRUNE_BATCH {
                return Ok(report);
            }
        }
    }

    fn wakeups(&self) -> Option<WakeUps> {
        self.start_subscriber().then(|| self.inner.wake.subscribe())
    }
}
