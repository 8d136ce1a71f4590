//! Pruning: removing failed jobs and execution records past their retention.
//!
//! The worker set prunes every `prune_interval`. Each store removes in bounded batches and rests
//! between them ([`rest_between_prune_batches`]), so a large backlog of expired records, such as
//! a day of them after pruning was off, is removed without taking the store from the workers.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{debug, warn};

use crate::error::Result;
use crate::job::PruneReport;
use crate::worker::Shared;

/// How many failed jobs and how many execution records one pruning batch removes, at most, in
/// every store.
pub const PRUNE_BATCH: u64 = 1000;

/// How many times as long as a batch took a store rests before the next one: while a backlog
/// lasts, pruning keeps the connection it uses busy about half of the time (less for batches
/// that take over [`MAX_PRUNE_REST`]). Deleting a record costs the store less than writing it,
/// so half of one connection keeps up with records written as fast as the workers can.
pub const PRUNE_REST_FACTOR: u32 = 1;

/// The longest rest between two batches.
pub const MAX_PRUNE_REST: Duration = Duration::from_secs(1);

/// Waits between two pruning batches, the one before having taken `took`:
/// [`PRUNE_REST_FACTOR`] times as long, at most [`MAX_PRUNE_REST`].
pub async fn rest_between_prune_batches(took: Duration) {
    let rest = took
        .checked_mul(PRUNE_REST_FACTOR)
        .unwrap_or(MAX_PRUNE_REST)
        .min(MAX_PRUNE_REST);
    tokio::time::sleep(rest).await;
}

/// What one pruning batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneBatch {
    /// What the batch removed.
    pub removed: PruneReport,
    /// Whether it found a full batch ([`PRUNE_BATCH`]) of expired failed jobs or of expired
    /// records to remove, so more may be left.
    pub full: bool,
}

impl PruneBatch {
    /// A batch that removed `removed`, full where either count reached [`PRUNE_BATCH`]: for
    /// stores that remove in one step what they find.
    pub fn counted(removed: PruneReport) -> Self {
        PruneBatch {
            removed,
            full: removed.jobs >= PRUNE_BATCH || removed.executions >= PRUNE_BATCH,
        }
    }
}

/// Runs `batch` (which removes up to [`PRUNE_BATCH`] expired failed jobs and as many expired
/// execution records, expired as of one instant the caller fixed, so the loop ends) until a
/// batch is not full, resting between batches ([`rest_between_prune_batches`]). Returns what
/// all the batches removed; an error ends the loop with what it says.
pub async fn prune_in_batches<F, Fut>(mut batch: F) -> Result<PruneReport>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<PruneBatch>>,
{
    let mut report = PruneReport::default();
    loop {
        let started = Instant::now();
        let done = batch().await?;
        report.jobs += done.removed.jobs;
        report.executions += done.removed.executions;
        if !done.full {
            return Ok(report);
        }
        rest_between_prune_batches(started.elapsed()).await;
    }
}

/// Removes expired failed jobs and execution records every `interval`, until the set stops.
pub(crate) async fn prune(shared: Arc<Shared>, interval: Duration) {
    loop {
        tokio::select! {
            _ = shared.stop_claiming.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        let pruned = tokio::select! {
            _ = shared.stop_claiming.cancelled() => return,
            pruned = shared.store.prune() => pruned,
        };
        match pruned {
            Ok(report) if report.jobs + report.executions > 0 => {
                debug!(
                    jobs = report.jobs,
                    executions = report.executions,
                    "pruned expired records"
                );
            }
            Ok(_) => {}
            Err(e) => warn!(error = %e, "pruning expired records failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn rests_as_long_as_the_batch_at_most_a_second() {
        for (took, rest) in [
            (Duration::ZERO, Duration::ZERO),
            (Duration::from_millis(10), Duration::from_millis(10)),
            (Duration::from_millis(400), Duration::from_millis(400)),
            (Duration::from_millis(1500), MAX_PRUNE_REST),
            (Duration::MAX, MAX_PRUNE_REST),
        ] {
            let started = tokio::time::Instant::now();
            rest_between_prune_batches(took).await;
            assert_eq!(started.elapsed(), rest, "after a batch of {took:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn batches_run_until_one_is_short_and_their_counts_add_up() {
        let mut left = (2500u64, 1200u64);
        let mut calls = 0;
        let report = prune_in_batches(|| {
            calls += 1;
            let jobs = left.0.min(PRUNE_BATCH);
            let executions = left.1.min(PRUNE_BATCH);
            left = (left.0 - jobs, left.1 - executions);
            async move { Ok(PruneBatch::counted(PruneReport { jobs, executions })) }
        })
        .await
        .map_err(|e| e.to_string());
        assert_eq!(
            report,
            Ok(PruneReport {
                jobs: 2500,
                executions: 1200
            })
        );
        assert_eq!(calls, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_batch_goes_on_whatever_it_removed() {
        let mut calls = 0;
        let report = prune_in_batches(|| {
            calls += 1;
            let full = calls < 3;
            async move {
                Ok(PruneBatch {
                    removed: PruneReport {
                        jobs: 0,
                        executions: 10,
                    },
                    full,
                })
            }
        })
        .await
        .map_err(|e| e.to_string());
        assert_eq!(
            report,
            Ok(PruneReport {
                jobs: 0,
                executions: 30
            })
        );
        assert_eq!(calls, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn an_error_ends_the_batches() {
        let mut calls = 0;
        let report = prune_in_batches(|| {
            calls += 1;
            let first = calls == 1;
            async move {
                if first {
                    Ok(PruneBatch::counted(PruneReport {
                        jobs: PRUNE_BATCH,
                        executions: 0,
                    }))
                } else {
                    Err(crate::Error::unavailable("gone"))
                }
            }
        })
        .await;
        assert_eq!(
            report.map_err(|e| e.kind()),
            Err(crate::ErrorKind::Unavailable)
        );
        assert_eq!(calls, 2);
    }
}
