//! The memory backend of the suite: one [`MemoryStore`] per namespace.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use dogs_core::{JobStore, Result};
use dogs_memory::MemoryStore;

use crate::backend::Backend;

/// Runs the suite on [`MemoryStore`]s; opening a namespace twice gives the same store.
#[derive(Debug, Default)]
pub struct MemoryBackend {
    stores: Mutex<HashMap<String, MemoryStore>>,
}

#[async_trait]
impl Backend for MemoryBackend {
    fn name(&self) -> &'static str {
        "memory"
    }

    async fn open(&self, namespace: &str) -> Result<Arc<dyn JobStore>> {
        let mut stores = self.stores.lock().unwrap_or_else(|e| e.into_inner());
        let store = stores.entry(namespace.to_owned()).or_default().clone();
        Ok(Arc::new(store))
    }

    async fn cleanup(&self, namespace: &str) -> Result<()> {
        self.stores
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(namespace);
        Ok(())
    }
}
