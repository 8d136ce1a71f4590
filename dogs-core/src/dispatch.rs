//! The claim loop: claims jobs for free slots and starts their executions, and when it finds
//! nothing to claim, waits for the earliest of the next due job, a wake-up from the store, or
//! the poll interval.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use tracing::warn;

use crate::claim::{ClaimRequest, Claimed, Completion};
use crate::worker::{later, Shared};

/// When a claim was asked for and when it was answered, by the local monotonic clock.
#[derive(Clone, Copy)]
pub(crate) struct ClaimTiming {
    pub(crate) asked_at: Instant,
    pub(crate) answered_at: Instant,
}

/// Claims jobs for free slots and starts their executions, until the worker set stops.
pub(crate) async fn dispatch(shared: Arc<Shared>) {
    let mut wakeups = shared.store.wakeups();
    let mut store_errors = 0u32;
    let mut lost_races = 0u32;
    loop {
        let Some(permits) = free_slots(&shared).await else {
            return;
        };
        if let Some(wakeups) = &mut wakeups {
            wakeups.mark_seen();
        }
        let request = ClaimRequest {
            limit: permits.len(),
            ..shared.claim.clone()
        };
        let asked_at = Instant::now();
        let claimed = match shared.store.claim(&request).await {
            Ok(claimed) => {
                store_errors = 0;
                claimed
            }
            Err(e) => {
                store_errors = store_errors.saturating_add(1);
                let pause = store_error_pause(store_errors, shared.options.poll_interval);
                warn!(error = %e, retry_in = ?pause, "claiming jobs failed");
                drop(permits);
                tokio::select! {
                    _ = shared.stop_claiming.cancelled() => return,
                    _ = tokio::time::sleep(pause) => continue,
                }
            }
        };
        let timing = ClaimTiming {
            asked_at,
            answered_at: Instant::now(),
        };
        if shared.stop_claiming.is_cancelled() {
            // Claimed while the set was asked to stop: given back at once, unrun.
            release(&shared, claimed.jobs).await;
            return;
        }
        let asked = permits.len();
        let wait = next_look(&shared, &claimed, timing);
        let mut jobs = claimed.jobs;
        if jobs.len() > asked {
            // More than asked (a store that ignores the limit): the extra ones are given back.
            let extra = jobs.split_off(asked);
            release(&shared, extra).await;
        }
        let got = jobs.len();
        for (job, permit) in jobs.into_iter().zip(permits) {
            let shared_for_task = Arc::clone(&shared);
            shared.executions.spawn(crate::execute::execute(
                shared_for_task,
                job,
                timing,
                permit,
            ));
        }
        if got == asked {
            lost_races = 0;
            continue;
        }
        let until = match wait {
            // More are due, won by other claimers: look again at once, or after a short pause
            // (1 ms doubling up to 500 ms) when this claim won none, so racing claimers do not
            // spin.
            Look::Now if got > 0 => {
                lost_races = 0;
                continue;
            }
            Look::Now => {
                lost_races = lost_races.saturating_add(1);
                let pause = Duration::from_millis(1)
                    .saturating_mul(2u32.saturating_pow(lost_races.min(8) - 1))
                    .min(Duration::from_millis(500))
                    .min(shared.options.poll_interval);
                later(Instant::now(), pause)
            }
            Look::At(at) => {
                lost_races = 0;
                at
            }
        };
        let wait_for_wakeup = async {
            match &mut wakeups {
                Some(wakeups) => wakeups.wait().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shared.stop_claiming.cancelled() => return,
            _ = tokio::time::sleep_until(until) => {}
            _ = wait_for_wakeup => {}
        }
    }
}

/// When to claim again after a claim that filled fewer slots than it had.
enum Look {
    /// More jobs are due now.
    Now,
    /// At this instant: the next job's due time, or the next poll.
    At(Instant),
}

/// When to look again after `claimed`: at once when more are due, else at the earliest of the
/// next due job (by the store's clock, counted from the answer) and the next poll.
fn next_look(shared: &Shared, claimed: &Claimed, timing: ClaimTiming) -> Look {
    if claimed.more_due() {
        return Look::Now;
    }
    let poll_at = later(Instant::now(), shared.options.poll_interval);
    match claimed.next_due {
        Some(at) => {
            let delay = (at - claimed.now).to_std().unwrap_or_default();
            Look::At(later(timing.answered_at, delay).min(poll_at))
        }
        None => Look::At(poll_at),
    }
}

/// Waits for at least one free slot and takes every free one; `None` once the set stops.
async fn free_slots(shared: &Shared) -> Option<Vec<OwnedSemaphorePermit>> {
    let first = tokio::select! {
        biased;
        _ = shared.stop_claiming.cancelled() => return None,
        permit = Arc::clone(&shared.slots).acquire_owned() => permit.ok()?,
    };
    let mut permits = vec![first];
    while let Ok(permit) = Arc::clone(&shared.slots).try_acquire_owned() {
        permits.push(permit);
    }
    Some(permits)
}

/// Gives back jobs claimed but not to be run, so another worker takes them at once.
async fn release(shared: &Shared, jobs: Vec<crate::claim::ClaimedJob>) {
    for job in jobs {
        if let Err(e) = shared.store.complete(&job.lease, Completion::Release).await {
            warn!(job.id = %job.job.id, error = %e, "releasing a job claimed while stopping failed; it runs again once its lease ends");
        }
    }
}

/// The pause after `errors` store failures in a row: 100 ms doubling, at most the larger of the
/// poll interval and 5 s.
fn store_error_pause(errors: u32, poll_interval: Duration) -> Duration {
    let cap = poll_interval.max(Duration::from_secs(5));
    Duration::from_millis(100)
        .saturating_mul(2u32.saturating_pow(errors.saturating_sub(1).min(16)))
        .min(cap)
}
