//! Wake-ups over pub/sub: a dedicated connection subscribed to the prefix's wake channel, which
//! reconnects when it drops (workers poll meanwhile).

use std::time::Duration;

use dogs_core::WakeUpSender;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// Listens on `channel` until `stop` fires, waking `wake` on every message and after every
/// (re)connection, since messages sent while disconnected are lost.
pub(crate) async fn subscribe(
    client: redis::Client,
    channel: String,
    wake: WakeUpSender,
    stop: CancellationToken,
) {
    let mut pause = Duration::from_millis(100);
    loop {
        let connected = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        let mut pubsub = tokio::select! {
            _ = stop.cancelled() => return,
            connected = connected => match connected {
                Ok(pubsub) => pubsub,
                Err(e) => {
                    warn!(error = %e, retry_in = ?pause, "Redis wake-up subscriber cannot connect; polling meanwhile");
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
        let mut messages = pubsub.on_message();
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                message = messages.next() => match message {
                    Some(_) => wake.notify(),
                    None => {
                        warn!("Redis wake-up subscriber lost its connection; reconnecting");
                        break;
                    }
                },
            }
        }
    }
}
