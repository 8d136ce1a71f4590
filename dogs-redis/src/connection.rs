//! How commands reach the server: one node through a `ConnectionManager`, or a Redis Cluster
//! through the `redis` crate's async cluster client, every command sent to the master that owns
//! the prefix's slot.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{
    Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, RedisResult, ServerErrorKind, Value,
};
use tokio::time::Instant;

/// The store's connection. Cheap to clone: clones share the underlying connections.
#[derive(Clone)]
pub(crate) enum Connection {
    /// One Redis server (or a proxy in front of several).
    Single(ConnectionManager),
    /// A Redis Cluster: every command goes to the master of one slot.
    Cluster(ClusterRoute),
}

/// A cluster connection and the slot of the store's prefix.
#[derive(Clone)]
pub(crate) struct ClusterRoute {
    connection: ClusterConnection,
    route: Route,
    /// How long a command the cluster refused without running it is sent again.
    retry_for: Duration,
}

impl ClusterRoute {
    /// Sends every command to the master of `hash_tag`'s slot. The cluster client itself must
    /// not resend commands (`retries(0)`): a command whose connection dropped may have run, and a
    /// script run twice schedules a job twice. Only what the cluster refused before running it
    /// (a moved or failing-over slot) is sent again here, for up to `retry_for`.
    pub(crate) fn new(connection: ClusterConnection, hash_tag: &str, retry_for: Duration) -> Self {
        ClusterRoute {
            connection,
            route: Route::with_key(hash_tag, SlotAddr::Master),
            retry_for,
        }
    }

    async fn command(&mut self, cmd: &Cmd) -> RedisResult<Value> {
        let deadline = Instant::now() + self.retry_for;
        let mut pause = Duration::from_millis(20);
        loop {
            let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(self.route));
            match self.connection.route_command(cmd.clone(), routing).await {
                Err(e) if not_run(&e) && Instant::now() + pause < deadline => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(500));
                }
                result => return result,
            }
        }
    }

    async fn pipeline(
        &mut self,
        pipeline: &Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        let deadline = Instant::now() + self.retry_for;
        let mut pause = Duration::from_millis(20);
        loop {
            let route = SingleNodeRoutingInfo::SpecificNode(self.route);
            match self
                .connection
                .route_pipeline(pipeline.clone(), offset, count, route)
                .await
            {
                Err(e) if not_run(&e) && Instant::now() + pause < deadline => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(500));
                }
                result => return result,
            }
        }
    }
}

/// Whether the cluster refused the command before running it, so sending it again cannot run it
/// twice: the slot moved or is moving, its master is failing over or loading, or the client
/// has no connection to the slot's node yet.
pub(crate) fn not_run(error: &RedisError) -> bool {
    match error.kind() {
        ErrorKind::Server(kind) => matches!(
            kind,
            ServerErrorKind::Moved
                | ServerErrorKind::Ask
                | ServerErrorKind::TryAgain
                | ServerErrorKind::ClusterDown
                | ServerErrorKind::MasterDown
                | ServerErrorKind::ReadOnly
                | ServerErrorKind::BusyLoading
        ),
        ErrorKind::ClusterConnectionNotFound => true,
        _ => error.is_connection_refusal(),
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Single(connection) => connection.req_packed_command(cmd),
            Connection::Cluster(cluster) => Box::pin(cluster.command(cmd)),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Single(connection) => {
                connection.req_packed_commands(pipeline, offset, count)
            }
            Connection::Cluster(cluster) => Box::pin(cluster.pipeline(pipeline, offset, count)),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Single(connection) => connection.get_db(),
            Connection::Cluster(_) => 0,
        }
    }
}
