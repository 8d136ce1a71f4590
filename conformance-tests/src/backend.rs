//! What a backend gives the suite: stores in namespaces of their own.

use std::sync::Arc;

use async_trait::async_trait;
use dogs_core::{JobStore, Result};

/// A backend under test. Implemented once per store crate; the suite does the rest.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// The backend's name, as written in `DOGS_REQUIRE` (`memory`, `postgres`, ...).
    fn name(&self) -> &'static str;

    /// Opens a store in `namespace`. Opening the same namespace again gives another handle
    /// (another connection, as another process would have) to the same jobs.
    async fn open(&self, namespace: &str) -> Result<Arc<dyn JobStore>>;

    /// Removes everything stored in `namespace`.
    async fn cleanup(&self, namespace: &str) -> Result<()>;
}
