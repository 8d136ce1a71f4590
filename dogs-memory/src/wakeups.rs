//! Wake-ups: a timer that sleeps until the next run time or lease end of any job and wakes idle
//! workers then; jobs due at once wake them as they are stored.

use std::sync::atomic::Ordering;
use std::sync::Weak;
use std::time::Duration;

use chrono::{DateTime, Utc};
use dogs_core::truncate_millis;
use tokio::sync::watch;

use crate::store::Shared;

/// Sleeps until the next run time or lease end, wakes the workers then, and starts over.
pub(crate) async fn timer(
    shared: Weak<Shared>,
    mut changed: watch::Receiver<()>,
    mut jumps: Option<watch::Receiver<()>>,
) {
    let mut watched_until = DateTime::<Utc>::MIN_UTC;
    loop {
        let Some(store) = shared.upgrade() else {
            return;
        };
        changed.borrow_and_update();
        if let Some(jumps) = &mut jumps {
            jumps.borrow_and_update();
        }
        let now = truncate_millis(store.clock.now());
        let next = store.state().next_due_after(watched_until);
        if next.is_some_and(|at| at <= now) {
            store.wake.notify();
            watched_until = now;
            continue;
        }
        store.armed_until.store(
            next.map_or(i64::MAX, |at| at.timestamp_millis()),
            Ordering::Release,
        );
        drop(store);
        let sleep = next.map(|at| (at - now).to_std().unwrap_or(Duration::ZERO));
        let jumped = async {
            match &mut jumps {
                Some(jumps) => jumps.changed().await.is_ok(),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = async { tokio::time::sleep(sleep.unwrap_or(Duration::MAX)).await }, if sleep.is_some() => {}
            alive = changed.changed() => if alive.is_err() { return },
            _ = jumped => {}
        }
    }
}
