//! When a recurrent job runs: `run_every`, `get_next_run` or a cron expression in a timezone.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::error::{Error, Result};
use crate::job::RunAt;

/// A function that gives a recurrent job's next run from the store's current time.
pub type NextRunFn = Arc<dyn Fn(DateTime<Utc>) -> DateTime<Utc> + Send + Sync>;

/// The most run times [`Schedule::next_runs`] lists in one call.
pub const MAX_NEXT_RUNS: usize = 10_000;

/// A recurrent job's schedule.
#[derive(Clone)]
pub enum Schedule {
    /// Again this long after each run has finished.
    Every(Duration),
    /// At the time the function returns, given the store's current time.
    NextRun(NextRunFn),
    /// At the times a cron expression matches in a timezone.
    Cron(CronSchedule),
}

impl Schedule {
    /// Runs again `interval` after each run has finished.
    pub fn every(interval: Duration) -> Self {
        Schedule::Every(interval)
    }

    /// Runs at the times `next_run` returns.
    pub fn next_run(
        next_run: impl Fn(DateTime<Utc>) -> DateTime<Utc> + Send + Sync + 'static,
    ) -> Self {
        Schedule::NextRun(Arc::new(next_run))
    }

    /// Runs when the cron `expression` matches in the IANA `timezone` (`"Europe/Paris"`, `"UTC"`).
    ///
    /// Five fields (minute to weekday), or six with seconds first. An invalid expression or
    /// timezone is reported when the workers start.
    pub fn cron(expression: impl Into<String>, timezone: impl Into<String>) -> Self {
        Schedule::Cron(CronSchedule::new(expression.into(), timezone.into()))
    }

    /// Text that changes whenever the schedule changes; stored with the recurrent job so that a
    /// changed schedule recomputes the next run. A `get_next_run` function has no text of its own:
    /// its key is the same across versions.
    pub fn key(&self) -> String {
        match self {
            Schedule::Every(interval) => format!("every {}ms", interval.as_millis()),
            Schedule::NextRun(_) => "get_next_run".to_owned(),
            Schedule::Cron(cron) => format!("cron {} {}", cron.expression, cron.timezone),
        }
    }

    /// Checks the schedule: an interval longer than zero and at most
    /// [`MAX_DURATION`](crate::MAX_DURATION), a valid cron expression and timezone.
    pub fn validate(&self) -> Result<()> {
        match self {
            Schedule::Every(interval) => crate::limits::check_positive("run_every", *interval),
            Schedule::Cron(cron) => cron.parsed().map(|_| ()),
            Schedule::NextRun(_) => Ok(()),
        }
    }

    /// The next `count` run times after `after`, as the workers would compute them if every
    /// run took no time: print them to check a schedule before deploying it. (A recurrent job
    /// new to the store also runs once at once, when workers first start.)
    ///
    /// - A `run_every` schedule gives `after + interval`, `after + 2 × interval`, ... (the
    ///   workers count from the end of each run).
    /// - A `get_next_run` function is called with each time it returned; the list ends at the
    ///   first time that is not later than the one before (the workers would run the job again
    ///   after `poll_interval` then).
    /// - A cron schedule lists its next matches in its timezone, fewer when it has no more; one
    ///   with no match at all after `after` is a `Config` error.
    /// - Times stop at the latest run time a store takes (the end of year 9999), as the
    ///   workers' do.
    ///
    /// An invalid schedule is its `Config` error; `count` is at most [`MAX_NEXT_RUNS`], 10,000
    /// (`InvalidInput` past it).
    ///
    /// ```
    /// use chrono::{TimeZone, Utc};
    /// use dogs_core::prelude::*;
    ///
    /// let nightly = Schedule::cron("0 3 * * *", "Europe/Paris");
    /// let after = Utc.with_ymd_and_hms(2026, 3, 28, 12, 0, 0).unwrap();
    /// let runs = nightly.next_runs(after, 2)?;
    /// // 3:00 in Paris is 2:00 UTC in winter and 1:00 UTC once summer time begins.
    /// assert_eq!(runs[0], Utc.with_ymd_and_hms(2026, 3, 29, 1, 0, 0).unwrap());
    /// assert_eq!(runs[1], Utc.with_ymd_and_hms(2026, 3, 30, 1, 0, 0).unwrap());
    /// # Ok::<(), dogs_core::Error>(())
    /// ```
    pub fn next_runs(&self, after: DateTime<Utc>, count: usize) -> Result<Vec<DateTime<Utc>>> {
        if count > MAX_NEXT_RUNS {
            return Err(Error::new(
                crate::ErrorKind::InvalidInput,
                format!("next_runs was asked for {count} runs; at most {MAX_NEXT_RUNS}"),
            ));
        }
        self.validate()?;
        let mut runs: Vec<DateTime<Utc>> = Vec::with_capacity(count);
        let mut from = after;
        while runs.len() < count {
            let next = match self.next_run_after(from) {
                Ok(run_at) => crate::limits::clamp_run_at(run_at.resolve(from)),
                Err(e) if matches!(self, Schedule::Cron(_)) && runs.is_empty() => return Err(e),
                Err(_) if matches!(self, Schedule::Cron(_)) => break,
                Err(e) => return Err(e),
            };
            if next <= from {
                break;
            }
            runs.push(next);
            from = next;
        }
        Ok(runs)
    }

    /// The next run after `now` (the store's current time).
    ///
    /// A `get_next_run` function that panics is an error of the schedule (the panic is caught);
    /// what it returns is taken as it is, even when it is not after `now` (the workers wait
    /// `poll_interval` then).
    pub fn next_run_after(&self, now: DateTime<Utc>) -> Result<RunAt> {
        match self {
            Schedule::Every(interval) => Ok(RunAt::In(*interval)),
            Schedule::NextRun(next_run) => {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| next_run(now)))
                    .map(RunAt::At)
                    .map_err(|panic| {
                        Error::new(
                            crate::ErrorKind::Backend,
                            format!("get_next_run panicked: {}", crate::panic_text(&*panic)),
                        )
                    })
            }
            Schedule::Cron(cron) => cron.next_after(now).map(RunAt::At),
        }
    }
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key())
    }
}

/// A cron expression with the timezone it is read in.
#[derive(Clone)]
pub struct CronSchedule {
    expression: String,
    timezone: String,
    parsed: Arc<std::result::Result<(croner::Cron, Tz), String>>,
}

impl CronSchedule {
    fn new(expression: String, timezone: String) -> Self {
        let parsed = Arc::new(Self::parse(&expression, &timezone));
        CronSchedule {
            expression,
            timezone,
            parsed,
        }
    }

    fn parse(expression: &str, timezone: &str) -> std::result::Result<(croner::Cron, Tz), String> {
        let tz = Tz::from_str(timezone)
            .map_err(|_| format!("'{timezone}' is not an IANA timezone name"))?;
        let cron = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Optional)
            .build()
            .parse(expression)
            .map_err(|e| format!("'{expression}' is not a valid cron expression: {e}"))?;
        Ok((cron, tz))
    }

    fn parsed(&self) -> Result<&(croner::Cron, Tz)> {
        self.parsed
            .as_ref()
            .as_ref()
            .map_err(|message| Error::config(message.clone()))
    }

    /// The expression.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The timezone name.
    pub fn timezone(&self) -> &str {
        &self.timezone
    }

    /// The first instant strictly after `now` whose wall time in the timezone matches.
    ///
    /// At clock changes: in a repeated hour (autumn), an expression that runs at one fixed time
    /// of day runs once, at the first pass, and any other expression (every N minutes, every
    /// hour) runs in both passes; in a missing hour (spring), a fixed time that does not exist
    /// that day runs at the end of the gap, and other expressions skip the missing times.
    pub fn next_after(&self, now: DateTime<Utc>) -> Result<DateTime<Utc>> {
        let (cron, tz) = self.parsed()?;
        let fixed_time = cron.determine_job_type() == croner::JobType::FixedTime;
        let no_run = |why: String| {
            Error::config(format!(
                "cron expression '{}' has no run after {now}: {why}",
                self.expression
            ))
        };
        // Cron matches whole seconds: search from the start of the current second. Within one
        // stretch of constant offset, the matches are those of a fixed-offset zone; at each
        // change of offset, the search goes on from the change with the new offset.
        let mut from = DateTime::from_timestamp(now.timestamp(), 0).unwrap_or(now);
        let mut inclusive = false;
        for _ in 0..MAX_CRON_STEPS {
            let offset = offset_at(tz, from);
            let candidate = cron
                .find_next_occurrence(&from.with_timezone(&offset), inclusive)
                .map_err(|e| no_run(e.to_string()))?
                .with_timezone(&Utc);
            match first_change(tz, from, candidate, offset) {
                None => {
                    if candidate > now && !(fixed_time && repeats_wall_time(tz, candidate)) {
                        return Ok(candidate);
                    }
                    from = candidate;
                    inclusive = false;
                }
                Some(change) => {
                    let gap = offset_at(tz, change).local_minus_utc() - offset.local_minus_utc();
                    let in_gap =
                        gap > 0 && candidate < change + chrono::Duration::seconds(i64::from(gap));
                    if fixed_time && in_gap && change > now {
                        return Ok(change);
                    }
                    from = change;
                    inclusive = true;
                }
            }
        }
        Err(no_run("no match found".to_owned()))
    }
}

/// How many stretches of constant offset a cron search crosses at most.
const MAX_CRON_STEPS: usize = 10_000;

/// The UTC offset of `tz` at `at`.
fn offset_at(tz: &Tz, at: DateTime<Utc>) -> chrono::FixedOffset {
    use chrono::{Offset, TimeZone};
    tz.offset_from_utc_datetime(&at.naive_utc()).fix()
}

/// The first instant in `(from, until]` at which `tz`'s offset is no longer `offset`, to the
/// second; `None` when it stays the same. Offsets are compared every 6 hours (clock changes are
/// months apart), then the change is found by bisection.
fn first_change(
    tz: &Tz,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
    offset: chrono::FixedOffset,
) -> Option<DateTime<Utc>> {
    let at = |secs: i64| DateTime::from_timestamp(secs, 0).unwrap_or(until);
    let (mut before, until) = (from.timestamp(), until.timestamp());
    loop {
        let after = before.saturating_add(6 * 3600).min(until);
        if offset_at(tz, at(after)) != offset {
            let mut after = after;
            while after - before > 1 {
                let middle = before + (after - before) / 2;
                if offset_at(tz, at(middle)) == offset {
                    before = middle;
                } else {
                    after = middle;
                }
            }
            return Some(at(after));
        }
        if after >= until {
            return None;
        }
        before = after;
    }
}

/// Whether `at`'s wall time in `tz` came once already: `at` is the second pass of a repeated
/// hour.
fn repeats_wall_time(tz: &Tz, at: DateTime<Utc>) -> bool {
    use chrono::TimeZone;
    let wall = at.with_timezone(tz).naive_local();
    matches!(
        tz.from_local_datetime(&wall),
        chrono::LocalResult::Ambiguous(_, later) if later.with_timezone(&Utc) == at
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn cron_reads_its_timezone() {
        let schedule = Schedule::cron("0 9 * * *", "Europe/Paris");
        let Schedule::Cron(cron) = &schedule else {
            panic!("not a cron schedule");
        };
        // 09:00 in Paris is 08:00 UTC in winter and 07:00 UTC in summer.
        assert_eq!(
            cron.next_after(at("2030-01-10T10:00:00Z")).ok(),
            Some(at("2030-01-11T08:00:00Z"))
        );
        assert_eq!(
            cron.next_after(at("2030-07-10T06:59:59Z")).ok(),
            Some(at("2030-07-10T07:00:00Z"))
        );
    }

    #[test]
    fn cron_seconds_land_on_whole_seconds() {
        let Schedule::Cron(cron) = Schedule::cron("*/2 * * * * *", "UTC") else {
            panic!("not a cron schedule");
        };
        assert_eq!(
            cron.next_after(at("2030-01-01T00:00:00.750Z")).ok(),
            Some(at("2030-01-01T00:00:02Z"))
        );
    }

    fn next(expression: &str, zone: &str, now: &str) -> DateTime<Utc> {
        let Schedule::Cron(cron) = Schedule::cron(expression, zone) else {
            panic!("not a cron schedule");
        };
        cron.next_after(at(now))
            .unwrap_or_else(|e| panic!("{expression} in {zone} after {now}: {e}"))
    }

    #[test]
    fn cron_in_the_repeated_autumn_hour_is_after_now() {
        // 2030-10-27 in Paris: 03:00 CEST becomes 02:00 CET at 01:00 UTC; 01:10 UTC is 02:10 CET,
        // in the repeated hour. Its next quarter is 02:15 CET, not 02:15 CEST (00:15 UTC, past).
        assert_eq!(
            next("*/15 * * * *", "Europe/Paris", "2030-10-27T01:10:00Z"),
            at("2030-10-27T01:15:00Z")
        );
        // An interval runs in both passes of the repeated hour.
        assert_eq!(
            next("*/15 * * * *", "Europe/Paris", "2030-10-27T00:50:00Z"),
            at("2030-10-27T01:00:00Z")
        );
        // A daily job runs once: 02:15 CEST came first, 02:15 CET is skipped.
        assert_eq!(
            next("15 2 * * *", "Europe/Paris", "2030-10-27T00:20:00Z"),
            at("2030-10-28T01:15:00Z")
        );
        assert_eq!(
            next("15 2 * * *", "Europe/Paris", "2030-10-27T01:10:00Z"),
            at("2030-10-28T01:15:00Z")
        );
    }

    #[test]
    fn cron_in_the_missing_spring_hour_runs_after_the_gap() {
        // 2030-03-31 in Paris: 02:00 CET becomes 03:00 CEST at 01:00 UTC; 02:30 does not exist.
        // A daily job at 02:30 runs at the end of the gap, that day.
        assert_eq!(
            next("30 2 * * *", "Europe/Paris", "2030-03-30T23:00:00Z"),
            at("2030-03-31T01:00:00Z")
        );
        // An interval skips the missing times.
        assert_eq!(
            next("*/15 * * * *", "Europe/Paris", "2030-03-31T00:50:00Z"),
            at("2030-03-31T01:00:00Z")
        );
        assert_eq!(
            next("*/15 * * * *", "Europe/Paris", "2030-03-31T01:00:00Z"),
            at("2030-03-31T01:15:00Z")
        );
    }

    #[test]
    fn invalid_cron_and_timezone_are_config_errors() {
        for schedule in [
            Schedule::cron("not cron", "UTC"),
            Schedule::cron("0 * * * *", "Nowhere/City"),
            Schedule::every(Duration::ZERO),
        ] {
            let error = schedule.validate().err().map(|e| e.kind());
            assert_eq!(error, Some(crate::ErrorKind::Config), "{schedule:?}");
        }
    }

    #[test]
    fn next_runs_of_an_interval_count_from_each_run() {
        let runs = Schedule::every(Duration::from_secs(90))
            .next_runs(at("2030-01-01T00:00:00Z"), 3)
            .unwrap();
        assert_eq!(
            runs,
            [
                at("2030-01-01T00:01:30Z"),
                at("2030-01-01T00:03:00Z"),
                at("2030-01-01T00:04:30Z")
            ]
        );
        assert!(Schedule::every(Duration::from_secs(1))
            .next_runs(at("2030-01-01T00:00:00Z"), 0)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn next_runs_of_a_cron_are_its_next_matches() {
        let runs = Schedule::cron("30 9 * * 1", "UTC")
            .next_runs(at("2030-01-01T00:00:00Z"), 2)
            .unwrap();
        // 2030-01-01 is a Tuesday: the next Mondays are the 7th and the 14th.
        assert_eq!(
            runs,
            [at("2030-01-07T09:30:00Z"), at("2030-01-14T09:30:00Z")]
        );
    }

    #[test]
    fn next_runs_stop_at_a_function_time_that_is_not_later() {
        let stop = at("2030-01-01T03:00:00Z");
        let hourly_until_three =
            Schedule::next_run(move |now| (now + chrono::Duration::hours(1)).min(stop));
        let runs = hourly_until_three
            .next_runs(at("2030-01-01T00:00:00Z"), 10)
            .unwrap();
        assert_eq!(
            runs,
            [
                at("2030-01-01T01:00:00Z"),
                at("2030-01-01T02:00:00Z"),
                at("2030-01-01T03:00:00Z")
            ],
            "the fourth call returned 03:00 again: the list ends there"
        );
    }

    #[test]
    fn next_runs_stop_at_the_latest_run_time() {
        let latest = crate::limits::max_run_at();
        let runs = Schedule::every(Duration::from_secs(3600))
            .next_runs(latest - chrono::Duration::minutes(90), 5)
            .unwrap();
        assert_eq!(
            runs,
            [latest - chrono::Duration::minutes(30), latest],
            "the last run is held at the latest time a store takes, and nothing comes after it"
        );
        let runs = Schedule::every(Duration::from_secs(3600))
            .next_runs(DateTime::<Utc>::MAX_UTC - chrono::Duration::minutes(90), 5)
            .unwrap();
        assert!(
            runs.is_empty(),
            "no run comes after a time past it: {runs:?}"
        );
    }

    #[test]
    fn next_runs_refuse_bad_requests() {
        let after = at("2030-01-01T00:00:00Z");
        let every_second = Schedule::every(Duration::from_secs(1));
        assert_eq!(
            every_second.next_runs(after, MAX_NEXT_RUNS).unwrap().len(),
            MAX_NEXT_RUNS
        );
        assert_eq!(
            every_second
                .next_runs(after, MAX_NEXT_RUNS + 1)
                .map_err(|e| e.kind()),
            Err(crate::ErrorKind::InvalidInput)
        );
        assert_eq!(
            Schedule::cron("61 * * * *", "UTC")
                .next_runs(after, 1)
                .map_err(|e| e.kind()),
            Err(crate::ErrorKind::Config)
        );
        assert_eq!(
            Schedule::every(Duration::ZERO)
                .next_runs(after, 1)
                .map_err(|e| e.kind()),
            Err(crate::ErrorKind::Config),
            "an interval of zero would list one instant forever"
        );
        let panicking = Schedule::next_run(|_| panic!("no next run"));
        assert!(
            panicking.next_runs(after, 1).is_err(),
            "a get_next_run that panics is an error, not a panic"
        );
    }

    #[test]
    fn keys_change_with_the_schedule() {
        assert_ne!(
            Schedule::every(Duration::from_secs(1)).key(),
            Schedule::every(Duration::from_secs(2)).key()
        );
        assert_ne!(
            Schedule::cron("0 * * * *", "UTC").key(),
            Schedule::cron("0 * * * *", "Europe/Paris").key()
        );
    }
}
