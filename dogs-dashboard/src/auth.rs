//! Who may do what: the token, the login form, the checks on every POST, and the headers of
//! every response.

use axum::extract::{Form, Request, State as AxumState};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use subtle::ConstantTimeEq;

use crate::view::{self, Ctx};
use crate::State;

/// The cookie the login form sets: the token itself, HttpOnly and SameSite=Strict.
pub(crate) const TOKEN_COOKIE: &str = "dogs_dashboard_token";

/// The cookie that carries the message shown once after an action.
pub(crate) const FLASH_COOKIE: &str = "dogs_dashboard_flash";

/// The policy of every response: only the dashboard's own script and style run, and no page
/// frames it.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; frame-ancestors 'none'";

/// 32 random bytes from the OS, as hex; where the OS has none to give, 128 bits of a generator
/// seeded from the time, better than a fixed value.
pub(crate) fn random_token() -> String {
    let mut bytes = [0u8; 32];
    match getrandom::fill(&mut bytes) {
        Ok(()) => bytes.iter().map(|b| format!("{b:02x}")).collect(),
        Err(_) => format!("{}{}", dogs_core::random_id(), dogs_core::random_id()),
    }
}

/// Whether two secrets are equal, in time that does not depend on where they differ.
pub(crate) fn same_secret(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// The value of cookie `name`, if the request has it.
pub(crate) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
}

fn cookie_path(ctx_base: &str) -> String {
    if ctx_base.is_empty() {
        "/".to_owned()
    } else {
        ctx_base.to_owned()
    }
}

/// A `Set-Cookie` value for `name` = `value` (percent-encoded), on the dashboard's path only.
pub(crate) fn set_cookie(base: &str, name: &str, value: &str, max_age: Option<u64>) -> String {
    let age = max_age.map_or_else(String::new, |s| format!("; Max-Age={s}"));
    format!(
        "{name}={}; Path={}; HttpOnly; SameSite=Strict{age}",
        view::enc(value),
        cookie_path(base)
    )
}

/// A `Set-Cookie` value that removes cookie `name`.
pub(crate) fn clear_cookie(ctx: &Ctx, name: &str) -> String {
    format!(
        "{name}=; Path={}; HttpOnly; SameSite=Strict; Max-Age=0",
        cookie_path(&ctx.base)
    )
}

/// Whether the request carries the token, as a bearer token or the login cookie.
fn authenticated(headers: &HeaderMap, token: &str) -> bool {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .is_some_and(|given| same_secret(given.trim(), token));
    bearer
        || cookie(headers, TOKEN_COOKIE)
            .and_then(|value| {
                percent_encoding::percent_decode_str(&value)
                    .decode_utf8()
                    .ok()
                    .map(|v| v.into_owned())
            })
            .is_some_and(|given| same_secret(&given, token))
}

/// Whether a POST comes from another site: `Sec-Fetch-Site: cross-site`, or an `Origin` that is
/// neither the request's `Host` nor an allowed origin.
fn cross_site(headers: &HeaderMap, allowed: &[String]) -> bool {
    let fetch_site = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if fetch_site.eq_ignore_ascii_case("cross-site") {
        return true;
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return false;
    };
    let Ok(origin) = origin.to_str() else {
        return true;
    };
    let origin = origin.trim_end_matches('/');
    if allowed
        .iter()
        .any(|a| a.trim_end_matches('/').eq_ignore_ascii_case(origin))
    {
        return false;
    }
    let authority = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    match (authority, host) {
        (Some(authority), Some(host)) => !authority.eq_ignore_ascii_case(host),
        _ => true,
    }
}

/// Checks every request before its handler: the token where one is set (the login form and the
/// assets excepted), and for a POST the site it comes from and the read-only switch. The action
/// token of a form is checked by its handler, which reads the form.
pub(crate) async fn guard(
    AxumState(state): AxumState<State>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    let is_post = request.method() == Method::POST;
    let open = path == "/login" || path.starts_with("/assets/");
    if is_post && cross_site(request.headers(), &state.options.allowed_origins) {
        return refusal(
            StatusCode::FORBIDDEN,
            "This request comes from another site.",
        );
    }
    if let Some(token) = &state.options.token {
        if !open && !authenticated(request.headers(), token) {
            if is_post {
                return refusal(StatusCode::UNAUTHORIZED, "This dashboard needs its token.");
            }
            let (parts, _) = request.into_parts();
            let base = view::base_of(&parts);
            return login_form(&state, &base, None, StatusCode::UNAUTHORIZED);
        }
    }
    if is_post && path != "/login" && state.options.read_only {
        return refusal(StatusCode::FORBIDDEN, "This dashboard is read-only.");
    }
    next.run(request).await
}

/// A short plain page for a refused request.
pub(crate) fn refusal(status: StatusCode, why: &str) -> Response {
    let page = html! {
        (maud::DOCTYPE)
        html lang="en" {
            head { meta charset="utf-8"; title { "Refused" } }
            body { h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("")) } p { (why) } }
        }
    };
    (status, page).into_response()
}

/// Adds the security headers to every response.
pub(crate) async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

fn login_form(state: &State, base: &str, error: Option<&str>, status: StatusCode) -> Response {
    let app = state.options.title.as_deref().unwrap_or("dogs");
    let page = html! {
        (maud::DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "Log in · " (app) }
                link rel="stylesheet" href={ (base) "/assets/dashboard.css" };
            }
            body.login {
                main.card.login-card {
                    h1 { span.logo { "◆" } " " (app) }
                    p.muted { "This dashboard needs its access token." }
                    @if let Some(error) = error {
                        div.flash.error role="alert" { (error) }
                    }
                    form method="post" action={ (base) "/login" } {
                        input type="hidden" name="csrf" value=(state.login_csrf);
                        label for="token" { "Token" }
                        input id="token" type="password" name="token" autocomplete="current-password" autofocus;
                        button.primary type="submit" { "Log in" }
                    }
                }
            }
        }
    };
    (status, page).into_response()
}

/// `GET /login`: the login form (the overview when no token is set).
pub(crate) async fn login_page(ctx: Ctx) -> Response {
    if ctx.state.options.token.is_none() {
        return Redirect::to(&ctx.url("/")).into_response();
    }
    login_form(&ctx.state, &ctx.base, None, StatusCode::OK)
}

/// `POST /login`: with the right token, sets the login cookie and goes to the overview.
pub(crate) async fn login(ctx: Ctx, Form(fields): Form<Vec<(String, String)>>) -> Response {
    let field = |name: &str| {
        fields
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    };
    if !field("csrf").is_some_and(|given| same_secret(given, &ctx.state.login_csrf)) {
        return refusal(StatusCode::FORBIDDEN, "The form is out of date: reload it.");
    }
    let Some(token) = &ctx.state.options.token else {
        return Redirect::to(&ctx.url("/")).into_response();
    };
    if !field("token").is_some_and(|given| same_secret(given, token)) {
        return login_form(
            &ctx.state,
            &ctx.base,
            Some("That is not the token."),
            StatusCode::UNAUTHORIZED,
        );
    }
    let mut response = Redirect::to(&ctx.url("/")).into_response();
    if let Ok(value) = HeaderValue::from_str(&set_cookie(&ctx.base, TOKEN_COOKIE, token, None)) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// `POST /logout`: removes the login cookie.
pub(crate) async fn logout(ctx: Ctx, Form(fields): Form<Vec<(String, String)>>) -> Response {
    if !fields
        .iter()
        .any(|(key, value)| key == "csrf" && same_secret(value, &ctx.state.csrf))
    {
        return refusal(StatusCode::FORBIDDEN, "The form is out of date: reload it.");
    }
    let mut response = Redirect::to(&ctx.url("/login")).into_response();
    if let Ok(value) = HeaderValue::from_str(&clear_cookie(&ctx, TOKEN_COOKIE)) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn origins_are_compared_with_the_host() {
        let none: Vec<String> = Vec::new();
        assert!(!cross_site(&headers(&[("host", "a.test:8080")]), &none));
        assert!(!cross_site(
            &headers(&[("host", "a.test:8080"), ("origin", "http://a.test:8080")]),
            &none
        ));
        assert!(cross_site(
            &headers(&[("host", "a.test:8080"), ("origin", "http://evil.test")]),
            &none
        ));
        assert!(cross_site(
            &headers(&[("host", "a.test"), ("origin", "null")]),
            &none
        ));
        assert!(cross_site(
            &headers(&[("host", "a.test"), ("sec-fetch-site", "cross-site")]),
            &none
        ));
        assert!(!cross_site(
            &headers(&[("host", "internal:80"), ("origin", "https://ops.test")]),
            &["https://ops.test/".to_owned()]
        ));
    }

    #[test]
    fn tokens_are_random_and_long() {
        let (a, b) = (random_token(), random_token());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert!(same_secret(&a, &a.clone()));
        assert!(!same_secret(&a, &b));
    }
}
