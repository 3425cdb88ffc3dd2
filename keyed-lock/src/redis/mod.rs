//! The Redis backend (feature `redis`): leases in Redis shared by every replica.

mod backend;
mod builder;
mod conn;
mod error;
mod failures;
mod keys;
mod lease;
mod lock;
mod renew;
mod scripts;

pub use backend::RedisBackend;
pub use builder::{DEFAULT_COMMAND_TIMEOUT, DEFAULT_PREFIX, RedisBackendBuilder};
pub use error::RedisBackendError;
pub use lease::RedisLease;
