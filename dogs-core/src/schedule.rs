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
    parsed: std::result::Result<(croner::Cron, Tz), String>,
}

impl CronSchedule {
    fn new(expression: String, timezone: String) -> Self {
        let parsed = Self::parse(&expression, &timezone);
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
        cron.find_next_occurrence(&now.with_timezone(tz), false)
            .map(|at| at.with_timezone(&Utc))
            .map_err(|e| {
                Error::config(format!(
                    "cron expression '{}' has no run after {now}: {e}",
                    self.expression
                ))
            })
    }
}
