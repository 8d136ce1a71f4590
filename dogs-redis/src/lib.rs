#![doc = include_str!("../README.md")]

mod config;
mod error;
mod scripts;
mod store;
mod subscriber;

pub use config::{RedisStoreBuilder, DEFAULT_MAX_PARAMS_BYTES, DEFAULT_PREFIX};
pub use store::RedisStore;

/// The redis crate this store is built on, for clients and connections handed to it.
pub use redis;
