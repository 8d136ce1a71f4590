//! Reading what the scripts return and what the job hashes hold into dogs' types: a field that
//! is missing or of the wrong type is a `Corrupt` error, so a record written by hand or by
//! another version is skipped or failed, never a crash.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use dogs_core::{
    ClaimedJob, Error, ErrorKind, Job, JobId, JobKind, JobState, Lease, LeaseToken, Result, RunAt,
};
use serde::Deserialize;
use serde_json::Value;

pub(crate) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

pub(crate) fn from_millis(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// `(run_at, delay)` arguments: an instant in ms, or '' and a delay after the server's now.
pub(crate) fn run_at_args(run_at: RunAt) -> (String, i64) {
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
pub(crate) struct ClaimedRecord {
    pub(crate) unreadable: Option<String>,
    pub(crate) error: Option<String>,
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) kind: String,
    pub(crate) params: String,
    pub(crate) priority: String,
    pub(crate) run_at: String,
    pub(crate) uid: Option<String>,
    pub(crate) tries: String,
    pub(crate) token: String,
    pub(crate) locked_until: String,
    pub(crate) locked_by: String,
    pub(crate) schedule_key: Option<String>,
    pub(crate) created_at: Option<String>,
    pub(crate) was_stale: bool,
    pub(crate) trace: Option<String>,
}

/// A claimed job as the claim script reported it.
pub(crate) fn claimed_from_record(
    record: ClaimedRecord,
    claimed_at: DateTime<Utc>,
) -> Result<ClaimedJob> {
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
        progress: None,
        paused: false,
        trace_context: record.trace,
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

pub(crate) fn number<T: std::str::FromStr>(text: &str, what: &str) -> Result<T> {
    // Lua may render whole numbers with a trailing ".0".
    let text = text.strip_suffix(".0").unwrap_or(text);
    text.parse().map_err(|_| {
        Error::new(
            ErrorKind::Corrupt,
            format!("Redis: {what} '{text}' is not a number"),
        )
    })
}

pub(crate) fn params(text: &str) -> Result<Value> {
    serde_json::from_str(text).map_err(|e| {
        Error::new(ErrorKind::Corrupt, "Redis: stored params are not JSON").with_source(e)
    })
}

pub(crate) fn kind(text: &str) -> Result<JobKind> {
    JobKind::parse(text).ok_or_else(|| {
        Error::new(
            ErrorKind::Corrupt,
            format!("Redis: unknown job kind '{text}'"),
        )
    })
}

/// A stored job hash as a [`Job`], with its state by the server's clock `now` (ms); `None` for
/// a failed job past its retention.
pub(crate) fn job_from_hash(
    id: &str,
    hash: &HashMap<String, String>,
    now: i64,
) -> Result<Option<Job>> {
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
        // A progress value that is not JSON (written by hand) reads as none.
        progress: hash
            .get("progress")
            .and_then(|p| serde_json::from_str(p).ok()),
        paused: false,
        trace_context: hash.get("trace").cloned(),
    }))
}

pub(crate) use dogs_core::readable;
