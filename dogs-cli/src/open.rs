//! Opening a store from its URL: the scheme picks the store, the namespace its schema, key
//! prefix or database.

use std::sync::Arc;
use std::time::Duration;

use dogs_core::{redact_url, Error, ErrorKind, JobStore, Result};
use dogs_mongo::MongoStore;
use dogs_postgres::PostgresStore;
use dogs_redis::RedisStore;
use dogs_sqlite::SqliteStore;
use serde::Serialize;

/// The stores a URL can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    /// `postgres://` or `postgresql://`: [`PostgresStore`]; the namespace is its schema.
    Postgres,
    /// `redis://` or `rediss://`, or a Redis Cluster's `redis+cluster://` or
    /// `rediss+cluster://`: [`RedisStore`]; the namespace is its key prefix.
    Redis,
    /// `mongodb://` or `mongodb+srv://`: [`MongoStore`]; the namespace is its database.
    Mongo,
    /// `sqlite://PATH`: [`SqliteStore`] in the file at PATH, which is the whole store (there
    /// is no namespace inside it).
    Sqlite,
}

impl StoreKind {
    /// The store `url` names by its scheme. Text that is not a URL, or a scheme of no store
    /// `dogs` knows, is a `Config` error that shows the URL without its password.
    pub fn of_url(url: &str) -> Result<StoreKind> {
        let Some((scheme, _)) = url.split_once("://") else {
            return Err(Error::config(
                "the store address is not a URL: give one such as postgres://user@host/db, redis://host:6379, mongodb://host:27017/db or sqlite://jobs.db",
            ));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "postgres" | "postgresql" => Ok(StoreKind::Postgres),
            "redis" | "rediss" | "redis+cluster" | "rediss+cluster" => Ok(StoreKind::Redis),
            "mongodb" | "mongodb+srv" => Ok(StoreKind::Mongo),
            "sqlite" => Ok(StoreKind::Sqlite),
            _ => Err(Error::config(format!(
                "the store address {} names no store dogs knows: its scheme must be postgres://, postgresql://, redis://, rediss://, redis+cluster://, rediss+cluster://, mongodb://, mongodb+srv:// or sqlite://",
                redact_url(url)
            ))),
        }
    }

    /// `PostgreSQL`, `Redis`, `MongoDB` or `SQLite`.
    pub fn display_name(self) -> &'static str {
        match self {
            StoreKind::Postgres => "PostgreSQL",
            StoreKind::Redis => "Redis",
            StoreKind::Mongo => "MongoDB",
            StoreKind::Sqlite => "SQLite",
        }
    }

    /// What the namespace is in this store: `schema`, `key prefix`, `database` or `file`.
    pub fn namespace_word(self) -> &'static str {
        match self {
            StoreKind::Postgres => "schema",
            StoreKind::Redis => "key prefix",
            StoreKind::Mongo => "database",
            StoreKind::Sqlite => "file",
        }
    }
}

/// How [`open_store_with`] connects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenOptions {
    /// How long to wait for the server to be found and to answer a connection (default 10 s).
    pub timeout: Duration,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            timeout: Duration::from_secs(10),
        }
    }
}

/// Opens the store `url` names, in `namespace` (the PostgreSQL schema, the Redis key prefix or
/// the MongoDB database; `None` for the store's default, which for MongoDB is the URL's
/// database, else `dogs`). A SQLite file is a store whole: a namespace with `sqlite://` is a
/// `Config` error.
///
/// Never creates a PostgreSQL schema nor a SQLite file: a schema without dogs' tables, or a
/// file that does not exist, is a `Config` error that says to run `dogs migrate`
/// ([`migrate_store`]). A SQLite file that exists gets the migrations it lacks. Redis and MongoDB stores
/// do at every connection what they need (Redis moves keys of earlier versions to the current
/// layout, MongoDB creates its indexes).
///
/// An unknown scheme or a URL that does not parse is `Config`, a server that cannot be reached
/// `Unavailable`; every message names the store's address without its password.
pub async fn open_store(url: &str, namespace: Option<&str>) -> Result<Arc<dyn JobStore>> {
    open_store_with(url, namespace, OpenOptions::default()).await
}

/// [`open_store`] with [`OpenOptions`].
pub async fn open_store_with(
    url: &str,
    namespace: Option<&str>,
    options: OpenOptions,
) -> Result<Arc<dyn JobStore>> {
    Ok(match StoreKind::of_url(url)? {
        StoreKind::Postgres => {
            let store = connect_postgres(url, namespace, options).await?;
            check_migrated(&store, url).await?;
            Arc::new(store)
        }
        StoreKind::Redis => Arc::new(connect_redis(url, namespace, options).await?),
        StoreKind::Mongo => Arc::new(connect_mongo(url, namespace, options).await?),
        StoreKind::Sqlite => Arc::new(connect_sqlite(url, namespace, options, false).await?),
    })
}

/// What [`migrate_store`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Migrated {
    /// The store.
    pub store: StoreKind,
    /// Its schema, key prefix or database.
    pub namespace: String,
    /// What was done, for people.
    pub message: String,
}

/// Brings the store's layout up to date: on PostgreSQL, creates the schema and applies the
/// migrations it lacks (idempotent, safe while workers run); on SQLite the same, creating the
/// file when it does not exist; Redis and MongoDB have no schema,
/// and connecting does what they need (Redis moves keys of earlier versions to the current
/// layout, MongoDB creates its indexes).
pub async fn migrate_store(
    url: &str,
    namespace: Option<&str>,
    options: OpenOptions,
) -> Result<Migrated> {
    let kind = StoreKind::of_url(url)?;
    let (namespace, message) = match kind {
        StoreKind::Postgres => {
            let store = connect_postgres(url, namespace, options).await?;
            store.migrate().await?;
            let schema = store.schema().to_owned();
            let message = format!("PostgreSQL schema '{schema}': every migration is applied");
            (schema, message)
        }
        StoreKind::Redis => {
            connect_redis(url, namespace, options).await?;
            let prefix = namespace.unwrap_or(dogs_redis::DEFAULT_PREFIX).to_owned();
            let message = format!(
                "Redis has no schema to migrate: the keys of prefix '{prefix}' are in the current layout"
            );
            (prefix, message)
        }
        StoreKind::Mongo => {
            let store = connect_mongo(url, namespace, options).await?;
            let database = store.database().name().to_owned();
            let message = format!(
                "MongoDB has no schema to migrate: the indexes of database '{database}' are in place"
            );
            (database, message)
        }
        StoreKind::Sqlite => {
            let store = connect_sqlite(url, namespace, options, true).await?;
            let file = store
                .path()
                .map_or_else(|| url.to_owned(), |path| path.display().to_string());
            let message = format!("SQLite file '{file}': every migration is applied");
            (file, message)
        }
    };
    Ok(Migrated {
        store: kind,
        namespace,
        message,
    })
}

async fn connect_postgres(
    url: &str,
    namespace: Option<&str>,
    options: OpenOptions,
) -> Result<PostgresStore> {
    PostgresStore::builder()
        .url(url)
        .schema(namespace.unwrap_or(dogs_postgres::DEFAULT_SCHEMA))
        .max_connections(4)
        .acquire_timeout(options.timeout)
        .migrate_on_connect(false)
        .connect()
        .await
}

async fn connect_redis(
    url: &str,
    namespace: Option<&str>,
    options: OpenOptions,
) -> Result<RedisStore> {
    RedisStore::builder()
        .url(url)
        .prefix(namespace.unwrap_or(dogs_redis::DEFAULT_PREFIX))
        .response_timeout(options.timeout)
        .connect()
        .await
}

async fn connect_mongo(
    url: &str,
    namespace: Option<&str>,
    options: OpenOptions,
) -> Result<MongoStore> {
    let mut builder = MongoStore::builder().url(url).timeout(options.timeout);
    if let Some(database) = namespace {
        builder = builder.database(database);
    }
    builder.connect().await
}

/// Opens the SQLite file `url` names; unless `create`, a file that does not exist is refused
/// rather than made empty (a mistyped path would otherwise show an empty store).
async fn connect_sqlite(
    url: &str,
    namespace: Option<&str>,
    options: OpenOptions,
    create: bool,
) -> Result<SqliteStore> {
    if let Some(namespace) = namespace {
        return Err(Error::config(format!(
            "a SQLite store is its file, with no namespace inside it: name another file instead of namespace '{namespace}'"
        )));
    }
    let path = url
        .split_once("://")
        .map(|(_, path)| path.split(['?', '#']).next().unwrap_or(path))
        .unwrap_or_default();
    if path.is_empty() {
        return Err(Error::config(
            "a SQLite store address names its file: sqlite://PATH, such as sqlite://jobs.db or sqlite:///var/lib/app/jobs.db",
        ));
    }
    if !create && !std::path::Path::new(path).exists() {
        return Err(Error::config(format!(
            "SQLite file '{path}' does not exist; run `dogs migrate` with the same --store to create it"
        )));
    }
    SqliteStore::builder()
        .url(url)
        .busy_timeout(options.timeout)
        .connect()
        .await
}

/// Refuses a PostgreSQL schema that `migrate` never ran on.
async fn check_migrated(store: &PostgresStore, url: &str) -> Result<()> {
    let schema = store.schema();
    let migrated: bool = dogs_postgres::sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(format!("\"{schema}\".migrations"))
        .fetch_one(store.pool())
        .await
        .map_err(|e| {
            Error::unavailable(format!(
                "PostgreSQL at {}: reading whether schema '{schema}' is migrated failed",
                redact_url(url)
            ))
            .with_source(e)
        })?;
    if migrated {
        Ok(())
    } else {
        Err(Error::config(format!(
            "PostgreSQL at {}: schema '{schema}' has no dogs tables; run `dogs migrate` with the same --store and --namespace to create them",
            redact_url(url)
        )))
    }
}

/// The advice for a PostgreSQL error that comes from a schema of an earlier version: a table,
/// column or function it lacks.
pub(crate) fn postgres_hint(error: &Error) -> Option<&'static str> {
    if error.kind() != ErrorKind::Backend {
        return None;
    }
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(dogs_postgres::sqlx::Error::Database(db)) =
            cause.downcast_ref::<dogs_postgres::sqlx::Error>()
        {
            // undefined_table, undefined_function, undefined_column, invalid_schema_name
            return matches!(
                db.code().as_deref(),
                Some("42P01" | "42883" | "42703" | "3F000")
            )
            .then_some("the schema lacks tables of this version of dogs: run `dogs migrate`");
        }
        source = cause.source();
    }
    None
}

/// The secrets `url` may carry (its password, and parameters such as `password=`), as written
/// and percent-decoded: hidden from every message `dogs` prints, whatever the store's errors
/// say. Text that is not a URL is a secret whole.
pub fn url_secrets(url: &str) -> Vec<String> {
    let Some((_, rest)) = url.split_once("://") else {
        return vec![url.to_owned()];
    };
    let mut secrets = Vec::new();
    if let Some((_, password)) = rest.rfind('@').and_then(|at| rest[..at].split_once(':')) {
        secrets.push(password.to_owned());
    }
    if let Some((_, query)) = rest.split_once('?') {
        for (key, value) in query.split('&').filter_map(|pair| pair.split_once('=')) {
            let key = key.to_ascii_lowercase();
            if ["password", "secret", "token", "authmechanismproperties"]
                .iter()
                .any(|marker| key.contains(marker))
            {
                secrets.push(value.to_owned());
            }
        }
    }
    let decoded: Vec<String> = secrets
        .iter()
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    secrets.extend(decoded);
    secrets.retain(|s| !s.is_empty());
    // Longest first, so a secret that holds another one is hidden whole.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets.dedup();
    secrets
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scheme_picks_the_store() {
        let kind = |url: &str| StoreKind::of_url(url).map_err(|e| e.kind());
        assert_eq!(kind("postgres://db/app"), Ok(StoreKind::Postgres));
        assert_eq!(kind("PostgreSQL://db/app"), Ok(StoreKind::Postgres));
        assert_eq!(kind("redis://cache"), Ok(StoreKind::Redis));
        assert_eq!(kind("rediss://cache"), Ok(StoreKind::Redis));
        assert_eq!(
            kind("redis+cluster://10.0.0.1:7000,10.0.0.2:7000"),
            Ok(StoreKind::Redis)
        );
        assert_eq!(kind("mongodb://db"), Ok(StoreKind::Mongo));
        assert_eq!(kind("mongodb+srv://db"), Ok(StoreKind::Mongo));
        assert_eq!(kind("sqlite://jobs.db"), Ok(StoreKind::Sqlite));
        assert_eq!(kind("SQLite:///var/lib/app/jobs.db"), Ok(StoreKind::Sqlite));
        assert_eq!(kind("mysql://db"), Err(ErrorKind::Config));
        assert_eq!(kind("db.internal"), Err(ErrorKind::Config));
    }

    #[test]
    fn an_unknown_scheme_is_named_without_the_password() {
        let Err(error) = StoreKind::of_url("mysql://app:hunter2@db/app") else {
            panic!("mysql:// was taken");
        };
        let shown = error.to_string();
        assert!(shown.contains("mysql://app:***@db/app"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn secrets_are_found_as_written_and_decoded() {
        let secrets = url_secrets("postgres://user:s3cr%40t@127.0.0.1:1/db?sslpassword=k%2Fey");
        for expected in ["s3cr%40t", "s3cr@t", "k%2Fey", "k/ey"] {
            assert!(secrets.iter().any(|s| s == expected), "{secrets:?}");
        }
        assert!(url_secrets("redis://cache:6379").is_empty());
        assert_eq!(url_secrets("not a url"), vec!["not a url".to_owned()]);
        // An escape that is not one is kept as written.
        assert_eq!(
            url_secrets("redis://:50%off%@cache"),
            vec!["50%off%".to_owned()]
        );
    }
}
