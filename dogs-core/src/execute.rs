//! One execution: runs a claimed job's handler while its lease lasts, stops it before the lease
//! can end, keeps the worker slot until the handler has really stopped (and its cooldown is
//! over), and saves the outcome.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;

use tokio::sync::{watch, OwnedSemaphorePermit};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info_span, warn, Instrument};

use crate::claim::{ClaimedJob, Completion};
use crate::context::{JobContext, LeaseEnd, LeaseKeeper};
use crate::definition::{JobDefinition, RunOutcome};
use crate::dispatch::ClaimTiming;
use crate::outcome::{Ending, Outcome, StoreClock};
use crate::worker::Shared;

/// Runs one claimed job to its end, then saves its outcome while its slot pauses for the
/// cooldown and is freed.
pub(crate) async fn execute(
    shared: Arc<Shared>,
    claimed: ClaimedJob,
    timing: ClaimTiming,
    permit: OwnedSemaphorePermit,
) {
    let span = info_span!(
        "dogs.job",
        job.name = %claimed.job.name,
        job.id = %claimed.job.id,
        job.tries = claimed.job.tries,
    );
    crate::trace::set_parent(&span, claimed.job.trace_context.as_deref());
    async {
        match shared.definitions.get(&claimed.job.name) {
            Some(definition) => {
                let name = claimed.job.name.clone();
                run_claimed(&shared, definition, claimed, timing, permit).await;
                shared.unhold(&name);
            }
            None => {
                // Only names of this worker set are claimed; release anything else untouched.
                warn!("claimed a job this worker set does not define; releasing it");
                let _ = shared
                    .store
                    .complete(&claimed.lease, Completion::Release)
                    .await;
                free_slot(&shared, permit).await;
            }
        }
    }
    .instrument(span)
    .await
}

/// Saves an execution's outcome while its slot, the handler having stopped, is freed after
/// the cooldown: the next job starts while this one's outcome waits for its batch. At most
/// `Shared::saving` outcomes wait at once; past that, the slot stays taken until one is saved.
async fn finish_and_free(
    shared: &Shared,
    outcome: Outcome<'_>,
    ending: Ending,
    lease_ends: Instant,
    permit: OwnedSemaphorePermit,
) {
    let saving = Arc::clone(&shared.saving).acquire_owned().await.ok();
    tokio::join!(
        async move {
            outcome.finish(ending, lease_ends).await;
            drop(saving);
        },
        free_slot(shared, permit)
    );
}

/// Frees a slot once its cooldown is over (at once when the set stops).
async fn free_slot(shared: &Shared, permit: OwnedSemaphorePermit) {
    if !shared.options.cooldown_period.is_zero() {
        tokio::select! {
            _ = tokio::time::sleep(shared.options.cooldown_period) => {}
            _ = shared.stop_claiming.cancelled() => {}
        }
    }
    drop(permit);
    shared
        .ended
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// What ended the wait on a running handler first.
enum First {
    /// The handler's outcome and when it returned.
    Returned(Result<Returned, tokio::task::JoinError>),
    Stale,
    LeaseLost,
    Cancelled,
    /// Its job was cancelled in the store while it ran.
    CancelledInStore,
    /// It ran past its job's `timeout`.
    TimedOut,
}

/// Removes an execution from the set's running executions when it ends.
struct Registered<'a> {
    shared: &'a Shared,
    /// Its lease's token: one job may have two executions in one set (one whose handler
    /// blocks its thread past its lease, and the next).
    token: crate::LeaseToken,
    name: String,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.shared
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.token);
        if let Some(metrics) = self.shared.metrics.get(&self.name) {
            metrics.stopped();
        }
    }
}

async fn run_claimed(
    shared: &Shared,
    definition: &JobDefinition,
    claimed: ClaimedJob,
    timing: ClaimTiming,
    permit: OwnedSemaphorePermit,
) {
    let lock_time = definition.lock_time.unwrap_or(shared.options.lock_time);
    // The lease started no earlier than the claim was asked for: an end counted from then is
    // no later than the store's.
    let lease = LeaseEnd::new(timing.asked_at, lock_time);
    let clock = StoreClock {
        at: claimed.claimed_at,
        instant: timing.answered_at,
    };
    let outcome = Outcome::new(shared, definition, &claimed, clock);
    if lease.stop_at() <= Instant::now() {
        // The claim's answer came so late that the lease is all but over: the job is given
        // back, its try with it, rather than started only to be stopped at once.
        warn!("the claim was answered too late to run the job within its lease; releasing it");
        finish_and_free(shared, outcome, Ending::TooLate, lease.at, permit).await;
        return;
    }
    if claimed.was_stale && claimed.job.tries > definition.max_tries() {
        // Its last claims all ended without a finished execution (its workers died, or it went
        // stale): it is not run again at once.
        finish_and_free(shared, outcome, Ending::Exhausted, lease.at, permit).await;
        return;
    }

    let (end_tx, end_rx) = watch::channel(lease);
    let cancel = CancellationToken::new();
    let lost = CancellationToken::new();
    let in_store = CancellationToken::new();
    let job = &claimed.job;
    shared
        .running
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(
            claimed.lease.token.clone(),
            (job.id.clone(), in_store.clone()),
        );
    if let Some(metrics) = shared.metrics.get(&job.name) {
        metrics.started(&claimed, clock.now());
    }
    let _registered = Registered {
        shared,
        token: claimed.lease.token.clone(),
        name: job.name.clone(),
    };
    let ctx = JobContext::new(
        job.id.clone(),
        job.name.clone(),
        job.params.clone(),
        job.tries,
        claimed.was_stale,
        cancel.clone(),
        Some(LeaseKeeper {
            store: Arc::clone(&shared.store),
            lease: claimed.lease.clone(),
            end: end_tx,
            lost: lost.clone(),
            extensions: std::sync::atomic::AtomicU64::new(0),
        }),
    );
    debug!(was_stale = claimed.was_stale, "execution started");

    let run = AssertUnwindSafe(definition.handler.run(job.params.clone(), ctx.clone()));
    let mut handler = tokio::spawn(async move {
        let outcome = run
            .catch_unwind()
            .await
            .map_err(|panic| crate::panic_text(&*panic));
        (outcome, Instant::now())
    });
    let auto_extend = definition.auto_extend.unwrap_or(shared.options.auto_extend);
    let timeout = async {
        match definition.timeout {
            Some(timeout) => tokio::time::sleep(timeout).await,
            None => std::future::pending().await,
        }
    };
    let first = tokio::select! {
        biased;
        _ = lost.cancelled() => First::LeaseLost,
        joined = &mut handler => First::Returned(joined),
        _ = in_store.cancelled() => First::CancelledInStore,
        _ = watch_lease(end_rx.clone(), auto_extend.then(|| (ctx.clone(), lock_time))) => First::Stale,
        _ = timeout => First::TimedOut,
        _ = shared.cancel_running.cancelled() => First::Cancelled,
    };
    let stop_at = || end_rx.borrow().stop_at();
    let (ending, still_running) = match first {
        // A refused extension may have made the handler return: the lease is lost all the same.
        First::Returned(_) if lost.is_cancelled() => (Ending::LeaseLost, None),
        First::Returned(Ok((result, returned_at))) => {
            (returned(result, returned_at, stop_at()), None)
        }
        First::Returned(Err(e)) if e.is_panic() => (
            Ending::Panicked(format!(
                "the handler panicked: {}",
                crate::panic_text(&*e.into_panic())
            )),
            None,
        ),
        First::Returned(Err(_)) => (Ending::Cancelled, None),
        First::LeaseLost => {
            let stopped = stop(&cancel, handler, lease.grace()).await;
            // A lease lost because an operator cancelled the job is a cancellation.
            let ending = if crate::cancel::is_cancelled(shared, &job.id).await {
                Ending::CancelledInStore
            } else {
                Ending::LeaseLost
            };
            match stopped {
                Stopped::Running(handler) => (ending, Some(handler)),
                Stopped::Returned(_) => (ending, None),
            }
        }
        First::CancelledInStore => match stop(&cancel, handler, lease.grace()).await {
            Stopped::Running(handler) => (Ending::CancelledInStore, Some(handler)),
            Stopped::Returned(_) => (Ending::CancelledInStore, None),
        },
        First::TimedOut => {
            let fired = Instant::now();
            let stopped = stop(&cancel, handler, lease.grace()).await;
            settle(stopped, fired, stop_at(), Ending::TimedOut)
        }
        First::Stale => {
            let fired = Instant::now();
            let grace = end_rx.borrow().grace();
            let stopped = stop(&cancel, handler, grace).await;
            settle(stopped, fired, stop_at(), Ending::Stale)
        }
        First::Cancelled => {
            let fired = Instant::now();
            let stopped = stop(&cancel, handler, lease.grace()).await;
            settle(stopped, fired, stop_at(), Ending::Cancelled)
        }
    };
    drop(ctx);
    if let Some(handler) = still_running {
        // It blocks its thread: abort cannot stop it. Its slot stays taken, and the job is not
        // released, until it returns; meanwhile its lease runs out, and another worker may run
        // the job again then, as after a crash.
        warn!("the handler blocks its thread and cannot be stopped; its slot stays taken until it returns");
        let _ = handler.await;
    }
    let lease_ends = end_rx.borrow().at;
    finish_and_free(shared, outcome, ending, lease_ends, permit).await;
}

/// What a handler's task gives back: its outcome, or its panic's text, and when it returned.
type Returned = (std::result::Result<RunOutcome, String>, Instant);

/// The ending of a handler that returned on its own at `returned_at`. Its outcome counts when
/// it returned before `stop_at`, the point where an execution whose lease was not extended is
/// stopped. A handler that yields is stopped there, so one that returns later (its thread was
/// held up past it) is as late as a stale execution and its outcome is never applied either:
/// the same whichever of its return and the stop this worker saw first.
fn returned(
    result: std::result::Result<RunOutcome, String>,
    returned_at: Instant,
    stop_at: Instant,
) -> Ending {
    if returned_at >= stop_at {
        return Ending::Stale;
    }
    match result {
        Ok(outcome) => Ending::Ran(outcome),
        Err(panic) => Ending::Panicked(format!("the handler panicked: {panic}")),
    }
}

/// The ending of a handler stopped at `fired` for `reason`: one that had returned before it was
/// stopped is judged by when it returned; any other ends for `reason` (it may have returned
/// because it was told to stop).
fn settle(
    stopped: Stopped,
    fired: Instant,
    stop_at: Instant,
    reason: Ending,
) -> (Ending, Option<JoinHandle<Returned>>) {
    match stopped {
        Stopped::Returned(Ok((result, returned_at))) if returned_at <= fired => {
            (returned(result, returned_at, stop_at), None)
        }
        Stopped::Returned(_) => (reason, None),
        Stopped::Running(handler) => (reason, Some(handler)),
    }
}

/// How stopping a handler ended.
enum Stopped {
    /// It returned, or was aborted.
    Returned(std::result::Result<Returned, tokio::task::JoinError>),
    /// It blocks its thread, so the abort cannot take effect.
    Running(JoinHandle<Returned>),
}

/// Stops a handler whose outcome no longer counts: fires its cancellation signal, gives it
/// `grace` to return on its own, then aborts it.
async fn stop(
    cancel: &CancellationToken,
    mut handler: JoinHandle<Returned>,
    grace: Duration,
) -> Stopped {
    cancel.cancel();
    if let Ok(joined) = tokio::time::timeout(grace, &mut handler).await {
        return Stopped::Returned(joined);
    }
    handler.abort();
    // An aborted task that yields ends at once.
    match tokio::time::timeout(grace.max(Duration::from_millis(10)), &mut handler).await {
        Ok(joined) => Stopped::Returned(joined),
        Err(_) => Stopped::Running(handler),
    }
}

/// How many lock times an execution runs, renewing its lease, before it is logged.
const LONG_RUN_WARNING: u32 = 20;

/// Completes at the point where an execution whose lease was not extended must be stopped:
/// before the lease can end, with room to stop the handler and release the job. With `renew`,
/// renews the lease every third of its length until then (one timer at a time, whichever
/// comes first), each for as long as the lease was last taken (a handler's own extension is
/// kept); a renewal that fails for a while is tried again a tenth of the lease later, and one
/// refused with `LockLost` fires the execution's lost signal and never completes this. An
/// execution still renewing after [`LONG_RUN_WARNING`] lock times is logged once.
async fn watch_lease(
    mut end: watch::Receiver<LeaseEnd>,
    renew: Option<(crate::JobContext, Duration)>,
) {
    let mut retry_at: Option<Instant> = None;
    let began = Instant::now();
    let mut warned = false;
    loop {
        if let Some((_, lock_time)) = &renew {
            if !warned && began.elapsed() > lock_time.saturating_mul(LONG_RUN_WARNING) {
                warned = true;
                warn!(
                    running_for = ?began.elapsed(),
                    "the execution has run for {LONG_RUN_WARNING} lock times, its lease renewed all along; give the job a timeout if it may hang"
                );
            }
        }
        let lease = *end.borrow_and_update();
        let stop_at = lease.stop_at();
        let renew_at = renew.as_ref().map(|_| {
            retry_at.unwrap_or_else(|| {
                let started = lease.at.checked_sub(lease.lock_time).unwrap_or(lease.at);
                crate::worker::later(started, lease.lock_time / 3)
            })
        });
        match (renew_at, &renew) {
            (Some(at), Some((ctx, own))) if at < stop_at => {
                // As long as the lease was last taken for, and at least the job's lock time:
                // a handler's own longer extension is kept, a shorter one is not repeated.
                let lock_time = &lease.lock_time.max(*own);
                tokio::select! {
                    _ = tokio::time::sleep_until(at) => {}
                    changed = end.changed() => {
                        if changed.is_err() {
                            tokio::time::sleep_until(stop_at).await;
                            return;
                        }
                        retry_at = None;
                        continue;
                    }
                }
                tokio::select! {
                    renewed = ctx.renew(*lock_time) => match renewed {
                        Ok(()) => retry_at = None,
                        Err(e) if e.kind() == crate::ErrorKind::LockLost => {
                            return std::future::pending().await;
                        }
                        Err(e) => {
                            warn!(error = %e, "renewing the lease failed; trying again");
                            retry_at = Some(crate::worker::later(
                                Instant::now(),
                                (*lock_time / 10).max(Duration::from_millis(10)),
                            ));
                        }
                    },
                    _ = tokio::time::sleep_until(stop_at) => return,
                }
            }
            _ => {
                tokio::select! {
                    _ = tokio::time::sleep_until(stop_at) => {
                        if !end.has_changed().unwrap_or(false) {
                            return;
                        }
                    }
                    changed = end.changed() => {
                        if changed.is_err() {
                            tokio::time::sleep_until(stop_at).await;
                            return;
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn ok() -> std::result::Result<RunOutcome, String> {
        Ok(RunOutcome::Success(Value::Null))
    }

    #[test]
    fn an_outcome_counts_only_when_the_handler_returned_before_its_stop_point() {
        let stop_at = Instant::now() + Duration::from_secs(10);
        let before = stop_at - Duration::from_millis(1);
        assert!(matches!(returned(ok(), before, stop_at), Ending::Ran(_)));
        assert!(matches!(returned(ok(), stop_at, stop_at), Ending::Stale));
        let late = stop_at + Duration::from_millis(1);
        assert!(matches!(returned(ok(), late, stop_at), Ending::Stale));
        // A panic is judged the same way.
        let panic = || Err("boom".to_owned());
        assert!(matches!(
            returned(panic(), before, stop_at),
            Ending::Panicked(_)
        ));
        assert!(matches!(returned(panic(), late, stop_at), Ending::Stale));
    }

    #[test]
    fn a_stopped_handler_is_judged_by_when_it_returned() {
        let stop_at = Instant::now() + Duration::from_secs(10);
        let fired = stop_at;
        // It returned before the stop fired and before its stop point (the wait saw the
        // timer first): its outcome counts.
        let early = Stopped::Returned(Ok((ok(), stop_at - Duration::from_millis(5))));
        assert!(matches!(
            settle(early, fired, stop_at, Ending::Stale),
            (Ending::Ran(_), None)
        ));
        // It returned after being told to stop: it ends for the reason it was stopped.
        let after = Stopped::Returned(Ok((ok(), fired + Duration::from_millis(5))));
        assert!(matches!(
            settle(after, fired, stop_at, Ending::Stale),
            (Ending::Stale, None)
        ));
        // Cancelled at shutdown after it had returned past its stop point: stale, not a success.
        let past = Stopped::Returned(Ok((ok(), stop_at + Duration::from_millis(1))));
        assert!(matches!(
            settle(
                past,
                stop_at + Duration::from_millis(2),
                stop_at,
                Ending::Cancelled
            ),
            (Ending::Stale, None)
        ));
    }
}
