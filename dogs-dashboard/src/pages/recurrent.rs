//! `GET /recurrent`: the recurrent jobs.

use super::*;

/// `GET /recurrent`: every recurrent job, its schedule, next and last run.
pub(crate) async fn recurrent(ctx: Ctx) -> Response {
    let store = &ctx.state.store;
    let now = store!(ctx, store.now());
    let jobs = store!(ctx, store.list_recurrent());
    let mut last_runs = Vec::with_capacity(jobs.len());
    for job in &jobs {
        let query = ExecutionQuery::name(job.name.clone())
            .job_id(job.id.clone())
            .limit(1);
        last_runs.push(store!(ctx, store.executions(&query)).into_iter().next());
    }
    let body = html! {
        section.card {
            div.card-head { h1 { "Recurrent jobs" } span.muted { (jobs.len()) " registered" } }
            @if jobs.is_empty() {
                p.empty { "No recurrent job is registered." }
            } @else {
                table.grid.recurrent {
                    thead {
                        tr {
                            th { "Name" } th { "Schedule" } th { "State" } th { "Next run" }
                            th { "Last run" } th { "Last status" } th.num { "Last run time" }
                            @if ctx.can_act() { th.actions { "" } }
                        }
                    }
                    tbody {
                        @for (job, last) in jobs.iter().zip(&last_runs) {
                            tr data-name=(job.name) {
                                td.name { a href=(job_link(&ctx, &job.id)) { (clip(&job.name, 60)) } }
                                td.mono { @if let Some(key) = &job.schedule_key { (clip(&view::schedule(key), 80)) } }
                                td {
                                    (state_badge(job.state))
                                    @if job.paused { " " span.badge.paused { "paused" } }
                                }
                                td { (when(job.run_at, now)) }
                                @if let Some(last) = last {
                                    td { (when(last.ended_at, now)) }
                                    td {
                                        (status_badge(last.status))
                                        @if let Some(error) = &last.error { " " span.error-text title=(clip(error, 500)) { (clip(error, 60)) } }
                                    }
                                    td.num { (view::duration(last.duration)) }
                                } @else {
                                    td.muted { "never" } td {} td {}
                                }
                                @if ctx.can_act() {
                                    td.actions {
                                        @if job.state == JobState::Pending {
                                            (ctx.button("/actions/retry", &[("id", job.id.as_str())], "Run now", "small", None))
                                        }
                                        (pause_button(&ctx, &job.name, job.paused))
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    ctx.page("Recurrent jobs", Nav::Recurrent, true, body)
}
