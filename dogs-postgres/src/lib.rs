#![doc = include_str!("../README.md")]

mod config;
mod error;
mod listener;
mod migrate;
mod store;

pub use config::{PostgresStoreBuilder, DEFAULT_MAX_PARAMS_BYTES, DEFAULT_SCHEMA, MAX_SCHEMA_LEN};
pub use store::PostgresStore;

/// The sqlx version this crate is built on, for pools and transactions handed to it.
pub use sqlx;
