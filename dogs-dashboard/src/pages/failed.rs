//! `GET /failed`: failed jobs, newest first.

use super::*;

/// `GET /failed?name=&page=`: failed jobs, newest first, with their errors.
pub(crate) async fn failed(
    ctx: Ctx,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Response {
    let params = params.map(|Query(p)| p).unwrap_or_default();
    let store = &ctx.state.store;
    let now = store!(ctx, store.now());
    let counts = store!(ctx, store.count_jobs());
    let failing: Vec<JobCounts> = counts.into_iter().filter(|c| c.failed > 0).collect();
    let query = JobQuery {
        name: params.name().map(str::to_owned),
        state: Some(JobState::Failed),
        limit: PAGE_SIZE,
        offset: (params.page() - 1) * PAGE_SIZE,
    };
    let (jobs, has_next) = store!(ctx, page_of(&ctx, query));
    let body = html! {
        section.card {
            div.card-head {
                (listing_title("Failed jobs", params.name()))
                (filter_form(&ctx, "/failed", &failing, params.name(), None))
            }
            @if !failing.is_empty() {
                div.chips {
                    @for c in &failing {
                        span.chip.active[params.name() == Some(c.name.as_str())] {
                            a href=(ctx.url(&format!("/failed?name={}", enc(&c.name)))) { (clip(&c.name, 40)) }
                            " " span.count { (c.failed) }
                            @if ctx.can_act() {
                                (ctx.button("/actions/retry-failed", &[("name", &c.name)], "Retry all", "tiny",
                                    Some("Retry every failed job of this name?")))
                            }
                        }
                    }
                }
            }
            @if jobs.is_empty() {
                p.empty { "No failed job. " span.muted { "All is well." } }
            } @else {
                (bulk_form(&ctx, html! {
                    (bulk_bar(&ctx, "Retry selected", "Remove the selected failed jobs?", "Remove selected"))
                    table.grid.failed {
                        thead {
                            tr {
                                (select_all_cell(&ctx))
                                th { "Id" } th { "Name" } th { "Error" } th.num { "Tries" } th { "Ran" } th { "Expires" }
                                @if ctx.can_act() { th.actions { "" } }
                            }
                        }
                        tbody {
                            @for job in &jobs {
                                tr data-id=(job.id.as_str()) {
                                    (select_and_id_cells(&ctx, &job.id))
                                    td.name { (clip(&job.name, 40)) }
                                    td.error-text { @if let Some(e) = &job.last_error { (clip(e, 140)) } }
                                    td.num { (job.tries) }
                                    td { (when(job.run_at, now)) }
                                    td { @if let Some(at) = job.expires_at { (when(at, now)) } }
                                    @if ctx.can_act() {
                                        td.actions {
                                            button.tiny type="submit" formaction=(ctx.url("/actions/retry")) name="only" value=(job.id.as_str()) { "Retry" }
                                            button.tiny.danger type="submit" formaction=(ctx.url("/actions/cancel")) name="only" value=(job.id.as_str())
                                                data-confirm="Remove this failed job?" { "Remove" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }))
                (pager(&ctx, "/failed", &params, jobs.len(), has_next))
            }
        }
    };
    ctx.page("Failed jobs", Nav::Failed, false, body)
}
