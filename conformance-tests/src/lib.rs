//! The dogs conformance suite: every behaviour of `../shared/SPEC.md`, written once and run against
//! every backend.
//!
//! Each `S-…` and `W-…` id of the SPEC is one function of [`store_suite`] or [`worker_suite`],
//! named after the id (`S-claim-exclusive` → `claim_exclusive`). A backend's test target lists
//! them through [`cases`] and hands them to [`run_suite`] with a [`Backend`]: adding a backend adds
//! one small file and nothing else.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod backend;
pub mod bad_input;
pub mod env;
pub mod harness;
pub mod memory;
pub mod mongo;
pub mod pgbouncer;
pub mod postgres;
pub mod redis;
pub mod redis_cluster;
pub mod reliability;
pub mod sqlite;
pub mod store_suite;
pub mod support;
pub mod worker_suite;

pub use backend::Backend;
pub use harness::{run_suite, Case, TestContext};

/// Every conformance case, in SPEC order, then the cases of rules the SPEC names no id for, then
/// the bad-input cases.
pub fn cases() -> Vec<Case> {
    use bad_input as b;
    use store_suite as s;
    use worker_suite as w;
    vec![
        Case::new("schedule_roundtrip", s::schedule_roundtrip),
        Case::new("unique_one_winner", s::unique_one_winner),
        Case::new("unique_per_name", s::unique_per_name),
        Case::new("unique_freed", s::unique_freed),
        Case::new("bulk_schedule", s::bulk_schedule),
        Case::new("recurrent_idempotent", s::recurrent_idempotent),
        Case::new("recurrent_keeps_time", s::recurrent_keeps_time),
        Case::new("claim_due_only", s::claim_due_only),
        Case::new("claim_names", s::claim_names),
        Case::new("claim_order", s::claim_order),
        Case::new("claim_exclusive", s::claim_exclusive),
        Case::new("claim_batch", s::claim_batch),
        Case::new("claim_counts_tries", s::claim_counts_tries),
        Case::new("lease_expiry", s::lease_expiry),
        Case::new("fencing", s::fencing),
        Case::new("extend_lease", s::extend_lease),
        Case::new("claim_next_due", s::claim_next_due),
        Case::new("complete_event", s::complete_event),
        Case::new("reschedule", s::reschedule),
        Case::new("fail_terminal", s::fail_terminal),
        Case::new("demote_stale", s::demote_stale),
        Case::new("cancel_pending", s::cancel_pending),
        Case::new("retry_failed", s::retry_failed),
        Case::new("pause_resume", s::pause_resume),
        Case::new("cancel_running", s::cancel_running),
        Case::new("global_concurrency", s::global_concurrency),
        Case::new("unique_replace", s::unique_replace),
        Case::new("fencing_batch", s::fencing_batch),
        Case::new("execution_roundtrip", s::execution_roundtrip),
        Case::new("execution_idempotent", s::execution_idempotent),
        Case::new("execution_retention", s::execution_retention),
        Case::new("list_and_stats", s::list_and_stats),
        Case::new("list_paged", s::list_paged),
        Case::new("recurrent_listed", s::recurrent_listed),
        Case::new("execution_stats", s::execution_stats),
        Case::new("event_runs", w::event_runs),
        Case::new("run_in_delay", w::run_in_delay),
        Case::new("priority_order", w::priority_order),
        Case::new("concurrency_limit", w::concurrency_limit),
        Case::new("retry_policy", w::retry_policy),
        Case::new("recurrent_runs", w::recurrent_runs),
        Case::new("recurrent_error", w::recurrent_error),
        Case::new("stale_detected", w::stale_detected),
        Case::new("extend_keeps_alive", w::extend_keeps_alive),
        Case::new("history_recorded", w::history_recorded),
        Case::new("bad_params", w::bad_params),
        Case::new("panic_is_error", w::panic_is_error),
        Case::new("exactly_once", w::exactly_once),
        Case::new("crash_recovery", w::crash_recovery),
        Case::new("shutdown_graceful", w::shutdown_graceful),
        Case::new("wakeup_push", w::wakeup_push),
        Case::new("unknown_name", w::unknown_name),
        Case::new("stale_counts_tries", w::stale_counts_tries),
        Case::new("kind_from_record", w::kind_from_record),
        Case::new("no_overlap", w::no_overlap),
        Case::new("extend_lost_cancels", w::extend_lost_cancels),
        Case::new("worker_cancel_running", w::cancel_running),
        Case::new("auto_renew", w::auto_renew),
        Case::new("run_timeout", w::run_timeout),
        Case::new("snooze", w::snooze),
        Case::new("name_concurrency", w::name_concurrency),
        Case::new("progress_visible", w::progress_visible),
        Case::new("slot_held", w::slot_held),
        Case::new("hook_panic", w::hook_panic),
        Case::new("future_wakeup", w::future_wakeup),
        Case::new("next_run_not_after_waits", w::next_run_not_after_waits),
        Case::new("lost_races_claim_again", w::lost_races_claim_again),
        Case::new(
            "blocked_handler_keeps_its_lease",
            w::blocked_handler_keeps_its_lease,
        ),
        Case::new("late_panic_is_stale", w::late_panic_is_stale),
        Case::new("prefetch_runs_once", w::prefetch_runs_once),
        Case::new("prefetch_not_for_slow_jobs", w::prefetch_not_for_slow_jobs),
        Case::new(
            "prefetch_given_back_at_stop",
            w::prefetch_given_back_at_stop,
        ),
        Case::new("unstorable_result", w::unstorable_result),
        Case::new("prune_many_batches", s::prune_many_batches),
        Case::new("remove_all", s::remove_all),
        Case::new("bad_input_definitions", b::bad_input_definitions),
        Case::new("bad_input_scheduling", b::bad_input_scheduling),
        Case::new("bad_input_durations", b::bad_input_durations),
        Case::new("bad_input_run_times", b::bad_input_run_times),
    ]
}
