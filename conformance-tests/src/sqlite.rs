//! The SQLite backend of the suite: one database file per namespace, in a directory of this
//! run under the system's temporary directory.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use dogs_core::{JobStore, Result};
use dogs_sqlite::SqliteStore;

use crate::backend::Backend;

pub mod differential;
pub mod edges;
pub mod specific;

/// The directory of this run's database files: `dogs-sqlite-tests-<pid>` in the system's
/// temporary directory.
pub fn run_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        std::env::temp_dir().join(format!("dogs-sqlite-tests-{}", std::process::id()))
    })
}

/// The database file of `namespace`.
pub fn db_path(namespace: &str) -> PathBuf {
    run_dir().join(format!("{namespace}.db"))
}

/// Removes a database file and its WAL and shared-memory files; missing ones are fine.
pub use dogs_sqlite::remove_database_files as remove_db;

/// Runs the suite on [`SqliteStore`]s, each namespace a file of its own; opening a namespace
/// again opens another store on the same file, as another process would.
#[derive(Debug)]
pub struct SqliteBackend {
    _private: (),
}

impl SqliteBackend {
    /// The backend, with this run's directory created.
    pub fn new() -> std::result::Result<Self, String> {
        std::fs::create_dir_all(run_dir())
            .map_err(|e| format!("cannot create {}: {e}", run_dir().display()))?;
        Ok(SqliteBackend { _private: () })
    }
}

/// Removes this run's directory when dropped (at the end of the run).
#[derive(Debug)]
pub struct RunDirGuard {
    _private: (),
}

impl RunDirGuard {
    /// The guard of this run's directory.
    pub fn new() -> Self {
        RunDirGuard { _private: () }
    }
}

impl Default for RunDirGuard {
    fn default() -> Self {
        RunDirGuard::new()
    }
}

impl Drop for RunDirGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(run_dir());
    }
}

#[async_trait]
impl Backend for SqliteBackend {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    async fn open(&self, namespace: &str) -> Result<Arc<dyn JobStore>> {
        Ok(Arc::new(SqliteStore::open(db_path(namespace)).await?))
    }

    async fn cleanup(&self, namespace: &str) -> Result<()> {
        remove_db(db_path(namespace))
    }
}
