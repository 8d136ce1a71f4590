//! How a MongoDB store is set up: where it connects, its database and collections.

use std::fmt;
use std::future::IntoFuture;
use std::time::Duration;

use dogs_core::{Error, Result};
use futures::FutureExt;
use mongodb::options::{Acknowledgment, ClientOptions, WriteConcern};
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
    pub(crate) write_concern: Option<WriteConcern>,
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
            .field("write_concern", &self.write_concern)
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
            write_concern: None,
        }
    }
}

impl MongoStoreBuilder {
    /// Connects with a `mongodb://` or `mongodb+srv://` URL.
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    /// Uses an existing database handle (and its client). The store's collections do not take
    /// the handle's read preference, read concern or write concern where the store depends on
    /// them (see [`write_concern`](Self::write_concern) and the crate's "Replica sets").
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

    /// The write concern of every write the store makes, transactions' commits included
    /// (default `w: "majority", j: true`, with the `wtimeoutMS` of the URL or handle if any).
    ///
    /// Only this overrides the default: a URL's `w=…` or `journal=…`, or a handle's write
    /// concern, applies to the application's own collections, never to the store's. A weaker
    /// concern (`w: 1`) means an acknowledged job or outcome can be lost in a failover; a
    /// stronger one (`w: 3`) waits for more members. With any `w` but `majority`, the store's
    /// reads use read concern `local` rather than `majority`, which might not yet see such a
    /// write (a claim's own lease among them). `w: 0` is refused at connect.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), dogs_core::Error> {
    /// use dogs_mongo::mongodb::options::{Acknowledgment, WriteConcern};
    /// use dogs_mongo::MongoStore;
    ///
    /// let every_member = WriteConcern::builder()
    ///     .w(Acknowledgment::Nodes(3))
    ///     .journal(true)
    ///     .build();
    /// let store = MongoStore::builder()
    ///     .url("mongodb://a.internal,b.internal,c.internal/?replicaSet=rs0")
    ///     .write_concern(every_member)
    ///     .connect()
    ///     .await?;
    /// # let _ = store;
    /// # Ok(()) }
    /// ```
    pub fn write_concern(mut self, concern: WriteConcern) -> Self {
        self.write_concern = Some(concern);
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
                let does_not_parse = || {
                    Error::config(format!(
                        "the MongoDB URL {} does not parse",
                        dogs_core::redact_url(url)
                    ))
                };
                // The driver's parser panics on a `%` followed by a character that is not ASCII
                // (and its message would quote the URL, password included): such a URL is
                // refused before it gets there, and a panic is caught all the same.
                if !percent_escapes_are_valid(url) {
                    return Err(does_not_parse());
                }
                let parsed = std::panic::AssertUnwindSafe(ClientOptions::parse(url).into_future())
                    .catch_unwind()
                    .await;
                // The parser's own message may quote the URL, password included: not kept.
                let mut options = match parsed {
                    Ok(Ok(options)) => options,
                    Ok(Err(_)) | Err(_) => return Err(does_not_parse()),
                };
                refuse_unacknowledged(options.write_concern.as_ref())?;
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
        let write_concern = store_write_concern(self.write_concern.as_ref(), &database)?;
        MongoStore::start(
            database,
            &self.jobs,
            &self.executions,
            self.max_params_bytes,
            self.request_timeout,
            write_concern,
            &address,
        )
        .await
    }
}

/// Refuses unacknowledged writes (`w: 0`): no transaction can commit with them, so no outcome
/// could ever be saved, and nothing the store accepted would be known to be kept.
fn refuse_unacknowledged(concern: Option<&WriteConcern>) -> Result<()> {
    if concern.is_some_and(|c| c.w == Some(Acknowledgment::Nodes(0))) {
        return Err(Error::config(
            "the MongoDB URL asks for unacknowledged writes (w=0); dogs needs acknowledged writes to keep what it accepts",
        ));
    }
    Ok(())
}

/// The write concern of the store's collections and transactions: the builder's, else
/// `w: "majority", j: true` with the `wtimeout` of the database's own concern (the URL's or the
/// handle's), whose `w` and `journal` are not followed: a job is accepted only once it is in
/// the journal of most members, so neither a crash of the server that acknowledged it nor a
/// failover loses it. (MongoDB's own default is `majority` on replica sets, without asking for
/// the journal, and `w: 1` before version 5.)
fn store_write_concern(chosen: Option<&WriteConcern>, database: &Database) -> Result<WriteConcern> {
    let concern = match chosen {
        Some(chosen) => chosen.clone(),
        None => WriteConcern::builder()
            .w(Acknowledgment::Majority)
            .journal(true)
            .w_timeout(database.write_concern().and_then(|c| c.w_timeout))
            .build(),
    };
    if concern.w == Some(Acknowledgment::Nodes(0)) {
        return Err(Error::config(
            "the store's write concern is unacknowledged (w: 0); dogs needs acknowledged writes to keep what it accepts",
        ));
    }
    Ok(concern)
}

/// Whether every `%` of `url` starts an escape of two hexadecimal digits.
fn percent_escapes_are_valid(url: &str) -> bool {
    let bytes = url.as_bytes();
    bytes.iter().enumerate().all(|(i, b)| {
        *b != b'%'
            || (bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The write concern the store's collections get for `url` and the builder's `chosen`.
    async fn concern_of(url: &str, chosen: Option<WriteConcern>) -> WriteConcern {
        let options = ClientOptions::parse(url).await.unwrap();
        let client = Client::with_options(options).unwrap();
        store_write_concern(chosen.as_ref(), &client.database("dogs")).unwrap()
    }

    #[tokio::test]
    async fn writes_wait_for_the_journal_of_a_majority_unless_the_builder_says_otherwise() {
        let concern = concern_of("mongodb://127.0.0.1:1/?replicaSet=rs0", None).await;
        assert_eq!(concern.w, Some(Acknowledgment::Majority));
        assert_eq!(concern.journal, Some(true));

        // The URL's concern is the application's: the store's collections keep their own.
        let concern = concern_of("mongodb://127.0.0.1:1/?w=1&journal=false", None).await;
        assert_eq!(concern.w, Some(Acknowledgment::Majority));
        assert_eq!(concern.journal, Some(true));

        // The URL's timeout is kept.
        let concern = concern_of("mongodb://127.0.0.1:1/?w=1&wtimeoutMS=2500", None).await;
        assert_eq!(concern.w, Some(Acknowledgment::Majority));
        assert_eq!(concern.journal, Some(true));
        assert_eq!(
            concern.w_timeout,
            Some(std::time::Duration::from_millis(2500))
        );

        // The builder's is the one the store follows.
        let one = WriteConcern::builder()
            .w(Acknowledgment::Nodes(1))
            .journal(false)
            .build();
        let concern = concern_of("mongodb://127.0.0.1:1/", Some(one.clone())).await;
        assert_eq!(concern, one);

        // Reads see what the store wrote: `majority` with `majority` writes, else `local`.
        use crate::store::read_concern_for;
        use mongodb::options::ReadConcern;
        let majority = concern_of("mongodb://127.0.0.1:1/?w=1", None).await;
        assert_eq!(read_concern_for(&majority), ReadConcern::majority());
        assert_eq!(read_concern_for(&one), ReadConcern::local());
    }

    #[tokio::test]
    async fn unacknowledged_writes_are_refused() {
        let Err(error) = MongoStoreBuilder::default()
            .url("mongodb://127.0.0.1:1/?w=0")
            .connect()
            .await
        else {
            panic!("w=0 was accepted");
        };
        assert_eq!(error.kind(), dogs_core::ErrorKind::Config, "{error}");

        let Err(error) = MongoStoreBuilder::default()
            .url("mongodb://127.0.0.1:1/")
            .write_concern(WriteConcern::builder().w(Acknowledgment::Nodes(0)).build())
            .connect()
            .await
        else {
            panic!("w: 0 was accepted");
        };
        assert_eq!(error.kind(), dogs_core::ErrorKind::Config, "{error}");
    }

    #[tokio::test]
    async fn a_url_the_driver_cannot_parse_is_refused_without_a_panic() {
        for url in [
            "mongodb://user:%\u{98e}secret@127.0.0.1:1/",
            "mongodb://user:50%off@127.0.0.1:1/",
            "mongodb://user:%zzsecret@127.0.0.1:1/",
        ] {
            let error = MongoStoreBuilder::default()
                .url(url)
                .connect()
                .await
                .err()
                .map(|e| (e.kind(), e.to_string()));
            let Some((kind, shown)) = error else {
                panic!("{url} was accepted");
            };
            assert_eq!(kind, dogs_core::ErrorKind::Config, "{url}: {shown}");
            assert!(
                !shown.contains("secret") && !shown.contains("off"),
                "{shown}"
            );
        }
    }
}
