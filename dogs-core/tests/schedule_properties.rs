//! Property tests of recurrent schedules: for any time and any schedule of the shapes below, the
//! next run is after now, matches the schedule, and skips no earlier match; around clock changes
//! too, where a daily job runs once a day and an interval runs in both passes of a repeated hour.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use chrono::{DateTime, TimeZone, Timelike, Utc};
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

/// Zones with clock changes: an hour (Paris, New York, Santiago in the south), half an hour
/// (Lord Howe), and 45 minutes off the hour (Chatham).
const DST_ZONES: &[&str] = &[
    "Europe/Paris",
    "America/New_York",
    "America/Santiago",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
];

/// Every-N-minutes and hourly expressions, which run in both passes of a repeated hour.
const INTERVALS: &[&str] = &[
    "* * * * *",
    "*/5 * * * *",
    "*/15 * * * *",
    "*/30 * * * *",
    "0 * * * *",
];

fn offset_at(tz: Tz, at: DateTime<Utc>) -> i32 {
    use chrono::Offset;
    tz.offset_from_utc_datetime(&at.naive_utc())
        .fix()
        .local_minus_utc()
}

/// The clock changes of `zone` from 2020 to 2040, to the second (found once per zone).
fn transitions(zone: &str) -> Vec<DateTime<Utc>> {
    static FOUND: std::sync::Mutex<Vec<(String, Vec<DateTime<Utc>>)>> =
        std::sync::Mutex::new(Vec::new());
    let mut found = FOUND.lock().unwrap();
    if let Some((_, changes)) = found.iter().find(|(z, _)| z == zone) {
        return changes.clone();
    }
    let changes = scan_transitions(zone);
    found.push((zone.to_owned(), changes.clone()));
    changes
}

fn scan_transitions(zone: &str) -> Vec<DateTime<Utc>> {
    let tz: Tz = zone.parse().unwrap();
    let mut found = Vec::new();
    let mut at = DateTime::from_timestamp(1_577_836_800, 0).unwrap();
    let end = DateTime::from_timestamp(2_208_988_800, 0).unwrap();
    while at < end {
        let next = at + chrono::Duration::hours(1);
        if offset_at(tz, at) != offset_at(tz, next) {
            let (mut before, mut after) = (at, next);
            while after - before > chrono::Duration::seconds(1) {
                let middle = before + (after - before) / 2;
                if offset_at(tz, middle) == offset_at(tz, before) {
                    before = middle;
                } else {
                    after = middle;
                }
            }
            found.push(after);
        }
        at = next;
    }
    found
}

/// Whether `at`'s wall time in `tz` is the second occurrence of a repeated wall time.
fn second_pass(tz: Tz, at: DateTime<Utc>) -> bool {
    let wall = at.with_timezone(&tz).naive_local();
    matches!(
        tz.from_local_datetime(&wall),
        chrono::LocalResult::Ambiguous(_, later) if later.with_timezone(&Utc) == at
    )
}

fn cron_of(expression: &str) -> croner::Cron {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Optional)
        .build()
        .parse(expression)
        .unwrap()
}

fn next_of(schedule: &Schedule, now: DateTime<Utc>) -> DateTime<Utc> {
    match schedule.next_run_after(now) {
        Ok(RunAt::At(next)) => next,
        other => panic!("no next run after {now}: {other:?}"),
    }
}

/// A time within three hours of one of `zone`'s clock changes, to the millisecond.
fn near_a_change(zone: &str, pick: prop::sample::Index, ms: i64) -> DateTime<Utc> {
    let changes = transitions(zone);
    changes[pick.index(changes.len())] + chrono::Duration::milliseconds(ms)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    /// Around a clock change, an every-N-minutes expression runs strictly after now, at a wall
    /// time it matches, and skips no instant whose wall time matches: in a repeated hour it runs
    /// in both passes, in a missing hour it skips the times that do not exist.
    #[test]
    fn cron_intervals_at_clock_changes(
        zone in prop::sample::select(DST_ZONES),
        expression in prop::sample::select(INTERVALS),
        pick in any::<prop::sample::Index>(),
        ms in -10_800_000i64..10_800_000,
    ) {
        let tz: Tz = zone.parse().unwrap();
        let now = near_a_change(zone, pick, ms);
        let next = next_of(&Schedule::cron(expression, zone), now);
        prop_assert!(next > now, "{} is not after {}", next, now);
        let cron = cron_of(expression);
        prop_assert!(cron.is_time_matching(&next.with_timezone(&tz)).unwrap(), "{} does not match", next);
        let mut minute = DateTime::from_timestamp(now.timestamp() - now.timestamp() % 60 + 60, 0).unwrap();
        while minute < next {
            prop_assert!(
                !cron.is_time_matching(&minute.with_timezone(&tz)).unwrap(),
                "{} matches, after {} and before the next run {}", minute, now, next
            );
            minute += chrono::Duration::minutes(1);
        }
    }

    /// Around a clock change, a daily expression runs strictly after now and once a day: at its
    /// wall time; never twice in a repeated hour; at the end of the gap when its time does not
    /// exist that day.
    #[test]
    fn cron_daily_at_clock_changes(
        zone in prop::sample::select(DST_ZONES),
        minute in 0u32..60,
        hour in 0u32..24,
        pick in any::<prop::sample::Index>(),
        ms in -10_800_000i64..10_800_000,
    ) {
        let tz: Tz = zone.parse().unwrap();
        let expression = format!("{minute} {hour} * * *");
        let schedule = Schedule::cron(&expression, zone);
        let cron = cron_of(&expression);
        let now = near_a_change(zone, pick, ms);
        let next = next_of(&schedule, now);
        prop_assert!(next > now, "{} is not after {}", next, now);
        prop_assert!(next - now <= chrono::Duration::hours(26), "{} within a day of {}", next, now);
        let on_time = cron.is_time_matching(&next.with_timezone(&tz)).unwrap();
        let after_a_gap = offset_at(tz, next - chrono::Duration::seconds(1)) < offset_at(tz, next);
        prop_assert!(on_time || after_a_gap, "{} is neither its time nor the end of a gap", next);
        prop_assert!(!second_pass(tz, next), "{} repeats a wall time that already ran", next);
        // A run every local day around the change, and only one.
        let mut runs = Vec::new();
        let mut at = now - chrono::Duration::hours(30);
        while at < now + chrono::Duration::hours(30) {
            at = next_of(&schedule, at);
            runs.push(at.with_timezone(&tz).date_naive());
        }
        for pair in runs.windows(2) {
            prop_assert!(pair[0] != pair[1], "two runs on {} ({})", pair[0], expression);
            prop_assert_eq!((pair[1] - pair[0]).num_days(), 1, "a day without a run ({})", expression);
        }
    }
}
