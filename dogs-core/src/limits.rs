//! What every store can hold: the longest duration and the range of run times dogs accepts, and
//! the checks that refuse the rest with an error naming the field and the limit.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};

use crate::error::{Error, Result};

/// The longest duration dogs accepts anywhere (a lease, a delay, a retention, an interval):
/// 100 years. Every store can add it to any time before the year 9899 and read it back.
pub const MAX_DURATION: Duration = Duration::from_secs(36_525 * 24 * 3600);

/// The most executions one worker set runs at once.
pub const MAX_WORKERS_COUNT: usize = 100_000;

/// The earliest run time dogs accepts: 0001-01-01T00:00:00Z.
pub fn min_run_at() -> DateTime<Utc> {
    NaiveDate::from_ymd_opt(1, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// The latest run time dogs accepts: 9999-12-31T23:59:59.999Z.
pub fn max_run_at() -> DateTime<Utc> {
    NaiveDate::from_ymd_opt(9999, 12, 31)
        .and_then(|d| d.and_hms_milli_opt(23, 59, 59, 999))
        .map(|t| t.and_utc())
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Refuses a run time past the range every store holds, with an `InvalidInput` error.
pub(crate) fn check_run_at(run_at: crate::RunAt) -> Result<()> {
    match run_at {
        crate::RunAt::Now => Ok(()),
        crate::RunAt::In(delay) if delay > MAX_DURATION => Err(Error::invalid_input(format!(
            "run_at is {delay:?} from now, longer than the longest delay dogs accepts (100 years)"
        ))),
        crate::RunAt::In(_) => Ok(()),
        crate::RunAt::At(at) if at < min_run_at() || at > max_run_at() => {
            Err(Error::invalid_input(format!(
                "run_at {at} is outside the run times dogs accepts (years 1 to 9999)"
            )))
        }
        crate::RunAt::At(_) => Ok(()),
    }
}

/// Checks a lease length as every store does before taking or extending a lease: longer than
/// zero and at most [`MAX_DURATION`]; anything else is `InvalidInput`.
pub fn validate_lock_time(lock_time: Duration) -> Result<()> {
    if lock_time.is_zero() || lock_time > MAX_DURATION {
        return Err(Error::invalid_input(format!(
            "a lease must be longer than zero and at most 100 years, not {lock_time:?}"
        )));
    }
    Ok(())
}

/// Refuses a duration of `field` longer than [`MAX_DURATION`], with a `Config` error.
pub(crate) fn check_duration(field: &str, duration: Duration) -> Result<()> {
    if duration > MAX_DURATION {
        return Err(Error::config(format!(
            "{field} is {duration:?}, longer than the longest duration dogs accepts (100 years)"
        )));
    }
    Ok(())
}

/// Refuses a zero or too long duration of `field`, with a `Config` error.
pub(crate) fn check_positive(field: &str, duration: Duration) -> Result<()> {
    if duration.is_zero() {
        return Err(Error::config(format!("{field} must be longer than zero")));
    }
    check_duration(field, duration)
}

/// `duration`, cut to [`MAX_DURATION`].
pub(crate) fn capped(duration: Duration) -> Duration {
    duration.min(MAX_DURATION)
}

/// `at`, moved into the range of run times dogs accepts.
pub(crate) fn clamp_run_at(at: DateTime<Utc>) -> DateTime<Utc> {
    at.clamp(min_run_at(), max_run_at())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limits_hold_a_century_from_any_accepted_time() {
        assert_eq!(MAX_DURATION.as_secs(), 3_155_760_000);
        let latest = max_run_at() - chrono::Duration::from_std(MAX_DURATION).unwrap();
        assert!(latest.format("%Y").to_string().as_str() >= "9899");
        assert!(min_run_at() < max_run_at());
    }
}
