//! How an execution's end is decided and saved: the job's next state (removed, rescheduled,
//! failed, demoted, released), its execution record, and the hooks that hear of it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;
use tracing::{error, warn};

use crate::claim::{ClaimedJob, Completion, Finish};
use crate::definition::{ErrorAction, ExecutionFailure, JobDefinition, RunOutcome};
use crate::error::{ErrorKind, Result};
use crate::execution::{Execution, ExecutionStatus};
use crate::hooks::guarded;
use crate::job::{add_duration, truncate_millis, JobKind, RunAt};
use crate::limits::{capped, clamp_run_at};
use crate::worker::Shared;

/// The longest error text stored with a job or a record; longer ones are cut.
const MAX_ERROR_BYTES: usize = 16 * 1024;

/// How long a recurrent job whose schedule has no next run waits before it runs again.
const NO_NEXT_RUN_RETRY: Duration = Duration::from_secs(3600);

/// How an execution ended, before it is saved.
pub(crate) enum Ending {
    /// The handler returned.
    Ran(RunOutcome),
    /// The handler panicked.
    Panicked(String),
    /// Its lease was about to end: the handler was stopped, or it returned only after its
    /// lease ended, too late for its outcome to count.
    Stale,
    /// The store refused to extend its lease: another claim holds the job.
    LeaseLost,
    /// The workers shut down: the handler was stopped.
    Cancelled,
    /// Its job was cancelled in the store while it ran: the handler was stopped.
    CancelledInStore,
    /// It ran past its job's `timeout`: the handler was stopped.
    TimedOut,
    /// Not run: its last claims all ended without a finished execution.
    Exhausted,
    /// Not run: the claim was answered after the point where the execution would be stopped.
    TooLate,
}

/// The store's clock, estimated from the time it reported at the claim (counting from the
/// answer, so a slow claim does not push the estimate ahead of the store).
#[derive(Clone, Copy)]
pub(crate) struct StoreClock {
    pub(crate) at: DateTime<Utc>,
    pub(crate) instant: Instant,
}

impl StoreClock {
    pub(crate) fn now(&self) -> DateTime<Utc> {
        truncate_millis(add_duration(self.at, self.instant.elapsed()))
    }
}

/// What to save for an execution that ended.
struct Decision {
    status: ExecutionStatus,
    error: Option<String>,
    result: Option<serde_json::Value>,
    /// `None` when the job is no longer this execution's to change (its lease was lost).
    completion: Option<Completion>,
    /// The failure to tell `on_max_tries` of, once saved.
    max_tries: Option<ExecutionFailure>,
}

impl Decision {
    fn new(status: ExecutionStatus, error: String, completion: Completion) -> Self {
        Decision {
            status,
            error: Some(error),
            result: None,
            completion: Some(completion),
            max_tries: None,
        }
    }
}

/// Decides and saves how one execution ended.
pub(crate) struct Outcome<'a> {
    shared: &'a Shared,
    definition: &'a JobDefinition,
    claimed: &'a ClaimedJob,
    clock: StoreClock,
    started_at: DateTime<Utc>,
    started: Instant,
}

impl<'a> Outcome<'a> {
    /// The outcome of an execution starting now.
    pub(crate) fn new(
        shared: &'a Shared,
        definition: &'a JobDefinition,
        claimed: &'a ClaimedJob,
        clock: StoreClock,
    ) -> Self {
        Outcome {
            shared,
            definition,
            claimed,
            clock,
            started_at: clock.now(),
            started: Instant::now(),
        }
    }

    /// Decides what `ending` means for the job and saves it, retrying a store that is briefly
    /// unavailable until `lease_ends` (by the local clock).
    pub(crate) async fn finish(&self, ending: Ending, lease_ends: Instant) {
        let decision = self.decide(ending);
        if decision.status != ExecutionStatus::Cancelled || decision.error.is_some() {
            if let Some(metrics) = self.shared.metrics.get(&self.claimed.job.name) {
                metrics.ended(decision.status, self.started.elapsed());
            }
        }
        let mut record = self.record(&decision);
        let Some(completion) = &decision.completion else {
            if let Some(record) = &record {
                self.save_record(record).await;
            }
            return;
        };
        match self.save(completion, &mut record, lease_ends).await {
            Ok(()) => {
                if let (Some(failure), Some(on_max_tries)) =
                    (&decision.max_tries, &self.shared.options.on_max_tries)
                {
                    guarded("on_max_tries", || on_max_tries(failure));
                }
            }
            Err(e) if e.kind() == ErrorKind::LockLost => {
                warn!("the lease was lost before the outcome was saved; the job runs again");
                if let Some(record) = &mut record {
                    if record.status != ExecutionStatus::Stale {
                        record.error = Some(format!(
                            "the lease was lost before the outcome ({}) was saved",
                            record.status.as_str()
                        ));
                        record.status = ExecutionStatus::Stale;
                        record.result = None;
                    }
                    // The same execution id: if the outcome was saved after all (its answer
                    // was lost), the record saved with it is kept.
                    self.save_record(record).await;
                }
            }
            Err(e) => {
                error!(error = %e, "saving the outcome failed; the job runs again once its lease ends");
            }
        }
    }

    fn decide(&self, ending: Ending) -> Decision {
        let job = &self.claimed.job;
        match ending {
            Ending::Ran(RunOutcome::Success(value)) => Decision {
                status: ExecutionStatus::Success,
                error: None,
                result: Some(value),
                completion: Some(self.after_success()),
                max_tries: None,
            },
            Ending::Ran(RunOutcome::Snooze(delay)) => Decision {
                status: ExecutionStatus::Snoozed,
                error: None,
                result: None,
                completion: Some(Completion::Snooze {
                    run_at: RunAt::In(capped(delay)),
                }),
                max_tries: None,
            },
            Ending::TimedOut => self.after_error("timed out".to_owned()),
            Ending::CancelledInStore => Decision {
                status: ExecutionStatus::Cancelled,
                error: Some("the job was cancelled while it ran".to_owned()),
                result: None,
                completion: None,
                max_tries: None,
            },
            Ending::Ran(RunOutcome::BadParams(message)) if job.kind == JobKind::Event => {
                self.fail_for_good(message, None)
            }
            Ending::Ran(RunOutcome::Error(message) | RunOutcome::BadParams(message))
            | Ending::Panicked(message) => self.after_error(message),
            Ending::Stale => self.after_stale(),
            Ending::LeaseLost => {
                let message =
                    "the store refused to extend the lease: another claim holds the job, \
                     so the execution was stopped"
                        .to_owned();
                self.call_on_stale(&message);
                Decision {
                    status: ExecutionStatus::Stale,
                    error: Some(message),
                    result: None,
                    completion: None,
                    max_tries: None,
                }
            }
            Ending::Cancelled => Decision::new(
                ExecutionStatus::Cancelled,
                "the workers shut down before the execution ended".to_owned(),
                Completion::Release,
            ),
            Ending::Exhausted => self.exhausted(),
            Ending::TooLate => Decision {
                status: ExecutionStatus::Cancelled,
                error: None,
                result: None,
                completion: Some(Completion::Release),
                max_tries: None,
            },
        }
    }

    fn lock_time(&self) -> Duration {
        self.definition
            .lock_time
            .unwrap_or(self.shared.options.lock_time)
    }

    /// Whether the record is the recurrent job's own (not a one-off run under its name).
    fn is_recurrent_record(&self) -> bool {
        self.claimed.job.kind == JobKind::Recurrent && self.definition.schedule().is_some()
    }

    fn after_success(&self) -> Completion {
        if self.is_recurrent_record() {
            self.back_to_schedule()
        } else {
            Completion::Remove
        }
    }

    /// A recurrent record's next normal run, its count of tries started again.
    fn back_to_schedule(&self) -> Completion {
        Completion::Reschedule {
            run_at: self.next_normal_run(),
            priority: None,
            reset_tries: true,
        }
    }

    fn after_error(&self, message: String) -> Decision {
        if self.is_recurrent_record() {
            return Decision::new(ExecutionStatus::Error, message, self.back_to_schedule());
        }
        let retry = |message: String, delay: Duration| {
            Decision::new(
                ExecutionStatus::Error,
                message,
                Completion::Reschedule {
                    run_at: RunAt::In(capped(delay)),
                    priority: None,
                    reset_tries: false,
                },
            )
        };
        // The record decides: an event job scheduled under a recurrent job's name follows the
        // event rules with the default policy.
        let action = match (&self.definition.on_error, self.definition.is_recurrent()) {
            (Some(on_error), false) => guarded("on_error", || on_error(&self.failure(&message)))
                .unwrap_or(ErrorAction::Default),
            _ => ErrorAction::Default,
        };
        let tries = self.claimed.job.tries;
        match action {
            ErrorAction::RetryIn(delay) => retry(message, delay),
            ErrorAction::Dismiss => self.fail_for_good(message, None),
            ErrorAction::Default if tries < self.definition.max_tries() => {
                let delay = self.shared.options.retry_backoff.delay(tries);
                retry(message, delay)
            }
            ErrorAction::Default => {
                let failure = self.failure(&message);
                self.fail_for_good(message, Some(failure))
            }
        }
    }

    /// The execution outlived its lease: it runs again after every other due job, unless this
    /// was its `max_tries`-th claim in a row that did not finish.
    fn after_stale(&self) -> Decision {
        let message = format!(
            "the execution outlived its lease of {:?}; its outcome does not count",
            self.lock_time()
        );
        self.call_on_stale(&message);
        let (tries, max_tries) = (self.claimed.job.tries, self.definition.max_tries());
        if tries < max_tries {
            return Decision::new(ExecutionStatus::Stale, message, Completion::Demote);
        }
        if self.is_recurrent_record() {
            let message = format!(
                "{message}; its last {tries} runs went stale, so it goes back to its normal schedule"
            );
            return Decision::new(ExecutionStatus::Stale, message, self.back_to_schedule());
        }
        let message = format!(
            "{message}; it has been claimed {tries} times (max_tries {max_tries}) and every claim \
             counts as a try, so it is failed for good"
        );
        let failure = self.failure(&message);
        self.fail_for_good(message, Some(failure))
    }

    /// Claimed once more after `max_tries` claims whose leases ran out (its workers died): not
    /// run again.
    fn exhausted(&self) -> Decision {
        let (claims, max_tries) = (
            self.claimed.job.tries.saturating_sub(1),
            self.definition.max_tries(),
        );
        let message = format!(
            "its last execution did not finish (its lease ran out: the worker died or stalled) and \
             it has been claimed {claims} times"
        );
        if self.is_recurrent_record() {
            let message = format!("{message}; it goes back to its normal schedule");
            return Decision::new(ExecutionStatus::Stale, message, self.back_to_schedule());
        }
        let message = format!(
            "{message}; max_tries is {max_tries} and every claim counts as a try, so it is failed \
             for good"
        );
        let mut failure = self.failure(&message);
        failure.tries = claims;
        self.fail_for_good(message, Some(failure))
    }

    fn fail_for_good(&self, message: String, max_tries: Option<ExecutionFailure>) -> Decision {
        let completion = Completion::Fail {
            error: cut(&message),
            retain_for: self.shared.options.failed_retention,
        };
        Decision {
            max_tries,
            ..Decision::new(ExecutionStatus::Failed, message, completion)
        }
    }

    fn call_on_stale(&self, message: &str) {
        if let Some(on_stale) = &self.definition.on_stale {
            guarded("on_stale", || on_stale(&self.failure(message)));
        }
    }

    /// The next run of the recurrent job by its schedule. A schedule with no next run (or a
    /// `get_next_run` that panics) runs again in an hour; a `get_next_run` that returns a time
    /// that is not after now runs again after `poll_interval`, with one warning.
    fn next_normal_run(&self) -> RunAt {
        let Some(schedule) = self.definition.schedule() else {
            return RunAt::Now;
        };
        let now = self.clock.now();
        match schedule.next_run_after(now) {
            Ok(RunAt::At(at)) if at <= now => {
                if self.shared.first_warning(&self.definition.name) {
                    warn!(
                        next_run = %at,
                        "get_next_run returned a time that is not after the run; the job runs again after poll_interval"
                    );
                }
                RunAt::In(self.shared.options.poll_interval)
            }
            Ok(RunAt::At(at)) => RunAt::At(clamp_run_at(at)),
            Ok(RunAt::In(delay)) => RunAt::In(capped(delay)),
            Ok(RunAt::Now) => RunAt::In(self.shared.options.poll_interval),
            Err(e) => {
                error!(error = %e, "the recurrent job has no next run; it runs again in an hour");
                RunAt::In(NO_NEXT_RUN_RETRY)
            }
        }
    }

    fn failure(&self, error: &str) -> ExecutionFailure {
        let job = &self.claimed.job;
        ExecutionFailure {
            job_id: job.id.clone(),
            name: job.name.clone(),
            tries: job.tries,
            params: job.params.clone(),
            error: error.to_owned(),
        }
    }

    fn record(&self, decision: &Decision) -> Option<Execution> {
        let keep = self.definition.save_executions_for;
        if keep.is_zero()
            || (decision.status == ExecutionStatus::Cancelled && decision.error.is_none())
        {
            // Nothing ran (a claim answered too late): no record.
            return None;
        }
        let job = &self.claimed.job;
        let ended_at = self.clock.now();
        let duration = self.started.elapsed();
        Some(Execution {
            job_id: job.id.clone(),
            execution_id: crate::job::execution_id(),
            name: job.name.clone(),
            kind: job.kind,
            priority: job.priority,
            tries: job.tries,
            unique_identifier: job.unique_identifier.clone(),
            params: job.params.clone(),
            started_at: self.started_at,
            ended_at,
            duration: Duration::from_millis(
                u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
            ),
            status: decision.status,
            error: decision.error.as_deref().map(cut),
            result: decision.result.clone().and_then(|result| {
                match crate::job::validate_params(&job.name, &result) {
                    Ok(()) => Some(result),
                    Err(e) => {
                        warn!(error = %e, "the execution's result cannot be stored by every store; it is not kept");
                        None
                    }
                }
            }),
            worker_id: self.shared.worker_id.clone(),
            expires_at: truncate_millis(add_duration(ended_at, keep)),
        })
    }

    /// Saves the outcome, retrying while the store is unavailable, until the lease would end
    /// (then another worker may take the job; the fencing token keeps a late write harmless)
    /// or the workers give up at shutdown. A record the store refuses as too large is saved
    /// without its result.
    async fn save(
        &self,
        completion: &Completion,
        record: &mut Option<Execution>,
        lease_ends: Instant,
    ) -> Result<()> {
        // One attempt at least, even when the lease is over (a handler that blocked its
        // thread): the token keeps a late write harmless.
        let retry_until = lease_ends.max(Instant::now() + Duration::from_secs(1));
        let mut pause = Duration::from_millis(50);
        loop {
            let finish = Finish {
                lease: self.claimed.lease.clone(),
                completion: completion.clone(),
                execution: record.clone(),
            };
            let attempt = tokio::select! {
                saved = tokio::time::timeout_at(retry_until, self.shared.completer.finish(finish, lease_ends)) => saved,
                _ = self.shared.give_up_saving.cancelled() => return Err(crate::Error::new(
                    ErrorKind::Shutdown,
                    "the workers stopped before the outcome was saved",
                )),
            };
            match attempt {
                Err(_) => {
                    return Err(crate::Error::unavailable(
                        "the store did not save the outcome before the lease ended",
                    ))
                }
                Ok(Err(e)) if e.kind() == ErrorKind::Unavailable => {
                    if Instant::now() + pause >= retry_until {
                        return Err(e);
                    }
                    warn!(error = %e, retry_in = ?pause, "saving the outcome failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = self.shared.give_up_saving.cancelled() => return Err(e),
                    }
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
                Ok(Err(e))
                    if matches!(
                        e.kind(),
                        ErrorKind::TooLarge | ErrorKind::InvalidInput | ErrorKind::Serialization
                    ) && record.is_some() =>
                {
                    // The store refuses the record: the outcome matters more than its record.
                    // First without the result, then without the record.
                    match record.as_mut().filter(|r| r.result.is_some()) {
                        Some(with_result) => {
                            warn!(error = %e, "the store refuses the execution's result; saving the record without it");
                            with_result.result = None;
                            with_result.error =
                                Some(format!("the result could not be stored: {}", e.message()));
                        }
                        None => {
                            warn!(error = %e, "the store refuses the execution record; saving the outcome without it");
                            *record = None;
                        }
                    }
                }
                Ok(outcome) => return outcome,
            }
        }
    }

    /// Stores a record on its own (the job is no longer this execution's to change).
    async fn save_record(&self, record: &Execution) {
        if let Err(e) = self.shared.store.record_execution(record).await {
            error!(error = %e, "saving the execution record failed");
        }
    }
}

/// `text` as every store keeps it: NUL characters replaced (PostgreSQL refuses them), cut to
/// [`MAX_ERROR_BYTES`] on a character boundary.
fn cut(text: &str) -> String {
    let text = text.replace('\0', "\u{fffd}");
    if text.len() <= MAX_ERROR_BYTES {
        return text;
    }
    let mut end = MAX_ERROR_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… (cut from {} bytes)", &text[..end], text.len())
}
