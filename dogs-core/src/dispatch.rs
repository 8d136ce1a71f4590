//! The claim loop: claims jobs for free slots, and ahead of them while jobs start quickly
//! (`prefetch`), starts their executions, and when it finds nothing to claim, waits for the
//! earliest of the next due job, a wake-up from the store, or the poll interval.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use tracing::warn;

use crate::claim::{Claimed, ClaimedJob, Completion, Finish};
use crate::error::ErrorKind;
use crate::prefetch::{max_wait, Pace, Queue, Waiting};
use crate::worker::{later, Shared};

/// When a claim was asked for and when it was answered, by the local monotonic clock.
#[derive(Clone, Copy)]
pub(crate) struct ClaimTiming {
    pub(crate) asked_at: Instant,
    pub(crate) answered_at: Instant,
}

/// The most jobs one claim asks for.
const MAX_CLAIM: usize = 1024;

/// What a claim under way gives back: its answer, when it was asked for, and how many it asked.
type ClaimAnswer = (crate::Result<Claimed>, Instant, usize);

/// A claim under way.
type ClaimCall = Pin<Box<dyn Future<Output = ClaimAnswer> + Send>>;

/// Claims jobs for free slots, and ahead of them (see `prefetch`), and starts their executions,
/// until the worker set stops. One claim is under way at a time; jobs already claimed start
/// while it is.
pub(crate) async fn dispatch(shared: Arc<Shared>) {
    let mut wakeups = shared.store.wakeups();
    let mut store_errors = 0u32;
    let mut lost_races = 0u32;
    let mut queue = Queue::default();
    let mut pace = Pace::new(Instant::now());
    // Free slots taken for jobs not claimed yet.
    let mut reserved: Vec<OwnedSemaphorePermit> = Vec::new();
    let mut claim: Option<ClaimCall> = None;
    // No claim before this instant (nothing more is due, or the store failed), unless a
    // wake-up comes first.
    let mut look_at: Option<Instant> = None;
    loop {
        if shared.stop_claiming.is_cancelled() {
            shut_down(&shared, queue, claim).await;
            return;
        }
        start_waiting(&shared, &mut queue, &mut reserved);

        let now = Instant::now();
        if look_at.is_some_and(|at| at <= now) {
            look_at = None;
        }
        let ended = shared.ended.load(std::sync::atomic::Ordering::Relaxed);
        let ahead = pace.ahead(now, shared.options.prefetch, ended);
        let wanted = (reserved.len() + ahead.saturating_sub(queue.len())).min(MAX_CLAIM);
        // Claim when slots wait for jobs, or when the queue has run down to half of what it
        // should hold.
        let due = reserved.len() > queue.len() || queue.len() <= ahead / 2;
        if claim.is_none() && look_at.is_none() && wanted > 0 && due {
            if let Some(wakeups) = &mut wakeups {
                wakeups.mark_seen();
            }
            match shared.claim_request(wanted) {
                Some(request) => {
                    let store = Arc::clone(&shared.store);
                    claim = Some(Box::pin(async move {
                        let asked_at = Instant::now();
                        (store.claim(&request).await, asked_at, request.limit)
                    }));
                }
                // Every name is at its `max_parallel`: look again when one of them ends.
                None => look_at = Some(later(Instant::now(), shared.options.poll_interval)),
            }
        }

        let idle = claim.is_none() && look_at.is_some();
        let wait_for_wakeup = async {
            match &mut wakeups {
                Some(wakeups) if idle => wakeups.wait().await,
                _ => std::future::pending().await,
            }
        };
        let under_way = async {
            match claim.as_mut() {
                Some(call) => call.await,
                None => std::future::pending().await,
            }
        };
        let expires = queue.first_start_by();
        tokio::select! {
            biased;
            _ = shared.stop_claiming.cancelled() => {}
            (answer, asked_at, asked) = under_way => {
                claim = None;
                let timing = ClaimTiming { asked_at, answered_at: Instant::now() };
                match answer {
                    Ok(claimed) => {
                        store_errors = 0;
                        look_at = take(&shared, claimed, timing, asked, &mut queue, &mut lost_races);
                    }
                    Err(e) => {
                        store_errors = store_errors.saturating_add(1);
                        let pause = store_error_pause(store_errors, shared.options.poll_interval);
                        warn!(error = %e, retry_in = ?pause, "claiming jobs failed");
                        look_at = Some(later(Instant::now(), pause));
                    }
                }
            }
            permit = Arc::clone(&shared.slots).acquire_owned(), if reserved.is_empty() => {
                if let Ok(permit) = permit {
                    reserved.push(permit);
                }
            }
            _ = sleep_until_some(look_at), if idle => look_at = None,
            _ = wait_for_wakeup => look_at = None,
            _ = shared.name_freed.notified(), if !shared.name_caps.is_empty() => look_at = None,
            // A job that waits for a slot past its time is given back then, so another worker
            // can take it at once.
            _ = sleep_until_some(expires), if expires.is_some() && reserved.is_empty() => {
                let mut expired = Vec::new();
                queue.expire(Instant::now(), &mut expired);
                give_back(&shared, expired);
            }
        }
    }
}

/// Starts waiting jobs on the slots already taken, then on the free ones; gives back the jobs
/// that waited too long; once nothing waits, takes the free slots left for the next claim.
/// Afterwards either nothing waits or no slot is taken.
fn start_waiting(
    shared: &Arc<Shared>,
    queue: &mut Queue,
    reserved: &mut Vec<OwnedSemaphorePermit>,
) {
    let mut expired = Vec::new();
    while !queue.is_empty() {
        if reserved.is_empty() {
            match Arc::clone(&shared.slots).try_acquire_owned() {
                Ok(permit) => reserved.push(permit),
                Err(_) => break,
            }
        }
        let now = Instant::now();
        let Some(waiting) = queue.next(now, &mut expired) else {
            break;
        };
        let Some(permit) = reserved.pop() else {
            break;
        };
        shared.executions.spawn(crate::execute::execute(
            Arc::clone(shared),
            waiting.job,
            waiting.timing,
            permit,
        ));
    }
    give_back(shared, expired);
    if queue.is_empty() {
        // Free slots are taken for the next claim only once nothing waits: a slot taken while
        // jobs wait would sit idle beside them.
        while let Ok(permit) = Arc::clone(&shared.slots).try_acquire_owned() {
            reserved.push(permit);
        }
    }
}

/// Queues what a claim leased, and says when to claim again: `None` for as soon as slots or
/// the queue want more, else the instant before which nothing more is due.
fn take(
    shared: &Arc<Shared>,
    claimed: Claimed,
    timing: ClaimTiming,
    asked: usize,
    queue: &mut Queue,
    lost_races: &mut u32,
) -> Option<Instant> {
    let wait = next_look(shared, &claimed, timing);
    let mut jobs = claimed.jobs;
    let mut over = Vec::new();
    for job in std::mem::take(&mut jobs) {
        // Held against its name's `max_parallel`; one past it (a store that ignores the
        // request's cap) is given back.
        if shared.hold(&job.job.name) {
            jobs.push(job);
        } else {
            over.push(job);
        }
    }
    if jobs.len() > asked {
        // More than asked (a store that ignores the limit): the extra ones are given back.
        over.extend(jobs.split_off(asked));
    }
    give_back(shared, over);
    let got = jobs.len();
    for job in jobs {
        let lock_time = shared
            .claim
            .lock_time_of(&job.job.name)
            .unwrap_or(shared.options.lock_time);
        queue.push(Waiting {
            start_by: later(timing.answered_at, max_wait(lock_time)),
            job,
            timing,
        });
    }
    if got == asked {
        *lost_races = 0;
        return None;
    }
    match wait {
        // More are due, won by other claimers: look again at once, or after a short pause
        // (1 ms doubling up to 500 ms) when this claim won none, so racing claimers do not
        // spin.
        Look::Now if got > 0 => {
            *lost_races = 0;
            None
        }
        Look::Now => {
            *lost_races = lost_races.saturating_add(1);
            let pause = Duration::from_millis(1)
                .saturating_mul(2u32.saturating_pow((*lost_races).min(8) - 1))
                .min(Duration::from_millis(500))
                .min(shared.options.poll_interval);
            Some(later(Instant::now(), pause))
        }
        Look::At(at) => {
            *lost_races = 0;
            Some(at)
        }
    }
}

/// The set stops: what waits is given back unrun first, then what the claim under way leases.
async fn shut_down(shared: &Shared, mut queue: Queue, claim: Option<ClaimCall>) {
    release(shared, queue.drain()).await;
    if let Some(call) = claim {
        if let (Ok(claimed), _, _) = call.await {
            for job in &claimed.jobs {
                let _ = shared.hold(&job.job.name);
            }
            release(shared, claimed.jobs).await;
        }
    }
}

async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
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

/// Gives back, from a task of its own, jobs claimed but not to be run.
fn give_back(shared: &Arc<Shared>, jobs: Vec<ClaimedJob>) {
    if jobs.is_empty() {
        return;
    }
    let for_task = Arc::clone(shared);
    shared
        .executions
        .spawn(async move { release(&for_task, jobs).await });
}

/// Gives back jobs claimed but not to be run, so another worker takes them at once (the try
/// their claim counted with them).
async fn release(shared: &Shared, jobs: Vec<ClaimedJob>) {
    for job in &jobs {
        shared.unhold(&job.job.name);
    }
    let mut jobs = jobs;
    while !jobs.is_empty() {
        let rest = jobs.split_off(jobs.len().min(RELEASE_BATCH));
        let finishes = jobs
            .iter()
            .map(|job| Finish {
                lease: job.lease.clone(),
                completion: Completion::Release,
                execution: None,
            })
            .collect();
        match shared.store.finish_many(finishes).await {
            Ok(outcomes) => {
                for (job, outcome) in jobs.iter().zip(outcomes) {
                    match outcome {
                        Ok(()) => {}
                        Err(e) if e.kind() == ErrorKind::LockLost => {}
                        Err(e) => {
                            warn!(job.id = %job.job.id, error = %e, "giving back a job claimed but not run failed; it runs again once its lease ends")
                        }
                    }
                }
            }
            Err(e) => {
                warn!(jobs = jobs.len(), error = %e, "giving back jobs claimed but not run failed; they run again once their leases end")
            }
        }
        jobs = rest;
    }
}

/// The most jobs one call gives back.
const RELEASE_BATCH: usize = 512;

/// The pause after `errors` store failures in a row: 100 ms doubling, at most the larger of the
/// poll interval and 5 s.
fn store_error_pause(errors: u32, poll_interval: Duration) -> Duration {
    let cap = poll_interval.max(Duration::from_secs(5));
    Duration::from_millis(100)
        .saturating_mul(2u32.saturating_pow(errors.saturating_sub(1).min(16)))
        .min(cap)
}
