//! The dashboard in a real headless Chromium, on every store: each scenario runs once per
//! backend (memory, postgres, redis, mongo), in a namespace of its own, as an operator would use
//! the dashboard.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (Debian's `chromium` and
//! `chromium-driver`): without them every scenario is skipped with one line saying so, or fails
//! when `DOGS_REQUIRE` is set. A backend that cannot run is skipped, or fails when
//! `DOGS_REQUIRE` names it, as in the conformance suite. Screenshots of every page are written to
//! `target/dashboard-screenshots/<backend>-<page>.png`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use conformance_tests::env::{find_server, is_required, required_backends, Server, ServerHandle};
use conformance_tests::memory::MemoryBackend;
use conformance_tests::mongo::MongoBackend;
use conformance_tests::postgres::PostgresBackend;
use conformance_tests::redis::RedisBackend;
use conformance_tests::support::fast_options;
use conformance_tests::Backend;
use dogs_core::prelude::*;
use dogs_core::{
    ClaimRequest, Completion, Execution, ExecutionQuery, ExecutionStatus, JobId, JobKind, JobState,
    NewJob, RecurrentRegistration,
};
use dogs_dashboard::{serve, DashboardOptions};
use fantoccini::{Client, ClientBuilder, Locator};
use futures::FutureExt;
use libtest_mimic::{Arguments, Failed, Trial};
use serde_json::{json, Value};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How long a page may take to show what a scenario waits for.
const DEADLINE: Duration = Duration::from_secs(30);

/// The longest one scenario may run.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(180);

type ScenarioFuture = Pin<Box<dyn Future<Output = ()> + Send>>;
type Scenario = fn(Browser) -> ScenarioFuture;

/// A backend by name, or why it cannot run here.
type Found = (&'static str, Result<Arc<dyn Backend>, String>);

fn scenarios() -> Vec<(&'static str, Scenario)> {
    vec![
        ("overview_counts", |b| Box::pin(overview_counts(b))),
        ("failed_retry_then_run", |b| {
            Box::pin(failed_retry_then_run(b))
        }),
        ("pause_and_resume", |b| Box::pin(pause_and_resume(b))),
        ("hostile_params_are_text", |b| {
            Box::pin(hostile_params_are_text(b))
        }),
        ("screenshots", |b| Box::pin(screenshots(b))),
    ]
}

fn main() {
    let args = Arguments::from_args();
    let browser = browser_problem();
    let driver = match &browser {
        Some(problem) => Err(problem.clone()),
        None => ChromeDriver::start(),
    };
    match &driver {
        Err(problem) if required_backends().is_empty() => {
            println!("browser tests: skipped: {problem}");
        }
        Err(problem) => {
            eprintln!("browser tests: required by DOGS_REQUIRE but cannot run: {problem}")
        }
        Ok(_) => {}
    }
    let mut servers: Vec<ServerHandle> = Vec::new();
    let mut backends: Vec<Found> = vec![("memory", Ok(Arc::new(MemoryBackend::default())))];
    for server in [Server::Postgres, Server::Redis, Server::Mongo] {
        let backend = find_server(server).map(|handle| {
            let url = handle.url.clone();
            servers.push(handle);
            match server {
                Server::Postgres => Arc::new(PostgresBackend::new(url)) as Arc<dyn Backend>,
                Server::Redis => Arc::new(RedisBackend::new(url)),
                Server::Mongo => Arc::new(MongoBackend::new(url)),
            }
        });
        if let Err(reason) = &backend {
            if is_required(server.backend_name()) {
                eprintln!(
                    "{}: required by DOGS_REQUIRE but cannot run: {reason}",
                    server.backend_name()
                );
            } else {
                println!("{}: skipped: {reason}", server.backend_name());
            }
        }
        backends.push((server.backend_name(), backend));
    }
    let driver_url = driver.as_ref().map(|d| d.url.clone()).map_err(Clone::clone);
    let mut trials = Vec::new();
    for (backend_name, backend) in &backends {
        for (scenario_name, scenario) in scenarios() {
            let name = format!("{backend_name}::{scenario_name}");
            let trial = match (backend, &driver_url) {
                (Ok(backend), Ok(url)) => {
                    let (backend, url) = (Arc::clone(backend), url.clone());
                    Trial::test(name, move || run(backend, url, scenario_name, scenario))
                }
                (Err(reason), _) if is_required(backend_name) => {
                    let reason = reason.clone();
                    Trial::test(name, move || {
                        Err(Failed::from(format!(
                            "the backend is required but cannot run: {reason}"
                        )))
                    })
                }
                (Err(_), _) => Trial::test(name, || Ok(())).with_ignored_flag(true),
                (Ok(_), Err(problem)) if !required_backends().is_empty() => {
                    let problem = problem.clone();
                    Trial::test(name, move || {
                        Err(Failed::from(format!(
                            "the browser is required but cannot run: {problem}"
                        )))
                    })
                }
                (Ok(_), Err(_)) => Trial::test(name, || Ok(())).with_ignored_flag(true),
            };
            trials.push(trial);
        }
    }
    let conclusion = libtest_mimic::run(&args, trials);
    drop(driver);
    drop(servers);
    conclusion.exit()
}

/// Why the browser tests cannot run here, if they cannot.
fn browser_problem() -> Option<String> {
    for (path, package) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
        if !Path::new(path).exists() {
            return Some(format!("{path} is missing (Debian package {package})"));
        }
    }
    None
}

/// The chromedriver this run started, on a free port; killed when dropped.
struct ChromeDriver {
    child: Child,
    url: String,
}

impl ChromeDriver {
    fn start() -> Result<Self, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port for chromedriver: {e}"))?
            .port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting {CHROMEDRIVER} failed: {e}"))?;
        let driver = ChromeDriver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if std::time::Instant::now() > deadline {
                return Err(format!(
                    "{CHROMEDRIVER} did not listen on port {port} within 20 s"
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(driver)
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a scenario gets: a browser on a dashboard served over a store in a fresh namespace.
#[derive(Clone)]
struct Browser {
    client: Client,
    base: String,
    store: Arc<dyn JobStore>,
    backend: &'static str,
}

fn run(
    backend: Arc<dyn Backend>,
    driver_url: String,
    name: &'static str,
    scenario: Scenario,
) -> Result<(), Failed> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failed::from(format!("cannot start a runtime: {e}")))?;
    runtime.block_on(async move {
        let namespace = conformance_tests::env::namespace(&format!("dash_{name}"));
        let store = backend
            .open(&namespace)
            .await
            .map_err(|e| Failed::from(format!("opening the store failed: {e}")))?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| Failed::from(format!("cannot listen: {e}")))?;
        let address = listener
            .local_addr()
            .map_err(|e| Failed::from(e.to_string()))?;
        let server = tokio::spawn(serve(
            listener,
            Arc::clone(&store),
            DashboardOptions::default(),
        ));
        let profile = std::env::temp_dir().join(format!("dogs-dashboard-chromium-{namespace}"));
        let outcome = match open_browser(&driver_url, &profile).await {
            Ok(client) => {
                let browser = Browser {
                    client: client.clone(),
                    base: format!("http://{address}"),
                    store,
                    backend: backend.name(),
                };
                let outcome = tokio::time::timeout(
                    SCENARIO_TIMEOUT,
                    AssertUnwindSafe(scenario(browser)).catch_unwind(),
                )
                .await;
                let _ = client.close().await;
                match outcome {
                    Err(_) => Err(Failed::from(format!(
                        "timed out after {SCENARIO_TIMEOUT:?}"
                    ))),
                    Ok(Err(panic)) => Err(Failed::from(panic_text(panic))),
                    Ok(Ok(())) => Ok(()),
                }
            }
            Err(e) => Err(Failed::from(e)),
        };
        server.abort();
        let _ = std::fs::remove_dir_all(&profile);
        let cleanup = backend.cleanup(&namespace).await;
        outcome?;
        cleanup.map_err(|e| Failed::from(format!("cleanup failed: {e}")))
    })
}

fn panic_text(panic: Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "the scenario panicked".to_owned())
}

async fn open_browser(driver_url: &str, profile: &Path) -> Result<Client, String> {
    let arguments = [
        "--headless".to_owned(),
        "--no-sandbox".to_owned(),
        "--disable-gpu".to_owned(),
        "--disable-quic".to_owned(),
        "--no-first-run".to_owned(),
        "--disable-background-networking".to_owned(),
        "--disable-component-update".to_owned(),
        "--disable-sync".to_owned(),
        "--disable-dev-shm-usage".to_owned(),
        "--window-size=1366,768".to_owned(),
        format!("--user-data-dir={}", profile.display()),
    ];
    let capabilities = json!({
        "browserName": "chrome",
        "goog:chromeOptions": { "binary": CHROMIUM, "args": arguments },
    });
    let Value::Object(capabilities) = capabilities else {
        return Err("capabilities are an object".to_owned());
    };
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(capabilities)
        .connect(driver_url)
        .await
        .map_err(|e| format!("starting a Chromium session failed: {e}"))
}

impl Browser {
    async fn goto(&self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.base))
            .await
            .unwrap_or_else(|e| panic!("opening {path} failed: {e}"));
    }

    /// The text of the first element matching `css`, if there is one.
    async fn text(&self, css: &str) -> Option<String> {
        let element = self.client.find(Locator::Css(css)).await.ok()?;
        element.text().await.ok()
    }

    /// Waits until the page shows `css` with a text that `check` accepts, reloading `path`
    /// between looks when it is given.
    async fn wait_for(
        &self,
        what: &str,
        path: Option<&str>,
        css: &str,
        check: impl Fn(&str) -> bool,
    ) -> String {
        let end = tokio::time::Instant::now() + DEADLINE;
        loop {
            if let Some(path) = path {
                self.goto(path).await;
            }
            if let Some(text) = self.text(css).await {
                if check(&text) {
                    return text;
                }
            }
            if tokio::time::Instant::now() >= end {
                let source = self.client.source().await.unwrap_or_default();
                let tail: String = source.chars().take(4000).collect();
                panic!(
                    "[{}] timed out after {DEADLINE:?} waiting for {what} ({css}); page: {tail}",
                    self.backend
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn click(&self, css: &str) {
        let element = self
            .client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("[{}] no {css} to click: {e}", self.backend));
        element
            .click()
            .await
            .unwrap_or_else(|e| panic!("clicking {css} failed: {e}"));
    }

    /// The text of `name`'s `column` count on the overview, if it shows one.
    async fn count(&self, name: &str, column: &str) -> Option<String> {
        self.text(&count_cell(name, column)).await
    }

    /// Reloads the overview until `name`'s `column` count reads `value`.
    async fn wait_for_count(&self, what: &str, name: &str, column: &str, value: &str) -> String {
        self.wait_for(what, Some("/"), &count_cell(name, column), |t| t == value)
            .await
    }

    /// Waits until the job `id` is gone from the store, as when a worker ran it; `what` names
    /// the job in the failure.
    async fn wait_gone(&self, id: &JobId, what: &str) {
        let end = tokio::time::Instant::now() + DEADLINE;
        while self.store.get_job(id).await.unwrap().is_some() {
            assert!(
                tokio::time::Instant::now() < end,
                "[{}] {what} did not run within {DEADLINE:?}",
                self.backend
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Asserts that no script of the page set `window.__pwned`.
    async fn assert_not_pwned(&self) {
        let pwned = self
            .client
            .execute("return typeof window.__pwned;", vec![])
            .await
            .unwrap();
        assert_eq!(pwned, json!("undefined"));
    }

    /// Opens `path`, waits until it shows `css` with a text that `check` accepts, and saves a
    /// screenshot of it as `page`.
    async fn shoot(
        &self,
        page: &str,
        path: &str,
        what: &str,
        css: &str,
        check: impl Fn(&str) -> bool,
    ) {
        self.goto(path).await;
        self.wait_for(what, None, css, check).await;
        self.screenshot(page).await;
    }

    /// Saves a PNG of the window as `target/dashboard-screenshots/<backend>-<page>.png`.
    async fn screenshot(&self, page: &str) {
        let png = self.client.screenshot().await.unwrap();
        let folder = screenshot_folder();
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join(format!("{}-{page}.png", self.backend)), png).unwrap();
    }
}

fn screenshot_folder() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("dashboard-screenshots")
}

async fn schedule(store: &dyn JobStore, job: NewJob) -> JobId {
    match store.schedule(job).await.unwrap() {
        Scheduled::Created(id) => id,
        other => panic!("expected a new job, got {other:?}"),
    }
}

/// Claims the first due job of `name` for 10 minutes as `worker`; fails it with `error`.
async fn claim(store: &dyn JobStore, name: &str, worker: &str, error: Option<&str>) -> JobId {
    let request = ClaimRequest::new([name], Duration::from_secs(600), 1).worker_id(worker);
    let claimed = store.claim(&request).await.unwrap().jobs.remove(0);
    if let Some(error) = error {
        let fail = Completion::Fail {
            error: error.to_owned(),
            retain_for: Duration::from_secs(7 * 24 * 3600),
        };
        store.complete(&claimed.lease, fail).await.unwrap();
    }
    claimed.job.id
}

/// Records an execution of `name` that ended `ago` before now and ran `ms`.
async fn record(
    store: &dyn JobStore,
    id: &JobId,
    name: &str,
    status: ExecutionStatus,
    ago: TimeDelta,
    ms: u64,
) {
    let now = store.now().await.unwrap();
    let ended_at = now - ago;
    let error = match status {
        ExecutionStatus::Success => None,
        ExecutionStatus::Stale => Some("the lease ended before the handler returned".to_owned()),
        _ => Some("upstream answered 502 Bad Gateway".to_owned()),
    };
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
            started_at: ended_at - TimeDelta::milliseconds(ms as i64),
            ended_at,
            duration: Duration::from_millis(ms),
            status,
            result: (status == ExecutionStatus::Success).then(|| json!({ "ok": true })),
            error,
            worker_id: "web-1:4821".to_owned(),
            expires_at: now + TimeDelta::days(7),
        })
        .await
        .unwrap();
}

fn count_cell(name: &str, column: &str) -> String {
    format!("tr[data-name=\"{name}\"] td.c-{column}")
}

/// The overview of a store with jobs in every state shows each name's counts.
async fn overview_counts(b: Browser) {
    let store = b.store.as_ref();
    for customer in ["ada", "bob"] {
        schedule(
            store,
            NewJob::new("send-invoice", json!({ "customer": customer })),
        )
        .await;
    }
    schedule(
        store,
        NewJob::new("send-invoice", json!({ "customer": "eve" }))
            .run_at(RunAt::In(Duration::from_secs(3600))),
    )
    .await;
    schedule(store, NewJob::new("sync-crm", json!({ "account": 7 }))).await;
    claim(store, "sync-crm", "web-1:4821", None).await;
    schedule(store, NewJob::new("charge-card", json!({ "card": "4242" }))).await;
    claim(store, "charge-card", "web-1:4821", Some("card declined")).await;

    b.goto("/").await;
    b.wait_for_count("2 due invoices", "send-invoice", "due", "2")
        .await;
    assert_eq!(
        b.count("send-invoice", "scheduled").await.as_deref(),
        Some("1")
    );
    assert_eq!(b.count("sync-crm", "running").await.as_deref(), Some("1"));
    assert_eq!(b.count("sync-crm", "due").await.as_deref(), Some("0"));
    assert_eq!(b.count("charge-card", "failed").await.as_deref(), Some("1"));
    assert_eq!(
        b.text("[data-total=\"due\"] .figure").await.as_deref(),
        Some("2")
    );
    assert_eq!(
        b.text("[data-total=\"failed\"] .figure").await.as_deref(),
        Some("1")
    );
    let paused = b.count("send-invoice", "paused").await.unwrap_or_default();
    assert_eq!(paused, "active");
}

/// A failed job, opened from the Failed page and retried, is pending; a worker then runs it.
async fn failed_retry_then_run(b: Browser) {
    let store = b.store.as_ref();
    schedule(
        store,
        NewJob::new("charge-card", json!({ "card": "4242", "cents": 1999 })),
    )
    .await;
    let id = claim(
        store,
        "charge-card",
        "web-1:4821",
        Some("card declined: insufficient funds"),
    )
    .await;

    b.goto("/failed").await;
    let link = format!("tr[data-id=\"{id}\"] td.id a");
    b.wait_for("the failed job", Some("/failed"), &link, |_| true)
        .await;
    assert!(b
        .text(&format!("tr[data-id=\"{id}\"] td.error-text"))
        .await
        .unwrap_or_default()
        .contains("insufficient funds"));
    b.click(&link).await;
    b.wait_for("the job page", None, "h1 .badge", |t| t == "failed")
        .await;
    b.click("form[action$=\"/actions/retry\"] button").await;
    b.wait_for("the job pending", None, "h1 .badge", |t| t == "pending")
        .await;
    let flash = b.text(".flash").await.unwrap_or_default();
    assert!(flash.contains("due now"), "flash: {flash}");
    assert_eq!(
        store.get_job(&id).await.unwrap().unwrap().state,
        JobState::Pending
    );

    let job = EventJob::new("charge-card", |_: Value, _ctx: JobContext| async move {
        Ok(json!({ "charged": true }))
    });
    let workers = start_workers(Arc::clone(&b.store), [job.definition()], fast_options())
        .await
        .unwrap();
    let page = format!("/jobs/{id}");
    b.wait_for("the job to run and be removed", Some(&page), "h1", |t| {
        t == "Not found"
    })
    .await;
    b.wait_for(
        "its execution in the chart",
        Some("/"),
        "[data-hour=\"succeeded\"]",
        |t| t == "1",
    )
    .await;
    workers.stop().await;
    let executions = store
        .executions(&ExecutionQuery::name("charge-card").job_id(id))
        .await
        .unwrap();
    assert_eq!(
        executions.first().map(|e| e.status),
        Some(ExecutionStatus::Success)
    );
}

/// A name paused on the overview is not claimed by running workers, while another name's job
/// scheduled after it runs; resumed, it runs.
async fn pause_and_resume(b: Browser) {
    let store = b.store.as_ref();
    let paused_job = schedule(
        store,
        NewJob::new("reindex", json!({ "index": "products" })),
    )
    .await;
    b.goto("/").await;
    b.wait_for_count("the reindex row", "reindex", "due", "1")
        .await;
    b.click("tr[data-name=\"reindex\"] form[action$=\"/actions/pause\"] button")
        .await;
    b.wait_for(
        "the paused flag",
        None,
        &count_cell("reindex", "paused"),
        |t| t == "paused",
    )
    .await;
    assert!(store
        .count_jobs()
        .await
        .unwrap()
        .iter()
        .any(|c| c.name == "reindex" && c.paused));

    let ran = |name: &'static str| {
        EventJob::new(name, |_: Value, _ctx: JobContext| async move { Ok(()) })
    };
    let workers = start_workers(
        Arc::clone(&b.store),
        [ran("reindex").definition(), ran("ping").definition()],
        fast_options(),
    )
    .await
    .unwrap();
    let ping = schedule(store, NewJob::new("ping", json!(1))).await;
    b.wait_gone(&ping, "the ping job").await;
    let job = store
        .get_job(&paused_job)
        .await
        .unwrap()
        .expect("the paused job is still there");
    assert_eq!(
        job.state,
        JobState::Pending,
        "the paused job was not claimed"
    );
    assert_eq!(job.tries, 0);
    b.wait_for_count("reindex still due", "reindex", "due", "1")
        .await;

    b.click("tr[data-name=\"reindex\"] form[action$=\"/actions/resume\"] button")
        .await;
    b.wait_for("the flash", None, ".flash", |t| t == "reindex resumed.")
        .await;
    b.wait_gone(&paused_job, "the resumed job").await;
    assert!(store
        .count_jobs()
        .await
        .unwrap()
        .iter()
        .all(|c| c.name != "reindex" || !c.paused));
    workers.stop().await;
}

/// Markup in params is shown as text on the job page, and none of it runs.
async fn hostile_params_are_text(b: Browser) {
    let script = "<script>window.__pwned=1</script>";
    let image = "<img src=x onerror=\"window.__pwned=1\">";
    let params = json!({ "note": script, "avatar": image, "nested": [script, { "html": image }] });
    let job = NewJob::new("render", params)
        .run_at(RunAt::In(Duration::from_secs(3600)))
        .unique_identifier(image);
    let id = schedule(b.store.as_ref(), job).await;
    b.goto(&format!("/jobs/{id}")).await;
    let shown = b
        .wait_for("the params", None, "pre.params", |t| {
            t.contains("window.__pwned")
        })
        .await;
    assert!(shown.contains(script), "{shown}");
    assert!(
        shown.contains("<img src=x onerror=\\\"window.__pwned=1\\\">"),
        "{shown}"
    );
    assert!(b
        .client
        .find_all(Locator::Css("main img, main script"))
        .await
        .unwrap()
        .is_empty());
    b.assert_not_pwned().await;
    b.goto("/jobs?name=render").await;
    b.assert_not_pwned().await;
}

/// A store as an operator finds it, and a screenshot of every page.
async fn screenshots(b: Browser) {
    let store = b.store.as_ref();
    let now = store.now().await.unwrap();
    for (i, customer) in ["ada", "grace", "linus", "margaret", "ken"]
        .iter()
        .enumerate()
    {
        let later = RunAt::In(Duration::from_secs(60 * (i as u64 + 1) * 7));
        schedule(
            store,
            NewJob::new(
                "send-invoice",
                json!({ "customer": customer, "cents": 1200 * (i + 1) }),
            )
            .unique_identifier(format!("invoice-{}", 100 + i)),
        )
        .await;
        schedule(
            store,
            NewJob::new(
                "send-invoice",
                json!({ "customer": customer, "reminder": true }),
            )
            .run_at(later),
        )
        .await;
    }
    for account in [7, 12, 31] {
        schedule(
            store,
            NewJob::new("sync-crm", json!({ "account": account })),
        )
        .await;
    }
    claim(store, "sync-crm", "web-1:4821", None).await;
    claim(store, "sync-crm", "web-2:3310", None).await;
    for (card, error) in [
        ("4000 0000 0000 0002", "card declined: insufficient funds"),
        ("4000 0000 0000 0069", "card expired"),
    ] {
        schedule(
            store,
            NewJob::new("charge-card", json!({ "card": card, "cents": 4999 })),
        )
        .await;
        claim(store, "charge-card", "web-1:4821", Some(error)).await;
    }
    schedule(
        store,
        NewJob::new("export-csv", json!({ "report": "monthly" })),
    )
    .await;
    store.pause("export-csv").await.unwrap();
    for (name, key) in [
        ("nightly-report", "cron 0 3 * * * Europe/Paris"),
        ("cleanup", "every 3600000ms"),
    ] {
        let id = store
            .register_recurrent(RecurrentRegistration {
                name: name.to_owned(),
                schedule_key: key.to_owned(),
                priority: 1,
                next_run_at: now + TimeDelta::hours(2),
            })
            .await
            .unwrap();
        record(
            store,
            &id,
            name,
            ExecutionStatus::Success,
            TimeDelta::minutes(40),
            4200,
        )
        .await;
    }
    let sample = JobId::new("sample");
    for minute in 0..60i64 {
        let ago = |s: i64| TimeDelta::minutes(minute) + TimeDelta::seconds(s);
        let busy = 2 + (minute * 7 % 5);
        for k in 0..busy {
            let ms = 80 + ((minute * 37 + k * 53) % 400) as u64;
            record(
                store,
                &sample,
                "send-invoice",
                ExecutionStatus::Success,
                ago(k * 5),
                ms,
            )
            .await;
        }
        if minute % 9 == 4 {
            record(
                store,
                &sample,
                "charge-card",
                ExecutionStatus::Error,
                ago(20),
                1500,
            )
            .await;
        }
        if minute == 23 {
            record(
                store,
                &sample,
                "sync-crm",
                ExecutionStatus::Stale,
                ago(30),
                9_000,
            )
            .await;
        }
    }
    let failed = store
        .list_jobs(&dogs_core::JobQuery::name("charge-card").state(JobState::Failed))
        .await
        .unwrap();
    let failed_id = failed.first().map(|j| j.id.clone()).expect("a failed job");
    record(
        store,
        &failed_id,
        "charge-card",
        ExecutionStatus::Failed,
        TimeDelta::minutes(2),
        2300,
    )
    .await;

    b.goto("/").await;
    b.wait_for_count("the overview", "send-invoice", "due", "5")
        .await;
    b.screenshot("overview").await;
    b.shoot("jobs", "/jobs", "the jobs", "table.jobs", |_| true)
        .await;
    let job_page = format!("/jobs/{failed_id}");
    b.shoot("job", &job_page, "the job", "table.executions", |_| true)
        .await;
    b.shoot(
        "recurrent",
        "/recurrent",
        "the recurrent jobs",
        "table.recurrent",
        |t| t.contains("nightly-report"),
    )
    .await;
    b.shoot(
        "failed",
        "/failed",
        "the failed jobs",
        "table.failed",
        |t| t.contains("card expired"),
    )
    .await;
}
