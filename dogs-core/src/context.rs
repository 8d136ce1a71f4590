//! What a handler gets beside its params: the job's identity, its lease, and a cancellation signal.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::claim::Lease;
use crate::error::{Error, ErrorKind, Result};
use crate::job::JobId;
use crate::store::JobStore;

/// The context of one execution, handed to the handler with its params.
///
/// Cheap to clone. Its cancellation signal fires when the execution goes stale (its lease ran
/// out) or the workers shut down; a handler that does long work should watch it (with
/// `tokio::select!` on [`cancelled`](JobContext::cancelled)) and extend its lease with
/// [`extend_lock_time`](JobContext::extend_lock_time) while it makes progress.
#[derive(Clone)]
pub struct JobContext {
    inner: Arc<Inner>,
}

struct Inner {
    id: JobId,
    name: String,
    params: Value,
    tries: u32,
    was_stale: bool,
    cancel: CancellationToken,
    lease: Option<LeaseKeeper>,
}

/// The lease of a running execution, and the local instant by which it must be extended.
pub(crate) struct LeaseKeeper {
    pub(crate) store: Arc<dyn JobStore>,
    pub(crate) lease: Lease,
    pub(crate) deadline: watch::Sender<Instant>,
}

impl std::fmt::Debug for JobContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobContext")
            .field("id", &self.inner.id)
            .field("name", &self.inner.name)
            .field("tries", &self.inner.tries)
            .field("was_stale", &self.inner.was_stale)
            .field("cancelled", &self.inner.cancel.is_cancelled())
            .finish()
    }
}

impl JobContext {
    pub(crate) fn new(
        id: JobId,
        name: String,
        params: Value,
        tries: u32,
        was_stale: bool,
        cancel: CancellationToken,
        lease: Option<LeaseKeeper>,
    ) -> Self {
        JobContext {
            inner: Arc::new(Inner {
                id,
                name,
                params,
                tries,
                was_stale,
                cancel,
                lease,
            }),
        }
    }

    /// A context with no store behind it, for calling a handler directly in a unit test.
    ///
    /// Its [`extend_lock_time`](JobContext::extend_lock_time) succeeds without doing anything, and
    /// its cancellation signal fires only through the returned token.
    pub fn detached(
        id: impl Into<JobId>,
        name: impl Into<String>,
        params: Value,
        tries: u32,
    ) -> (Self, CancellationToken) {
        let cancel = CancellationToken::new();
        let ctx = JobContext::new(
            id.into(),
            name.into(),
            params,
            tries,
            false,
            cancel.clone(),
            None,
        );
        (ctx, cancel)
    }

    /// The job's id.
    pub fn id(&self) -> &JobId {
        &self.inner.id
    }

    /// The job's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The params as stored (JSON).
    pub fn params(&self) -> &Value {
        &self.inner.params
    }

    /// Which try this is: 1 on the first execution.
    pub fn tries(&self) -> u32 {
        self.inner.tries
    }

    /// Whether the previous execution of this job went stale (its lease ran out).
    pub fn was_stale(&self) -> bool {
        self.inner.was_stale
    }

    /// Whether the execution has been cancelled (stale, or the workers are shutting down).
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancel.is_cancelled()
    }

    /// Completes when the execution is cancelled (stale, or the workers are shutting down).
    pub async fn cancelled(&self) {
        self.inner.cancel.cancelled().await
    }

    /// The cancellation signal, to hand to code that takes a `CancellationToken`.
    pub fn cancellation_token(&self) -> CancellationToken {
        self.inner.cancel.clone()
    }

    /// Extends the lease: it now ends `lock_time` from now, by the store's clock.
    ///
    /// Fails with `LockLost` when the execution has already gone stale or its lease was taken,
    /// and with `InvalidInput` for a zero `lock_time`.
    pub async fn extend_lock_time(&self, lock_time: Duration) -> Result<()> {
        if lock_time.is_zero() {
            return Err(Error::invalid_input(
                "extend_lock_time needs a time longer than zero",
            ));
        }
        let Some(keeper) = &self.inner.lease else {
            return Ok(());
        };
        if self.inner.cancel.is_cancelled() {
            return Err(Error::new(
                ErrorKind::LockLost,
                format!("job {}: the execution was cancelled", self.inner.id),
            ));
        }
        let asked_at = Instant::now();
        keeper.store.extend_lock(&keeper.lease, lock_time).await?;
        keeper.deadline.send_replace(asked_at + lock_time);
        Ok(())
    }
}
