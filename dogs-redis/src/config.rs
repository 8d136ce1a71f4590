//! How a Redis store is set up: where it connects, its key prefix, and its limits.

use std::fmt;
use std::time::Duration;

use dogs_core::{Error, Result};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::{ConnectionInfo, IntoConnectionInfo};

use crate::connection::{ClusterRoute, Connection};
use crate::scripts::ReplicaWait;
use crate::store::RedisStore;
use crate::wakeups::Subscriber;

/// The key prefix dogs uses when none is set.
pub const DEFAULT_PREFIX: &str = "dogs";

/// The longest [`RedisStoreBuilder::wait_for_replicas`] may wait for each write.
const MAX_REPLICA_WAIT: Duration = Duration::from_secs(3600);

/// The default params limit: 16 MiB of JSON.
pub const DEFAULT_MAX_PARAMS_BYTES: usize = 16 * 1024 * 1024;

/// Builds a [`RedisStore`] from a URL, or from an existing client or connection.
///
/// A URL names one server (`redis://host:6379`, `rediss://` for TLS), or a Redis Cluster:
/// `redis+cluster://[user:password@]host1:port1,host2:port2[/?options]` (`rediss+cluster://`
/// for TLS), any of whose nodes the client starts from; it learns the others from them.
/// [`cluster_nodes`](Self::cluster_nodes) takes the nodes' URLs one by one instead.
///
/// ```no_run
/// # async fn example() -> Result<(), dogs_core::Error> {
/// use dogs_redis::RedisStore;
///
/// let store = RedisStore::builder()
///     .url("redis://cache.internal:6379")
///     .prefix("jobs")
///     .connect()
///     .await?;
/// # let _ = store;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisStoreBuilder {
    pub(crate) url: Option<String>,
    pub(crate) client: Option<redis::Client>,
    pub(crate) connection: Option<ConnectionManager>,
    pub(crate) cluster_nodes: Vec<String>,
    pub(crate) prefix: String,
    pub(crate) response_timeout: Duration,
    pub(crate) max_params_bytes: usize,
    pub(crate) wait: Option<ReplicaWait>,
}

impl fmt::Debug for RedisStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStoreBuilder")
            .field("url", &self.url.as_deref().map(dogs_core::redact_url))
            .field("client", &self.client.is_some())
            .field("connection", &self.connection.is_some())
            .field(
                "cluster_nodes",
                &self
                    .cluster_nodes
                    .iter()
                    .map(|url| dogs_core::redact_url(url))
                    .collect::<Vec<_>>(),
            )
            .field("prefix", &self.prefix)
            .field("response_timeout", &self.response_timeout)
            .field("max_params_bytes", &self.max_params_bytes)
            .field("wait", &self.wait)
            .finish()
    }
}

impl Default for RedisStoreBuilder {
    fn default() -> Self {
        RedisStoreBuilder {
            url: None,
            client: None,
            connection: None,
            cluster_nodes: Vec::new(),
            prefix: DEFAULT_PREFIX.to_owned(),
            response_timeout: Duration::from_secs(5),
            max_params_bytes: DEFAULT_MAX_PARAMS_BYTES,
            wait: None,
        }
    }
}

impl RedisStoreBuilder {
    /// Connects with a `redis://` or `rediss://` URL, or to a cluster with a
    /// `redis+cluster://` or `rediss+cluster://` URL naming several nodes.
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    /// Uses an existing client (for the commands and the wake-up subscription).
    pub fn client(mut self, client: redis::Client) -> Self {
        self.client = Some(client);
        self
    }

    /// Uses an existing connection for the commands. Without a client or URL as well, the store
    /// has no wake-up subscription and workers poll.
    pub fn connection(mut self, connection: ConnectionManager) -> Self {
        self.connection = Some(connection);
        self
    }

    /// Connects to a Redis Cluster through these nodes (`redis://host:port` URLs; any of the
    /// cluster's nodes will do, several in case one is down). Every command of the store goes to
    /// the master of the prefix's slot; a command the cluster refuses without running it (the
    /// slot moved, or its master is failing over) is sent again for up to the response timeout,
    /// and one whose connection dropped is not (it may have run): it fails with `Unavailable`.
    pub fn cluster_nodes<I, S>(mut self, nodes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.cluster_nodes = nodes.into_iter().map(Into::into).collect();
        self
    }

    /// Makes every write (scheduling, claims, outcomes, every script that writes) wait until
    /// `replicas` replicas have it, for at most `timeout`, with `WAIT` sent right after the
    /// write on the same connection. Redis replicates asynchronously: without this, a write the
    /// master acknowledged can be lost when the master dies and a replica takes over. With it, a
    /// write fewer replicas confirmed in time fails with `Unavailable` (it is on the master, and
    /// may still be lost in a failover); a write that succeeded survives the loss of the master.
    /// A claim first checks, with `WAIT`, that the replicas are there, so a claim refused this
    /// way leases nothing. `WAIT` holds the connection it is sent on, so while replicas are
    /// missing every call waits behind it: `timeout` must be shorter than the response timeout.
    /// Works on one server with replicas as on a cluster. Off by default; `replicas` must be at
    /// least 1 and `timeout` from 1 ms to an hour. A schedule call that failed
    /// this way may have stored its job: retry it with a unique identifier to be sure of one
    /// copy.
    pub fn wait_for_replicas(mut self, replicas: u32, timeout: Duration) -> Self {
        self.wait = Some(ReplicaWait { replicas, timeout });
        self
    }

    /// The key prefix (default `dogs`): every key is `{prefix}:…`, so all of them share one
    /// cluster hash slot. Any text without `{` or `}`, at most 64 bytes.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long a command may wait for its answer before failing with `Unavailable`
    /// (default 5 s); also bounds each connection attempt.
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Refuses params larger than `bytes` of JSON (default 16 MiB).
    pub fn max_params_bytes(mut self, bytes: usize) -> Self {
        self.max_params_bytes = bytes;
        self
    }

    /// Connects. A URL that does not parse or a bad prefix is a `Config` error; a server that
    /// cannot be reached is `Unavailable`, with its address in the message, never the password.
    pub async fn connect(self) -> Result<RedisStore> {
        validate_prefix(&self.prefix)?;
        if let Some(wait) = self.wait {
            // `WAIT` holds the connection it is sent on: every later command on it waits behind
            // it, so it must end well within the response timeout.
            if wait.replicas == 0
                || wait.timeout < Duration::from_millis(1)
                || wait.timeout > MAX_REPLICA_WAIT
                || wait.timeout >= self.response_timeout
            {
                return Err(Error::config(format!(
                    "waiting for replicas needs at least 1 replica and a time-out of at least 1 ms, \
                     at most an hour, and shorter than the response timeout ({:?})",
                    self.response_timeout
                )));
            }
        }
        let cluster_nodes = match &self.url {
            Some(url) if self.client.is_none() && is_cluster_url(url) => cluster_node_urls(url)?,
            _ => self.cluster_nodes.clone(),
        };
        if !cluster_nodes.is_empty() {
            return self.connect_cluster(&cluster_nodes).await;
        }
        let client = match (&self.client, &self.url) {
            (Some(client), _) => Some(client.clone()),
            // The parser's own message may quote the URL, password included: not kept.
            (None, Some(url)) => Some(redis::Client::open(url.as_str()).map_err(|_| {
                Error::config(format!(
                    "the Redis URL {} does not parse",
                    dogs_core::redact_url(url)
                ))
            })?),
            (None, None) => None,
        };
        let connection = match (self.connection, &client) {
            (Some(connection), _) => connection,
            (None, Some(client)) => {
                let address = client.get_connection_info().addr().to_string();
                let config = ConnectionManagerConfig::new()
                    .set_response_timeout(Some(self.response_timeout))
                    .set_connection_timeout(Some(self.response_timeout))
                    .set_number_of_retries(2);
                client
                    .get_connection_manager_with_config(config)
                    .await
                    .map_err(|e| {
                        let error = crate::error::redis_error("connecting", e);
                        Error::new(
                            error.kind(),
                            format!("cannot connect to Redis at {address}"),
                        )
                        .with_source(error)
                    })?
            }
            (None, None) => {
                return Err(Error::config(
                    "a Redis store needs a URL, a client or a connection",
                ))
            }
        };
        let store = RedisStore::new(
            Connection::Single(connection),
            client.map(Subscriber::Single),
            &self.prefix,
            self.max_params_bytes,
            self.wait,
        );
        store.migrate().await?;
        Ok(store)
    }

    async fn connect_cluster(self, urls: &[String]) -> Result<RedisStore> {
        let mut nodes = Vec::with_capacity(urls.len());
        for url in urls {
            nodes.push(url.as_str().into_connection_info().map_err(|_| {
                Error::config(format!(
                    "the Redis Cluster node URL {} does not parse",
                    dogs_core::redact_url(url)
                ))
            })?);
        }
        let addresses = nodes
            .iter()
            .map(|node| node.addr().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let nodes = ClusterNodes {
            nodes,
            timeout: self.response_timeout,
        };
        let client = nodes.builder().build().map_err(|_| {
            Error::config(format!(
                "the Redis Cluster nodes {addresses} cannot be used together"
            ))
        })?;
        let connection = client.get_async_connection().await.map_err(|e| {
            let error = crate::error::redis_error("connecting", e);
            Error::new(
                error.kind(),
                format!("cannot connect to the Redis Cluster at {addresses}"),
            )
            .with_source(error)
        })?;
        let tag = format!("{{{}}}", self.prefix);
        let mut connection =
            Connection::Cluster(ClusterRoute::new(connection, &tag, self.response_timeout));
        // Wake-ups are published with SPUBLISH, which Redis 6 lacks: a script would fail after
        // its writes (a job stored, its caller told it failed).
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query_async(&mut connection)
            .await
            .map_err(|e| crate::error::redis_error("reading the server's version", e))?;
        let version = info
            .lines()
            .find_map(|line| line.strip_prefix("redis_version:"))
            .unwrap_or("")
            .trim()
            .to_owned();
        let major: u32 = version
            .split('.')
            .next()
            .and_then(|major| major.parse().ok())
            .unwrap_or(0);
        if major < 7 {
            return Err(Error::config(format!(
                "a Redis Cluster store needs Redis 7 or newer (sharded pub/sub); the cluster at \
                 {addresses} runs {version:?}"
            )));
        }
        let store = RedisStore::new(
            connection,
            Some(Subscriber::Cluster(nodes)),
            &self.prefix,
            self.max_params_bytes,
            self.wait,
        );
        store.migrate().await?;
        Ok(store)
    }
}

/// A cluster's starting nodes and the store's time-out, from which the command connection and
/// the wake-up subscription are both made.
#[derive(Clone)]
pub(crate) struct ClusterNodes {
    nodes: Vec<ConnectionInfo>,
    timeout: Duration,
}

impl ClusterNodes {
    /// A cluster client builder that never resends a command itself (see [`ClusterRoute`]).
    pub(crate) fn builder(&self) -> ClusterClientBuilder {
        ClusterClientBuilder::new(self.nodes.clone())
            .retries(0)
            .connection_timeout(self.timeout)
            .response_timeout(self.timeout)
    }
}

fn is_cluster_url(url: &str) -> bool {
    url.starts_with("redis+cluster://") || url.starts_with("rediss+cluster://")
}

/// The node URLs of a `redis+cluster://[user:password@]host1:port1,host2:port2[/?options]` URL:
/// one `redis://` (or `rediss://`) URL per host, each with the credentials and options.
fn cluster_node_urls(url: &str) -> Result<Vec<String>> {
    let bad = || {
        Error::config(format!(
            "the Redis Cluster URL {} does not parse: expected \
             redis+cluster://[user:password@]host1:port1,host2:port2[/?options]",
            dogs_core::redact_url(url)
        ))
    };
    let (scheme, rest) = url.split_once("+cluster://").ok_or_else(bad)?;
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (credentials, hosts) = match authority.rfind('@') {
        Some(at) => (&authority[..=at], &authority[at + 1..]),
        None => ("", authority),
    };
    let urls: Vec<String> = hosts
        .split(',')
        .map(str::trim)
        .filter(|host| !host.is_empty())
        .map(|host| format!("{scheme}://{credentials}{host}{tail}"))
        .collect();
    if urls.is_empty() {
        return Err(bad());
    }
    Ok(urls)
}

fn validate_prefix(prefix: &str) -> Result<()> {
    if prefix.is_empty() || prefix.len() > 64 || prefix.contains(['{', '}']) {
        return Err(Error::config(format!(
            "key prefix '{prefix}' must be 1 to 64 bytes without '{{' or '}}'"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_url_names_each_node() {
        assert_eq!(
            cluster_node_urls(
                "redis+cluster://app:s3cret@10.0.0.1:7000,10.0.0.2:7001/?protocol=resp2"
            )
            .unwrap(),
            vec![
                "redis://app:s3cret@10.0.0.1:7000/?protocol=resp2",
                "redis://app:s3cret@10.0.0.2:7001/?protocol=resp2",
            ]
        );
        assert_eq!(
            cluster_node_urls("rediss+cluster://a:1").unwrap(),
            vec!["rediss://a:1"]
        );
    }

    #[test]
    fn cluster_url_without_nodes_is_a_config_error() {
        let error = cluster_node_urls("redis+cluster://user:hidden@/").unwrap_err();
        assert_eq!(error.kind(), dogs_core::ErrorKind::Config);
        assert!(!error.to_string().contains("hidden"));
    }
}
