//! Claiming ahead of free slots: the local queue of jobs claimed before a slot was free for them,
//! and the pace that sizes it.
//!
//! A job waits here with its lease already running (its end is counted from when the claim was
//! asked for), so the wait is bounded: a job that waited longer than [`max_wait`] is given back
//! to the store unrun (its try with it) instead of being started with less than its lease. The
//! queue holds no more than the worker set's executions end in [`HORIZON`] at their recent
//! pace, and never more than [`WorkerOptions::prefetch`](crate::WorkerOptions::prefetch):
//! jobs that take long to run are not claimed ahead at all, so a job never waits here while an
//! idle worker elsewhere could run it.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use crate::claim::ClaimedJob;
use crate::dispatch::ClaimTiming;

/// How far ahead the queue looks: it holds what the worker set's executions end in this time.
pub(crate) const HORIZON: Duration = Duration::from_millis(50);

/// Over how long the pace of starts is measured.
const WINDOW: Duration = Duration::from_millis(100);

/// A window with this many ends ends early (after [`SHORT_WINDOW`] at least), so the queue
/// grows quickly when jobs start quickly; a slow pace is still measured over a whole window.
const BUSY_WINDOW: u64 = 256;

/// The shortest window.
const SHORT_WINDOW: Duration = Duration::from_millis(10);

/// The longest a job of lease `lock_time` waits in the queue: a tenth of its lease, at most
/// 1 s. Past that it is given back rather than started.
pub(crate) fn max_wait(lock_time: Duration) -> Duration {
    (lock_time / 10).min(Duration::from_secs(1))
}

/// A claimed job waiting for a slot.
pub(crate) struct Waiting {
    pub(crate) job: ClaimedJob,
    pub(crate) timing: ClaimTiming,
    /// Past this instant it is given back instead of started.
    pub(crate) start_by: Instant,
}

/// Jobs claimed ahead of free slots, in claim order.
#[derive(Default)]
pub(crate) struct Queue {
    jobs: VecDeque<Waiting>,
}

impl Queue {
    pub(crate) fn len(&self) -> usize {
        self.jobs.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    pub(crate) fn push(&mut self, waiting: Waiting) {
        self.jobs.push_back(waiting);
    }

    /// The next job that may still start at `now`; the ones that waited too long go to
    /// `expired`.
    pub(crate) fn next(&mut self, now: Instant, expired: &mut Vec<ClaimedJob>) -> Option<Waiting> {
        self.expire(now, expired);
        self.jobs.pop_front()
    }

    /// Moves the jobs at the front whose time to start has passed at `now` to `expired`.
    pub(crate) fn expire(&mut self, now: Instant, expired: &mut Vec<ClaimedJob>) {
        while self
            .jobs
            .front()
            .is_some_and(|waiting| now >= waiting.start_by)
        {
            if let Some(waiting) = self.jobs.pop_front() {
                expired.push(waiting.job);
            }
        }
    }

    /// When the job at the front must have started.
    pub(crate) fn first_start_by(&self) -> Option<Instant> {
        self.jobs.front().map(|waiting| waiting.start_by)
    }

    /// Every job left, to be given back.
    pub(crate) fn drain(&mut self) -> Vec<ClaimedJob> {
        self.jobs.drain(..).map(|waiting| waiting.job).collect()
    }
}

/// The pace at which the worker set's executions end (their slots freed), measured over the
/// last window. Ends, not starts: a set that starts many slow jobs at once has started much and
/// ended nothing, and holds nothing ahead.
pub(crate) struct Pace {
    window_start: Instant,
    /// The count of ended executions when the window started.
    ended_at_start: u64,
    /// The ends of the last whole window, its length, and when it ended.
    last: Option<(u64, Duration, Instant)>,
}

impl Pace {
    pub(crate) fn new(now: Instant) -> Self {
        Pace {
            window_start: now,
            ended_at_start: 0,
            last: None,
        }
    }

    fn roll(&mut self, now: Instant, ended: u64) {
        let elapsed = now.saturating_duration_since(self.window_start);
        let in_window = ended.saturating_sub(self.ended_at_start);
        if elapsed >= WINDOW || (in_window >= BUSY_WINDOW && elapsed >= SHORT_WINDOW) {
            self.last = Some((in_window, elapsed, now));
            self.window_start = now;
            self.ended_at_start = ended;
        }
    }

    /// How many jobs to hold ahead at `now`, `ended` executions having ended so far: what ends
    /// in [`HORIZON`] at the last window's pace, at most `cap`; none when the pace is unknown or
    /// older than two windows (the set was idle).
    pub(crate) fn ahead(&mut self, now: Instant, cap: usize, ended: u64) -> usize {
        self.roll(now, ended);
        match self.last {
            Some((ended_in_window, length, at))
                if now.saturating_duration_since(at) <= 2 * WINDOW =>
            {
                // Rounded down: a pace of fewer than one start per horizon holds nothing ahead.
                // `length` is at least `SHORT_WINDOW`, so never zero.
                let ahead =
                    u128::from(ended_in_window) * HORIZON.as_nanos() / length.as_nanos().max(1);
                usize::try_from(ahead).unwrap_or(usize::MAX).min(cap)
            }
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_holds_what_the_set_ends_in_the_horizon() {
        let t0 = Instant::now();
        let mut pace = Pace::new(t0);
        assert_eq!(pace.ahead(t0, 500, 0), 0, "unknown pace: nothing ahead");
        // 1,000 ends in 100 ms: 10,000 a second, 500 in 50 ms.
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(pace.ahead(t1, 10_000, 1000), 500);
        assert_eq!(pace.ahead(t1, 64, 1000), 64, "capped");
        // Slow jobs: 32 ends a second hold one ahead; 16 a second (four slots of 250 ms jobs),
        // none.
        let mut slow = Pace::new(t0);
        assert_eq!(slow.ahead(t0 + Duration::from_millis(125), 500, 4), 1);
        let mut slower = Pace::new(t0);
        assert_eq!(slower.ahead(t0 + Duration::from_millis(250), 500, 4), 0);
        // Idle: nothing ahead once a whole window has passed without an end.
        assert_eq!(pace.ahead(t1 + Duration::from_secs(1), 500, 1000), 0);
    }

    #[test]
    fn a_busy_pace_is_known_before_a_whole_window() {
        let t0 = Instant::now();
        let mut pace = Pace::new(t0);
        assert_eq!(pace.ahead(t0 + Duration::from_millis(5), 10_000, 200), 0);
        // 300 ends in 15 ms (20,000 a second): known after 10 ms, not 100.
        assert_eq!(
            pace.ahead(t0 + Duration::from_millis(15), 10_000, 300),
            1000
        );
    }

    #[test]
    fn starting_many_slow_jobs_at_once_holds_nothing_ahead() {
        // 512 slots all started at once, none ended yet.
        let t0 = Instant::now();
        let mut pace = Pace::new(t0);
        for ms in [1, 20, 150, 400] {
            assert_eq!(pace.ahead(t0 + Duration::from_millis(ms), 1024, 0), 0);
        }
    }

    #[test]
    fn a_job_waits_a_tenth_of_its_lease_at_most_one_second() {
        assert_eq!(max_wait(Duration::from_secs(30)), Duration::from_secs(1));
        assert_eq!(max_wait(Duration::from_secs(2)), Duration::from_millis(200));
        assert_eq!(
            max_wait(Duration::from_millis(1)),
            Duration::from_micros(100)
        );
    }
}
