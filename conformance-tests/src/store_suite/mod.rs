//! The store contract (SPEC §3): one function per `S-…` id, run against every backend, in files
//! named after the store operations they exercise.

use std::time::Duration;

use chrono::Utc;
use dogs_core::{truncate_millis, Execution, ExecutionStatus, JobId, JobKind};
use serde_json::json;

mod claim;
mod finish;
mod operate;
mod read;
mod schedule;

pub use claim::*;
pub use finish::*;
pub use operate::*;
pub use read::*;
pub use schedule::*;

/// A lease that outlives every case.
pub(crate) const LEASE: Duration = Duration::from_secs(30);
/// A lease that runs out within a case.
pub(crate) const SHORT_LEASE: Duration = Duration::from_millis(300);

pub(crate) fn execution(
    job_id: &JobId,
    name: &str,
    execution_id: &str,
    status: ExecutionStatus,
    started_at: chrono::DateTime<Utc>,
) -> Execution {
    let started_at = truncate_millis(started_at);
    Execution {
        job_id: job_id.clone(),
        execution_id: execution_id.into(),
        name: name.into(),
        kind: JobKind::Event,
        priority: 4,
        tries: 2,
        unique_identifier: Some("uid".into()),
        params: json!({"a": [1, 2, 3]}),
        started_at,
        ended_at: started_at + chrono::Duration::milliseconds(1500),
        duration: Duration::from_millis(1500),
        status,
        error: (status != ExecutionStatus::Success)
            .then(|| format!("{} happened", status.as_str())),
        result: (status == ExecutionStatus::Success).then(|| json!({"sent": true})),
        worker_id: "worker-1".into(),
        expires_at: started_at + chrono::Duration::days(7),
    }
}
