//! How a memory store is built: its clock and its params limit.

use std::sync::Arc;

use crate::clock::{Clock, SystemClock};
use crate::store::MemoryStore;

/// The default params limit: 16 MiB of JSON, as MongoDB's document limit.
pub const DEFAULT_MAX_PARAMS_BYTES: usize = 16 * 1024 * 1024;

/// Builds a [`MemoryStore`].
///
/// ```
/// use dogs_memory::{ManualClock, MemoryStore};
///
/// let clock = ManualClock::new(chrono::Utc::now());
/// let store = MemoryStore::builder().clock(clock.clone()).max_params_bytes(1024).build();
/// # let _ = store;
/// ```
#[derive(Clone)]
pub struct MemoryStoreBuilder {
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) max_params_bytes: usize,
}

impl std::fmt::Debug for MemoryStoreBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStoreBuilder")
            .field("max_params_bytes", &self.max_params_bytes)
            .finish_non_exhaustive()
    }
}

impl Default for MemoryStoreBuilder {
    fn default() -> Self {
        MemoryStoreBuilder {
            clock: Arc::new(SystemClock::new()),
            max_params_bytes: DEFAULT_MAX_PARAMS_BYTES,
        }
    }
}

impl MemoryStoreBuilder {
    /// Uses `clock` for every time comparison (default: the system clock).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Refuses params larger than `bytes` of JSON (default 16 MiB).
    pub fn max_params_bytes(mut self, bytes: usize) -> Self {
        self.max_params_bytes = bytes;
        self
    }

    /// The store.
    pub fn build(self) -> MemoryStore {
        MemoryStore::from_builder(self)
    }
}
