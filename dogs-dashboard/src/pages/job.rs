//! `GET /jobs/{id}`: one job.

use super::*;

/// `GET /jobs/{id}`: one job, its params, lease, progress and executions.
pub(crate) async fn job(ctx: Ctx, Path(id): Path<String>) -> Response {
    let store = &ctx.state.store;
    let id = JobId::new(id);
    let now = store!(ctx, store.now());
    let Some(job) = store!(ctx, store.get_job(&id)) else {
        return ctx.not_found(&format!(
            "There is no job {} (it may have run and been removed).",
            id
        ));
    };
    let executions = store!(
        ctx,
        store.executions(
            &ExecutionQuery::name(job.name.clone())
                .job_id(job.id.clone())
                .limit(50)
        )
    );
    let id_field = [("id", job.id.as_str())];
    let leave_to = if job.state == JobState::Failed {
        "/failed"
    } else {
        "/jobs"
    };
    let body = html! {
        section.card {
            div.card-head {
                h1 {
                    (clip(&job.name, 80)) " "
                    (state_badge(job.state))
                    @if job.paused { " " span.badge.paused { "paused" } }
                    @if job.kind == JobKind::Recurrent { " " span.badge.kind { "recurrent" } }
                }
                @if ctx.can_act() {
                    div.buttons {
                        @match job.state {
                            JobState::Failed => { (ctx.button("/actions/retry", &id_field, "Retry", "primary", None)) }
                            JobState::Pending => { (ctx.button("/actions/retry", &id_field, "Run now", "primary", None)) }
                            JobState::Running => {}
                        }
                        @if !(job.kind == JobKind::Recurrent && job.state == JobState::Running) {
                            (removal_button(&ctx, &job, leave_to))
                        }
                        (pause_button(&ctx, &job.name, job.paused))
                    }
                }
            }
            dl.facts {
                dt { "Id" } dd.mono { (shown(job.id.as_str())) }
                dt { "Name" } dd { a href=(ctx.url(&format!("/jobs?name={}", enc(&job.name)))) { (shown(&job.name)) } }
                dt { "Kind" } dd { (job.kind.as_str()) }
                dt { "Runs at" } dd { (when(job.run_at, now)) " " span.muted { (view::absolute(job.run_at)) } }
                dt { "Tries" } dd { (job.tries) }
                dt { "Priority" } dd { (job.priority) }
                dt { "Unique id" } dd.mono { @if let Some(u) = &job.unique_identifier { (shown(u)) } @else { span.muted { "none" } } }
                @if let Some(key) = &job.schedule_key {
                    dt { "Schedule" } dd { (shown(&view::schedule(key))) }
                }
                dt { "Lease holder" } dd.mono { @if let Some(w) = &job.locked_by { (shown(w)) } @else { span.muted { "none" } } }
                dt { "Lease ends" } dd { @if let Some(at) = job.locked_until { (when(at, now)) } @else { span.muted { "none" } } }
                dt { "Created" } dd { (when(job.created_at, now)) }
                @if let Some(at) = job.expires_at {
                    dt { "Expires" } dd { (when(at, now)) }
                }
            }
            @if let Some(error) = &job.last_error {
                h2 { "Error" }
                pre.error { (shown(error)) }
            }
            @if let Some(progress) = &job.progress {
                h2 { "Progress" }
                pre.json.progress { (view::pretty(progress)) }
            }
            h2 { "Params" }
            pre.json.params { (view::pretty(&job.params)) }
        }
        section.card {
            div.card-head { h2 { "Executions" } span.muted { "newest first" } }
            @if executions.is_empty() {
                p.empty { "No execution is recorded for this job." }
            } @else {
                table.grid.executions {
                    thead { tr { th { "Started" } th { "Status" } th.num { "Try" } th.num { "Run time" } th { "Worker" } th { "Error or result" } } }
                    tbody {
                        @for e in &executions {
                            tr data-status=(e.status.as_str()) {
                                td { (when(e.started_at, now)) }
                                td { (status_badge(e.status)) }
                                td.num { (e.tries) }
                                td.num { (view::duration(e.duration)) }
                                td.mono { (clip(&e.worker_id, 40)) }
                                td.outcome {
                                    @if let Some(error) = &e.error {
                                        (long_text(error, "error-text"))
                                    } @else if let Some(result) = &e.result {
                                        (long_text(&result.to_string(), "mono"))
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    ctx.page(
        &format!("Job {}", clip(job.id.as_str(), 24)),
        Nav::Jobs,
        true,
        body,
    )
}

fn removal_button(ctx: &Ctx, job: &Job, leave_to: &str) -> Markup {
    let (label, confirm) = match job.state {
        JobState::Running => (
            "Cancel",
            "Cancel this running job? Its handler is told to stop.",
        ),
        JobState::Failed => ("Remove", "Remove this failed job?"),
        JobState::Pending => ("Cancel", "Cancel this job? It is removed."),
    };
    html! {
        form.inline method="post" action=(ctx.url("/actions/cancel")) data-confirm=(confirm) {
            (ctx.csrf_field())
            input type="hidden" name="back" value=(if job.state == JobState::Running { ctx.here.as_str() } else { leave_to });
            input type="hidden" name="id" value=(job.id.as_str());
            button.danger type="submit" { (label) }
        }
    }
}

/// A text that may be long: its start, and the whole of it behind a `details`.
fn long_text(text: &str, class: &str) -> Markup {
    let short = clip(text, 160);
    html! {
        @if short.chars().count() < text.chars().count() {
            details {
                summary class=(class) { (short) }
                pre class=(class) { (shown(text)) }
            }
        } @else {
            span class=(class) { (short) }
        }
    }
}
