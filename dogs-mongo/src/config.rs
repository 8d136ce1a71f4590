//! How a MongoDB store is set up: where it connects, its database and collections.

use std::fmt;
use std::time::Duration;

use dogs_core::{Error, Result};
use mongodb::options::ClientOptions;
use mongodb::{Client, Database};

use crate::store::MongoStore;

/// The database dogs uses when neither the builder nor the URL names one.
pub const DEFAULT_DATABASE: &str = "dogs";
/// The jobs collection when none is set.
pub const DEFAULT_JOBS_COLLECTION: &str = "dogs_jobs";
/// The executions collection when none is set.
pub const DEFAULT_EXECUTIONS_COLLECTION: &str = "dogs_executions";
/// The default params limit: 8 MiB of JSON, leaving room within MongoDB's 16 MiB documents.
pub const DEFAULT_MAX_PARAMS_BYTES: usize = 8 * 1024 * 1024;

/// Builds a [`MongoStore`] from a URL or an existing `Database`.
///
/// ```no_run
/// # async fn example() -> Result<(), dogs_core::Error> {
/// use dogs_mongo::MongoStore;
///
/// let store = MongoStore::builder()
///     .url("mongodb://db.internal:27017/?replicaSet=rs0")
///     .database("app")
///     .connect()
///     .await?;
/// # let _ = store;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct MongoStoreBuilder {
    pub(crate) url: Option<String>,
    pub(crate) database: Option<Database>,
    pub(crate) database_name: Option<String>,
    pub(crate) jobs: String,
    pub(crate) executions: String,
    pub(crate) timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) max_params_bytes: usize,
}

impl fmt::Debug for MongoStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MongoStoreBuilder")
            .field("url", &self.url.as_deref().map(dogs_core::redact_url))
            .field("database", &self.database.as_ref().map(Database::name))
            .field("database_name", &self.database_name)
            .field("jobs", &self.jobs)
            .field("executions", &self.executions)
            .field("timeout", &self.timeout)
            .field("request_timeout", &self.request_timeout)
            .field("max_params_bytes", &self.max_params_bytes)
            .finish()
    }
}

impl Default for MongoStoreBuilder {
    fn default() -> Self {
        MongoStoreBuilder {
            url: None,
            database: None,
            database_name: None,
            jobs: DEFAULT_JOBS_COLLECTION.to_owned(),
            executions: DEFAULT_EXECUTIONS_COLLECTION.to_owned(),
            timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_params_bytes: DEFAULT_MAX_PARAMS_BYTES,
        }
    }
}

impl MongoStoreBuilder {
    /// Connects with a `mongodb://` or `mongodb+srv://` URL.
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    /// Uses an existing database handle (and its client).
    pub fn database_handle(mut self, database: Database) -> Self {
        self.database = Some(database);
        self
    }

    /// The database (default: the URL's, else `dogs`).
    pub fn database(mut self, name: impl Into<String>) -> Self {
        self.database_name = Some(name.into());
        self
    }

    /// The jobs collection (default `dogs_jobs`).
    pub fn jobs_collection(mut self, name: impl Into<String>) -> Self {
        self.jobs = name.into();
        self
    }

    /// The executions collection (default `dogs_executions`).
    pub fn executions_collection(mut self, name: impl Into<String>) -> Self {
        self.executions = name.into();
        self
    }

    /// How long a call may wait to find a server before failing with `Unavailable`
    /// (default 10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long one call may take, finding the server included, before it fails with
    /// `Unavailable` (default 30 s): a server that stops answering cannot hang a worker, nor its
    /// shutdown.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Refuses params larger than `bytes` of JSON (default 8 MiB).
    pub fn max_params_bytes(mut self, bytes: usize) -> Self {
        self.max_params_bytes = bytes;
        self
    }

    /// Connects, checks the server, and creates the indexes (idempotently).
    ///
    /// A URL that does not parse is a `Config` error; a server that cannot be reached is
    /// `Unavailable`, with its address in the message and never the password.
    pub async fn connect(self) -> Result<MongoStore> {
        for name in [&self.jobs, &self.executions] {
            if name.is_empty() || name.contains(['$', '\0']) {
                return Err(Error::config(format!("'{name}' is not a collection name")));
            }
        }
        let (database, address) = match (&self.database, &self.url) {
            (Some(database), _) => (database.clone(), "the given database".to_owned()),
            (None, Some(url)) => {
                // The parser's own message may quote the URL, password included: not kept.
                let mut options = ClientOptions::parse(url).await.map_err(|_| {
                    Error::config(format!(
                        "the MongoDB URL {} does not parse",
                        dogs_core::redact_url(url)
                    ))
                })?;
                options.server_selection_timeout = Some(self.timeout);
                options.connect_timeout = Some(self.timeout);
                let address = options
                    .hosts
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(",");
                let name = self
                    .database_name
                    .clone()
                    .or_else(|| options.default_database.clone())
                    .unwrap_or_else(|| DEFAULT_DATABASE.to_owned());
                let client = Client::with_options(options).map_err(|e| {
                    Error::config("the MongoDB client options are invalid").with_source(e)
                })?;
                (client.database(&name), address)
            }
            (None, None) => return Err(Error::config("a MongoDB store needs a URL or a database")),
        };
        let database = match (&self.database, &self.database_name) {
            (Some(handle), Some(name)) if handle.name() != name => handle.client().database(name),
            _ => database,
        };
        MongoStore::start(
            database,
            &self.jobs,
            &self.executions,
            self.max_params_bytes,
            self.request_timeout,
            &address,
        )
        .await
    }
}
