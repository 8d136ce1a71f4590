//! Wake-ups over pub/sub: a dedicated connection subscribed to the prefix's wake channel, on
//! which the scripts publish when a job is due or stored for later; it reconnects when it drops
//! (workers poll meanwhile).
//!
//! On one server the channel is a classic one (`SUBSCRIBE`/`PUBLISH`). On a cluster it is a
//! shard channel (`SSUBSCRIBE`/`SPUBLISH`), in the prefix's slot: only the shard that owns the
//! jobs carries it, where a classic channel would be forwarded to every node. The subscription
//! is a cluster connection of its own (RESP3, whose pushes carry the messages); when a node
//! drops or the slot moves, the subscription is opened again from the cluster's current map.

use dogs_core::{listen_with_reconnect, Notice, WakeUpSender};
use futures::StreamExt;
use redis::{PushKind, Value};
use tokio_util::sync::CancellationToken;

/// Where the wake-up subscription connects.
#[derive(Clone)]
pub(crate) enum Subscriber {
    /// One server.
    Single(redis::Client),
    /// A cluster, from these nodes, with the store's connection settings.
    Cluster(crate::config::ClusterNodes),
}

fn notice(payload: &str) -> Notice {
    if payload == "cancelled" {
        Notice::Cancelled
    } else {
        Notice::Due
    }
}

/// Listens on `channel` until `stop` fires.
pub(crate) async fn subscribe(
    source: Subscriber,
    channel: String,
    wake: WakeUpSender,
    stop: CancellationToken,
) {
    match source {
        Subscriber::Single(client) => {
            let connect = || async {
                let mut pubsub = client.get_async_pubsub().await?;
                pubsub.subscribe(&channel).await?;
                Ok::<_, redis::RedisError>(pubsub.into_on_message().map(|message| {
                    Ok(notice(&message.get_payload::<String>().unwrap_or_default()))
                }))
            };
            listen_with_reconnect("Redis wake-up subscriber", wake, stop, connect).await;
        }
        Subscriber::Cluster(nodes) => {
            let connect = || async {
                let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
                let client = nodes
                    .builder()
                    .use_protocol(redis::ProtocolVersion::RESP3)
                    .push_sender(tx)
                    .build()?;
                let mut connection = client.get_async_connection().await?;
                connection.ssubscribe(&channel).await?;
                // The connection lives as long as the stream: dropping it ends the subscription.
                let pushes =
                    futures::stream::unfold((rx, connection), |(mut rx, connection)| async {
                        let push = rx.recv().await?;
                        Some((push, (rx, connection)))
                    });
                Ok::<_, redis::RedisError>(
                    pushes
                        .filter_map(|push| async move {
                            match push.kind {
                                PushKind::SMessage => {
                                    let payload = match push.data.get(1) {
                                        Some(Value::BulkString(bytes)) => {
                                            String::from_utf8_lossy(bytes).into_owned()
                                        }
                                        _ => String::new(),
                                    };
                                    Some(Ok(notice(&payload)))
                                }
                                // A node dropped, or the slot moved away from the node subscribed: what
                                // is published meanwhile is lost, so the subscription is opened anew
                                // (which wakes the workers to look again).
                                PushKind::Disconnection | PushKind::SUnsubscribe => {
                                    Some(Err(redis::RedisError::from((
                                        redis::ErrorKind::Io,
                                        "the shard channel's subscription ended",
                                    ))))
                                }
                                _ => None,
                            }
                        })
                        .boxed(),
                )
            };
            listen_with_reconnect("Redis Cluster wake-up subscriber", wake, stop, connect).await;
        }
    }
}
