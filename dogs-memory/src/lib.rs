#![doc = include_str!("../README.md")]

mod claim;
mod clock;
mod config;
mod finish;
mod operate;
mod read;
mod remove;
mod schedule;
mod state;
mod store;
mod wakeups;

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{MemoryStoreBuilder, DEFAULT_MAX_PARAMS_BYTES};
pub use store::MemoryStore;
