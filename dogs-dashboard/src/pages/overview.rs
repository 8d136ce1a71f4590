//! `GET /`: the overview.

use super::*;

fn due(counts: &JobCounts) -> u64 {
    counts.pending.saturating_sub(counts.scheduled)
}

/// `GET /`: counts per name, pause and resume, and the charts of the last hour.
pub(crate) async fn overview(ctx: Ctx) -> Response {
    let store = &ctx.state.store;
    let now = store!(ctx, store.now());
    let counts = store!(ctx, store.count_jobs());
    let stats = store!(ctx, store.execution_stats(now - TimeDelta::hours(1)));
    let (first, minutes) = chart::minutes(&stats, now);
    let sum = |pick: fn(&JobCounts) -> u64| counts.iter().map(pick).sum::<u64>();
    let totals = [
        ("due", "Due", sum(due), ctx.url("/jobs?state=pending")),
        (
            "scheduled",
            "Scheduled",
            sum(|c| c.scheduled),
            ctx.url("/jobs?state=pending"),
        ),
        (
            "running",
            "Running",
            sum(|c| c.running),
            ctx.url("/jobs?state=running"),
        ),
        ("failed", "Failed", sum(|c| c.failed), ctx.url("/failed")),
    ];
    let hour = |pick: fn(&chart::Minute) -> u64| minutes.iter().map(pick).sum::<u64>();
    let (succeeded, failed, stale) = (hour(|m| m.succeeded), hour(|m| m.failed), hour(|m| m.stale));
    let body = html! {
        section.totals {
            @for (key, label, value, link) in &totals {
                a class={ "total total-" (key) } href=(link) data-total=(key) {
                    span.figure { (value) }
                    span.label { (label) }
                }
            }
        }
        section.charts {
            div.card {
                div.card-head {
                    h2 { "Executions per minute" }
                    span.muted { "last hour" }
                }
                (chart::executions(first, &minutes))
                div.legend {
                    span.key.ok { "succeeded " strong data-hour="succeeded" { (succeeded) } }
                    span.key.bad { "failed " strong data-hour="failed" { (failed) } }
                    span.key.stale { "stale " strong data-hour="stale" { (stale) } }
                }
            }
            div.card {
                div.card-head {
                    h2 { "Run time per minute" }
                    span.muted { "last hour" }
                }
                (chart::run_time(first, &minutes))
                div.legend {
                    span.key.mean { "mean" }
                    span.key.max { "longest" }
                }
            }
        }
        section.card {
            div.card-head {
                h2 { "Jobs by name" }
                span.muted { "updated " (when(now, now)) }
            }
            @if counts.is_empty() {
                p.empty { "No jobs are stored yet." }
            } @else {
                table.grid.counts {
                    thead {
                        tr {
                            th { "Name" }
                            th.num { "Due" }
                            th.num { "Scheduled" }
                            th.num { "Running" }
                            th.num { "Failed" }
                            th { "Status" }
                            @if ctx.can_act() { th.actions { "" } }
                        }
                    }
                    tbody {
                        @for c in &counts {
                            (count_row(&ctx, c))
                        }
                    }
                }
            }
        }
    };
    ctx.page("Overview", Nav::Overview, true, body)
}

fn count_row(ctx: &Ctx, c: &JobCounts) -> Markup {
    let name = enc(&c.name);
    let number = |value: u64, link: String| {
        html! {
            @if value > 0 { a href=(link) { (value) } } @else { span.zero { "0" } }
        }
    };
    html! {
        tr data-name=(c.name) .paused[c.paused] {
            td.name { a href=(ctx.url(&format!("/jobs?name={name}"))) { (shown(&c.name)) } }
            td.num.c-due { (number(due(c), ctx.url(&format!("/jobs?name={name}&state=pending")))) }
            td.num.c-scheduled { (number(c.scheduled, ctx.url(&format!("/jobs?name={name}&state=pending")))) }
            td.num.c-running { (number(c.running, ctx.url(&format!("/jobs?name={name}&state=running")))) }
            td.num.c-failed.alert[c.failed > 0] { (number(c.failed, ctx.url(&format!("/failed?name={name}")))) }
            td.c-paused {
                @if c.paused { span.badge.paused { "paused" } } @else { span.badge.active { "active" } }
            }
            @if ctx.can_act() {
                td.actions { (pause_button(ctx, &c.name, c.paused)) }
            }
        }
    }
}
