#![doc = include_str!("../README.md")]

mod actions;
mod auth;
mod chart;
mod pages;
mod view;

use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;
use dogs_core::JobStore;

/// How a dashboard behaves: whether it may act on jobs, and who may use it.
///
/// The router enforces exactly what it is given; deciding what a deployment needs (a token on
/// a public address, read-only for a shared screen) is the caller's.
#[derive(Debug, Clone, Default)]
pub struct DashboardOptions {
    /// Shows jobs without any action: no button is rendered, and every action (every POST but
    /// the login form) answers `403 Forbidden`.
    pub read_only: bool,
    /// A secret every request must carry, as `Authorization: Bearer <token>` or as the cookie the
    /// login form sets. With a token, pages too are shown only to those who hold it (a page
    /// shows params, which may hold personal data); without it, anyone who reaches the router
    /// may use it.
    pub token: Option<String>,
    /// Origins (`https://ops.example.com`) whose forms may post besides the dashboard's own,
    /// for a dashboard behind a proxy that rewrites the `Host` header. A POST whose `Origin`
    /// header is neither its `Host` nor one of these is refused.
    pub allowed_origins: Vec<String>,
    /// The page title and the name in the navigation bar; `dogs` when `None`.
    pub title: Option<String>,
}

/// What every handler shares: the store, the options and the secrets of this router.
pub(crate) struct Dashboard {
    pub(crate) store: Arc<dyn JobStore>,
    pub(crate) options: DashboardOptions,
    /// The token every action form carries, random for each router.
    pub(crate) csrf: String,
    /// The token the login form carries, random for each router, apart from `csrf` so that
    /// the action token is never shown to a visitor who has not logged in.
    pub(crate) login_csrf: String,
}

pub(crate) type State = Arc<Dashboard>;

/// The dashboard as an axum [`Router`] over `store`, to serve on its own or to mount in a
/// service with [`Router::nest`]; every link it renders starts with the prefix it is mounted
/// under.
pub fn router(store: Arc<dyn JobStore>, options: DashboardOptions) -> Router {
    let state = Arc::new(Dashboard {
        store,
        options,
        csrf: auth::random_token(),
        login_csrf: auth::random_token(),
    });
    Router::new()
        .route("/", get(pages::overview))
        .route("/jobs", get(pages::jobs))
        .route("/jobs/{id}", get(pages::job))
        .route("/recurrent", get(pages::recurrent))
        .route("/failed", get(pages::failed))
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/logout", post(auth::logout))
        .route("/actions/retry", post(actions::retry))
        .route("/actions/cancel", post(actions::cancel))
        .route("/actions/retry-failed", post(actions::retry_failed))
        .route("/actions/pause", post(actions::pause))
        .route("/actions/resume", post(actions::resume))
        .route("/assets/dashboard.css", get(pages::css))
        .route("/assets/dashboard.js", get(pages::js))
        .fallback(pages::not_found)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            auth::guard,
        ))
        .layer(axum::middleware::from_fn(auth::security_headers))
        .with_state(state)
}

/// Serves the dashboard over `store` on `listener` until the server fails: what the `dogs
/// dashboard` command runs.
pub async fn serve(
    listener: tokio::net::TcpListener,
    store: Arc<dyn JobStore>,
    options: DashboardOptions,
) -> std::io::Result<()> {
    axum::serve(listener, router(store, options)).await
}
