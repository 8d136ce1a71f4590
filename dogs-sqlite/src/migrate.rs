//! Embedded, versioned migrations, applied once per database file even when many processes
//! open it at once: each store applies what is missing inside one `BEGIN IMMEDIATE`
//! transaction, which holds the file's write lock, so the others wait and then find it done.

use dogs_core::{Error, Result};
use sqlx::Executor;

use crate::error::db_error;
use crate::store::SqliteStore;

/// The migrations, in order: (version, name, SQL).
const MIGRATIONS: &[(i64, &str, &str)] =
    &[(1, "schema", include_str!("migrations/001_schema.sql"))];

/// Applies the migrations the database lacks, all in one transaction. Running it again changes
/// nothing. A file that a newer version migrated (a version this one does not know) is refused
/// with `Config`, unchanged: this version would not know what its layout means.
pub(crate) async fn migrate(store: &SqliteStore) -> Result<()> {
    let mut write = store.begin("applying the migrations").await?;
    write
        .conn()
        .execute(
            "CREATE TABLE IF NOT EXISTS migrations (
                 version INTEGER PRIMARY KEY,
                 name TEXT NOT NULL,
                 applied_at INTEGER NOT NULL
             ) STRICT",
        )
        .await
        .map_err(|e| db_error("creating the migrations table", e))?;
    let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM migrations ORDER BY version")
        .fetch_all(write.conn())
        .await
        .map_err(|e| db_error("reading the applied migrations", e))?;
    let known = MIGRATIONS.last().map_or(0, |(version, _, _)| *version);
    if let Some(newer) = applied.iter().find(|version| **version > known) {
        // The transaction is dropped unfinished: nothing of this attempt stays.
        return Err(Error::config(format!(
            "the SQLite file was migrated by a newer version of dogs-sqlite (migration {newer}; this version knows up to {known}): open it with that version or newer"
        )));
    }
    for (version, name, sql) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        write
            .conn()
            .execute(*sql)
            .await
            .map_err(|e| db_error(&format!("migration {version} ({name})"), e))?;
        let now = write.now_ms();
        sqlx::query("INSERT INTO migrations (version, name, applied_at) VALUES (?1, ?2, ?3)")
            .bind(version)
            .bind(name)
            .bind(now)
            .execute(write.conn())
            .await
            .map_err(|e| db_error("recording a migration", e))?;
    }
    store.commit(write, "committing the migrations").await
}
