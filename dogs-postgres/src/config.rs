//! How a PostgreSQL store is set up: where it connects, its schema, and its pool.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use dogs_core::{Error, Result};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

use crate::store::PostgresStore;

/// The schema dogs uses when none is set.
pub const DEFAULT_SCHEMA: &str = "dogs";

/// The longest schema name: the wake-up channel is the schema name with `_wake` after it, and
/// PostgreSQL names are at most 63 bytes.
pub const MAX_SCHEMA_LEN: usize = 48;

/// The default params limit: 16 MiB of JSON.
pub const DEFAULT_MAX_PARAMS_BYTES: usize = 16 * 1024 * 1024;

/// Builds a [`PostgresStore`] from a URL or an existing pool.
///
/// ```no_run
/// # async fn example() -> Result<(), dogs_core::Error> {
/// use dogs_postgres::PostgresStore;
///
/// let store = PostgresStore::builder()
///     .url("postgres://app@db.internal/app")
///     .schema("jobs")
///     .max_connections(20)
///     .connect()
///     .await?;
/// # let _ = store;
/// # Ok(()) }
/// ```
///
/// Behind a pooler in transaction pooling mode (PgBouncer's `pool_mode = transaction`), turn on
/// [`transaction_pooling`](Self::transaction_pooling), and give a direct URL for wake-ups with
/// [`listen_url`](Self::listen_url):
///
/// ```no_run
/// # async fn example() -> Result<(), dogs_core::Error> {
/// use dogs_postgres::PostgresStore;
///
/// let store = PostgresStore::builder()
///     .url("postgres://app@pgbouncer.internal:6432/app")
///     .transaction_pooling(true)
///     .listen_url("postgres://app@db.internal:5432/app")
///     .connect()
///     .await?;
/// # let _ = store;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PostgresStoreBuilder {
    pub(crate) source: Option<Source>,
    pub(crate) schema: String,
    pub(crate) max_connections: u32,
    pub(crate) acquire_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) migrate: bool,
    pub(crate) max_params_bytes: usize,
    pub(crate) transaction_pooling: bool,
    pub(crate) listen_url: Option<String>,
}

#[derive(Clone)]
pub(crate) enum Source {
    Url(String),
    Pool(PgPool),
}

impl fmt::Debug for PostgresStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let source = match &self.source {
            Some(Source::Url(url)) => dogs_core::redact_url(url),
            Some(Source::Pool(_)) => "an existing pool".to_owned(),
            None => "none".to_owned(),
        };
        f.debug_struct("PostgresStoreBuilder")
            .field("source", &source)
            .field("schema", &self.schema)
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("migrate", &self.migrate)
            .field("transaction_pooling", &self.transaction_pooling)
            .field(
                "listen_url",
                &self.listen_url.as_deref().map(dogs_core::redact_url),
            )
            .finish()
    }
}

impl Default for PostgresStoreBuilder {
    fn default() -> Self {
        PostgresStoreBuilder {
            source: None,
            schema: DEFAULT_SCHEMA.to_owned(),
            max_connections: 10,
            acquire_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            migrate: true,
            max_params_bytes: DEFAULT_MAX_PARAMS_BYTES,
            transaction_pooling: false,
            listen_url: None,
        }
    }
}

impl PostgresStoreBuilder {
    /// Connects with a `postgres://` URL.
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.source = Some(Source::Url(url.into()));
        self
    }

    /// Uses an existing pool (its own settings apply; `max_connections` and `acquire_timeout`
    /// are ignored).
    pub fn pool(mut self, pool: PgPool) -> Self {
        self.source = Some(Source::Pool(pool));
        self
    }

    /// The schema that holds dogs' tables (default `dogs`): lower-case letters, digits and `_`,
    /// at most 48 characters.
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// Connections in the pool made from a URL (default 10).
    pub fn max_connections(mut self, max: u32) -> Self {
        self.max_connections = max;
        self
    }

    /// How long a call waits for a free connection before it fails with `Unavailable`
    /// (default 10 s).
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// How long one call may take, connection included, before it fails with `Unavailable`
    /// (default 30 s): a server that stops answering cannot hang a worker, nor its shutdown.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Whether `connect` applies the migrations (default true). Without it, call
    /// [`PostgresStore::migrate`] yourself.
    pub fn migrate_on_connect(mut self, migrate: bool) -> Self {
        self.migrate = migrate;
        self
    }

    /// Refuses params larger than `bytes` of JSON (default 16 MiB).
    pub fn max_params_bytes(mut self, bytes: usize) -> Self {
        self.max_params_bytes = bytes;
        self
    }

    /// Whether the URL leads to a pooler in transaction pooling mode (default false), such as
    /// PgBouncer with `pool_mode = transaction`, where consecutive transactions of one client
    /// connection may run on different server connections, so nothing may outlive a
    /// transaction.
    ///
    /// Then every statement of the store runs in a transaction of its own, as an unnamed
    /// statement: sqlx sends its Parse and its Bind in two exchanges, each ending with a Sync,
    /// and only an open transaction keeps the pooler from handing the second to another server
    /// connection. No statement is cached per connection (the pool's statement cache is off,
    /// and the store's queries are not persistent). The pool's connections carry no startup
    /// options (PgBouncer refuses `options` and `extra_float_digits`): the statement timeout is
    /// set with `SET LOCAL` as each transaction begins instead. Each store operation then takes
    /// four round trips instead of one.
    ///
    /// `LISTEN` needs a session: wake-ups use the connection of [`listen_url`](Self::listen_url)
    /// when one is given; without it, [`wakeups`](dogs_core::JobStore::wakeups) is `None` and
    /// workers poll every `poll_interval`. Migrations take transaction-scoped advisory locks
    /// only, so they run through the pooler too.
    ///
    /// Your own queries on [`PostgresStore::pool`] must follow the same rules: in a
    /// transaction, with [`persistent(false)`](sqlx::query::Query::persistent).
    pub fn transaction_pooling(mut self, on: bool) -> Self {
        self.transaction_pooling = on;
        self
    }

    /// A `postgres://` URL that reaches the server directly, not through a pooler in
    /// transaction pooling mode, for the one connection that listens for wake-ups (`LISTEN`
    /// needs a session). It is opened when workers first ask for wake-ups, and opened again when
    /// it drops; workers poll meanwhile.
    ///
    /// Without it the listening connection is one of the pool's, or, with
    /// [`transaction_pooling`](Self::transaction_pooling), there is none.
    pub fn listen_url(mut self, url: impl Into<String>) -> Self {
        self.listen_url = Some(url.into());
        self
    }

    /// Connects (and migrates, unless turned off).
    ///
    /// A URL (or listen URL) that does not parse or a schema name that is not a plain
    /// identifier is a `Config` error; a server that cannot be reached is `Unavailable`, with
    /// its address in the message and never the password.
    pub async fn connect(self) -> Result<PostgresStore> {
        validate_schema(&self.schema)?;
        let listen = match &self.listen_url {
            // Lazily: wake-ups are not needed to connect, and the listener reconnects anyway.
            Some(url) => Some(
                PgPoolOptions::new()
                    .max_connections(1)
                    .max_lifetime(None)
                    .idle_timeout(None)
                    .connect_lazy_with(parse_url(url)?),
            ),
            None => None,
        };
        // The server gives up on a statement a little before the store does, so a statement
        // that would outlast the request timeout is rolled back rather than committed unseen
        // (a claim that leased jobs nobody hears of).
        let statement_timeout = format!(
            "{}ms",
            self.request_timeout
                .saturating_sub(Duration::from_secs(1))
                .max(self.request_timeout / 2)
                .as_millis()
                .max(1)
        );
        let mut begin = None;
        let pool = match &self.source {
            Some(Source::Pool(pool)) => {
                if self.transaction_pooling {
                    begin = Some("BEGIN".to_owned());
                }
                pool.clone()
            }
            Some(Source::Url(url)) => {
                let options = parse_url(url)?;
                let address = format!("{}:{}", options.get_host(), options.get_port());
                let options = if self.transaction_pooling {
                    begin = Some(format!(
                        "BEGIN; SET LOCAL statement_timeout = '{statement_timeout}'"
                    ));
                    options.statement_cache_capacity(0).extra_float_digits(None)
                } else {
                    options.options([("statement_timeout", statement_timeout)])
                };
                PgPoolOptions::new()
                    .max_connections(self.max_connections)
                    .acquire_timeout(self.acquire_timeout)
                    .connect_with(options)
                    .await
                    .map_err(|e| {
                        let error = crate::error::db_error("connecting", e);
                        Error::new(
                            error.kind(),
                            format!("cannot connect to PostgreSQL at {address}"),
                        )
                        .with_source(error)
                    })?
            }
            None => return Err(Error::config("a PostgreSQL store needs a URL or a pool")),
        };
        let listen = match listen {
            Some(listen) => Some(listen),
            None if self.transaction_pooling => None,
            None => Some(pool.clone()),
        };
        let store = PostgresStore::new(
            pool,
            listen,
            self.schema,
            self.max_params_bytes,
            self.request_timeout,
            begin,
        );
        if self.migrate {
            store.migrate().await?;
        }
        Ok(store)
    }
}

/// Parses a `postgres://` URL; a `Config` error when it does not parse.
fn parse_url(url: &str) -> Result<PgConnectOptions> {
    // The parser's own message may quote the URL, password included: not kept.
    PgConnectOptions::from_str(url).map_err(|_| {
        Error::config(format!(
            "the PostgreSQL URL {} does not parse",
            dogs_core::redact_url(url)
        ))
    })
}

/// Checks that a schema name is a plain lower-case identifier that fits the wake-up channel.
pub(crate) fn validate_schema(schema: &str) -> Result<()> {
    let mut chars = schema.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !first_ok || !rest_ok || schema.len() > MAX_SCHEMA_LEN {
        return Err(Error::config(format!(
            "schema name '{schema}' is not a lower-case identifier of at most {MAX_SCHEMA_LEN} characters"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_plain_identifiers() {
        assert!(validate_schema("dogs").is_ok());
        assert!(validate_schema("_jobs_2").is_ok());
        for bad in ["", "Dogs", "1x", "a-b", "a\"b", &"x".repeat(49)] {
            assert!(validate_schema(bad).is_err(), "{bad}");
        }
    }
}
