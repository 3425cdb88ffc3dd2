//! Per-key async locks for tokio, with FIFO queues, lease TTL and fencing tokens.
//!
//! Serializing work per key (per user, per order, per account) is a lock per key. The crates
//! that offered one had three problems that bite in production: a holder that crashed or hung
//! kept its key forever, a waiter could not give up after a while, and cancelled waits left
//! map entries behind. `seawall-keyed-lock` gives every grant a **lease**: after its TTL the
//! next waiter takes over without the stale holder doing anything, the stale holder can tell
//! ([`Guard::is_expired`], [`Guard::lost`]), and a [`FencingToken`] that strictly increases
//! per key lets the store reject writes from a holder that did not notice. Waiters are served
//! in arrival order, can time out, and leave nothing behind when cancelled.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use seawall_keyed_lock::KeyedLock;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let locks = KeyedLock::<u64>::builder()
//!     .name("users")
//!     .ttl(Duration::from_secs(300))
//!     .build()?;
//!
//! let guard = locks.lock(&42).await;            // waits in FIFO order if 42 is held
//! let token = guard.token();                    // send with every write made under the lock
//! assert!(locks.try_lock(&42).is_err());        // Busy { held_since, expires_at }
//! assert!(locks.lock_timeout(&42, Duration::from_millis(10)).await.is_err());
//!
//! // A holder that never releases loses the key after its TTL.
//! std::mem::forget(guard);
//! let next = locks.lock(&42).await;             // resumes at the stale lease's deadline
//! assert!(next.token() > token);
//! # Ok(())
//! # }
//! ```
//!
//! # Features
//!
//! | feature | default | what |
//! | --- | --- | --- |
//! | — | | no optional features; metrics ([`Metrics`], prometheus-client) and `tracing` events are always available and cost nothing when unused |
//!
//! # Backends
//!
//! The in-memory [`MemoryBackend`] is the default. The guard, TTL and fencing logic sit on the
//! [`LockBackend`] trait, which a shared store (Redis) can implement to lock across processes.
//!
//! # MSRV
//!
//! Rust 1.89.

#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]

mod backend;
mod error;
mod guard;
mod lock;
mod memory;
mod metrics;
#[cfg(feature = "redis")]
mod redis;
mod token;

pub use backend::{Grant, LockBackend, Refused, Wait};
pub use error::{
    Busy, ConfigError, ExtendError, LeaseExpired, LeaseLost, LockTimeoutError, Timeout,
    TryLockError, WithLockError,
};
pub use guard::Guard;
pub use lock::{Builder, DEFAULT_TTL, KeyedLock};
pub use memory::{MemoryBackend, MemoryLease};
pub use metrics::{LockEvents, Metrics};
pub use token::FencingToken;

#[cfg(feature = "redis")]
pub use crate::redis::{
    DEFAULT_COMMAND_TIMEOUT, DEFAULT_PREFIX, RedisBackend, RedisBackendBuilder, RedisBackendError,
    RedisLease,
};
