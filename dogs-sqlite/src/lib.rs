#![doc = include_str!("../README.md")]

mod claim;
mod config;
mod decode;
mod error;
mod finish;
mod migrate;
mod operate;
mod read;
mod remove;
mod schedule;
mod sql;
mod store;
mod wakeups;

pub use config::{
    SqliteStoreBuilder, Synchronous, DEFAULT_BUSY_TIMEOUT, DEFAULT_MAX_PARAMS_BYTES,
    DEFAULT_POLL_INTERVAL, DEFAULT_REQUEST_TIMEOUT, MAX_PARAMS_BYTES_LIMIT,
};
pub use remove::remove_database_files;
pub use store::SqliteStore;

/// The sqlx version this crate is built on, for connections of your own to the same file.
pub use sqlx;
