//! The Redis backend (feature `redis`): leases in Redis shared by every replica.
//!
//! Where things are: `backend.rs` (the public [`RedisBackend`] and its
//! [`LockBackend`](crate::LockBackend) impl), `builder.rs`, `lock.rs` (the
//! `KeyedLock<K, RedisBackend>` methods), `acquire.rs` (the acquire steps), `release.rs`
//! (background releases), `renew.rs` (the auto-renew watchdog), `inner.rs` (the shared state
//! and its script calls), `ttl.rs` (TTL and drift arithmetic), `keys.rs` (Redis key names),
//! `scripts.rs` (the Lua), `failures.rs` (errors shared by queued waiters), `client.rs` (the
//! transport, byte-identical in seawall-cooldown).

mod acquire;
mod backend;
mod builder;
mod client;
mod error;
mod failures;
mod inner;
mod keys;
mod lease;
mod lock;
mod release;
mod renew;
mod scripts;
mod ttl;

pub use backend::RedisBackend;
pub use builder::{DEFAULT_COMMAND_TIMEOUT, DEFAULT_PREFIX, RedisBackendBuilder};
pub use error::RedisBackendError;
pub use lease::RedisLease;
