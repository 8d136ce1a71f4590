//! Documents to and from dogs' types: a field that is missing or of the wrong type is a
//! `Corrupt` error, so a record written by hand or by another version is skipped or failed,
//! never a crash.

use std::time::Duration;

use chrono::{DateTime, Utc};
use dogs_core::{
    ClaimedJob, Error, ErrorKind, Execution, ExecutionMinute, ExecutionStatus, Job, JobCounts,
    JobId, JobKind, JobState, Lease, LeaseToken, Result,
};
use mongodb::bson::{self, doc, oid::ObjectId, Bson, Document};

use crate::error::corrupt;

pub(crate) fn date(at: DateTime<Utc>) -> bson::DateTime {
    bson::DateTime::from_millis(at.timestamp_millis())
}

pub(crate) fn from_date(at: bson::DateTime) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(at.timestamp_millis()).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

pub(crate) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

pub(crate) fn oid(id: &JobId) -> Option<ObjectId> {
    ObjectId::parse_str(id.as_str()).ok()
}

/// The field that makes (name, unique identifier) unique among live jobs.
pub(crate) fn unique_key(name: &str, unique: &str) -> String {
    format!("{}:{name}{unique}", name.len())
}

pub(crate) fn json_to_bson(value: &serde_json::Value) -> Result<Bson> {
    bson::to_bson(value).map_err(|e| {
        Error::new(ErrorKind::Serialization, "params cannot be stored as BSON").with_source(e)
    })
}

pub(crate) fn bson_to_json(value: Bson) -> serde_json::Value {
    value.into_relaxed_extjson()
}

pub(crate) fn get_str(doc: &Document, field: &str) -> Result<String> {
    doc.get_str(field)
        .map(str::to_owned)
        .map_err(|_| corrupt(&format!("a document has no text field '{field}'")))
}

pub(crate) fn opt_str(doc: &Document, field: &str) -> Option<String> {
    doc.get_str(field).ok().map(str::to_owned)
}

pub(crate) fn get_date(doc: &Document, field: &str) -> Result<DateTime<Utc>> {
    doc.get_datetime(field)
        .map(|d| from_date(*d))
        .map_err(|_| corrupt(&format!("a document has no date field '{field}'")))
}

pub(crate) fn opt_date(doc: &Document, field: &str) -> Option<DateTime<Utc>> {
    doc.get_datetime(field).ok().map(|d| from_date(*d))
}

pub(crate) fn get_int(doc: &Document, field: &str) -> Result<i64> {
    match doc.get(field) {
        Some(Bson::Int32(n)) => Ok(i64::from(*n)),
        Some(Bson::Int64(n)) => Ok(*n),
        Some(Bson::Double(n)) if n.fract() == 0.0 => Ok(*n as i64),
        _ => Err(corrupt(&format!(
            "a document has no number field '{field}'"
        ))),
    }
}

pub(crate) fn job_id(doc: &Document) -> Result<JobId> {
    doc.get_object_id("_id")
        .map(|id| JobId::new(id.to_hex()))
        .map_err(|_| corrupt("a job has no ObjectId"))
}

/// A job document as a [`Job`] with its state by the server's clock `now`; `None` for a failed
/// job past its retention.
pub(crate) fn job_from_doc(doc: Document, now: DateTime<Utc>) -> Result<Option<Job>> {
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
        progress: doc.get("progress").cloned().map(bson_to_json),
        paused: false,
        trace_context: opt_str(&doc, "trace_context"),
    }))
}

pub(crate) fn execution_to_doc(e: &Execution) -> Result<Document> {
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

pub(crate) fn execution_from_doc(doc: Document) -> Result<Execution> {
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

pub(crate) use dogs_core::readable;

pub(crate) fn claimed_from_doc(doc: Document, claimed_at: DateTime<Utc>) -> Result<ClaimedJob> {
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

/// A whole number of a `$group` result.
fn group_number(doc: &Document, field: &str) -> Result<i64> {
    match doc.get(field) {
        Some(Bson::Int64(n)) => Ok(*n),
        Some(Bson::Int32(n)) => Ok(i64::from(*n)),
        Some(Bson::Double(n)) if n.is_finite() => Ok(*n as i64),
        _ => Err(corrupt("a summed figure is not a number")),
    }
}

/// A count of a `$group` result (a negative one reads as 0).
fn group_count(doc: &Document, field: &str) -> Result<u64> {
    Ok(u64::try_from(group_number(doc, field)?).unwrap_or(0))
}

/// One `$group` result of the counts: `_id` (the name), `pending`, `scheduled`, `running`,
/// `failed`.
pub(crate) fn counts_from_doc(doc: &Document) -> Result<JobCounts> {
    Ok(JobCounts {
        name: doc
            .get_str("_id")
            .map_err(|_| corrupt("a job count has no name"))?
            .to_owned(),
        pending: group_count(doc, "pending")?,
        scheduled: group_count(doc, "scheduled")?,
        running: group_count(doc, "running")?,
        failed: group_count(doc, "failed")?,
        paused: false,
    })
}

/// One `$group` result of the execution figures: `_id.minute` (ms), `_id.status`, `n`,
/// `total_ms`, `max_ms`.
pub(crate) fn minute_from_doc(doc: &Document) -> Result<ExecutionMinute> {
    let key = doc
        .get_document("_id")
        .map_err(|_| corrupt("an execution figure has no key"))?;
    let status = key
        .get_str("status")
        .map_err(|_| corrupt("an execution figure has no status"))?;
    Ok(ExecutionMinute {
        minute: DateTime::<Utc>::from_timestamp_millis(group_number(key, "minute")?)
            .ok_or_else(|| corrupt("an execution figure's minute is out of range"))?,
        status: ExecutionStatus::parse_stored(status)?,
        count: group_count(doc, "n")?,
        total_ms: group_count(doc, "total_ms")?,
        max_ms: group_count(doc, "max_ms")?,
    })
}
