//! `GET /jobs`: jobs by name and state.

use super::*;

/// `GET /jobs?name=&state=&page=`: jobs by name and state, a page at a time, to act on several.
pub(crate) async fn jobs(ctx: Ctx, params: Result<Query<ListParams>, QueryRejection>) -> Response {
    let params = params.map(|Query(p)| p).unwrap_or_default();
    let store = &ctx.state.store;
    let now = store!(ctx, store.now());
    let counts = store!(ctx, store.count_jobs());
    let query = JobQuery {
        name: params.name().map(str::to_owned),
        state: params.state(),
        limit: PAGE_SIZE,
        offset: (params.page() - 1) * PAGE_SIZE,
    };
    let (jobs, has_next) = store!(ctx, page_of(&ctx, query));
    let state_options = [
        ("", "every state"),
        ("pending", "pending"),
        ("running", "running"),
        ("failed", "failed"),
    ];
    let current_state = params.state().map_or("", JobState::as_str);
    let body = html! {
        section.card {
            div.card-head {
                (listing_title("Jobs", params.name()))
                (filter_form(&ctx, "/jobs", &counts, params.name(), Some((&state_options, current_state))))
            }
            @if jobs.is_empty() {
                p.empty { "No job matches." }
            } @else {
                (bulk_form(&ctx, html! {
                    (bulk_bar(&ctx, "Run now / retry", "Cancel the selected jobs? Pending and failed ones are removed.", "Cancel"))
                    table.grid.jobs {
                        thead {
                            tr {
                                (select_all_cell(&ctx))
                                th { "Id" } th { "Name" } th { "State" } th { "Runs at" }
                                th.num { "Tries" } th.num { "Priority" } th { "Unique id" } th { "Details" }
                            }
                        }
                        tbody {
                            @for job in &jobs {
                                tr data-id=(job.id.as_str()) {
                                    (select_and_id_cells(&ctx, &job.id))
                                    td.name { (clip(&job.name, 60)) }
                                    td {
                                        (state_badge(job.state))
                                        @if job.paused { " " span.badge.paused { "paused" } }
                                        @if job.kind == JobKind::Recurrent { " " span.badge.kind { "recurrent" } }
                                    }
                                    td { (when(job.run_at, now)) }
                                    td.num { (job.tries) }
                                    td.num { (job.priority) }
                                    td.mono { @if let Some(u) = &job.unique_identifier { (clip(u, 40)) } }
                                    td.details { (job_summary(job, now)) }
                                }
                            }
                        }
                    }
                }))
                (pager(&ctx, "/jobs", &params, jobs.len(), has_next))
            }
        }
    };
    ctx.page("Jobs", Nav::Jobs, false, body)
}

/// One line about a job for a listing: its error, its lease or its progress.
fn job_summary(job: &Job, now: DateTime<Utc>) -> Markup {
    html! {
        @match job.state {
            JobState::Failed => {
                @if let Some(error) = &job.last_error { span.error-text { (clip(error, 120)) } }
            }
            JobState::Running => {
                @if let Some(worker) = &job.locked_by { span.mono { (clip(worker, 40)) } }
                @if let Some(until) = job.locked_until { " · lease ends " (when(until, now)) }
                @if let Some(progress) = &job.progress { " · " span.mono { (clip(&progress.to_string(), 60)) } }
            }
            JobState::Pending => {
                @if job.tries > 0 { span.muted { "tried " (job.tries) "×" } }
            }
        }
    }
}
