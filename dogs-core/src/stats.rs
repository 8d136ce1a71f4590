//! Execution figures per minute, for charts: what [`JobStore::execution_stats`] returns.
//!
//! [`JobStore::execution_stats`]: crate::JobStore::execution_stats

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::execution::{Execution, ExecutionStatus};

/// The longest window [`JobStore::execution_stats`](crate::JobStore::execution_stats) reads:
/// a `since` further back is read as now minus this.
pub const STATS_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// How many executions of one status ended in one minute, and how long they ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutionMinute {
    /// The start of the minute (UTC, whole minute) in which the executions ended.
    pub minute: DateTime<Utc>,
    /// Their status.
    pub status: ExecutionStatus,
    /// How many ended.
    pub count: u64,
    /// Their run times added up, in milliseconds.
    pub total_ms: u64,
    /// The longest of their run times, in milliseconds.
    pub max_ms: u64,
}

impl ExecutionMinute {
    /// The mean run time, in milliseconds.
    pub fn mean_ms(&self) -> u64 {
        self.total_ms.checked_div(self.count).unwrap_or(0)
    }
}

/// The start of the minute `at` falls in.
pub fn minute_of(at: DateTime<Utc>) -> DateTime<Utc> {
    at.duration_trunc(TimeDelta::minutes(1)).unwrap_or(at)
}

/// The oldest `since` a store reads, for a call at `now`: `since` itself, or now minus
/// [`STATS_WINDOW`] when it is further back, from the start of its minute.
pub fn stats_since(since: DateTime<Utc>, now: DateTime<Utc>) -> DateTime<Utc> {
    let oldest = now - TimeDelta::from_std(STATS_WINDOW).unwrap_or(TimeDelta::days(1));
    minute_of(since.max(oldest))
}

/// Sums `executions` that ended at or after `since` into one entry per minute and status, in
/// order of minute then status. For stores that read the records themselves.
pub fn tally_minutes<'a>(
    executions: impl IntoIterator<Item = &'a Execution>,
    since: DateTime<Utc>,
) -> Vec<ExecutionMinute> {
    let mut minutes: BTreeMap<(DateTime<Utc>, &'static str), ExecutionMinute> = BTreeMap::new();
    for execution in executions {
        if execution.ended_at < since {
            continue;
        }
        let minute = minute_of(execution.ended_at);
        let ms = u64::try_from(execution.duration.as_millis()).unwrap_or(u64::MAX);
        let entry = minutes
            .entry((minute, execution.status.as_str()))
            .or_insert(ExecutionMinute {
                minute,
                status: execution.status,
                count: 0,
                total_ms: 0,
                max_ms: 0,
            });
        entry.count += 1;
        entry.total_ms = entry.total_ms.saturating_add(ms);
        entry.max_ms = entry.max_ms.max(ms);
    }
    minutes.into_values().collect()
}
