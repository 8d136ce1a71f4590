//! Pruning: removing failed jobs and execution records past their retention.
//!
//! The worker set prunes every `prune_interval`. Each store removes in bounded batches and rests
//! between them ([`rest_between_prune_batches`]), so a large backlog of expired records, such as
//! a day of them after pruning was off, is removed without taking the store from the workers.

use std::sync::Arc;
use std::time::Duration;

use tracing::{debug, warn};

use crate::worker::Shared;

/// How many times as long as a batch took a store rests before the next one: pruning keeps the
/// connection it uses busy at most a quarter of the time.
pub const PRUNE_REST_FACTOR: u32 = 3;

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
    async fn rests_three_times_the_batch_at_most_a_second() {
        for (took, rest) in [
            (Duration::ZERO, Duration::ZERO),
            (Duration::from_millis(10), Duration::from_millis(30)),
            (Duration::from_millis(400), MAX_PRUNE_REST),
            (Duration::MAX, MAX_PRUNE_REST),
        ] {
            let started = tokio::time::Instant::now();
            rest_between_prune_batches(took).await;
            assert_eq!(started.elapsed(), rest, "after a batch of {took:?}");
        }
    }
}
