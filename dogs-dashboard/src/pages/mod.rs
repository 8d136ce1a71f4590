//! The pages, one file each (overview, jobs, one job, recurrent jobs, failed jobs); the pieces
//! they share, and the embedded assets.

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
const CSS: &str = include_str!("../../assets/dashboard.css");

/// The script (refresh, select all, confirmations), compiled into the binary.
const JS: &str = include_str!("../../assets/dashboard.js");

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

/// The state choices of a listing's filter, and the one chosen.
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

mod failed;
mod job;
mod jobs;
mod overview;
mod recurrent;

pub(crate) use failed::failed;
pub(crate) use job::job;
pub(crate) use jobs::jobs;
pub(crate) use overview::overview;
pub(crate) use recurrent::recurrent;
