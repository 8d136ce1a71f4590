//! The page frame and the small pieces every page is made of: badges, times, durations, links.
//!
//! Every value from the store reaches the page through maud's escaping (never `PreEscaped`),
//! after [`shown`] has made invisible direction controls visible.

use std::time::Duration;

use axum::extract::{FromRequestParts, OriginalUri};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use dogs_core::{ExecutionStatus, JobState};
use maud::{html, Markup, DOCTYPE};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::auth;
use crate::State;

/// Everything but the unreserved characters of RFC 3986 is encoded.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `text` encoded for a query value or a path segment.
pub(crate) fn enc(text: &str) -> String {
    utf8_percent_encode(text, COMPONENT).to_string()
}

/// Which page of the navigation bar is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Nav {
    Overview,
    Jobs,
    Recurrent,
    Failed,
    None,
}

/// A message shown once, after an action.
#[derive(Debug, Clone)]
pub(crate) struct Flash {
    pub(crate) error: bool,
    pub(crate) text: String,
}

/// What a page knows of its request: where the dashboard is mounted, the flash message to show,
/// and the shared state.
pub(crate) struct Ctx {
    /// The prefix the router is mounted under, without a trailing `/` (empty at the root).
    pub(crate) base: String,
    /// The path and query of this request inside the router, to come back to after an action.
    pub(crate) here: String,
    pub(crate) flash: Option<Flash>,
    pub(crate) state: State,
    /// Whether the visitor logged in with the form (and may log out).
    pub(crate) cookie_login: bool,
}

impl FromRequestParts<State> for Ctx {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &State) -> Result<Self, Self::Rejection> {
        let base = base_of(parts);
        let here = parts
            .uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |pq| pq.as_str().to_owned());
        let flash = auth::cookie(&parts.headers, auth::FLASH_COOKIE).and_then(|value| {
            let text = percent_encoding::percent_decode_str(&value)
                .decode_utf8()
                .ok()?
                .into_owned();
            let (kind, text) = text.split_once(':')?;
            Some(Flash {
                error: kind == "error",
                text: text.to_owned(),
            })
        });
        let cookie_login = state.options.token.is_some()
            && auth::cookie(&parts.headers, auth::TOKEN_COOKIE).is_some();
        Ok(Ctx {
            base,
            here,
            flash,
            state: std::sync::Arc::clone(state),
            cookie_login,
        })
    }
}

/// The prefix the router is mounted under: the original path less the router's own path.
pub(crate) fn base_of(parts: &Parts) -> String {
    let inner = parts.uri.path();
    let original = parts
        .extensions
        .get::<OriginalUri>()
        .map_or(inner, |uri| uri.0.path());
    let base = original
        .strip_suffix(inner)
        .unwrap_or(if inner == "/" { original } else { "" });
    base.trim_end_matches('/').to_owned()
}

impl Ctx {
    /// A link to `path` (which starts with `/`) inside the dashboard.
    pub(crate) fn url(&self, path: &str) -> String {
        if path == "/" && !self.base.is_empty() {
            // A router nested at `/ops` answers `/ops`, not `/ops/`.
            return self.base.clone();
        }
        format!("{}{path}", self.base)
    }

    /// Whether action buttons are shown.
    pub(crate) fn can_act(&self) -> bool {
        !self.state.options.read_only
    }

    /// The page `body` in the dashboard's frame, with status 200, clearing a shown flash.
    pub(crate) fn page(&self, title: &str, nav: Nav, refresh: bool, body: Markup) -> Response {
        self.page_with(StatusCode::OK, title, nav, refresh, body)
    }

    /// [`page`](Ctx::page) with another status.
    pub(crate) fn page_with(
        &self,
        status: StatusCode,
        title: &str,
        nav: Nav,
        refresh: bool,
        body: Markup,
    ) -> Response {
        let app = self.state.options.title.as_deref().unwrap_or("dogs");
        let markup = html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { (title) " · " (app) }
                    link rel="stylesheet" href=(self.url("/assets/dashboard.css"));
                    script src=(self.url("/assets/dashboard.js")) defer {}
                }
                body {
                    header.topbar {
                        a.brand href=(self.url("/")) { span.logo { "◆" } " " (app) }
                        nav {
                            (nav_link(self, "/", "Overview", nav == Nav::Overview))
                            (nav_link(self, "/jobs", "Jobs", nav == Nav::Jobs))
                            (nav_link(self, "/recurrent", "Recurrent", nav == Nav::Recurrent))
                            (nav_link(self, "/failed", "Failed", nav == Nav::Failed))
                        }
                        div.spacer {}
                        @if self.state.options.read_only {
                            span.badge.readonly title="Actions are turned off" { "read-only" }
                        }
                        @if self.cookie_login {
                            form.inline method="post" action=(self.url("/logout")) {
                                (self.csrf_field())
                                button.link type="submit" { "Log out" }
                            }
                        }
                    }
                    @if let Some(flash) = &self.flash {
                        div.flash.error[flash.error] role="status" { (shown(&flash.text)) }
                    }
                    main id="main" data-refresh=[refresh.then_some("5")] {
                        (body)
                    }
                }
            }
        };
        let mut response = (status, markup).into_response();
        if self.flash.is_some() {
            if let Ok(value) = HeaderValue::from_str(&auth::clear_cookie(self, auth::FLASH_COOKIE))
            {
                response.headers_mut().append(header::SET_COOKIE, value);
            }
        }
        response
    }

    /// The hidden field with the action token, for every form that posts.
    pub(crate) fn csrf_field(&self) -> Markup {
        html! { input type="hidden" name="csrf" value=(self.state.csrf); }
    }

    /// A form of one button that posts to `action`, with `fields`, and comes back here.
    pub(crate) fn button(
        &self,
        action: &str,
        fields: &[(&str, &str)],
        label: &str,
        class: &str,
        confirm: Option<&str>,
    ) -> Markup {
        html! {
            form.inline method="post" action=(self.url(action)) data-confirm=[confirm] {
                (self.csrf_field())
                input type="hidden" name="back" value=(self.here);
                @for (name, value) in fields {
                    input type="hidden" name=(name) value=(value);
                }
                button type="submit" class=(class) { (label) }
            }
        }
    }

    /// The error page for a store error: its message, escaped; 503 when the store cannot be
    /// reached, 500 otherwise.
    pub(crate) fn store_error(&self, error: &dogs_core::Error) -> Response {
        let status = match error.kind() {
            dogs_core::ErrorKind::Unavailable | dogs_core::ErrorKind::TimedOut => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            dogs_core::ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        self.page_with(
            status,
            "Store error",
            Nav::None,
            false,
            html! {
                section.card.problem {
                    h1 { "The store answered with an error" }
                    pre.error { (shown(&error.to_string())) }
                    p { a href=(self.here_url()) { "Try again" } }
                }
            },
        )
    }

    /// The 404 page.
    pub(crate) fn not_found(&self, what: &str) -> Response {
        self.page_with(
            StatusCode::NOT_FOUND,
            "Not found",
            Nav::None,
            false,
            html! {
                section.card.problem {
                    h1 { "Not found" }
                    p { (shown(what)) }
                    p { a href=(self.url("/")) { "Back to the overview" } }
                }
            },
        )
    }

    fn here_url(&self) -> String {
        self.url(&self.here)
    }
}

fn nav_link(ctx: &Ctx, path: &str, label: &str, active: bool) -> Markup {
    html! { a.active[active] href=(ctx.url(path)) { (label) } }
}

/// `text` with the invisible controls that reorder text (bidirectional overrides, isolates and
/// marks) written out as `\u{..}`, so store data cannot disguise itself or what follows it.
pub(crate) fn shown(text: &str) -> String {
    if !text.chars().any(is_direction_control) {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if is_direction_control(c) {
            out.push_str(&format!("\\u{{{:04x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

fn is_direction_control(c: char) -> bool {
    matches!(c, '\u{200e}' | '\u{200f}' | '\u{061c}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// At most `max` characters of `text` (after [`shown`]), with `…` when cut.
pub(crate) fn clip(text: &str, max: usize) -> String {
    let text = shown(text);
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text,
    }
}

/// A state badge.
pub(crate) fn state_badge(state: JobState) -> Markup {
    html! { span class={ "badge state-" (state.as_str()) } { (state.as_str()) } }
}

/// A badge of an execution's status.
pub(crate) fn status_badge(status: ExecutionStatus) -> Markup {
    html! { span class={ "badge status-" (status.as_str()) } { (status.as_str()) } }
}

/// A time shown relative to `now` ("in 5 s", "3 min ago"), absolute in its title.
pub(crate) fn when(at: DateTime<Utc>, now: DateTime<Utc>) -> Markup {
    html! {
        time datetime=(at.to_rfc3339()) title=(absolute(at)) { (relative(at, now)) }
    }
}

/// `at` in UTC, to the second.
pub(crate) fn absolute(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// How far `at` is from `now`, in words: "now", "in 5 s", "3 min ago".
pub(crate) fn relative(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let seconds = (at - now).num_seconds();
    if seconds.abs() < 1 {
        return "now".to_owned();
    }
    let span = span(seconds.unsigned_abs());
    if seconds > 0 {
        format!("in {span}")
    } else {
        format!("{span} ago")
    }
}

fn span(seconds: u64) -> String {
    match seconds {
        0..=59 => format!("{seconds} s"),
        60..=3599 => format!("{} min", seconds / 60),
        3600..=35_999 => {
            let minutes = (seconds % 3600) / 60;
            if minutes == 0 {
                format!("{} h", seconds / 3600)
            } else {
                format!("{} h {minutes} min", seconds / 3600)
            }
        }
        36_000..=172_799 => format!("{} h", seconds / 3600),
        _ => format!("{} d", seconds / 86_400),
    }
}

/// A run time: "850 ms", "1.2 s", "3 min 4 s".
pub(crate) fn duration(d: Duration) -> String {
    millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A run time given in milliseconds.
pub(crate) fn millis(ms: u64) -> String {
    match ms {
        0..=999 => format!("{ms} ms"),
        1000..=59_999 => format!("{:.1} s", ms as f64 / 1000.0),
        _ => format!("{} min {} s", ms / 60_000, (ms % 60_000) / 1000),
    }
}

/// A recurrent job's schedule key in words: `every 300000ms` → `every 5 min`, `cron 0 3 * * *
/// Europe/Paris` → `cron 0 3 * * * (Europe/Paris)`.
pub(crate) fn schedule(key: &str) -> String {
    if let Some(ms) = key
        .strip_prefix("every ")
        .and_then(|rest| rest.strip_suffix("ms"))
        .and_then(|n| n.parse::<u64>().ok())
    {
        return format!("every {}", interval(ms));
    }
    if let Some(rest) = key.strip_prefix("cron ") {
        return match rest.rsplit_once(' ') {
            Some((expression, zone)) => format!("cron {expression} ({zone})"),
            None => format!("cron {rest}"),
        };
    }
    if key == "get_next_run" {
        return "custom (get_next_run)".to_owned();
    }
    key.to_owned()
}

fn interval(ms: u64) -> String {
    const UNITS: [(u64, &str); 5] = [
        (86_400_000, "d"),
        (3_600_000, "h"),
        (60_000, "min"),
        (1000, "s"),
        (1, "ms"),
    ];
    let parts: Vec<String> = UNITS
        .iter()
        .scan(ms, |left, (size, unit)| {
            let n = *left / size;
            *left %= size;
            Some((n, unit))
        })
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n} {unit}"))
        .collect();
    if parts.is_empty() {
        "0 ms".to_owned()
    } else {
        parts.join(" ")
    }
}

/// Params or progress as indented JSON.
pub(crate) fn pretty(value: &serde_json::Value) -> String {
    shown(&serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_words() {
        let now = DateTime::from_timestamp(1_000_000, 0).unwrap_or_default();
        let at = |s: i64| now + chrono::TimeDelta::seconds(s);
        assert_eq!(relative(at(0), now), "now");
        assert_eq!(relative(at(5), now), "in 5 s");
        assert_eq!(relative(at(-180), now), "3 min ago");
        assert_eq!(relative(at(3900), now), "in 1 h 5 min");
        assert_eq!(relative(at(-3 * 86_400), now), "3 d ago");
        assert_eq!(millis(850), "850 ms");
        assert_eq!(millis(1250), "1.2 s");
        assert_eq!(millis(184_000), "3 min 4 s");
    }

    #[test]
    fn schedules_read_as_words() {
        assert_eq!(schedule("every 300000ms"), "every 5 min");
        assert_eq!(schedule("every 90500ms"), "every 1 min 30 s 500 ms");
        assert_eq!(
            schedule("cron 0 3 * * * Europe/Paris"),
            "cron 0 3 * * * (Europe/Paris)"
        );
        assert_eq!(schedule("get_next_run"), "custom (get_next_run)");
    }

    #[test]
    fn direction_controls_are_shown_and_clipping_keeps_characters_whole() {
        assert_eq!(shown("a\u{202e}b"), "a\\u{202e}b");
        assert_eq!(clip("ééééé", 3), "ééé…");
        assert_eq!(clip("abc", 3), "abc");
    }

    #[test]
    fn components_are_percent_encoded() {
        assert_eq!(enc("a b/c?d&e=f#g"), "a%20b%2Fc%3Fd%26e%3Df%23g");
        assert_eq!(enc("send-invoice_v2.x~"), "send-invoice_v2.x~");
    }
}
