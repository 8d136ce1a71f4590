//! The dashboard's router, driven request by request over the memory store: every page, the
//! escaping of hostile store data, and every check on actions.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::Router;
use chrono::{DateTime, Utc};
use dogs_core::{
    async_trait, ClaimRequest, Claimed, Completion, Error, Execution, ExecutionMinute,
    ExecutionQuery, ExecutionStatus, Job, JobCounts, JobId, JobKind, JobQuery, JobState, JobStore,
    Lease, NameSettings, NewJob, PruneReport, RecurrentRegistration, RetryBatch, RunAt, Scheduled,
};
use dogs_dashboard::{router, DashboardOptions};
use dogs_memory::MemoryStore;
use serde_json::json;
use tower::ServiceExt;

const PREFIX: &str = "/ops";
const HOST: &str = "dash.test:8080";

const HOSTILE: [&str; 5] = [
    "<script>alert(1)</script>",
    "\"><img src=x onerror=alert(1)>",
    "</textarea><b>bold</b>",
    "'; DROP TABLE jobs; --",
    "abc\u{202e}fdp.exe",
];

/// The dashboard nested under [`PREFIX`], as a service mounts it.
fn app(store: &MemoryStore, options: DashboardOptions) -> Router {
    Router::new().nest(PREFIX, router(Arc::new(store.clone()), options))
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    fn cookies(&self) -> Vec<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }

    fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
    }

    /// The action token of the page's forms.
    fn csrf(&self) -> String {
        let at = self
            .body
            .find("name=\"csrf\" value=\"")
            .expect("a form with a token");
        let rest = &self.body[at + "name=\"csrf\" value=\"".len()..];
        rest[..rest.find('"').unwrap()].to_owned()
    }
}

async fn send(app: &Router, request: Request<Body>) -> Answer {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    Answer {
        status,
        headers,
        body: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}

async fn get(app: &Router, path: &str) -> Answer {
    get_with(app, path, &[]).await
}

async fn get_with(app: &Router, path: &str, headers: &[(&str, &str)]) -> Answer {
    // Nested at `/ops`, the overview is `/ops`.
    let path = if path == "/" { "" } else { path };
    let mut request = Request::get(format!("{PREFIX}{path}")).header(header::HOST, HOST);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    send(app, request.body(Body::empty()).unwrap()).await
}

async fn post(app: &Router, path: &str, form: &[(&str, &str)], headers: &[(&str, &str)]) -> Answer {
    let body: Vec<String> = form
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect();
    let mut request = Request::post(format!("{PREFIX}{path}"))
        .header(header::HOST, HOST)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    send(app, request.body(Body::from(body.join("&"))).unwrap()).await
}

fn enc(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

async fn schedule(store: &MemoryStore, job: NewJob) -> JobId {
    match store.schedule(job).await.unwrap() {
        Scheduled::Created(id) => id,
        other => panic!("expected a new job, got {other:?}"),
    }
}

/// Claims the due job of `name` (leased for 10 minutes) and, with `error`, fails it.
async fn claim(store: &MemoryStore, name: &str, error: Option<&str>) -> JobId {
    let request = ClaimRequest::new([name], Duration::from_secs(600), 1).worker_id("worker-1@host");
    let claimed = store.claim(&request).await.unwrap().jobs.remove(0);
    if let Some(error) = error {
        let fail = Completion::Fail {
            error: error.to_owned(),
            retain_for: Duration::from_secs(3600),
        };
        store.complete(&claimed.lease, fail).await.unwrap();
    }
    claimed.job.id
}

async fn record(store: &MemoryStore, id: &JobId, name: &str, status: ExecutionStatus, ms: u64) {
    let now = store.now().await.unwrap();
    let duration = Duration::from_millis(ms);
    store
        .record_execution(&Execution {
            job_id: id.clone(),
            execution_id: dogs_core::execution_id(),
            name: name.to_owned(),
            kind: JobKind::Event,
            priority: 1,
            tries: 1,
            unique_identifier: None,
            params: json!({}),
            started_at: now - chrono::TimeDelta::milliseconds(ms as i64),
            ended_at: now,
            duration,
            status,
            error: (status != ExecutionStatus::Success).then(|| "boom <b>".to_owned()),
            result: None,
            worker_id: "worker-1@host".to_owned(),
            expires_at: now + chrono::TimeDelta::days(1),
        })
        .await
        .unwrap();
}

/// A store with jobs in every state, a recurrent job and some executions.
async fn populated() -> (MemoryStore, JobId, JobId) {
    let store = MemoryStore::new();
    schedule(
        &store,
        NewJob::new("send-invoice", json!({"customer": "ada", "cents": 4200})),
    )
    .await;
    schedule(
        &store,
        NewJob::new("send-invoice", json!({"customer": "bob"})),
    )
    .await;
    schedule(
        &store,
        NewJob::new("send-invoice", json!({"customer": "eve"}))
            .run_at(RunAt::In(Duration::from_secs(3600)))
            .unique_identifier("invoice-17"),
    )
    .await;
    schedule(&store, NewJob::new("sync-crm", json!({"account": 7}))).await;
    let running = claim(&store, "sync-crm", None).await;
    schedule(&store, NewJob::new("charge-card", json!({"card": "4242"}))).await;
    let failed = claim(
        &store,
        "charge-card",
        Some("card declined: insufficient funds"),
    )
    .await;
    store
        .register_recurrent(RecurrentRegistration {
            name: "nightly-report".to_owned(),
            schedule_key: "cron 0 3 * * * Europe/Paris".to_owned(),
            priority: 1,
            next_run_at: store.now().await.unwrap() + chrono::TimeDelta::seconds(5 * 3600 + 30),
        })
        .await
        .unwrap();
    record(&store, &running, "sync-crm", ExecutionStatus::Success, 120).await;
    record(&store, &running, "sync-crm", ExecutionStatus::Success, 340).await;
    record(
        &store,
        &failed,
        "charge-card",
        ExecutionStatus::Failed,
        2500,
    )
    .await;
    (store, running, failed)
}

fn assert_secure_headers(answer: &Answer) {
    assert_eq!(
        answer.headers[header::CONTENT_SECURITY_POLICY],
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'"
    );
    assert_eq!(answer.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
}

/// Every link, form action and asset of a page, which must all start with the mount prefix.
fn links(body: &str) -> Vec<String> {
    let mut found = Vec::new();
    for attribute in ["href=\"", "action=\"", "src=\"", "formaction=\""] {
        let mut rest = body;
        while let Some(at) = rest.find(attribute) {
            rest = &rest[at + attribute.len()..];
            found.push(rest[..rest.find('"').unwrap()].to_owned());
        }
    }
    found
}

fn assert_links_under_prefix(body: &str) {
    for link in links(body) {
        assert!(
            link == PREFIX || link.starts_with(&format!("{PREFIX}/")),
            "{link} is under {PREFIX}"
        );
    }
}

#[tokio::test]
async fn overview_shows_counts_and_charts() {
    let (store, _, _) = populated().await;
    let app = app(&store, DashboardOptions::default());
    let page = get(&app, "/").await;
    assert_eq!(page.status, StatusCode::OK);
    assert_secure_headers(&page);
    let row = |name: &str| {
        let at = page.body.find(&format!("data-name=\"{name}\"")).unwrap();
        page.body[at..at + page.body[at..].find("</tr>").unwrap()].to_owned()
    };
    let invoice = row("send-invoice");
    assert!(
        invoice.contains("c-due\"><a href=\"/ops/jobs?name=send-invoice&amp;state=pending\">2</a>"),
        "{invoice}"
    );
    assert!(invoice.contains("c-scheduled\"><a"), "{invoice}");
    assert!(row("sync-crm")
        .contains("c-running\"><a href=\"/ops/jobs?name=sync-crm&amp;state=running\">1</a>"));
    assert!(row("charge-card").contains("/ops/failed?name=charge-card\">1</a>"));
    assert!(invoice.contains("/ops/actions/pause"));
    assert!(page.body.contains("<svg class=\"chart\""));
    assert!(
        page.body.contains("data-hour=\"succeeded\">2<"),
        "two successes in the hour"
    );
    assert!(page.body.contains("data-hour=\"failed\">1<"));
    assert!(page.body.contains("data-refresh=\"5\""));
    assert!(!page.body.contains("{\""), "no JSON on the overview");
    assert_links_under_prefix(&page.body);
    let empty = get(&app_for(MemoryStore::new()), "/").await;
    assert!(empty.body.contains("No jobs are stored yet."));
}

/// The page with every attribute value left out (maud writes `"` in them as `&quot;`).
fn outside_attributes(body: &str) -> String {
    body.split('"').step_by(2).collect()
}

fn app_for(store: MemoryStore) -> Router {
    app(&store, DashboardOptions::default())
}

#[tokio::test]
async fn every_page_answers_with_its_content() {
    let (store, running, failed) = populated().await;
    let app = app(&store, DashboardOptions::default());

    let jobs = get(&app, "/jobs?name=send-invoice").await;
    assert_eq!(jobs.status, StatusCode::OK);
    assert!(jobs.body.contains("invoice-17"));
    assert!(jobs.body.contains("name=\"id\""));
    assert!(jobs.body.contains("Run now / retry"));
    assert_links_under_prefix(&jobs.body);
    let running_only = get(&app, "/jobs?state=running").await;
    assert!(running_only
        .body
        .contains(&format!("data-id=\"{running}\"")));
    assert!(!running_only.body.contains("invoice-17"));

    let job = get(&app, &format!("/jobs/{running}")).await;
    assert_eq!(job.status, StatusCode::OK);
    assert!(
        job.body.contains("&quot;account&quot;: 7"),
        "pretty params: {}",
        job.body
    );
    assert!(job.body.contains("worker-1@host"), "lease holder");
    assert!(job.body.contains("status-success"), "its executions");
    assert!(job.body.contains("340 ms"));
    assert_links_under_prefix(&job.body);

    let failed_job = get(&app, &format!("/jobs/{failed}")).await;
    assert!(failed_job
        .body
        .contains("card declined: insufficient funds"));
    assert!(failed_job.body.contains(">Retry</button>"));
    assert!(failed_job.body.contains(">Remove</button>"));
    assert!(failed_job.body.contains("2.5 s"));

    let recurrent = get(&app, "/recurrent").await;
    assert_eq!(recurrent.status, StatusCode::OK);
    assert!(recurrent.body.contains("nightly-report"));
    assert!(recurrent.body.contains("cron 0 3 * * * (Europe/Paris)"));
    assert!(recurrent.body.contains("<time datetime="));
    assert!(recurrent.body.contains("never"), "it never ran");
    assert_links_under_prefix(&recurrent.body);

    let failed_page = get(&app, "/failed").await;
    assert_eq!(failed_page.status, StatusCode::OK);
    assert!(failed_page
        .body
        .contains("card declined: insufficient funds"));
    assert!(failed_page.body.contains("Retry all"));
    assert_links_under_prefix(&failed_page.body);

    let css = get(&app, "/assets/dashboard.css").await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(css.headers[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/css"));
    let js = get(&app, "/assets/dashboard.js").await;
    assert!(js.headers[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
    assert_secure_headers(&js);

    let missing = get(&app, "/jobs/no-such-job").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(missing.body.contains("There is no job no-such-job"));
    assert_eq!(get(&app, "/nowhere").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_dashboard_also_serves_at_the_root() {
    let (store, running, _) = populated().await;
    let app = router(Arc::new(store), DashboardOptions::default());
    let request = Request::get("/")
        .header(header::HOST, HOST)
        .body(Body::empty())
        .unwrap();
    let page = send(&app, request).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("href=\"/jobs?name=sync-crm\""));
    assert!(page.body.contains("href=\"/assets/dashboard.css\""));
    let request = Request::get(format!("/jobs/{running}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, request).await.status, StatusCode::OK);
}

#[tokio::test]
async fn listings_are_paged_at_the_store() {
    let store = MemoryStore::new();
    for i in 0..120 {
        schedule(&store, NewJob::new("bulk", json!(i))).await;
    }
    let app = app_for(store);
    let rows = |body: &str| body.matches("<tr data-id=").count();
    let first = get(&app, "/jobs?name=bulk").await;
    assert_eq!(rows(&first.body), 50);
    assert!(first.body.contains("/ops/jobs?name=bulk&amp;page=2"));
    assert!(first.body.contains("1–50"));
    let last = get(&app, "/jobs?name=bulk&page=3").await;
    assert_eq!(rows(&last.body), 20);
    assert!(last.body.contains("101–120"));
    assert!(!last.body.contains("rel=\"next\""));
    assert!(get(&app, "/jobs?page=zebra&state=odd")
        .await
        .status
        .is_success());
}

#[tokio::test]
async fn hostile_store_data_is_escaped() {
    let store = MemoryStore::new();
    let big = "x".repeat(100 * 1024);
    let mut ids = Vec::new();
    for (i, hostile) in HOSTILE.iter().enumerate() {
        let params = json!({ "text": hostile, "list": HOSTILE, "big": big });
        let job = NewJob::new(*hostile, params).unique_identifier(format!("{hostile}{i}"));
        ids.push(schedule(&store, job).await);
        claim(&store, hostile, Some(&format!("{hostile} {big}"))).await;
        schedule(
            &store,
            NewJob::new(*hostile, json!(hostile)).unique_identifier(*hostile),
        )
        .await;
    }
    store
        .register_recurrent(RecurrentRegistration {
            name: HOSTILE[0].to_owned(),
            schedule_key: HOSTILE[1].to_owned(),
            priority: 1,
            next_run_at: store.now().await.unwrap(),
        })
        .await
        .unwrap();
    let app = app_for(store);
    let mut pages = vec![
        "/".to_owned(),
        "/jobs".to_owned(),
        "/failed".to_owned(),
        "/recurrent".to_owned(),
        format!("/jobs?name={}", enc(HOSTILE[0])),
        format!("/failed?name={}", enc(HOSTILE[1])),
        "/jobs/%3Cscript%3Ealert(1)%3C%2Fscript%3E".to_owned(),
    ];
    pages.extend(ids.iter().map(|id| format!("/jobs/{id}")));
    for path in pages {
        let page = get(&app, &path).await;
        assert!(
            page.status == StatusCode::OK || page.status == StatusCode::NOT_FOUND,
            "{path}: {}",
            page.status
        );
        for raw in ["<script>alert", "<img src=x", "</textarea>", "<b>bold"] {
            assert!(!page.body.contains(raw), "{path} shows {raw:?} unescaped");
        }
        // A direction override may stay in an attribute (a form's value), never in shown text.
        assert!(
            !outside_attributes(&page.body).contains('\u{202e}'),
            "{path} shows an override"
        );
        assert!(!page.body.contains("onerror=alert(1)>"), "{path}");
    }
    let overview = get(&app, "/").await;
    assert!(overview
        .body
        .contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(
        overview
            .body
            .contains("href=\"/ops/jobs?name=%3Cscript%3Ealert%281%29%3C%2Fscript%3E\""),
        "names are percent-encoded in links"
    );
    assert!(
        overview.body.contains("abc\\u{202e}fdp.exe"),
        "direction overrides are shown"
    );
    let job = get(&app, &format!("/jobs/{}", ids[1])).await;
    assert!(job
        .body
        .contains("&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"));
    assert!(job.body.contains(&big), "the whole params are shown");
    let failed = get(&app, "/failed").await;
    assert!(failed.body.contains("&lt;/textarea&gt;"));
    assert!(
        failed.body.len() < 400 * 1024,
        "errors are clipped in the listing"
    );
    assert!(failed.body.contains("&#39;; DROP TABLE") || failed.body.contains("'; DROP TABLE"));
}

#[tokio::test]
async fn actions_need_the_form_token() {
    let (store, _, failed) = populated().await;
    let app = app(&store, DashboardOptions::default());
    let csrf = get(&app, "/").await.csrf();
    let id = failed.to_string();
    for form in [
        vec![("id", id.as_str())],
        vec![("id", id.as_str()), ("csrf", "0123")],
        vec![("id", id.as_str()), ("csrf", "")],
    ] {
        let answer = post(&app, "/actions/retry", &form, &[]).await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN);
        assert_secure_headers(&answer);
    }
    assert_eq!(
        store.get_job(&failed).await.unwrap().unwrap().state,
        JobState::Failed
    );
    let other = get_with(&app_for(store.clone()), "/", &[]).await.csrf();
    assert_ne!(other, csrf, "each router has its own token");
    let answer = post(
        &app,
        "/actions/retry",
        &[("id", &id), ("csrf", &other)],
        &[],
    )
    .await;
    assert_eq!(
        answer.status,
        StatusCode::FORBIDDEN,
        "another router's token"
    );
    let answer = post(
        &app,
        "/actions/retry",
        &[("id", &id), ("csrf", &csrf), ("back", "/failed")],
        &[],
    )
    .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    assert_eq!(answer.location(), "/ops/failed");
    assert_eq!(
        store.get_job(&failed).await.unwrap().unwrap().state,
        JobState::Pending
    );
    let get_action = get(&app, "/actions/retry").await;
    assert_eq!(
        get_action.status,
        StatusCode::METHOD_NOT_ALLOWED,
        "actions are POSTs only"
    );
}

#[tokio::test]
async fn cross_site_posts_are_refused() {
    let (store, _, _) = populated().await;
    let app = app(&store, DashboardOptions::default());
    let csrf = get(&app, "/").await.csrf();
    let form = [("name", "send-invoice"), ("csrf", csrf.as_str())];
    for headers in [
        vec![("origin", "http://evil.test")],
        vec![("origin", "null")],
        vec![("origin", "http://dash.test:9999")],
        vec![("sec-fetch-site", "cross-site")],
        vec![
            ("origin", "http://dash.test:8080"),
            ("sec-fetch-site", "cross-site"),
        ],
    ] {
        let answer = post(&app, "/actions/pause", &form, &headers).await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{headers:?}");
    }
    assert!(store
        .name_settings()
        .await
        .unwrap()
        .iter()
        .all(|s| !s.paused));
    let same = [
        ("origin", "http://dash.test:8080"),
        ("sec-fetch-site", "same-origin"),
    ];
    let answer = post(&app, "/actions/pause", &form, &same).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    assert!(store
        .count_jobs()
        .await
        .unwrap()
        .iter()
        .any(|c| c.name == "send-invoice" && c.paused));
    let proxied = app_with(
        &store,
        DashboardOptions {
            allowed_origins: vec!["https://ops.example.com".to_owned()],
            ..DashboardOptions::default()
        },
    );
    let csrf = get(&proxied, "/").await.csrf();
    let form = [("name", "send-invoice"), ("csrf", csrf.as_str())];
    let answer = post(
        &proxied,
        "/actions/resume",
        &form,
        &[("origin", "https://ops.example.com")],
    )
    .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "an allowed origin");
}

fn app_with(store: &MemoryStore, options: DashboardOptions) -> Router {
    app(store, options)
}

#[tokio::test]
async fn actions_show_what_they_did_once() {
    let (store, _, failed) = populated().await;
    let second = {
        schedule(&store, NewJob::new("charge-card", json!({"card": "5555"}))).await;
        claim(&store, "charge-card", Some("expired")).await
    };
    let app = app(&store, DashboardOptions::default());
    let csrf = get(&app, "/failed").await.csrf();
    let (a, b) = (failed.to_string(), second.to_string());
    let answer = post(
        &app,
        "/actions/retry",
        &[
            ("csrf", &csrf),
            ("id", &a),
            ("id", &b),
            ("back", "/failed?name=charge-card"),
        ],
        &[],
    )
    .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    assert_eq!(answer.location(), "/ops/failed?name=charge-card");
    let cookie = answer
        .cookies()
        .into_iter()
        .find(|c| c.starts_with("dogs_dashboard_flash="))
        .unwrap();
    assert!(
        cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict")
            && cookie.contains("Path=/ops")
    );
    for id in [&failed, &second] {
        assert_eq!(
            store.get_job(id).await.unwrap().unwrap().state,
            JobState::Pending
        );
    }
    let value = cookie.split(';').next().unwrap();
    let shown = get_with(&app, "/failed", &[("cookie", value)]).await;
    assert!(shown.body.contains("2 jobs due now."), "{}", shown.body);
    assert!(shown
        .cookies()
        .iter()
        .any(|c| c.starts_with("dogs_dashboard_flash=;") && c.contains("Max-Age=0")));

    // Retry all of a name, remove a failed job, pause and resume, with the flash each time.
    let third = {
        schedule(&store, NewJob::new("refund", json!({"card": "0000"}))).await;
        let id = claim(&store, "refund", Some("declined")).await;
        schedule(&store, NewJob::new("refund", json!({"card": "1111"}))).await;
        claim(&store, "refund", Some("declined")).await;
        id
    };
    let answer = post(
        &app,
        "/actions/retry-failed",
        &[("csrf", &csrf), ("name", "refund")],
        &[],
    )
    .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    assert!(
        answer.cookies()[0].contains("2%20jobs%20of%20refund%20due%20now"),
        "{:?}",
        answer.cookies()
    );
    assert_eq!(
        store.get_job(&third).await.unwrap().unwrap().state,
        JobState::Pending
    );
    let fourth = {
        schedule(&store, NewJob::new("payout", json!({"card": "2222"}))).await;
        claim(&store, "payout", Some("declined")).await
    };
    let answer = post(
        &app,
        "/actions/cancel",
        &[("csrf", &csrf), ("only", &fourth.to_string()), ("id", &a)],
        &[],
    )
    .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    assert!(
        store.get_job(&fourth).await.unwrap().is_none(),
        "a failed job is removed"
    );
    assert!(
        store.get_job(&failed).await.unwrap().is_some(),
        "only the row's own job"
    );
    let answer = post(
        &app,
        "/actions/pause",
        &[("csrf", &csrf), ("name", "")],
        &[],
    )
    .await;
    assert!(answer.cookies()[0].contains("error"), "no name");
    let answer = post(
        &app,
        "/actions/retry",
        &[("csrf", &csrf), ("back", "https://evil.test/")],
        &[],
    )
    .await;
    assert_eq!(answer.location(), "/ops", "never away from the dashboard");
    assert_eq!(get(&app, "/").await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_read_only_dashboard_shows_no_buttons_and_refuses_actions() {
    let (store, running, failed) = populated().await;
    let app = app(
        &store,
        DashboardOptions {
            read_only: true,
            ..DashboardOptions::default()
        },
    );
    for path in [
        "/".to_owned(),
        "/jobs".to_owned(),
        "/failed".to_owned(),
        "/recurrent".to_owned(),
        format!("/jobs/{running}"),
        format!("/jobs/{failed}"),
    ] {
        let page = get(&app, &path).await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(
            !page.body.contains("method=\"post\""),
            "{path} has a form that posts"
        );
        assert!(
            !page.body.contains("/actions/"),
            "{path} has an action button"
        );
        for label in [
            ">Retry", ">Run now", ">Cancel", ">Remove", ">Pause", ">Resume",
        ] {
            assert!(!page.body.contains(label), "{path} has a button {label}");
        }
        assert!(!page.body.contains("name=\"csrf\""), "{path}");
        assert!(page.body.contains("read-only"));
    }
    let csrf = get(&app_for(store.clone()), "/").await.csrf();
    for path in [
        "/actions/retry",
        "/actions/cancel",
        "/actions/pause",
        "/actions/resume",
        "/actions/retry-failed",
    ] {
        let answer = post(
            &app,
            path,
            &[
                ("csrf", &csrf),
                ("id", &failed.to_string()),
                ("name", "charge-card"),
            ],
            &[],
        )
        .await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{path}");
    }
    assert_eq!(
        store.get_job(&failed).await.unwrap().unwrap().state,
        JobState::Failed
    );
}

#[tokio::test]
async fn a_token_guards_pages_and_actions() {
    let (store, _, failed) = populated().await;
    let token = "s3cret-token";
    let app = app(
        &store,
        DashboardOptions {
            token: Some(token.to_owned()),
            ..DashboardOptions::default()
        },
    );
    let page = get(&app, "/").await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    assert!(
        page.body.contains("action=\"/ops/login\""),
        "the login form"
    );
    assert!(!page.body.contains("send-invoice"), "nothing of the store");
    assert_secure_headers(&page);
    assert_eq!(
        get(&app, "/assets/dashboard.css").await.status,
        StatusCode::OK
    );
    let wrong = get_with(&app, "/", &[("authorization", "Bearer wrong")]).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);

    let bearer = format!("Bearer {token}");
    let page = get_with(&app, "/", &[("authorization", &bearer)]).await;
    assert_eq!(page.status, StatusCode::OK);
    let csrf = page.csrf();
    let id = failed.to_string();
    let form = [("csrf", csrf.as_str()), ("id", id.as_str())];
    let refused = post(&app, "/actions/retry", &form, &[]).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    let refused = post(
        &app,
        "/actions/retry",
        &form,
        &[("authorization", "Bearer nope")],
    )
    .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        store.get_job(&failed).await.unwrap().unwrap().state,
        JobState::Failed
    );
    let done = post(&app, "/actions/retry", &form, &[("authorization", &bearer)]).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    assert_eq!(
        store.get_job(&failed).await.unwrap().unwrap().state,
        JobState::Pending
    );

    // The login form: its own token, then the cookie.
    let login = get(&app, "/login").await;
    assert_eq!(login.status, StatusCode::OK);
    let login_csrf = login.csrf();
    assert_ne!(
        login_csrf, csrf,
        "the action token is never shown before logging in"
    );
    let bad = post(
        &app,
        "/login",
        &[("csrf", &login_csrf), ("token", "guess")],
        &[],
    )
    .await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    assert!(bad.cookies().is_empty());
    let forged = post(&app, "/login", &[("csrf", "x"), ("token", token)], &[]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let logged = post(
        &app,
        "/login",
        &[("csrf", &login_csrf), ("token", token)],
        &[],
    )
    .await;
    assert_eq!(logged.status, StatusCode::SEE_OTHER);
    let cookie = logged.cookies().remove(0);
    assert!(cookie.starts_with("dogs_dashboard_token="));
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let value = cookie.split(';').next().unwrap().to_owned();
    let page = get_with(&app, "/", &[("cookie", &value)]).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Log out"));
    let form = [("csrf", csrf.as_str()), ("name", "sync-crm")];
    let done = post(&app, "/actions/pause", &form, &[("cookie", &value)]).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    let stale = post(
        &app,
        "/actions/pause",
        &form,
        &[("cookie", "dogs_dashboard_token=old")],
    )
    .await;
    assert_eq!(stale.status, StatusCode::UNAUTHORIZED);
}

/// A store that is down: every call fails with a message that holds markup.
struct BrokenStore;

fn down<T>() -> dogs_core::Result<T> {
    Err(Error::unavailable(
        "connection refused <script>alert(1)</script>",
    ))
}

#[async_trait]
impl JobStore for BrokenStore {
    async fn now(&self) -> dogs_core::Result<DateTime<Utc>> {
        Ok(Utc::now())
    }
    fn max_params_bytes(&self) -> usize {
        1024
    }
    async fn schedule(&self, _: NewJob) -> dogs_core::Result<Scheduled> {
        down()
    }
    async fn schedule_many(
        &self,
        _: Vec<NewJob>,
    ) -> dogs_core::Result<Vec<dogs_core::Result<Scheduled>>> {
        down()
    }
    async fn register_recurrent(&self, _: RecurrentRegistration) -> dogs_core::Result<JobId> {
        down()
    }
    async fn claim(&self, _: &ClaimRequest) -> dogs_core::Result<Claimed> {
        down()
    }
    async fn extend_lock(&self, _: &Lease, _: Duration) -> dogs_core::Result<DateTime<Utc>> {
        down()
    }
    async fn complete(&self, _: &Lease, _: Completion) -> dogs_core::Result<()> {
        down()
    }
    async fn record_execution(&self, _: &Execution) -> dogs_core::Result<()> {
        down()
    }
    async fn get_job(&self, _: &JobId) -> dogs_core::Result<Option<Job>> {
        down()
    }
    async fn list_jobs(&self, _: &JobQuery) -> dogs_core::Result<Vec<Job>> {
        down()
    }
    async fn count_jobs(&self) -> dogs_core::Result<Vec<JobCounts>> {
        down()
    }
    async fn list_recurrent(&self) -> dogs_core::Result<Vec<Job>> {
        down()
    }
    async fn execution_stats(&self, _: DateTime<Utc>) -> dogs_core::Result<Vec<ExecutionMinute>> {
        down()
    }
    async fn executions(&self, _: &ExecutionQuery) -> dogs_core::Result<Vec<Execution>> {
        down()
    }
    async fn cancel(&self, _: &JobId) -> dogs_core::Result<bool> {
        down()
    }
    async fn cancel_unique(&self, _: &str, _: &str) -> dogs_core::Result<bool> {
        down()
    }
    async fn prune(&self) -> dogs_core::Result<PruneReport> {
        down()
    }
    async fn remove_all(&self) -> dogs_core::Result<()> {
        down()
    }
    async fn retry(&self, _: &JobId) -> dogs_core::Result<bool> {
        down()
    }
    async fn retry_failed_batch(
        &self,
        _: &str,
        _: Option<&JobId>,
        _: usize,
    ) -> dogs_core::Result<RetryBatch> {
        down()
    }
    async fn set_paused(&self, _: &str, _: bool) -> dogs_core::Result<()> {
        down()
    }
    async fn set_concurrency_limit(&self, _: &str, _: Option<u32>) -> dogs_core::Result<()> {
        down()
    }
    async fn name_settings(&self) -> dogs_core::Result<Vec<NameSettings>> {
        down()
    }
    async fn set_progress(&self, _: &Lease, _: &serde_json::Value) -> dogs_core::Result<()> {
        down()
    }
}

#[tokio::test]
async fn store_errors_show_an_error_page() {
    let app = Router::new().nest(
        PREFIX,
        router(Arc::new(BrokenStore), DashboardOptions::default()),
    );
    for path in ["/", "/jobs", "/jobs/17", "/recurrent", "/failed?name=x"] {
        let page = get(&app, path).await;
        assert_eq!(page.status, StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert!(
            page.body.contains("connection refused &lt;script&gt;"),
            "{path}: {}",
            page.body
        );
        assert!(!page.body.contains("<script>alert"));
        assert_secure_headers(&page);
    }
}
