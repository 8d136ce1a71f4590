//! `remove_all` on PostgreSQL removes dogs' own objects and nothing of the application's: a
//! table beside them in the schema stays, and a view elsewhere that reads dogs' tables makes
//! the call fail with nothing removed, where `DROP SCHEMA ... CASCADE` would have dropped both.

use dogs_core::{ErrorKind, JobQuery, JobStore, NewJob};
use dogs_postgres::sqlx;
use dogs_postgres::PostgresStore;
use serde_json::json;

use super::specific::open;
use super::Target;
use crate::harness::TestContext;

/// Runs `statements` in a transaction, as one simple query (a pooler takes it too).
async fn run(store: &PostgresStore, statements: &str) {
    let mut tx = store.pool().begin().await.unwrap();
    sqlx::Executor::execute(&mut *tx, statements)
        .await
        .unwrap_or_else(|e| panic!("{statements}: {e}"));
    tx.commit().await.unwrap();
}

/// The one number `query` returns, read in a transaction.
async fn number(store: &PostgresStore, query: &str) -> i64 {
    let mut tx = store.pool().begin().await.unwrap();
    let value: i64 = sqlx::query_scalar(query)
        .persistent(false)
        .fetch_one(&mut *tx)
        .await
        .unwrap_or_else(|e| panic!("{query}: {e}"));
    tx.commit().await.unwrap();
    value
}

/// See the module's doc.
pub async fn keeps_what_is_not_dogs(ctx: TestContext, target: Target) {
    let schema = ctx.namespace().to_owned();
    let elsewhere = format!("{schema}_app");
    let store = open(&ctx, &target).await;
    let tables = format!(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = '{schema}' AND c.relkind = 'r'"
    );
    let schemas = format!("SELECT count(*) FROM pg_namespace WHERE nspname = '{schema}'");

    // A view in another schema reads dogs' jobs: nothing may be removed.
    run(
        &store,
        &format!(
            "CREATE SCHEMA \"{elsewhere}\";
             CREATE VIEW \"{elsewhere}\".queue AS SELECT id, name FROM \"{schema}\".jobs;"
        ),
    )
    .await;
    let job = store.schedule(NewJob::new("kept", json!(1))).await.unwrap();
    let refused = store.remove_all().await.map_err(|e| e.kind());
    assert_eq!(
        refused,
        Err(ErrorKind::InvalidInput),
        "a view depends on the jobs"
    );
    assert!(
        store.get_job(job.id()).await.unwrap().is_some(),
        "a refused removal removed nothing"
    );
    assert_eq!(
        number(
            &store,
            &format!("SELECT count(*) FROM \"{elsewhere}\".queue")
        )
        .await,
        1,
        "the view stays, and reads the job"
    );
    run(&store, &format!("DROP SCHEMA \"{elsewhere}\" CASCADE")).await;

    // A table of the application beside dogs' in the schema stays, with its rows.
    run(
        &store,
        &format!(
            "CREATE TABLE \"{schema}\".orders (id integer);
             INSERT INTO \"{schema}\".orders VALUES (42);"
        ),
    )
    .await;
    store.remove_all().await.unwrap();
    assert_eq!(
        number(&store, &format!("SELECT count(*) FROM \"{schema}\".orders")).await,
        1,
        "the application's table and its row stay"
    );
    assert_eq!(number(&store, &tables).await, 1, "dogs' tables are gone");
    let reopened = open(&ctx, &target).await;
    assert!(reopened
        .list_jobs(&JobQuery::default())
        .await
        .unwrap()
        .is_empty());
    assert!(reopened.get_job(job.id()).await.unwrap().is_none());

    // With nothing else in it, the schema goes too.
    run(&store, &format!("DROP TABLE \"{schema}\".orders")).await;
    reopened.remove_all().await.unwrap();
    assert_eq!(
        number(&store, &schemas).await,
        0,
        "the empty schema is dropped"
    );

    // A schema whose `migrations` table is the application's: dogs never migrated it, and
    // its removal drops nothing. (A short name: the store takes at most 48 characters.)
    let shared = format!("dogs_app_{}", &schema[schema.len().saturating_sub(8)..]);
    run(
        &store,
        &format!(
            "CREATE SCHEMA \"{shared}\";
             CREATE TABLE \"{shared}\".migrations (version integer, name text);
             INSERT INTO \"{shared}\".migrations VALUES (1, 'create users');"
        ),
    )
    .await;
    let unmigrated = target
        .builder(&shared)
        .migrate_on_connect(false)
        .max_connections(2)
        .connect()
        .await
        .unwrap();
    let refused = unmigrated.remove_all().await.map_err(|e| e.kind());
    assert_eq!(
        refused,
        Err(ErrorKind::InvalidInput),
        "not dogs' migrations"
    );
    assert_eq!(
        number(
            &store,
            &format!("SELECT count(*) FROM \"{shared}\".migrations")
        )
        .await,
        1,
        "the application's migrations table stays"
    );
    run(&store, &format!("DROP SCHEMA \"{shared}\" CASCADE")).await;
}
