#![doc = include_str!("../README.md")]

mod clock;
mod config;
mod state;
mod store;

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{MemoryStoreBuilder, DEFAULT_MAX_PARAMS_BYTES};
pub use store::MemoryStore;
