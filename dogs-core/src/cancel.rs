//! Cancellation by an operator: when the store says a running job was cancelled
//! ([`Notice::Cancelled`](crate::Notice)), the worker set looks up the jobs it runs and fires the
//! signal of each one that is cancelled in the store. Without notices, an execution learns it
//! at its next lease renewal, which the store refuses.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::job::JobId;
use crate::worker::Shared;

/// Watches the store's cancellation notices until the set's executions have ended (through
/// the shutdown grace too), or the set is dropped.
pub(crate) async fn watch(shared: Arc<Shared>) {
    let Some(mut wakeups) = shared.store.wakeups() else {
        return;
    };
    loop {
        tokio::select! {
            _ = shared.executions.wait() => return,
            _ = shared.give_up_saving.cancelled() => return,
            _ = wakeups.wait_cancelled() => {}
        }
        let running: Vec<(JobId, CancellationToken)> = shared
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        for (id, token) in running {
            if is_cancelled(&shared, &id).await {
                token.cancel();
            }
        }
    }
}

/// Whether the job was cancelled in the store while it ran: it is failed with
/// [`CANCELLED_ERROR`](crate::CANCELLED_ERROR).
pub(crate) async fn is_cancelled(shared: &Shared, id: &JobId) -> bool {
    match shared.store.get_job(id).await {
        Ok(Some(job)) => {
            job.state == crate::JobState::Failed
                && job.last_error.as_deref() == Some(crate::CANCELLED_ERROR)
        }
        _ => false,
    }
}
