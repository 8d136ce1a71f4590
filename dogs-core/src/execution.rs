//! Execution records: one per run of a job, kept for the job's `save_executions_for`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::job::{JobId, JobKind};

/// How an execution ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionStatus {
    /// The handler returned a result.
    Success,
    /// The handler returned an error (or panicked); the job will run again.
    Error,
    /// The execution outlived its lease (it was stopped, or returned too late for its outcome
    /// to count); the job will run again.
    Stale,
    /// The execution failed and the job was failed for good.
    Failed,
    /// The execution was stopped because the workers shut down, or its job was cancelled while
    /// it ran.
    Cancelled,
    /// The handler asked to run again later ([`Snooze`](crate::Snooze)); no failure was counted.
    Snoozed,
}

impl ExecutionStatus {
    /// The status as stored: `success`, `error`, `stale`, `failed`, `cancelled` or `snoozed`.
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionStatus::Success => "success",
            ExecutionStatus::Error => "error",
            ExecutionStatus::Stale => "stale",
            ExecutionStatus::Failed => "failed",
            ExecutionStatus::Cancelled => "cancelled",
            ExecutionStatus::Snoozed => "snoozed",
        }
    }

    /// Parses [`ExecutionStatus::as_str`]'s text.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "success" => ExecutionStatus::Success,
            "error" => ExecutionStatus::Error,
            "stale" => ExecutionStatus::Stale,
            "failed" => ExecutionStatus::Failed,
            "cancelled" => ExecutionStatus::Cancelled,
            "snoozed" => ExecutionStatus::Snoozed,
            _ => return None,
        })
    }

    /// Parses a stored status: an unknown one is a `Corrupt` error naming it.
    pub fn parse_stored(text: &str) -> crate::Result<Self> {
        Self::parse(text).ok_or_else(|| {
            crate::Error::new(
                crate::ErrorKind::Corrupt,
                format!("unknown execution status '{text}'"),
            )
        })
    }
}

/// The record of one execution of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Execution {
    /// The job that ran.
    pub job_id: JobId,
    /// This execution's id; recording the same id twice keeps one record.
    pub execution_id: String,
    /// The job name.
    pub name: String,
    /// Event or recurrent.
    pub kind: JobKind,
    /// The job's priority when it ran.
    pub priority: i32,
    /// Which try this was (1 for the first).
    pub tries: u32,
    /// The job's unique identifier.
    pub unique_identifier: Option<String>,
    /// The params it ran with.
    pub params: Value,
    /// When the handler started.
    pub started_at: DateTime<Utc>,
    /// When the execution ended.
    pub ended_at: DateTime<Utc>,
    /// How long it ran.
    #[serde(with = "millis")]
    pub duration: Duration,
    /// How it ended.
    pub status: ExecutionStatus,
    /// The error message, for `error`, `stale`, `failed` and `cancelled`.
    pub error: Option<String>,
    /// The handler's result, for `success`.
    pub result: Option<Value>,
    /// The worker that ran it.
    pub worker_id: String,
    /// When the record is removed.
    pub expires_at: DateTime<Utc>,
}

/// Which executions [`JobStore::executions`](crate::JobStore::executions) returns: those of one
/// job name, newest first, **one page** of at most `limit` records
/// ([`DEFAULT_PAGE_SIZE`](crate::DEFAULT_PAGE_SIZE), 100, unless `.limit(n)` says otherwise).
///
/// A page shorter than its limit is the last; [`ExecutionQuery::next_page`] gives the query of
/// the page after it, as for [`JobQuery`](crate::JobQuery).
///
/// ```
/// use dogs_core::prelude::*;
///
/// let latest_ten = ExecutionQuery::name("send-invoice").limit(10);
/// let the_ten_before = latest_ten.clone().next_page();
/// assert_eq!(the_ten_before.offset, 10);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionQuery {
    /// The job name.
    pub name: String,
    /// Only executions of this job.
    pub job_id: Option<JobId>,
    /// At most this many (0: none).
    pub limit: usize,
    /// Skipping this many newest first.
    pub offset: usize,
}

impl ExecutionQuery {
    /// The first page (the newest 100: set `.limit(n)`) of executions of `name`.
    pub fn name(name: impl Into<String>) -> Self {
        ExecutionQuery {
            name: name.into(),
            job_id: None,
            limit: crate::job::DEFAULT_PAGE_SIZE,
            offset: 0,
        }
    }

    /// Narrows to one job.
    pub fn job_id(mut self, job_id: JobId) -> Self {
        self.job_id = Some(job_id);
        self
    }

    /// Sets the page size: the read returns at most `limit` records (default 100).
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    /// Sets how many to skip.
    pub fn offset(mut self, offset: usize) -> Self {
        self.offset = offset;
        self
    }

    /// The query of the page after this one: the same filters and limit, `limit` more skipped.
    pub fn next_page(mut self) -> Self {
        self.offset = self.offset.saturating_add(self.limit);
        self
    }
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}
