//! [`RedisStore`]: the store itself, how it reaches the server, and the [`JobStore`]
//! implementation, whose operations are in the files named after them (`schedule`, `claim`,
//! `finish`, `read`, `remove`), each one Lua script (`lua/`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use dogs_core::{
    async_trait, ClaimRequest, Claimed, Completion, Execution, ExecutionMinute, ExecutionQuery,
    Finish, Job, JobCounts, JobId, JobQuery, JobStore, Lease, NameSettings, NewJob, PruneReport,
    RecurrentRegistration, Result, RetryBatch, Scheduled, WakeUpSender, WakeUps,
};
use redis::Value as RedisValue;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::config::RedisStoreBuilder;
use crate::connection::Connection;
use crate::decode::from_millis;
use crate::error::{bad_reply, parse_error, redis_error};
use crate::scripts::{ReplicaWait, Scripts};
use crate::wakeups::Subscriber;

/// A job store on Redis. Cheap to clone: clones share the connection.
///
/// Every operation that reads and writes several keys is one Lua script, so no interleaving of
/// clients can break the contract; scripts read the server's `TIME`. All keys of one prefix share
/// a hash tag, so on a Redis Cluster every command of the store goes to the master of one slot.
#[derive(Clone)]
pub struct RedisStore {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    conn: Connection,
    subscriber_source: Option<Subscriber>,
    /// How many replicas must confirm each write, if any.
    pub(crate) wait: Option<ReplicaWait>,
    /// The prefix with its hash tag: `{dogs}`.
    pub(crate) tag: String,
    pub(crate) max_params_bytes: usize,
    pub(crate) scripts: Scripts,
    wake: WakeUpSender,
    subscriber: OnceLock<()>,
    stop: CancellationToken,
    _stop_on_drop: DropGuard,
    pub(crate) last_claim_commands: AtomicU64,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.inner.tag)
            .field("max_params_bytes", &self.inner.max_params_bytes)
            .finish_non_exhaustive()
    }
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
        conn: Connection,
        subscriber_source: Option<Subscriber>,
        prefix: &str,
        max_params_bytes: usize,
        wait: Option<ReplicaWait>,
    ) -> Self {
        let stop = CancellationToken::new();
        let cluster = matches!(conn, Connection::Cluster(_));
        RedisStore {
            inner: Arc::new(Inner {
                conn,
                subscriber_source,
                wait,
                tag: format!("{{{prefix}}}"),
                max_params_bytes,
                scripts: Scripts::new(cluster),
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

    pub(crate) fn key(&self, parts: &[&str]) -> String {
        let mut key = self.inner.tag.clone();
        for part in parts {
            key.push(':');
            key.push_str(part);
        }
        key
    }

    pub(crate) fn conn(&self) -> Connection {
        self.inner.conn.clone()
    }

    /// Whether the store is on a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.inner.conn, Connection::Cluster(_))
    }

    /// Removes every key of this store's prefix: its jobs, execution records and indexes. Keys
    /// are found with `SCAN` and removed with `UNLINK` in steps, so a prefix of millions of keys
    /// never blocks the server. Other prefixes are untouched.
    pub(crate) async fn remove_prefix(&self) -> Result<()> {
        let own = self.key(&[""]);
        let pattern = format!("{}*", glob_literal(&own));
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
            // The pattern matches this prefix's keys only; checked again all the same.
            let keys: Vec<String> = keys.into_iter().filter(|k| k.starts_with(&own)).collect();
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

    pub(crate) async fn server_ms(&self) -> Result<i64> {
        let (secs, micros): (i64, i64) = redis::cmd("TIME")
            .query_async(&mut self.conn())
            .await
            .map_err(|e| redis_error("reading the server's clock", e))?;
        Ok(secs * 1000 + micros / 1000)
    }

    /// The hashes of `ids` with the server's time, in one round trip.
    pub(crate) async fn jobs_with_time(
        &self,
        ids: &[String],
    ) -> Result<(i64, Vec<HashMap<String, String>>)> {
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

    /// Starts the wake-up subscription once, from within a runtime (workers ask for wake-ups from
    /// one).
    fn start_subscriber(&self) -> bool {
        let Some(source) = &self.inner.subscriber_source else {
            return false;
        };
        if tokio::runtime::Handle::try_current().is_err() {
            return false;
        }
        self.inner.subscriber.get_or_init(|| {
            tokio::spawn(crate::wakeups::subscribe(
                source.clone(),
                self.key(&["wake"]),
                self.inner.wake.clone(),
                self.inner.stop.clone(),
            ));
        });
        true
    }

    /// Moves the keys of an older layout (written by an earlier version) to the current one, in
    /// bounded steps of at most 1,000 jobs each, so no step holds the server long; idempotent.
    /// `connect` runs it; it returns how many steps moved something (0 when the layout was
    /// current).
    pub async fn migrate(&self) -> Result<u64> {
        let mut steps = 0;
        loop {
            let moved: i64 = self
                .inner
                .scripts
                .migrate
                .key(self.key(&["seq"]))
                .arg(&self.inner.tag)
                .run(self, "moving keys to the current layout")
                .await?;
            if moved == 0 {
                return Ok(steps);
            }
            steps += 1;
        }
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
        dogs_core::validate_name(name)?;
        self.change_settings(name, if paused { "pause" } else { "resume" }, "")
            .await
    }

    async fn set_concurrency_limit(&self, name: &str, limit: Option<u32>) -> Result<()> {
        dogs_core::validate_concurrency_limit(name, limit)?;
        let limit = limit.map(|l| l.to_string()).unwrap_or_default();
        self.change_settings(name, "limit", &limit).await
    }

    async fn name_settings(&self) -> Result<Vec<NameSettings>> {
        self.read_settings().await
    }

    async fn set_progress(&self, lease: &Lease, progress: &serde_json::Value) -> Result<()> {
        self.store_progress(lease, progress).await
    }

    async fn executions(&self, query: &ExecutionQuery) -> Result<Vec<Execution>> {
        self.read_executions(query).await
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

    async fn remove_all(&self) -> Result<()> {
        self.remove_prefix().await
    }

    async fn prune(&self) -> Result<PruneReport> {
        self.prune_expired().await
    }

    fn wakeups(&self) -> Option<WakeUps> {
        self.start_subscriber().then(|| self.inner.wake.subscribe())
    }
}

/// `text` as a `SCAN MATCH` pattern that matches it literally: the glob characters `*`, `?`,
/// `[`, `]` and `\` escaped.
fn glob_literal(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern
}
