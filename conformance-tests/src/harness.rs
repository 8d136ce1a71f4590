//! Runs every conformance case against one backend, as named tests of a test binary.
//!
//! A backend's test file is a `harness = false` test target whose `main` calls [`run_suite`]; each
//! case becomes a test named after its SPEC id (`S-claim-exclusive` → `claim_exclusive`), and
//! `cargo test claim_exclusive` filters as usual.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use dogs_core::JobStore;
use futures::FutureExt;
use libtest_mimic::{Arguments, Failed, Trial};

use crate::backend::Backend;
use crate::env;

/// The longest one case may run before it fails.
pub const CASE_TIMEOUT: Duration = Duration::from_secs(90);

/// What a case gets: a store in a fresh namespace, and the means to open more handles to it.
#[derive(Clone)]
pub struct TestContext {
    backend: Arc<dyn Backend>,
    namespace: String,
    store: Arc<dyn JobStore>,
}

impl TestContext {
    /// The store under test.
    pub fn store(&self) -> Arc<dyn JobStore> {
        Arc::clone(&self.store)
    }

    /// Another handle to the same store, as a second process would open it.
    pub async fn another_handle(&self) -> Arc<dyn JobStore> {
        match self.backend.open(&self.namespace).await {
            Ok(store) => store,
            Err(e) => panic!("opening another handle to {} failed: {e}", self.namespace),
        }
    }

    /// A store in another namespace, `{namespace}_{suffix}`, as a second deployment on the
    /// same server would have; [`TestContext::remove_other`] removes it.
    pub async fn open_other(&self, suffix: &str) -> Arc<dyn JobStore> {
        let namespace = format!("{}_{suffix}", self.namespace);
        match self.backend.open(&namespace).await {
            Ok(store) => store,
            Err(e) => panic!("opening {namespace} failed: {e}"),
        }
    }

    /// Removes what [`TestContext::open_other`] stored under `suffix`.
    pub async fn remove_other(&self, suffix: &str) {
        let namespace = format!("{}_{suffix}", self.namespace);
        if let Err(e) = self.backend.cleanup(&namespace).await {
            panic!("removing {namespace} failed: {e}");
        }
    }

    /// The case's namespace (schema, key prefix, database name).
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The backend's name.
    pub fn backend(&self) -> &'static str {
        self.backend.name()
    }
}

type CaseFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// One named conformance case.
pub struct Case {
    name: &'static str,
    run: Box<dyn Fn(TestContext) -> CaseFuture + Send + Sync>,
}

impl Case {
    /// A case named `name` that runs `run`.
    pub fn new<F, Fut>(name: &'static str, run: F) -> Self
    where
        F: Fn(TestContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Case {
            name,
            run: Box::new(move |ctx| Box::pin(run(ctx))),
        }
    }

    /// The case's name.
    pub fn name(&self) -> &'static str {
        self.name
    }
}

/// Runs `cases` against the backend `setup` makes, then exits the process with the result.
///
/// `setup` returns the backend and whatever must live as long as the run (a container guard),
/// or why the backend cannot run here: then every case is skipped with one line saying so, or
/// fails when `DOGS_REQUIRE` names the backend.
pub fn run_suite<B, G>(
    name: &'static str,
    cases: Vec<Case>,
    setup: impl FnOnce() -> Result<(B, G), String>,
) -> !
where
    B: Backend,
{
    let args = Arguments::from_args();
    let (backend, guard) = match setup() {
        Ok((backend, guard)) => (Some(Arc::new(backend) as Arc<dyn Backend>), Some(guard)),
        Err(reason) if env::is_required(name) => {
            eprintln!("{name}: required by DOGS_REQUIRE but cannot run: {reason}");
            (None, None)
        }
        Err(reason) => {
            println!("{name}: skipped: {reason}");
            let trials = cases
                .into_iter()
                .map(|case| Trial::test(case.name, || Ok(())).with_ignored_flag(true))
                .collect();
            libtest_mimic::run(&args, trials).exit()
        }
    };
    let trials = cases
        .into_iter()
        .map(|case| {
            let backend = backend.clone();
            Trial::test(case.name, move || match backend {
                Some(backend) => run_case(backend, case),
                None => Err(Failed::from(format!(
                    "the {name} backend is required by DOGS_REQUIRE but cannot run"
                ))),
            })
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    drop(guard);
    conclusion.exit()
}

fn run_case(backend: Arc<dyn Backend>, case: Case) -> Result<(), Failed> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failed::from(format!("cannot start a runtime: {e}")))?;
    runtime.block_on(async move {
        let namespace = env::namespace(case.name);
        let store = backend
            .open(&namespace)
            .await
            .map_err(|e| Failed::from(format!("opening the store failed: {e}")))?;
        let ctx = TestContext {
            backend: Arc::clone(&backend),
            namespace: namespace.clone(),
            store,
        };
        let outcome = tokio::time::timeout(
            CASE_TIMEOUT,
            AssertUnwindSafe((case.run)(ctx)).catch_unwind(),
        )
        .await;
        let cleanup = backend.cleanup(&namespace).await;
        match outcome {
            Err(_) => Err(Failed::from(format!("timed out after {CASE_TIMEOUT:?}"))),
            Ok(Err(panic)) => Err(Failed::from(panic_message(panic))),
            Ok(Ok(())) => cleanup.map_err(|e| Failed::from(format!("cleanup failed: {e}"))),
        }
    })
}

/// The text of a caught panic.
pub(crate) fn panic_message(panic: Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "the case panicked".to_owned())
}
