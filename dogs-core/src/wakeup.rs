//! Wake-ups: how a store tells idle workers that a job may have become claimable.

use std::future::Future;
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// What a store's notification says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Notice {
    /// A job may have become claimable (or was stored for later).
    Due,
    /// A running job was cancelled: workers check the jobs they run.
    Cancelled,
}

/// The sending side, kept by a store.
///
/// Cheap to clone; every [`WakeUps`] subscribed from it sees each [`notify`](WakeUpSender::notify).
#[derive(Debug, Clone)]
pub struct WakeUpSender {
    tx: watch::Sender<u64>,
    cancelled: watch::Sender<u64>,
}

impl Default for WakeUpSender {
    fn default() -> Self {
        WakeUpSender::new()
    }
}

impl WakeUpSender {
    /// A sender with no subscribers yet.
    pub fn new() -> Self {
        WakeUpSender {
            tx: watch::Sender::new(0),
            cancelled: watch::Sender::new(0),
        }
    }

    /// Wakes every subscriber (at once if it waits, or at its next wait otherwise).
    pub fn notify(&self) {
        self.tx.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Tells every subscriber that a running job was cancelled.
    pub fn notify_cancelled(&self) {
        self.cancelled.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Sends `notice`.
    pub fn send(&self, notice: Notice) {
        match notice {
            Notice::Due => self.notify(),
            Notice::Cancelled => self.notify_cancelled(),
        }
    }

    /// A new receiving side.
    pub fn subscribe(&self) -> WakeUps {
        WakeUps {
            rx: self.tx.subscribe(),
            cancelled: self.cancelled.subscribe(),
        }
    }
}

/// The receiving side, held by a worker set.
///
/// Race free: a notification sent after [`mark_seen`](WakeUps::mark_seen) and before
/// [`wait`](WakeUps::wait) ends that wait at once.
#[derive(Debug, Clone)]
pub struct WakeUps {
    rx: watch::Receiver<u64>,
    cancelled: watch::Receiver<u64>,
}

impl WakeUps {
    /// Marks every notification so far as seen; call before looking for work.
    pub fn mark_seen(&mut self) {
        self.rx.borrow_and_update();
    }

    /// Waits for a notification not yet seen. Never returns once the store is gone.
    pub async fn wait(&mut self) {
        if self.rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Waits for a [`Notice::Cancelled`] not yet seen. Never returns once the store is gone.
    pub async fn wait_cancelled(&mut self) {
        if self.cancelled.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Keeps a store's notification source connected until `stop` fires, waking `wake` on each
/// notification and after each (re)connection, since notifications sent while disconnected are
/// lost; workers poll meanwhile.
///
/// `connect` opens the source and returns its notices as a stream; an error item or the
/// end of the stream means the connection is gone, and the source is opened again, with a pause
/// of 100 ms doubling up to 10 s between failed attempts (a connection that dropped within a
/// second of opening counts as one). `what` names the source in logs.
pub async fn listen_with_reconnect<C, Fut, S, E>(
    what: &str,
    wake: WakeUpSender,
    stop: CancellationToken,
    mut connect: C,
) where
    C: FnMut() -> Fut,
    Fut: Future<Output = std::result::Result<S, E>>,
    S: Stream<Item = std::result::Result<Notice, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut pause = Duration::from_millis(100);
    loop {
        let connected = tokio::select! {
            _ = stop.cancelled() => return,
            connected = connect() => connected,
        };
        let mut notifications = match connected {
            Ok(notifications) => notifications,
            Err(e) => {
                warn!(error = %e, retry_in = ?pause, "{what} cannot connect; polling meanwhile");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(pause) => {}
                }
                pause = (pause * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        let connected_at = tokio::time::Instant::now();
        // What was sent while disconnected is lost: both kinds are looked at again.
        wake.notify();
        wake.notify_cancelled();
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                notification = notifications.next() => match notification {
                    Some(Ok(notice)) => wake.send(notice),
                    Some(Err(e)) => {
                        warn!(error = %e, retry_in = ?pause, "{what} lost its connection; reconnecting");
                        break;
                    }
                    None => break,
                },
            }
        }
        // A connection that held a while is reopened at once; one that dropped within a
        // second of opening waits, as a failed attempt does, so it cannot spin.
        if connected_at.elapsed() >= Duration::from_secs(1) {
            pause = Duration::from_millis(100);
        } else {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(pause) => {}
            }
            pause = (pause * 2).min(Duration::from_secs(10));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    /// A source that connects and then drops at once must not be reopened in a tight loop.
    #[tokio::test(start_paused = true)]
    async fn a_source_that_drops_at_once_is_reopened_with_a_pause() {
        let connects = Arc::new(AtomicUsize::new(0));
        let stop = CancellationToken::new();
        let counter = Arc::clone(&connects);
        let give_up = stop.clone();
        let listener = tokio::spawn(listen_with_reconnect(
            "test source",
            WakeUpSender::new(),
            stop.clone(),
            move || {
                // A tight loop never lets the paused clock move: it is stopped here.
                if counter.fetch_add(1, Ordering::Relaxed) >= 1000 {
                    give_up.cancel();
                }
                async {
                    Ok::<_, String>(futures::stream::iter([Err::<Notice, _>(
                        "dropped".to_owned(),
                    )]))
                }
            },
        ));
        tokio::time::sleep(Duration::from_secs(10)).await;
        stop.cancel();
        listener.await.unwrap();
        // Pauses of 0.1, 0.2, 0.4, ... 6.4 s: 7 or 8 attempts in 10 s, not thousands.
        let attempts = connects.load(Ordering::Relaxed);
        assert!(attempts <= 10, "{attempts} connections in 10 s");
    }
}
