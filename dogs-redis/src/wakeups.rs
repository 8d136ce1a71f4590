//! Wake-ups over pub/sub: a dedicated connection subscribed to the prefix's wake channel, on
//! which the scripts publish when a job is due or stored for later; it reconnects when it drops
//! (workers poll meanwhile).

use dogs_core::{listen_with_reconnect, Notice, WakeUpSender};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

/// Listens on `channel` until `stop` fires.
pub(crate) async fn subscribe(
    client: redis::Client,
    channel: String,
    wake: WakeUpSender,
    stop: CancellationToken,
) {
    let connect = || async {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(&channel).await?;
        Ok::<_, redis::RedisError>(pubsub.into_on_message().map(|message| {
            Ok(match message.get_payload::<String>() {
                Ok(payload) if payload == "cancelled" => Notice::Cancelled,
                _ => Notice::Due,
            })
        }))
    };
    listen_with_reconnect("Redis wake-up subscriber", wake, stop, connect).await;
}
