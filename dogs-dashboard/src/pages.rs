//! The pages: overview, jobs, one job, recurrent jobs, failed jobs; and the embedded assets.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, TimeDelta, Utc};
use dogs_core::{ExecutionQuery, Job, JobCounts, JobId, JobKind, JobQuery, JobState};
use maud::{html, Markup};
use serde::Deserialize;

use crate::chart;
use crate::view::{self, clip, enc, shown, state_badge, status_badge, when, Ctx, Nav};

/// Jobs per page of a listing.
pub(crate) const PAGE_SIZE: usize = 50;

/// The highest page number taken; past it, the last one is shown.
const MAX_PAGE: usize = 100_000;

/// The stylesheet, compiled into the binary.
const CSS: &str = include_str!("../assets/dashboard.css");

/// The script (refresh, select all, confirmations), compiled into the binary.
const JS: &str = include_str!("../assets/dashboard.js");

/// Awaits a store call; on an error, returns the error page from the handler.
macro_rules! store {
    ($ctx:expr, $call:expr) => {
        match $call.await {
            Ok(value) => value,
            Err(error) => return $ctx.store_error(&error),
        }
    };
}

/// The query of the listing pages; every field is read leniently, so a bad link shows a page.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ListParams {
    name: Option<String>,
    state: Option<String>,
    page: Option<String>,
}

impl ListParams {
    fn name(&self) -> Option<&str> {
        self.name.as_deref().filter(|n| !n.is_empty())
    }

    fn state(&self) -> Option<JobState> {
        match self.state.as_deref() {
            Some("pending") => Some(JobState::Pending),
            Some("running") => Some(JobState::Running),
            Some("failed") => Some(JobState::Failed),
            _ => None,
        }
    }

    fn page(&self) -> usize {
        self.page
            .as_deref()
            .and_then(|p| p.parse::<usize>().ok())
            .unwrap_or(1)
            .clamp(1, MAX_PAGE)
    }
}

/// `GET /assets/dashboard.css`.
pub(crate) async fn css() -> Response {
    asset("text/css; charset=utf-8", CSS)
}

/// `GET /assets/dashboard.js`.
pub(crate) async fn js() -> Response {
    asset("text/javascript; charset=utf-8", JS)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response()
}

/// Any other path: the 404 page.
pub(crate) async fn not_found(ctx: Ctx) -> Response {
    ctx.not_found("There is no page here.")
}

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

fn pause_button(ctx: &Ctx, name: &str, paused: bool) -> Markup {
    if paused {
        ctx.button(
            "/actions/resume",
            &[("name", name)],
            "Resume",
            "small primary",
            None,
        )
    } else {
        ctx.button("/actions/pause", &[("name", name)], "Pause", "small", None)
    }
}

/// The link to the listing `path` with `name`, `state` and `page`.
fn listing(
    ctx: &Ctx,
    path: &str,
    name: Option<&str>,
    state: Option<JobState>,
    page: usize,
) -> String {
    let mut query = Vec::new();
    if let Some(name) = name {
        query.push(format!("name={}", enc(name)));
    }
    if let Some(state) = state {
        query.push(format!("state={}", state.as_str()));
    }
    if page > 1 {
        query.push(format!("page={page}"));
    }
    if query.is_empty() {
        ctx.url(path)
    } else {
        ctx.url(&format!("{path}?{}", query.join("&")))
    }
}

fn pager(ctx: &Ctx, path: &str, params: &ListParams, shown_count: usize, has_next: bool) -> Markup {
    let page = params.page();
    let first = (page - 1) * PAGE_SIZE;
    html! {
        nav.pager {
            @if page > 1 {
                a.button.small href=(listing(ctx, path, params.name(), params.state(), page - 1)) rel="prev" { "← Newer" }
            }
            span.muted {
                @if shown_count == 0 { "none" } @else { (first + 1) "–" (first + shown_count) }
            }
            @if has_next {
                a.button.small href=(listing(ctx, path, params.name(), params.state(), page + 1)) rel="next" { "Older →" }
            }
        }
    }
}

async fn page_of(ctx: &Ctx, query: JobQuery) -> dogs_core::Result<(Vec<Job>, bool)> {
    let limit = query.limit;
    let mut jobs = ctx.state.store.list_jobs(&query.limit(limit + 1)).await?;
    let has_next = jobs.len() > limit;
    jobs.truncate(limit);
    Ok((jobs, has_next))
}

fn job_link(ctx: &Ctx, id: &JobId) -> String {
    ctx.url(&format!("/jobs/{}", enc(id.as_str())))
}

/// The heading of a listing: its title, and the name it is filtered by, if any.
fn listing_title(title: &str, name: Option<&str>) -> Markup {
    html! {
        h1 {
            (title)
            @if let Some(name) = name { " · " (shown(name)) }
        }
    }
}

/// The bar above a listing that retries or cancels the selected jobs; only for who may act.
fn bulk_bar(ctx: &Ctx, retry: &str, cancel_confirm: &str, cancel: &str) -> Markup {
    html! {
        @if ctx.can_act() {
            div.bulk {
                span.muted data-selected { "Select jobs to act on several at once." }
                button.small type="submit" formaction=(ctx.url("/actions/retry")) { (retry) }
                button.small.danger type="submit" formaction=(ctx.url("/actions/cancel"))
                    data-confirm=(cancel_confirm) { (cancel) }
            }
        }
    }
}

/// The header cell that selects every row of a listing; only for who may act.
fn select_all_cell(ctx: &Ctx) -> Markup {
    html! {
        @if ctx.can_act() { th.check { input type="checkbox" data-select-all title="Select all"; } }
    }
}

/// The first cells of a job's row in a listing: its checkbox (for who may act) and its id.
fn select_and_id_cells(ctx: &Ctx, id: &JobId) -> Markup {
    html! {
        @if ctx.can_act() {
            td.check { input type="checkbox" name="id" value=(id.as_str()); }
        }
        td.id { a href=(job_link(ctx, id)) title=(shown(id.as_str())) { (clip(id.as_str(), 14)) } }
    }
}

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

type StateOptions<'a> = (&'a [(&'a str, &'a str)], &'a str);

fn filter_form(
    ctx: &Ctx,
    path: &str,
    counts: &[JobCounts],
    name: Option<&str>,
    states: Option<StateOptions<'_>>,
) -> Markup {
    let known = name.is_none_or(|n| counts.iter().any(|c| c.name == n));
    html! {
        form.filters method="get" action=(ctx.url(path)) {
            select name="name" aria-label="Job name" {
                option value="" { "every name" }
                @if !known {
                    @if let Some(name) = name { option value=(name) selected { (clip(name, 60)) } }
                }
                @for c in counts {
                    option value=(c.name) selected[Some(c.name.as_str()) == name] { (clip(&c.name, 60)) }
                }
            }
            @if let Some((options, current)) = states {
                select name="state" aria-label="State" {
                    @for (value, label) in options.iter() {
                        option value=(value) selected[*value == current] { (label) }
                    }
                }
            }
            button.small type="submit" { "Show" }
        }
    }
}

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

/// A listing's rows inside the form their checkboxes post with, when actions are on.
fn bulk_form(ctx: &Ctx, rows: Markup) -> Markup {
    html! {
        @if ctx.can_act() {
            form #bulk method="post" action=(ctx.url("/actions/retry")) {
                (ctx.csrf_field())
                input type="hidden" name="back" value=(ctx.here);
                (rows)
            }
        } @else {
            (rows)
        }
    }
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
