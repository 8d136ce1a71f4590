#![doc = include_str!("../README.md")]

mod claim;
mod config;
mod connection;
mod decode;
mod error;
mod finish;
mod operate;
mod read;
mod remove;
mod schedule;
mod scripts;
mod store;
mod wakeups;

pub use config::{RedisStoreBuilder, DEFAULT_MAX_PARAMS_BYTES, DEFAULT_PREFIX};
pub use store::RedisStore;

/// The redis crate this store is built on, for clients and connections handed to it.
pub use redis;
