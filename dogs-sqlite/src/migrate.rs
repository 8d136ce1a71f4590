//! Embedded, versioned migrations, applied once per database file even when many processes
//! open it at once: each store applies what is missing inside one `BEGIN IMMEDIATE`
//! transaction, which holds the file's write lock, so the others wait and then find it done.

use dogs_core::Result;
use sqlx::Executor;

use crate::error::db_error;
use crate::store::SqliteStore;

/// The migrations, in order: (version, name, SQL).
const MIGRATIONS: &[(i64, &str, &str)] =
    &[(1, "schema", include_str!("migrations/001_schema.sql"))];

/// Applies the migrations the database lacks, all in one transaction. Running it again changes
/// nothing; a version this one does not know (a newer store's) is left as it is.
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
