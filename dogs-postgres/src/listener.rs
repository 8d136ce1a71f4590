//! Wake-ups over LISTEN/NOTIFY: a dedicated connection that wakes idle workers when a statement
//! leaves a due job behind, and reconnects when the connection drops (polling covers the gap).

use std::time::Duration;

use dogs_core::WakeUpSender;
use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// Listens on `channel` until `stop` fires, waking `wake` on every notification and after every
/// reconnection (notifications sent while disconnected are lost).
pub(crate) async fn listen(
    pool: PgPool,
    channel: String,
    wake: WakeUpSender,
    stop: CancellationToken,
) {
    let mut pause = Duration::from_millis(100);
    loop {
        let connected = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(&channel).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let mut listener = tokio::select! {
            _ = stop.cancelled() => return,
            connected = connected => match connected {
                Ok(listener) => listener,
                Err(e) => {
                    warn!(error = %e, retry_in = ?pause, "PostgreSQL wake-up listener cannot connect; polling meanwhile");
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(pause) => {}
                    }
                    pause = (pause * 2).min(Duration::from_secs(10));
                    continue;
                }
            },
        };
        pause = Duration::from_millis(100);
        wake.notify();
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                received = listener.try_recv() => match received {
                    Ok(Some(_)) => wake.notify(),
                    // The connection dropped; the next call reconnects and listens again.
                    Ok(None) => wake.notify(),
                    Err(e) => {
                        warn!(error = %e, "PostgreSQL wake-up listener failed; reconnecting");
                        break;
                    }
                },
            }
        }
    }
}
