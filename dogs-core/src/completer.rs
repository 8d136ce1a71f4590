//! Saves executions' outcomes in batches: each worker set has one completer, which sends what
//! has accumulated to the store in one `finish_many` call while the previous call is under way.
//! An outcome that arrives when nothing is under way is sent at once, so batching adds no delay.
//! A call that is slow (over [`SLOW_CALL`]) does not hold back the others: the next batch goes
//! beside it, up to [`IN_FLIGHT`] calls at once. Neither does an outcome whose lease is about to
//! end (within [`URGENT`]): its batch goes at once, so waiting to batch never costs a lease.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::claim::Finish;
use crate::error::{Error, ErrorKind, Result};
use crate::store::JobStore;

/// The most outcomes one store call saves.
const MAX_BATCH: usize = 512;

/// The most `finish_many` calls under way at once.
const IN_FLIGHT: usize = 4;

/// How long a call is under way before the next batch is sent beside it.
const SLOW_CALL: Duration = Duration::from_millis(250);

/// How long before its lease ends an outcome waiting for a batch is sent without waiting more.
const URGENT: Duration = Duration::from_millis(500);

struct Request {
    finish: Finish,
    /// When the lease of the execution ends (by the local clock).
    lease_ends: Instant,
    reply: oneshot::Sender<Result<()>>,
}

/// The handle executions use to save their outcome.
#[derive(Clone)]
pub(crate) struct Completer {
    tx: mpsc::UnboundedSender<Request>,
}

impl Completer {
    /// Starts the completer task; it ends when every handle is dropped.
    pub(crate) fn start(store: Arc<dyn JobStore>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(store, rx));
        Completer { tx }
    }

    /// Saves one outcome, of an execution whose lease ends at `lease_ends`, and waits until
    /// it is saved (or failed).
    pub(crate) async fn finish(&self, finish: Finish, lease_ends: Instant) -> Result<()> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Request {
                finish,
                lease_ends,
                reply,
            })
            .map_err(|_| Error::new(ErrorKind::Shutdown, "the worker set has stopped"))?;
        answer.await.unwrap_or_else(|_| {
            Err(Error::new(
                ErrorKind::Shutdown,
                "the worker set has stopped",
            ))
        })
    }
}

async fn run(store: Arc<dyn JobStore>, mut rx: mpsc::UnboundedReceiver<Request>) {
    let calls = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let mut batch: Vec<Request> = Vec::new();
    let mut open = true;
    loop {
        // A call may start: take what has accumulated (waiting for one outcome at least).
        let Ok(permit) = Arc::clone(&calls).acquire_owned().await else {
            return;
        };
        if batch.is_empty() && (!open || rx.recv_many(&mut batch, MAX_BATCH).await == 0) {
            return;
        }
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        let requests: Vec<Request> = std::mem::take(&mut batch);
        let store = Arc::clone(&store);
        let (done, finished) = oneshot::channel::<()>();
        tokio::spawn(async move {
            save(&*store, requests).await;
            drop(permit);
            let _ = done.send(());
        });
        // What arrives meanwhile makes the next batch; it waits for this call unless the call
        // is slow or one of the outcomes waiting has a lease about to end.
        tokio::pin!(finished);
        let slow = tokio::time::sleep(SLOW_CALL);
        tokio::pin!(slow);
        loop {
            let urgent_at = batch
                .iter()
                .map(|request| request.lease_ends)
                .min()
                .map(|ends| ends.checked_sub(URGENT).unwrap_or(ends));
            let room = MAX_BATCH - batch.len();
            tokio::select! {
                biased;
                _ = &mut finished => break,
                _ = &mut slow => break,
                _ = tokio::time::sleep_until(urgent_at.unwrap_or_else(Instant::now)),
                    if urgent_at.is_some() => break,
                received = rx.recv_many(&mut batch, room), if open && room > 0 => {
                    if received == 0 {
                        open = false;
                    }
                }
            }
        }
    }
}

/// Saves one batch and answers each outcome's caller. An outcome whose caller stopped waiting
/// (its lease ended, or the workers gave up saving at shutdown) is not sent: the job runs again
/// once its lease ends whatever is written now, and the channel keeps nothing for it.
async fn save(store: &dyn JobStore, requests: Vec<Request>) {
    let requests: Vec<Request> = requests
        .into_iter()
        .filter(|request| !request.reply.is_closed())
        .collect();
    if requests.is_empty() {
        return;
    }
    let (items, replies): (Vec<Finish>, Vec<oneshot::Sender<Result<()>>>) = requests
        .into_iter()
        .map(|request| (request.finish, request.reply))
        .unzip();
    let count = items.len();
    match store.finish_many(items).await {
        Ok(outcomes) if outcomes.len() == count => {
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                // An execution that stopped waiting has nothing left to learn.
                let _ = reply.send(outcome);
            }
        }
        Ok(_) => {
            for reply in replies {
                let _ = reply.send(Err(Error::new(
                    ErrorKind::Backend,
                    "the store answered a batch of outcomes with the wrong count",
                )));
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(Error::new(e.kind(), e.message().to_owned())));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;
    use chrono::{DateTime, Utc};

    use super::*;
    use crate::claim::{ClaimRequest, Claimed, Completion, Lease, LeaseToken};
    use crate::execution::{Execution, ExecutionQuery};
    use crate::job::{
        Job, JobCounts, JobId, JobQuery, NewJob, PruneReport, RecurrentRegistration, Scheduled,
    };

    /// A store whose `finish_many` takes [`CALL`] and notes when each call began, and for
    /// which jobs; nothing else is called.
    #[derive(Default)]
    struct SlowFinishes {
        calls: Mutex<Vec<(Duration, Vec<String>)>>,
        start: Mutex<Option<Instant>>,
    }

    const CALL: Duration = Duration::from_millis(200);

    fn not_used<T>() -> Result<T> {
        Err(Error::new(ErrorKind::Backend, "not used by the completer"))
    }

    #[async_trait]
    impl JobStore for SlowFinishes {
        async fn now(&self) -> Result<DateTime<Utc>> {
            not_used()
        }
        fn max_params_bytes(&self) -> usize {
            0
        }
        async fn schedule(&self, _: NewJob) -> Result<Scheduled> {
            not_used()
        }
        async fn schedule_many(&self, _: Vec<NewJob>) -> Result<Vec<Result<Scheduled>>> {
            not_used()
        }
        async fn register_recurrent(&self, _: RecurrentRegistration) -> Result<JobId> {
            not_used()
        }
        async fn claim(&self, _: &ClaimRequest) -> Result<Claimed> {
            not_used()
        }
        async fn extend_lock(&self, _: &Lease, _: Duration) -> Result<DateTime<Utc>> {
            not_used()
        }
        async fn complete(&self, _: &Lease, _: Completion) -> Result<()> {
            not_used()
        }
        async fn finish_many(&self, items: Vec<Finish>) -> Result<Vec<Result<()>>> {
            let began = self
                .start
                .lock()
                .unwrap()
                .map(|s| s.elapsed())
                .unwrap_or_default();
            let ids = items.iter().map(|i| i.lease.job_id.to_string()).collect();
            self.calls.lock().unwrap().push((began, ids));
            tokio::time::sleep(CALL).await;
            Ok(items.iter().map(|_| Ok(())).collect())
        }
        async fn record_execution(&self, _: &Execution) -> Result<()> {
            not_used()
        }
        async fn get_job(&self, _: &JobId) -> Result<Option<Job>> {
            not_used()
        }
        async fn list_jobs(&self, _: &JobQuery) -> Result<Vec<Job>> {
            not_used()
        }
        async fn count_jobs(&self) -> Result<Vec<JobCounts>> {
            not_used()
        }
        async fn list_recurrent(&self) -> Result<Vec<Job>> {
            not_used()
        }
        async fn execution_stats(
            &self,
            _: chrono::DateTime<chrono::Utc>,
        ) -> Result<Vec<crate::ExecutionMinute>> {
            not_used()
        }
        async fn executions(&self, _: &ExecutionQuery) -> Result<Vec<Execution>> {
            not_used()
        }
        async fn cancel(&self, _: &JobId) -> Result<bool> {
            not_used()
        }
        async fn cancel_unique(&self, _: &str, _: &str) -> Result<bool> {
            not_used()
        }
        async fn prune(&self) -> Result<PruneReport> {
            not_used()
        }
        async fn remove_all(&self) -> Result<()> {
            not_used()
        }
        async fn retry(&self, _: &JobId) -> Result<bool> {
            not_used()
        }
        async fn retry_failed_batch(
            &self,
            _: &str,
            _: Option<&JobId>,
            _: usize,
        ) -> Result<crate::RetryBatch> {
            not_used()
        }
        async fn set_paused(&self, _: &str, _: bool) -> Result<()> {
            not_used()
        }
        async fn set_concurrency_limit(&self, _: &str, _: Option<u32>) -> Result<()> {
            not_used()
        }
        async fn name_settings(&self) -> Result<Vec<crate::NameSettings>> {
            not_used()
        }
        async fn set_progress(&self, _: &Lease, _: &serde_json::Value) -> Result<()> {
            not_used()
        }
    }

    fn finish(id: &str) -> Finish {
        Finish {
            lease: Lease {
                job_id: JobId::new(id),
                token: LeaseToken::generate(),
            },
            completion: Completion::Remove,
            execution: None,
        }
    }

    /// Saves `id`'s outcome from a task of its own, as an execution does.
    fn save(completer: &Completer, id: &'static str, lease_ends: Instant) {
        let completer = completer.clone();
        tokio::spawn(async move { completer.finish(finish(id), lease_ends).await });
    }

    #[tokio::test(start_paused = true)]
    async fn an_outcome_waits_for_the_call_under_way_unless_its_lease_is_about_to_end() {
        let store = Arc::new(SlowFinishes::default());
        *store.start.lock().unwrap() = Some(Instant::now());
        let completer = Completer::start(Arc::clone(&store) as Arc<dyn JobStore>);
        let far = Instant::now() + Duration::from_secs(30);
        save(&completer, "first", far);
        tokio::time::sleep(Duration::from_millis(10)).await;
        // While the first call is under way (and not yet slow): one outcome with time to spare,
        // one whose lease ends in 300 ms, less than a wait and a call.
        save(&completer, "patient", far);
        tokio::time::sleep(Duration::from_millis(10)).await;
        save(
            &completer,
            "urgent",
            Instant::now() + Duration::from_millis(300),
        );
        tokio::time::sleep(Duration::from_secs(1)).await;

        let calls = store.calls.lock().unwrap().clone();
        let began = |id: &str| {
            calls
                .iter()
                .find(|(_, ids)| ids.iter().any(|i| i == id))
                .map(|(at, _)| *at)
                .unwrap_or_else(|| panic!("{id} was never sent: {calls:?}"))
        };
        assert_eq!(began("first"), Duration::ZERO, "{calls:?}");
        assert!(
            began("urgent") < Duration::from_millis(50),
            "the outcome whose lease was about to end waited for the call under way: {calls:?}"
        );
        assert!(
            began("patient") < Duration::from_millis(50),
            "it went with the urgent one: {calls:?}"
        );
        assert_eq!(calls.len(), 2, "{calls:?}");

        // Nothing urgent: what arrives during a call waits for it, and goes as one batch.
        store.calls.lock().unwrap().clear();
        *store.start.lock().unwrap() = Some(Instant::now());
        save(&completer, "a", far);
        tokio::time::sleep(Duration::from_millis(10)).await;
        save(&completer, "b", far);
        save(&completer, "c", far);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let calls = store.calls.lock().unwrap().clone();
        assert_eq!(calls.len(), 2, "{calls:?}");
        assert_eq!(
            calls[1].0, CALL,
            "the second batch waited for the first call: {calls:?}"
        );
        assert_eq!(
            calls[1].1,
            vec!["b".to_owned(), "c".to_owned()],
            "{calls:?}"
        );
    }
}
