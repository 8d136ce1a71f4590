//! Wake-ups across processes that share the file: a connection of its own looks every poll
//! interval at `PRAGMA data_version`, which changes when another connection committed; when it
//! did, the `signals` counters say whether a commit left a job due or scheduled (idle workers
//! look again), or cancelled a running one (workers check the jobs they run). Commits of this
//! store wake this process's workers at once, without waiting for a look.
//!
//! The connection is opened again when it fails; workers poll meanwhile, and are woken once it
//! is back, since what happened meanwhile was not seen.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use dogs_core::WakeUpSender;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, SqliteConnection};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::store::Seen;

/// Looks for other connections' commits every `interval` until `stop` fires.
pub(crate) async fn poll(
    options: SqliteConnectOptions,
    interval: Duration,
    wake: WakeUpSender,
    seen: Arc<Seen>,
    stop: CancellationToken,
) {
    let mut backoff = Backoff::default();
    loop {
        let connected = tokio::select! {
            _ = stop.cancelled() => return,
            connected = options.connect() => connected,
        };
        let mut conn = match connected {
            Ok(conn) => conn,
            Err(e) => {
                let pause = backoff.failed();
                warn!(error = %e, retry_in = ?pause, "the SQLite wake-up poller cannot open the database; workers poll meanwhile");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(pause) => {}
                }
                continue;
            }
        };
        let (error, looked) = watch(&mut conn, interval, &wake, &seen, &stop).await;
        let Some(e) = error else {
            return;
        };
        // Only a look that succeeded ends the backoff: a connection that opens but whose
        // looks keep failing is tried again less and less often, not every 100 ms.
        if looked {
            backoff = Backoff::default();
        }
        let pause = backoff.failed();
        warn!(error = %e, retry_in = ?pause, "the SQLite wake-up poller failed; opening its connection again");
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

/// How long the poller waits before trying again: 100 ms after the first failure, twice as
/// long after each further one in a row, at most 10 s.
#[derive(Debug, Default)]
struct Backoff {
    failures: u32,
}

impl Backoff {
    /// Counts a failure; the pause before the next try.
    fn failed(&mut self) -> Duration {
        let pause = Duration::from_millis(100)
            .saturating_mul(1u32 << self.failures.min(7))
            .min(Duration::from_secs(10));
        self.failures = self.failures.saturating_add(1);
        pause
    }
}

/// Watches on `conn` until `stop` fires (`None`) or a statement fails (its error), and says
/// whether a look succeeded first.
async fn watch(
    conn: &mut SqliteConnection,
    interval: Duration,
    wake: &WakeUpSender,
    seen: &Seen,
    stop: &CancellationToken,
) -> (Option<sqlx::Error>, bool) {
    // Where things stand first; then, as what happened before was not seen, both kinds are
    // looked at. Every commit after this look changes `data_version`.
    let version = match look(conn, seen).await {
        Ok((version, _, _)) => version,
        Err(e) => return (Some(e), false),
    };
    (
        watch_from(conn, version, interval, wake, seen, stop).await,
        true,
    )
}

/// Watches on `conn`, whose last look saw `version`, until `stop` fires (`None`) or a
/// statement fails (its error).
async fn watch_from(
    conn: &mut SqliteConnection,
    mut version: i64,
    interval: Duration,
    wake: &WakeUpSender,
    seen: &Seen,
    stop: &CancellationToken,
) -> Option<sqlx::Error> {
    wake.notify();
    wake.notify_cancelled();
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return None,
            _ = ticks.tick() => {}
        }
        let now: i64 = match sqlx::query_scalar("PRAGMA data_version")
            .fetch_one(&mut *conn)
            .await
        {
            Ok(now) => now,
            Err(e) => return Some(e),
        };
        if now == version {
            continue;
        }
        match look(conn, seen).await {
            Ok((now, due, cancelled)) => {
                version = now;
                if due {
                    wake.notify();
                }
                if cancelled {
                    wake.notify_cancelled();
                }
            }
            Err(e) => return Some(e),
        }
    }
}

/// Reads `data_version` and the counters, records them as seen, and says whether each counter
/// moved past what this process had seen.
async fn look(conn: &mut SqliteConnection, seen: &Seen) -> Result<(i64, bool, bool), sqlx::Error> {
    let version: i64 = sqlx::query_scalar("PRAGMA data_version")
        .fetch_one(&mut *conn)
        .await?;
    let counters: Option<(i64, i64)> =
        sqlx::query_as("SELECT due, cancelled FROM signals WHERE id = 1")
            .fetch_optional(&mut *conn)
            .await?;
    let Some((due, cancelled)) = counters else {
        return Ok((version, false, false));
    };
    Ok((
        version,
        seen.due.fetch_max(due, Ordering::AcqRel) < due,
        seen.cancelled.fetch_max(cancelled, Ordering::AcqRel) < cancelled,
    ))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    /// Failures in a row wait longer and longer, up to 10 s; a fresh backoff starts again.
    #[test]
    fn backoff_grows_until_reset() {
        let mut backoff = super::Backoff::default();
        let pauses: Vec<Duration> = (0..10).map(|_| backoff.failed()).collect();
        assert_eq!(pauses[0], Duration::from_millis(100));
        assert_eq!(pauses[1], Duration::from_millis(200));
        assert!(pauses.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(pauses[9], Duration::from_secs(10));
        let mut backoff = super::Backoff::default();
        assert_eq!(backoff.failed(), Duration::from_millis(100));
    }
}
