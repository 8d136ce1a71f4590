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

pub use config::{PostgresStoreBuilder, DEFAULT_MAX_PARAMS_BYTES, DEFAULT_SCHEMA, MAX_SCHEMA_LEN};
pub use store::PostgresStore;

/// The sqlx version this crate is built on, for pools and transactions handed to it.
pub use sqlx;
