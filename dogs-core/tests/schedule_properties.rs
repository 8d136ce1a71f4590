//! Property tests of recurrent schedules: for any time and any schedule of the shapes below, the
//! next run is after now, matches the schedule, and skips no earlier match.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use chrono::{DateTime, Timelike, Utc};
use chrono_tz::Tz;
use dogs_core::{RunAt, Schedule};
use proptest::prelude::*;

const ZONES: &[&str] = &[
    "UTC",
    "Europe/Paris",
    "America/New_York",
    "Asia/Kolkata",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
];

/// Any instant from 2000 to 2100, to the millisecond.
fn instant() -> impl Strategy<Value = DateTime<Utc>> {
    (946_684_800_000i64..4_102_444_800_000)
        .prop_map(|ms| DateTime::from_timestamp_millis(ms).unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    /// `run_every(d)` runs again `d` after the end of a run, whatever the time.
    #[test]
    fn every_runs_after_its_interval(ms in 1u64..31_536_000_000, now in instant()) {
        let interval = Duration::from_millis(ms);
        prop_assert_eq!(Schedule::every(interval).next_run_after(now).unwrap(), RunAt::In(interval));
    }

    /// A daily cron at a minute of an hour, in any of several timezones (with DST changes, and
    /// offsets of 30 and 45 minutes): the next run is after now, within a day and an hour, on a
    /// whole minute with the expression's minute in the zone, and nothing earlier matches.
    #[test]
    fn cron_next_run_matches_and_skips_nothing(
        minute in 0u32..60,
        hour in 0u32..24,
        zone in prop::sample::select(ZONES),
        now in instant(),
    ) {
        let schedule = Schedule::cron(format!("{minute} {hour} * * *"), zone);
        let Ok(RunAt::At(next)) = schedule.next_run_after(now) else {
            panic!("no next run");
        };
        prop_assert!(next > now, "{} after {}", next, now);
        prop_assert!(next - now <= chrono::Duration::hours(25), "{} within a day of {}", next, now);
        let local = next.with_timezone(&zone.parse::<Tz>().unwrap());
        prop_assert_eq!((local.minute(), local.second(), local.nanosecond()), (minute, 0, 0));
        // From any time between now and the next run, the next run is the same one.
        let between = now + (next - now) / 2;
        prop_assert_eq!(schedule.next_run_after(between).unwrap(), RunAt::At(next));
    }

    /// A cron with seconds, every `step` seconds: the next run is at most `step` seconds away,
    /// on a multiple of `step` within the minute.
    #[test]
    fn cron_seconds_step(step in 1u32..30, now in instant()) {
        let schedule = Schedule::cron(format!("*/{step} * * * * *"), "UTC");
        let Ok(RunAt::At(next)) = schedule.next_run_after(now) else {
            panic!("no next run");
        };
        prop_assert!(next > now);
        prop_assert!(next - now <= chrono::Duration::seconds(i64::from(step)));
        prop_assert_eq!(next.second() % step, 0);
        prop_assert_eq!(next.nanosecond(), 0);
    }
}
