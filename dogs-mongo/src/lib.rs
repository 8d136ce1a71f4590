#![doc = include_str!("../README.md")]

mod claim;
mod config;
mod decode;
mod error;
mod finish;
mod operate;
mod read;
mod remove;
mod schedule;
mod store;
mod wakeups;

pub use config::{
    MongoStoreBuilder, DEFAULT_DATABASE, DEFAULT_EXECUTIONS_COLLECTION, DEFAULT_JOBS_COLLECTION,
    DEFAULT_MAX_PARAMS_BYTES,
};
pub use store::MongoStore;

/// The MongoDB driver this store is built on, for databases handed to it.
pub use mongodb;
