//! Saves executions' outcomes in batches: each worker set has one completer, which sends what
//! has accumulated to the store in one `finish_many` call while the previous call is under way.
//! An outcome that arrives when nothing is under way is sent at once, so batching adds no delay.
//! A call that is slow (over [`SLOW_CALL`]) does not hold back the others: the next batch goes
//! beside it, up to [`IN_FLIGHT`] calls at once.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::claim::Finish;
use crate::error::{Error, ErrorKind, Result};
use crate::store::JobStore;

/// The most outcomes one store call saves.
const MAX_BATCH: usize = 512;

/// The most `finish_many` calls under way at once.
const IN_FLIGHT: usize = 4;

/// How long a call is under way before the next batch is sent beside it.
const SLOW_CALL: std::time::Duration = std::time::Duration::from_millis(250);

struct Request {
    finish: Finish,
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

    /// Saves one outcome and waits until it is saved (or failed).
    pub(crate) async fn finish(&self, finish: Finish) -> Result<()> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Request { finish, reply })
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
    loop {
        // A call may start: take what has accumulated (waiting for one outcome at least).
        let Ok(permit) = Arc::clone(&calls).acquire_owned().await else {
            return;
        };
        if rx.recv_many(&mut batch, MAX_BATCH).await == 0 {
            return;
        }
        let requests: Vec<Request> = std::mem::take(&mut batch);
        let store = Arc::clone(&store);
        let (done, finished) = oneshot::channel::<()>();
        tokio::spawn(async move {
            save(&*store, requests).await;
            drop(permit);
            let _ = done.send(());
        });
        // What arrives meanwhile makes the next batch; it waits for this call unless it is slow.
        let _ = tokio::time::timeout(SLOW_CALL, finished).await;
    }
}

/// Saves one batch and answers each outcome's caller.
async fn save(store: &dyn JobStore, requests: Vec<Request>) {
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
