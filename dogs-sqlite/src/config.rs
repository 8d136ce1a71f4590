//! How a SQLite store is set up: which database (a file, or memory), how durable its commits
//! are, and how long it waits for a lock, for an operation, and between looks for other
//! processes' writes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use dogs_core::{Error, Result, MAX_DURATION};

use crate::store::SqliteStore;

/// The default params limit: 16 MiB of JSON, as the PostgreSQL store's.
pub const DEFAULT_MAX_PARAMS_BYTES: usize = 16 * 1024 * 1024;

/// The largest params limit the store accepts: 256 MiB. A row holds its params and its
/// progress, an execution record its params and its result, and SQLite refuses a value or a
/// row over 1,000,000,000 bytes; a higher limit is a `Config` error.
pub const MAX_PARAMS_BYTES_LIMIT: usize = 256 * 1024 * 1024;

/// How long one statement waits for a lock another connection holds before SQLite gives up
/// with `SQLITE_BUSY` (which the store then retries, up to the request timeout): 5 s.
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one operation may take in all, waiting for the write lock included, before it
/// fails with `Unavailable`: 30 s, as the PostgreSQL store's.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How often the store looks whether another process wrote to the file, to wake idle workers:
/// 100 ms.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(100);

/// The longest busy timeout SQLite takes (`sqlite3_busy_timeout` counts milliseconds in a C
/// `int`).
const MAX_BUSY_TIMEOUT: Duration = Duration::from_millis(i32::MAX as u64);

/// How durable a commit is, SQLite's `synchronous` setting (the store always runs in WAL mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// `synchronous = NORMAL` (the default): a commit is not synced to disk on its own, the WAL
    /// is at each checkpoint. The database never corrupts; a power loss (not a process crash)
    /// may lose the last commits.
    #[default]
    Normal,
    /// `synchronous = FULL`: every commit is synced to disk before it returns; slower, and no
    /// committed job is lost on a power loss.
    Full,
}

/// Where the database is, as given to the builder.
#[derive(Debug, Clone)]
enum Source {
    Url(String),
    Path(PathBuf),
    Memory,
}

/// Where the database is, once checked.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    /// A file, created when missing.
    File(PathBuf),
    /// A database in memory, shared by the clones of one store.
    Memory,
}

/// Checked settings of a store.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) target: Target,
    pub(crate) max_params_bytes: usize,
    pub(crate) synchronous: Synchronous,
    pub(crate) busy_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) poll_interval: Duration,
}

/// Builds a [`SqliteStore`] from a URL, a path, or memory.
///
/// ```no_run
/// # async fn example() -> Result<(), dogs_core::Error> {
/// use std::time::Duration;
/// use dogs_sqlite::{SqliteStore, Synchronous};
///
/// let store = SqliteStore::builder()
///     .path("/var/lib/app/jobs.db")
///     .synchronous(Synchronous::Full)
///     .busy_timeout(Duration::from_secs(2))
///     .request_timeout(Duration::from_secs(10))
///     .connect()
///     .await?;
/// # let _ = store;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct SqliteStoreBuilder {
    source: Option<Source>,
    max_params_bytes: usize,
    synchronous: Synchronous,
    busy_timeout: Duration,
    request_timeout: Duration,
    poll_interval: Duration,
}

impl Default for SqliteStoreBuilder {
    fn default() -> Self {
        SqliteStoreBuilder {
            source: None,
            max_params_bytes: DEFAULT_MAX_PARAMS_BYTES,
            synchronous: Synchronous::Normal,
            busy_timeout: DEFAULT_BUSY_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            poll_interval: DEFAULT_POLL_INTERVAL,
        }
    }
}

impl SqliteStoreBuilder {
    /// Opens the database of a `sqlite://` URL: `sqlite://relative/path.db`,
    /// `sqlite:///absolute/path.db` (percent-encoding allowed, no query parameters), or
    /// `sqlite::memory:` for a database in memory.
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.source = Some(Source::Url(url.into()));
        self
    }

    /// Opens the database file at `path`, created when missing.
    pub fn path(mut self, path: impl AsRef<Path>) -> Self {
        self.source = Some(Source::Path(path.as_ref().to_path_buf()));
        self
    }

    /// A database in memory: gone when the last clone of the store is dropped, seen by no
    /// other process. For tests and for services that can lose their queue on restart.
    pub fn in_memory(mut self) -> Self {
        self.source = Some(Source::Memory);
        self
    }

    /// Refuses params (and progress values) larger than `bytes` of JSON (default 16 MiB, at
    /// most [`MAX_PARAMS_BYTES_LIMIT`]).
    pub fn max_params_bytes(mut self, bytes: usize) -> Self {
        self.max_params_bytes = bytes;
        self
    }

    /// How durable a commit is (default [`Synchronous::Normal`]).
    pub fn synchronous(mut self, synchronous: Synchronous) -> Self {
        self.synchronous = synchronous;
        self
    }

    /// How long one statement waits for a lock held by another connection (another process
    /// writing to the file) before SQLite reports it busy (default 5 s; a longer one than the
    /// request timeout is cut to it). A busy database is tried again, with a short random
    /// pause, until the request timeout; zero means no wait inside SQLite, only those pauses.
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// How long one operation may take in all, waiting for the write lock included, before it
    /// fails with `Unavailable` and changes nothing (default 30 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// How often the store looks whether another process wrote to the file
    /// (`PRAGMA data_version`), to wake its idle workers (default 100 ms). Writes of this
    /// store wake them at once. Not used in memory.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Opens the database (creating the file when missing), puts it in WAL mode, and applies
    /// the migrations it lacks.
    ///
    /// A URL that does not parse, no database given, or a value out of range is a `Config`
    /// error; a file that cannot be opened is `Unavailable`, naming its path.
    pub async fn connect(self) -> Result<SqliteStore> {
        let settings = self.settings()?;
        SqliteStore::open_with(settings).await
    }

    /// Checks every setting.
    fn settings(self) -> Result<Settings> {
        let target = match self.source {
            None => {
                return Err(Error::config(
                    "a SQLite store needs a URL, a path or in_memory()",
                ))
            }
            Some(Source::Url(url)) => parse_url(&url)?,
            Some(Source::Path(path)) => file_target(path)?,
            Some(Source::Memory) => Target::Memory,
        };
        if self.max_params_bytes == 0 || self.max_params_bytes > MAX_PARAMS_BYTES_LIMIT {
            return Err(Error::config(format!(
                "max_params_bytes is {}, not between 1 and {MAX_PARAMS_BYTES_LIMIT}",
                self.max_params_bytes
            )));
        }
        positive("request_timeout", self.request_timeout)?;
        positive("poll_interval", self.poll_interval)?;
        if self.busy_timeout > MAX_DURATION {
            return Err(Error::config(format!(
                "busy_timeout is {:?}, longer than the longest duration dogs accepts (100 years)",
                self.busy_timeout
            )));
        }
        Ok(Settings {
            target,
            max_params_bytes: self.max_params_bytes,
            synchronous: self.synchronous,
            // SQLite never waits longer than the whole operation may take (nor than it can count).
            busy_timeout: self
                .busy_timeout
                .min(self.request_timeout)
                .min(MAX_BUSY_TIMEOUT),
            request_timeout: self.request_timeout,
            poll_interval: self.poll_interval,
        })
    }
}

/// Refuses a zero duration, or one over [`MAX_DURATION`], of `field`.
fn positive(field: &str, duration: Duration) -> Result<()> {
    if duration.is_zero() || duration > MAX_DURATION {
        return Err(Error::config(format!(
            "{field} is {duration:?}: it must be longer than zero and at most 100 years"
        )));
    }
    Ok(())
}

/// A file target, checked: not empty, no NUL byte, valid UTF-8 (SQLite takes UTF-8 names).
fn file_target(path: PathBuf) -> Result<Target> {
    let Some(text) = path.to_str() else {
        return Err(Error::config(format!(
            "the SQLite path {} is not valid UTF-8",
            path.display()
        )));
    };
    if text.is_empty() {
        return Err(Error::config("the SQLite path is empty"));
    }
    if text.contains('\0') {
        return Err(Error::config("the SQLite path contains a NUL byte"));
    }
    // SQLite's name of a private database in memory: each pooled connection would open one of
    // its own; it is the store's database in memory instead (`in_memory()`).
    if text == ":memory:" {
        return Ok(Target::Memory);
    }
    Ok(Target::File(path))
}

/// Parses `sqlite://PATH`, `sqlite:///ABSOLUTE`, `sqlite:PATH` or `sqlite::memory:`.
pub(crate) fn parse_url(url: &str) -> Result<Target> {
    let refused = |why: &str| Error::config(format!("the SQLite URL {url:?} {why}"));
    // The scheme, in any case (`SQLite://`, as URLs allow).
    let rest = match url.get(..7) {
        Some(scheme) if scheme.eq_ignore_ascii_case("sqlite:") => &url[7..],
        _ => return Err(refused("does not start with sqlite:")),
    };
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    if rest.contains('?') {
        return Err(refused(
            "has query parameters, which are not supported (use the builder)",
        ));
    }
    if rest == ":memory:" {
        return Ok(Target::Memory);
    }
    let path = percent_decode(rest).ok_or_else(|| refused("has a bad percent-encoding"))?;
    if path.is_empty() {
        return Err(refused("names no file"));
    }
    file_target(PathBuf::from(path))
}

/// Decodes `%HH` sequences; `None` for a bad one or a result that is not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(url: &str) -> Option<PathBuf> {
        match parse_url(url) {
            Ok(Target::File(path)) => Some(path),
            _ => None,
        }
    }

    #[test]
    fn memory_as_a_path_is_memory() {
        assert!(matches!(
            file_target(PathBuf::from(":memory:")),
            Ok(Target::Memory)
        ));
        assert!(matches!(parse_url("sqlite::memory:"), Ok(Target::Memory)));
        assert!(matches!(
            file_target(PathBuf::from("./:memory:")),
            Ok(Target::File(_))
        ));
    }

    #[test]
    fn urls_name_a_file_or_memory() {
        assert_eq!(file("sqlite://jobs.db"), Some(PathBuf::from("jobs.db")));
        assert_eq!(file("sqlite:jobs.db"), Some(PathBuf::from("jobs.db")));
        assert_eq!(
            file("sqlite:///var/lib/jobs.db"),
            Some(PathBuf::from("/var/lib/jobs.db"))
        );
        assert_eq!(file("sqlite://a%20b%3F.db"), Some(PathBuf::from("a b?.db")));
        assert!(matches!(parse_url("sqlite::memory:"), Ok(Target::Memory)));
        assert!(matches!(parse_url("sqlite://:memory:"), Ok(Target::Memory)));
        assert_eq!(
            file("SQLite:///var/lib/jobs.db"),
            Some(PathBuf::from("/var/lib/jobs.db"))
        );
        for bad in [
            "",
            "jobs.db",
            "postgres://db/app",
            "sqlite://",
            "sqlite:",
            "sqlite://jobs.db?mode=ro",
            "sqlite://a%zz",
            "sqlite://a%00b",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }
}
