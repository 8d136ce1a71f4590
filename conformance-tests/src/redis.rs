//! The Redis backend of the suite: one key prefix per namespace.

use std::sync::Arc;

use async_trait::async_trait;
use dogs_core::{Error, JobStore, Result};
use dogs_redis::redis;
use dogs_redis::RedisStore;

use crate::backend::Backend;

/// Runs the suite on [`RedisStore`]s, each namespace a key prefix on the server at `url`.
#[derive(Debug, Clone)]
pub struct RedisBackend {
    url: String,
}

impl RedisBackend {
    /// The backend for the server at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        RedisBackend { url: url.into() }
    }
}

#[async_trait]
impl Backend for RedisBackend {
    fn name(&self) -> &'static str {
        "redis"
    }

    async fn open(&self, namespace: &str) -> Result<Arc<dyn JobStore>> {
        let store = RedisStore::builder()
            .url(&self.url)
            .prefix(namespace)
            .connect()
            .await?;
        Ok(Arc::new(store))
    }

    async fn cleanup(&self, namespace: &str) -> Result<()> {
        let fail =
            |e: redis::RedisError| Error::unavailable("cleaning up a test prefix").with_source(e);
        let client = redis::Client::open(self.url.as_str()).map_err(fail)?;
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .map_err(fail)?;
        let pattern = format!("{{{namespace}}}:*");
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .map_err(fail)?;
            if !keys.is_empty() {
                let _: i64 = redis::cmd("DEL")
                    .arg(&keys)
                    .query_async(&mut conn)
                    .await
                    .map_err(fail)?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }
}
