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

    /// Checks the schedule: a non-zero interval, a valid cron expression and timezone.
    pub fn validate(&self) -> Result<()> {
        match self {
            Schedule::Every(interval) if interval.is_zero() => {
                Err(Error::config("run_every must be longer than zero"))
            }
            Schedule::Cron(cron) => cron.parsed().map(|_| ()),
            _ => Ok(()),
        }
    }

    /// The next run after `now` (the store's current time).
    pub fn next_run_after(&self, now: DateTime<Utc>) -> Result<RunAt> {
        match self {
            Schedule::Every(interval) => Ok(RunAt::In(*interval)),
            Schedule::NextRun(next_run) => Ok(RunAt::At(next_run(now))),
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

    /// The first matching instant after `now`.
    pub fn next_after(&self, now: DateTime<Utc>) -> Result<DateTime<Utc>> {
        let (cron, tz) = self.parsed()?;
        // Cron matches whole seconds: search from the start of the current second.
        let second = DateTime::from_timestamp(now.timestamp(), 0).unwrap_or(now);
        cron.find_next_occurrence(&second.with_timezone(tz), false)
            .map(|at| at.with_timezone(&Utc))
            .map_err(|e| {
                Error::config(format!(
                    "cron expression '{}' has no run after {now}: {e}",
                    self.expression
                ))
            })
    }
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
