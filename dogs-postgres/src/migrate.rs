//! Embedded, versioned migrations, applied once per schema even when many processes start at once.

use dogs_core::Result;
use sqlx::{Executor, PgPool};

use crate::error::db_error;

/// The migrations, in order: (version, name, SQL with `{schema}` and `{channel}` placeholders).
pub(crate) const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "schema", include_str!("migrations/001_schema.sql")),
    (
        2,
        "row wake-ups",
        include_str!("migrations/002_row_wakeups.sql"),
    ),
    (
        3,
        "next due, per-name indexes, wake-ups for later jobs",
        include_str!("migrations/003_next_due.sql"),
    ),
    (
        4,
        "progress, name settings, capped claims",
        include_str!("migrations/004_operate.sql"),
    ),
    (
        5,
        "listing by name, executions by end",
        include_str!("migrations/005_cockpit.sql"),
    ),
];

/// Applies the migrations `schema` lacks, in one transaction per migration, serialised across
/// processes by an advisory lock on the schema name. Running it again changes nothing.
///
/// Nothing outlives the transaction (the lock is transaction-scoped, and behind a transaction
/// pooler the statements are not `persistent`), so it runs through a transaction pooler too.
pub(crate) async fn migrate(pool: &PgPool, schema: &str, persistent: bool) -> Result<()> {
    let mut tx = pool
        .begin()
        .await
        .map_err(|e| db_error("starting the migration", e))?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
        .bind(format!("dogs migrations {schema}"))
        .persistent(persistent)
        .execute(&mut *tx)
        .await
        .map_err(|e| db_error("taking the migration lock", e))?;
    let setup = format!(
        "CREATE SCHEMA IF NOT EXISTS \"{schema}\";
         CREATE TABLE IF NOT EXISTS \"{schema}\".migrations (
             version integer PRIMARY KEY,
             name text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         );"
    );
    tx.execute(setup.as_str())
        .await
        .map_err(|e| db_error("creating the schema", e))?;
    let applied: Vec<i32> = sqlx::query_scalar(&format!(
        "SELECT version FROM \"{schema}\".migrations ORDER BY version"
    ))
    .persistent(persistent)
    .fetch_all(&mut *tx)
    .await
    .map_err(|e| db_error("reading the applied migrations", e))?;
    for (version, name, sql) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        let sql = sql
            .replace(
                "{claim_candidates}",
                &crate::claim::claim_candidates("p_names", "p_lock_ms", "p_limit", "v_now"),
            )
            .replace(
                "{claim_capped_candidates}",
                &crate::claim::claim_capped_candidates(
                    "v_names", "v_lock", "v_caps", "p_limit", "v_now",
                ),
            )
            .replace("{schema}", schema)
            .replace("{channel}", &crate::store::channel(schema));
        tx.execute(sql.as_str())
            .await
            .map_err(|e| db_error(&format!("migration {version} ({name})"), e))?;
        sqlx::query(&format!(
            "INSERT INTO \"{schema}\".migrations (version, name) VALUES ($1, $2)"
        ))
        .bind(version)
        .bind(name)
        .persistent(persistent)
        .execute(&mut *tx)
        .await
        .map_err(|e| db_error("recording a migration", e))?;
    }
    tx.commit()
        .await
        .map_err(|e| db_error("committing the migrations", e))
}

#[cfg(test)]
mod tests {
    /// The capped claim counts jobs cancelled while they ran by their error text, written out
    /// in the migration: it must be the one `cancel` writes.
    #[test]
    fn the_claim_knows_the_cancelled_error() {
        let sql = include_str!("migrations/004_operate.sql");
        assert!(sql.contains(&format!("'{}'", dogs_core::CANCELLED_ERROR)));
    }
}
