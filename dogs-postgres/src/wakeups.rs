//! Wake-ups over LISTEN/NOTIFY: a dedicated connection that wakes idle workers when a statement
//! leaves a job behind that is due or will be (so they learn its time from their next claim),
//! and reconnects when the connection drops (polling covers the gap).

use dogs_core::{listen_with_reconnect, Notice, WakeUpSender};
use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// The payload of a notification that a running job was cancelled (others are wake-ups).
pub(crate) const CANCELLED: &str = "cancelled";

/// Listens on `channel` until `stop` fires.
pub(crate) async fn listen(
    pool: PgPool,
    channel: String,
    wake: WakeUpSender,
    stop: CancellationToken,
) {
    let connect = || async {
        let mut listener = PgListener::connect_with(&pool).await?;
        listener.listen(&channel).await?;
        // `try_recv` answers `None` when the connection dropped (it reconnects on the next call):
        // that is a wake-up too, for notifications lost meanwhile.
        Ok::<_, sqlx::Error>(Box::pin(futures::stream::unfold(
            listener,
            |mut listener| async {
                let received = listener.try_recv().await.map(|n| match n {
                    Some(n) if n.payload() == CANCELLED => Notice::Cancelled,
                    _ => Notice::Due,
                });
                Some((received, listener))
            },
        )))
    };
    listen_with_reconnect("PostgreSQL wake-up listener", wake, stop, connect).await;
}
