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
/// Cheap to clone. Its cancellation signal fires when the execution goes stale (its lease is
/// about to run out, or an extension was refused) or the workers shut down; a handler that does
/// long work should watch it (with `tokio::select!` on [`cancelled`](JobContext::cancelled)) and
/// extend its lease with [`extend_lock_time`](JobContext::extend_lock_time) while it makes
/// progress. A handler that does not stop on its own is aborted at its next `.await`.
///
/// Blocking work (CPU-heavy loops, synchronous I/O) belongs in
/// [`tokio::task::spawn_blocking`](https://docs.rs/tokio/latest/tokio/task/fn.spawn_blocking.html):
/// a handler that blocks its thread cannot be stopped, and its worker slot stays taken until it
/// returns.
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

/// The lease of a running execution: where to extend it, and the local picture of its end.
pub(crate) struct LeaseKeeper {
    pub(crate) store: Arc<dyn JobStore>,
    pub(crate) lease: Lease,
    /// When the lease ends at the latest, by this process's clock, and how long it was taken for.
    pub(crate) end: watch::Sender<LeaseEnd>,
    /// Fires when the store refused an extension: the lease is no longer this execution's.
    pub(crate) lost: CancellationToken,
    /// How many extensions were asked for.
    pub(crate) extensions: std::sync::atomic::AtomicU64,
}

/// When a lease ends at the latest, by this process's monotonic clock: it was taken (or last
/// extended) no earlier than the call was made, for `lock_time`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LeaseEnd {
    pub(crate) at: Instant,
    pub(crate) lock_time: Duration,
    /// Which extension set it (0 for the claim): an answer to an older call is ignored.
    seq: u64,
}

impl LeaseEnd {
    /// A lease asked for at `asked_at`, for `lock_time`.
    pub(crate) fn new(asked_at: Instant, lock_time: Duration) -> Self {
        LeaseEnd {
            at: crate::worker::later(asked_at, lock_time),
            lock_time,
            seq: 0,
        }
    }

    /// How long a stopped handler may take to end on its own before it is aborted.
    pub(crate) fn grace(&self) -> Duration {
        (self.lock_time / 10).min(Duration::from_millis(100))
    }

    /// When the execution is stopped if the lease is not extended: early enough that the
    /// handler is stopped (grace included) and the job released before the store's lease can
    /// end, so no other worker starts the job while this one still runs it.
    pub(crate) fn stop_at(&self) -> Instant {
        let margin = self.grace() + (self.lock_time / 5).min(Duration::from_secs(1));
        self.at.checked_sub(margin).unwrap_or(self.at)
    }
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
    /// Fails with `LockLost` when the execution has already gone stale or its lease was taken;
    /// then the execution's cancellation signal fires and the execution ends as stale. Fails with
    /// `InvalidInput` for a zero `lock_time` or one over [`MAX_DURATION`](crate::MAX_DURATION).
    pub async fn extend_lock_time(&self, lock_time: Duration) -> Result<()> {
        crate::validate_lock_time(lock_time)?;
        if self.inner.lease.is_none() {
            return Ok(());
        }
        if self.inner.cancel.is_cancelled() {
            return Err(Error::new(
                ErrorKind::LockLost,
                format!("job {}: the execution was cancelled", self.inner.id),
            ));
        }
        self.renew(lock_time).await
    }

    /// Stores a progress value on the running job, read back as
    /// [`Job::progress`](crate::Job::progress) by [`get_job`](crate::JobStore::get_job) and
    /// [`list_jobs`](crate::JobStore::list_jobs) (a dashboard shows it).
    ///
    /// Fails with `LockLost` when the lease is no longer this execution's, and as params are
    /// checked for a value no store can keep (`InvalidInput`, `TooLarge`). A detached context
    /// stores nothing.
    pub async fn set_progress(&self, progress: impl serde::Serialize) -> Result<()> {
        let value = serde_json::to_value(progress).map_err(|e| {
            Error::invalid_input(format!("the progress cannot be written as JSON: {e}"))
        })?;
        let Some(keeper) = &self.inner.lease else {
            return Ok(());
        };
        keeper.store.set_progress(&keeper.lease, &value).await
    }

    /// Extends the lease, also after the cancellation signal fired (automatic renewal).
    pub(crate) async fn renew(&self, lock_time: Duration) -> Result<()> {
        let Some(keeper) = &self.inner.lease else {
            return Ok(());
        };
        let asked_at = Instant::now();
        let seq = keeper
            .extensions
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            + 1;
        match keeper.store.extend_lock(&keeper.lease, lock_time).await {
            Ok(_) => {
                // Calls made at once may be answered out of order: the latest call decides.
                keeper.end.send_if_modified(|end| {
                    if seq <= end.seq {
                        return false;
                    }
                    *end = LeaseEnd {
                        seq,
                        ..LeaseEnd::new(asked_at, lock_time)
                    };
                    true
                });
                Ok(())
            }
            Err(e) => {
                if e.kind() == ErrorKind::LockLost {
                    keeper.lost.cancel();
                    self.inner.cancel.cancel();
                }
                Err(e)
            }
        }
    }
}
