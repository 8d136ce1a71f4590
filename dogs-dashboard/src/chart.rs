//! The overview's charts, drawn as inline SVG from the store's per-minute figures: executions per
//! minute (stacked by outcome) and run time (mean and longest) per minute, over the last hour.

use chrono::{DateTime, TimeDelta, Utc};
use dogs_core::{minute_of, ExecutionMinute, ExecutionStatus};
use maud::{html, Markup};

use crate::view;

/// Minutes shown.
pub(crate) const MINUTES: usize = 60;

const WIDTH: f64 = 600.0;
const HEIGHT: f64 = 140.0;
const LEFT: f64 = 52.0;
const RIGHT: f64 = 8.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 22.0;

/// One minute of the chart: executions by outcome, and run times.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Minute {
    pub(crate) succeeded: u64,
    pub(crate) failed: u64,
    pub(crate) stale: u64,
    pub(crate) other: u64,
    total_ms: u64,
    count: u64,
    pub(crate) max_ms: u64,
}

impl Minute {
    fn executions(&self) -> u64 {
        self.succeeded + self.failed + self.stale + self.other
    }

    fn mean_ms(&self) -> Option<u64> {
        self.total_ms.checked_div(self.count)
    }
}

/// The last [`MINUTES`] minutes up to `now`'s, oldest first, and the first minute's start.
pub(crate) fn minutes(
    stats: &[ExecutionMinute],
    now: DateTime<Utc>,
) -> (DateTime<Utc>, Vec<Minute>) {
    let first = minute_of(now) - TimeDelta::minutes(MINUTES as i64 - 1);
    let mut minutes = vec![Minute::default(); MINUTES];
    for entry in stats {
        let index = (entry.minute - first).num_minutes();
        let Some(minute) = usize::try_from(index).ok().and_then(|i| minutes.get_mut(i)) else {
            continue;
        };
        match entry.status {
            ExecutionStatus::Success => minute.succeeded += entry.count,
            ExecutionStatus::Error | ExecutionStatus::Failed => minute.failed += entry.count,
            ExecutionStatus::Stale => minute.stale += entry.count,
            ExecutionStatus::Cancelled | ExecutionStatus::Snoozed => minute.other += entry.count,
        }
        minute.count += entry.count;
        minute.total_ms = minute.total_ms.saturating_add(entry.total_ms);
        minute.max_ms = minute.max_ms.max(entry.max_ms);
    }
    (first, minutes)
}

/// The smallest of 1, 2, 5 × 10ⁿ at least `value` (and at least 1).
fn nice_ceiling(value: f64) -> f64 {
    if value <= 1.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(value.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|step| step * magnitude)
        .find(|candidate| *candidate >= value)
        .unwrap_or(10.0 * magnitude)
}

fn plot_width() -> f64 {
    WIDTH - LEFT - RIGHT
}

fn plot_height() -> f64 {
    HEIGHT - TOP - BOTTOM
}

fn x_of(index: usize) -> f64 {
    LEFT + plot_width() * index as f64 / MINUTES as f64
}

fn y_of(value: f64, max: f64) -> f64 {
    TOP + plot_height() * (1.0 - value / max)
}

/// The axes, grid lines and labels both charts share; `label` writes a y value.
fn frame(max: f64, label: impl Fn(f64) -> String) -> Markup {
    let ticks = [0.0, max / 2.0, max];
    html! {
        @for tick in ticks {
            line.grid x1=(LEFT) x2=(WIDTH - RIGHT) y1=(fmt(y_of(tick, max))) y2=(fmt(y_of(tick, max))) {}
            text.axis x=(LEFT - 6.0) y=(fmt(y_of(tick, max) + 4.0)) text-anchor="end" { (label(tick)) }
        }
        @for (index, text) in [(0usize, "60 min ago"), (30, "30 min ago"), (MINUTES, "now")] {
            text.axis x=(fmt(x_of(index).min(WIDTH - RIGHT))) y=(HEIGHT - 6.0)
                text-anchor=(if index == 0 { "start" } else if index == MINUTES { "end" } else { "middle" }) { (text) }
        }
    }
}

fn fmt(value: f64) -> String {
    format!("{value:.1}")
}

fn count_label(value: f64) -> String {
    if value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

/// Executions per minute, stacked: succeeded, failed (error and failed), stale, other
/// (cancelled, snoozed).
pub(crate) fn executions(first: DateTime<Utc>, minutes: &[Minute]) -> Markup {
    let peak = minutes.iter().map(Minute::executions).max().unwrap_or(0);
    let max = nice_ceiling(peak.max(2) as f64);
    let bar = plot_width() / MINUTES as f64;
    html! {
        svg.chart viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } role="img"
            aria-label="Executions per minute over the last hour" {
            (frame(max, count_label))
            @for (index, minute) in minutes.iter().enumerate() {
                @if minute.executions() > 0 {
                    g.bar {
                        title {
                            (view::absolute(first + TimeDelta::minutes(index as i64)))
                            ": " (minute.succeeded) " succeeded, " (minute.failed) " failed, "
                            (minute.stale) " stale"
                            @if minute.other > 0 { ", " (minute.other) " cancelled or snoozed" }
                        }
                        @for (class, top, height) in segments(minute, max) {
                            rect class=(class) x=(fmt(x_of(index) + 0.5)) y=(fmt(top))
                                width=(fmt((bar - 1.0).max(1.0))) height=(fmt(height)) {}
                        }
                    }
                }
            }
        }
    }
}

/// The stacked parts of one minute's bar: class, top and height.
fn segments(minute: &Minute, max: f64) -> Vec<(&'static str, f64, f64)> {
    let mut below = 0u64;
    let mut parts = Vec::new();
    for (class, count) in [
        ("ok", minute.succeeded),
        ("bad", minute.failed),
        ("stale", minute.stale),
        ("other", minute.other),
    ] {
        if count > 0 {
            let top = y_of((below + count) as f64, max);
            let bottom = y_of(below as f64, max);
            parts.push((class, top, (bottom - top).max(0.5)));
            below += count;
        }
    }
    parts
}

/// Run time per minute: the mean and the longest, as lines with a dot per minute.
pub(crate) fn run_time(first: DateTime<Utc>, minutes: &[Minute]) -> Markup {
    let peak = minutes.iter().map(|m| m.max_ms).max().unwrap_or(0);
    let max = nice_ceiling(peak.max(10) as f64);
    let center = |index: usize| x_of(index) + plot_width() / MINUTES as f64 / 2.0;
    let points = |pick: &dyn Fn(&Minute) -> Option<u64>| -> Vec<(usize, u64)> {
        minutes
            .iter()
            .enumerate()
            .filter_map(|(i, m)| pick(m).map(|v| (i, v)))
            .collect()
    };
    let means = points(&|m| m.mean_ms());
    let maxes = points(&|m| (m.count > 0).then_some(m.max_ms));
    let line = |points: &[(usize, u64)]| -> String {
        points
            .iter()
            .map(|(i, v)| format!("{},{}", fmt(center(*i)), fmt(y_of(*v as f64, max))))
            .collect::<Vec<_>>()
            .join(" ")
    };
    html! {
        svg.chart viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } role="img"
            aria-label="Run time per minute over the last hour" {
            (frame(max, |v| view::millis(v as u64)))
            polyline.max points=(line(&maxes)) {}
            polyline.mean points=(line(&means)) {}
            @for (series, class) in [(&maxes, "max"), (&means, "mean")] {
                @for (i, v) in series.iter() {
                    circle class=(class) cx=(fmt(center(*i))) cy=(fmt(y_of(*v as f64, max))) r="2.5" {
                        title {
                            (view::absolute(first + TimeDelta::minutes(*i as i64))) ": "
                            (if class == "max" { "longest " } else { "mean " }) (view::millis(*v))
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_are_round() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(3.0), 5.0);
        assert_eq!(nice_ceiling(7.0), 10.0);
        assert_eq!(nice_ceiling(11.0), 20.0);
        assert_eq!(nice_ceiling(1500.0), 2000.0);
    }

    #[test]
    fn figures_land_in_their_minute() {
        let now = DateTime::from_timestamp(1_000_000_020, 0).unwrap();
        let entry = |ago: i64, status, count, total_ms, max_ms| ExecutionMinute {
            minute: minute_of(now) - TimeDelta::minutes(ago),
            status,
            count,
            total_ms,
            max_ms,
        };
        let stats = vec![
            entry(0, ExecutionStatus::Success, 3, 300, 200),
            entry(0, ExecutionStatus::Error, 1, 100, 100),
            entry(0, ExecutionStatus::Failed, 1, 500, 500),
            entry(59, ExecutionStatus::Stale, 2, 20, 10),
            entry(60, ExecutionStatus::Success, 9, 9, 9),
        ];
        let (_, minutes) = minutes(&stats, now);
        assert_eq!(minutes.len(), MINUTES);
        let last = minutes[MINUTES - 1];
        assert_eq!((last.succeeded, last.failed, last.max_ms), (3, 2, 500));
        assert_eq!(last.mean_ms(), Some(180));
        assert_eq!(minutes[0].stale, 2);
        assert_eq!(minutes.iter().map(Minute::executions).sum::<u64>(), 7);
    }
}
