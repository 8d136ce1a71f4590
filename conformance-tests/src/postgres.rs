//! The PostgreSQL backend of the suite: one schema per namespace.

use std::sync::Arc;

use async_trait::async_trait;
use dogs_core::{Error, JobStore, Result};
use dogs_postgres::sqlx::{self, Connection};
use dogs_postgres::PostgresStore;

use crate::backend::Backend;

/// Runs the suite on [`PostgresStore`]s, each namespace a schema of the server at `url`.
#[derive(Debug, Clone)]
pub struct PostgresBackend {
    url: String,
}

impl PostgresBackend {
    /// The backend for the server at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        PostgresBackend { url: url.into() }
    }
}

#[async_trait]
impl Backend for PostgresBackend {
    fn name(&self) -> &'static str {
        "postgres"
    }

    async fn open(&self, namespace: &str) -> Result<Arc<dyn JobStore>> {
        let store = PostgresStore::builder()
            .url(&self.url)
            .schema(namespace)
            .max_connections(6)
            .connect()
            .await?;
        Ok(Arc::new(store))
    }

    async fn cleanup(&self, namespace: &str) -> Result<()> {
        let mut conn = sqlx::PgConnection::connect(&self.url)
            .await
            .map_err(|e| Error::unavailable("connecting for cleanup").with_source(e))?;
        sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{namespace}\" CASCADE"))
            .execute(&mut conn)
            .await
            .map_err(|e| Error::unavailable("dropping the test schema").with_source(e))?;
        Ok(())
    }
}
