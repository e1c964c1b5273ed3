//! State several replicas share (`store.url`).

pub mod redis;

pub use self::redis::*;
