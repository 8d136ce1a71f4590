//! Wake-ups: how a store tells idle workers that a job may have become claimable.

use tokio::sync::watch;

/// The sending side, kept by a store.
///
/// Cheap to clone; every [`WakeUps`] subscribed from it sees each [`notify`](WakeUpSender::notify).
#[derive(Debug, Clone)]
pub struct WakeUpSender {
    tx: watch::Sender<u64>,
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
        }
    }

    /// Wakes every subscriber (at once if it waits, or at its next wait otherwise).
    pub fn notify(&self) {
        self.tx.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A new receiving side.
    pub fn subscribe(&self) -> WakeUps {
        WakeUps {
            rx: self.tx.subscribe(),
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
}
