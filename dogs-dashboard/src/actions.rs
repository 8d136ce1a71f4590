//! The actions, each a POST of a form that carries the action token: retry or run now, cancel
//! or remove, retry every failed job of a name, pause and resume. Each answers with a redirect
//! (303) back to the page it came from, which shows what it did once.

use std::sync::Arc;

use axum::extract::Form;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use dogs_core::{JobId, JobStore};

use crate::auth::{self, same_secret};
use crate::view::{clip, Ctx};

/// The most jobs one request acts on.
const MAX_IDS: usize = 500;

/// A posted action form.
struct Action {
    ids: Vec<JobId>,
    name: Option<String>,
    back: String,
}

/// Reads the form and checks its action token: `None` without the right one.
fn read(ctx: &Ctx, fields: Vec<(String, String)>) -> Option<Action> {
    let mut csrf_ok = false;
    let mut ids = Vec::new();
    let mut only = None;
    let mut name = None;
    let mut back = None;
    for (key, value) in fields {
        match key.as_str() {
            "csrf" => csrf_ok |= same_secret(&value, &ctx.state.csrf),
            "id" if !value.is_empty() => ids.push(JobId::new(value)),
            "only" if !value.is_empty() => only = Some(JobId::new(value)),
            "name" if !value.is_empty() => name = Some(value),
            "back" => back = Some(value),
            _ => {}
        }
    }
    if !csrf_ok {
        return None;
    }
    if let Some(only) = only {
        // A row's own button in a form of checkboxes acts on its row alone.
        ids = vec![only];
    }
    ids.dedup();
    ids.truncate(MAX_IDS);
    Some(Action {
        ids,
        name,
        back: safe_back(back.as_deref()),
    })
}

/// The answer to a form without the right action token.
fn forged() -> Response {
    auth::refusal(
        StatusCode::FORBIDDEN,
        "The form is out of date or comes from elsewhere: reload the page and try again.",
    )
}

/// Where to go back to: a path inside the dashboard, never another site.
fn safe_back(back: Option<&str>) -> String {
    match back {
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && !path.contains('\\')
                && !path.chars().any(char::is_control) =>
        {
            path.to_owned()
        }
        _ => "/".to_owned(),
    }
}

/// The redirect back, with the message to show once.
fn done(ctx: &Ctx, action: &Action, error: bool, message: &str) -> Response {
    let mut response = Redirect::to(&ctx.url(&action.back)).into_response();
    let value = format!(
        "{}:{}",
        if error { "error" } else { "ok" },
        clip(message, 300)
    );
    if let Ok(cookie) = HeaderValue::from_str(&auth::set_cookie(
        &ctx.base,
        auth::FLASH_COOKIE,
        &value,
        Some(60),
    )) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

fn jobs(n: u64) -> String {
    if n == 1 {
        "1 job".to_owned()
    } else {
        format!("{n} jobs")
    }
}

/// Calls `act` on every id and sums up: how many it did, how many were gone, and the errors.
async fn each<F, Fut>(ctx: &Ctx, action: &Action, verb: &str, act: F) -> Response
where
    F: Fn(JobId) -> Fut,
    Fut: std::future::Future<Output = dogs_core::Result<bool>>,
{
    if action.ids.is_empty() {
        return done(ctx, action, true, "No job was selected.");
    }
    let (mut did, mut gone, mut errors) = (0u64, 0u64, Vec::new());
    for id in &action.ids {
        match act(id.clone()).await {
            Ok(true) => did += 1,
            Ok(false) => gone += 1,
            Err(error) => errors.push(format!("{id}: {error}")),
        }
    }
    let mut parts = Vec::new();
    if did > 0 || (gone == 0 && errors.is_empty()) {
        parts.push(format!("{} {verb}", jobs(did)));
    }
    if gone > 0 {
        parts.push(format!("{} no longer there", jobs(gone)));
    }
    if !errors.is_empty() {
        parts.push(format!(
            "{} refused: {}",
            jobs(errors.len() as u64),
            errors.join("; ")
        ));
    }
    done(
        ctx,
        action,
        !errors.is_empty(),
        &format!("{}.", parts.join("; ")),
    )
}

/// Reads the posted form and calls `act` with the store on every id of it, as `each` does.
async fn each_selected<F, Fut>(
    ctx: Ctx,
    fields: Vec<(String, String)>,
    verb: &str,
    act: F,
) -> Response
where
    F: Fn(Arc<dyn JobStore>, JobId) -> Fut,
    Fut: std::future::Future<Output = dogs_core::Result<bool>>,
{
    let Some(action) = read(&ctx, fields) else {
        return forged();
    };
    let store = ctx.state.store.clone();
    each(&ctx, &action, verb, |id| act(store.clone(), id)).await
}

/// `POST /actions/retry` with `id`s: failed jobs run again, pending ones run now.
pub(crate) async fn retry(ctx: Ctx, Form(fields): Form<Vec<(String, String)>>) -> Response {
    each_selected(ctx, fields, "due now", |store, id| async move {
        store.retry(&id).await
    })
    .await
}

/// `POST /actions/cancel` with `id`s: pending and failed jobs are removed, running ones
/// cancelled.
pub(crate) async fn cancel(ctx: Ctx, Form(fields): Form<Vec<(String, String)>>) -> Response {
    each_selected(
        ctx,
        fields,
        "cancelled or removed",
        |store, id| async move { store.cancel(&id).await },
    )
    .await
}

/// `POST /actions/retry-failed` with a `name`: every failed job of the name runs again.
pub(crate) async fn retry_failed(ctx: Ctx, Form(fields): Form<Vec<(String, String)>>) -> Response {
    let Some(action) = read(&ctx, fields) else {
        return forged();
    };
    let Some(name) = action.name.clone() else {
        return done(&ctx, &action, true, "No job name was given.");
    };
    match ctx.state.store.retry_failed(&name).await {
        Ok(n) => done(
            &ctx,
            &action,
            false,
            &format!("{} of {name} due now.", jobs(n)),
        ),
        Err(error) => done(
            &ctx,
            &action,
            true,
            &format!("Retrying {name} failed: {error}"),
        ),
    }
}

async fn set_paused(ctx: Ctx, fields: Vec<(String, String)>, paused: bool) -> Response {
    let Some(action) = read(&ctx, fields) else {
        return forged();
    };
    let Some(name) = action.name.clone() else {
        return done(&ctx, &action, true, "No job name was given.");
    };
    let (verb, outcome) = if paused {
        ("paused", ctx.state.store.pause(&name).await)
    } else {
        ("resumed", ctx.state.store.resume(&name).await)
    };
    match outcome {
        Ok(()) => done(&ctx, &action, false, &format!("{name} {verb}.")),
        Err(error) => done(
            &ctx,
            &action,
            true,
            &format!("{name} could not be {verb}: {error}"),
        ),
    }
}

/// `POST /actions/pause` with a `name`: no worker claims its jobs until it is resumed.
pub(crate) async fn pause(ctx: Ctx, Form(fields): Form<Vec<(String, String)>>) -> Response {
    set_paused(ctx, fields, true).await
}

/// `POST /actions/resume` with a `name`.
pub(crate) async fn resume(ctx: Ctx, Form(fields): Form<Vec<(String, String)>>) -> Response {
    set_paused(ctx, fields, false).await
}

#[cfg(test)]
mod tests {
    use super::safe_back;

    #[test]
    fn going_back_stays_inside_the_dashboard() {
        assert_eq!(safe_back(Some("/failed?name=a%20b")), "/failed?name=a%20b");
        assert_eq!(safe_back(Some("//evil.test/")), "/");
        assert_eq!(safe_back(Some("https://evil.test/")), "/");
        assert_eq!(safe_back(Some("/\\evil.test")), "/");
        assert_eq!(safe_back(Some("/a\r\nSet-Cookie: x")), "/");
        assert_eq!(safe_back(None), "/");
    }
}
