//! How a Redis store is set up: where it connects, its key prefix, and its limits.

use std::fmt;
use std::time::Duration;

use dogs_core::{Error, Result};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::store::RedisStore;

/// The key prefix dogs uses when none is set.
pub const DEFAULT_PREFIX: &str = "dogs";

/// The default params limit: 16 MiB of JSON.
pub const DEFAULT_MAX_PARAMS_BYTES: usize = 16 * 1024 * 1024;

/// Builds a [`RedisStore`] from a URL, or from an existing client or connection.
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
    pub(crate) prefix: String,
    pub(crate) response_timeout: Duration,
    pub(crate) max_params_bytes: usize,
}

impl fmt::Debug for RedisStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStoreBuilder")
            .field("url", &self.url.as_deref().map(dogs_core::redact_url))
            .field("client", &self.client.is_some())
            .field("connection", &self.connection.is_some())
            .field("prefix", &self.prefix)
            .field("response_timeout", &self.response_timeout)
            .field("max_params_bytes", &self.max_params_bytes)
            .finish()
    }
}

impl Default for RedisStoreBuilder {
    fn default() -> Self {
        RedisStoreBuilder {
            url: None,
            client: None,
            connection: None,
            prefix: DEFAULT_PREFIX.to_owned(),
            response_timeout: Duration::from_secs(5),
            max_params_bytes: DEFAULT_MAX_PARAMS_BYTES,
        }
    }
}

impl RedisStoreBuilder {
    /// Connects with a `redis://` or `rediss://` URL.
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
        let store = RedisStore::new(connection, client, &self.prefix, self.max_params_bytes);
        store.migrate().await?;
        Ok(store)
    }
}

fn validate_prefix(prefix: &str) -> Result<()> {
    if prefix.is_empty() || prefix.len() > 64 || prefix.contains(['{', '}']) {
        return Err(Error::config(format!(
            "key prefix '{prefix}' must be 1 to 64 bytes without '{{' or '}}'"
        )));
    }
    Ok(())
}
