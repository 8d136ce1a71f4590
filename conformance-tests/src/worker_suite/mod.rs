//! The workers (SPEC §4): one function per `W-…` id, run against every backend, grouped by topic.

use std::sync::Arc;

use dogs_core::prelude::*;
use dogs_core::{ExecutionQuery, JobId, JobStore, WorkerOptions};
use serde::{Deserialize, Serialize};

use crate::support::*;

mod blocked;
mod failures;
mod leases;
mod operate;
mod prefetch;
mod recurrent;
mod running;

pub use blocked::*;
pub use failures::*;
pub use leases::*;
pub use operate::*;
pub use prefetch::*;
pub use recurrent::*;
pub use running::*;

/// Starts a worker set, failing the case if it does not start.
pub(crate) async fn start(
    store: Arc<dyn JobStore>,
    jobs: Vec<dogs_core::JobDefinition>,
    options: WorkerOptions,
) -> Workers {
    start_workers(store, jobs, options)
        .await
        .unwrap_or_else(|e| panic!("start_workers failed: {e}"))
}

/// The execution records of `name`, newest first.
pub(crate) async fn executions(store: &dyn JobStore, name: &str) -> Vec<dogs_core::Execution> {
    store
        .executions(&ExecutionQuery::name(name).limit(1000))
        .await
        .unwrap()
}

/// Waits until `name` has `count` execution records and returns them oldest first.
pub(crate) async fn wait_executions(
    store: &dyn JobStore,
    name: &str,
    count: usize,
) -> Vec<dogs_core::Execution> {
    let mut records = wait_for(
        &format!("{count} executions of '{name}'"),
        DEADLINE,
        || async {
            let records = executions(store, name).await;
            (records.len() >= count).then_some(records)
        },
    )
    .await;
    records.reverse();
    records
}

pub(crate) async fn wait_gone(store: &dyn JobStore, id: &JobId) {
    wait_until(&format!("job {id} to be removed"), DEADLINE, || async {
        store.get_job(id).await.unwrap().is_none()
    })
    .await;
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Email {
    pub(crate) to: String,
    pub(crate) attempt: u32,
}
