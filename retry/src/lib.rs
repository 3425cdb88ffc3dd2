//! Retries for tokio services that cannot make an outage worse.
//!
//! A call to Redis or an HTTP API fails transiently; retrying it is right, but naive retry
//! loops sleep after the last attempt, retry errors that will never succeed, ignore the
//! server's `Retry-After`, overrun the caller's deadline, pay a timer tick even for an
//! immediate retry, and — across a fleet — multiply the load on a struggling dependency by the
//! number of attempts. `seawall-retry` is a [`RetryPolicy`] built once and applied to every
//! call, whatever the call's error type: backoff schedules with jitter that stays spread at the cap ([`Backoff`], [`Jitter`]),
//! per-attempt timeouts, a total deadline, transient/permanent classification, server hints,
//! a shared [`RetryBudget`] (a token bucket as in gRPC and Finagle), Prometheus [`Metrics`],
//! `tracing` events and a tower layer. Failure returns a [`RetryError`] that says why it
//! stopped and hands back your own error.
//!
//! # Example
//! ```
//! use std::time::Duration;
//! use seawall_retry::{Jitter, RetryBudget, RetryError, RetryPolicy};
//!
//! #[derive(Debug, PartialEq)]
//! enum RedisError { ConnectionReset, WrongType }
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let budget = RetryBudget::default(); // share this between policies
//! let policy = RetryPolicy::builder()
//!     .name("redis")
//!     .max_attempts(3)
//!     .exponential(Duration::from_millis(50))
//!     .jitter(Jitter::Full)
//!     .attempt_timeout(Duration::from_secs(1))
//!     .budget(budget)
//!     .build()?;
//!
//! let err = policy
//!     .retry(|| async { Err::<(), _>(RedisError::WrongType) })
//!     .retry_if(|e| *e == RedisError::ConnectionReset)
//!     .await
//!     .unwrap_err();
//! assert!(matches!(err, RetryError::Permanent { attempts: 1, error: RedisError::WrongType }));
//! # Ok(()) }
//! ```
//!
//! # Features
//! | feature | default | enables |
//! |---|---|---|
//! | `tower` | no | [`RetryLayer`] / [`Retry`], a `tower::Layer` retrying cloneable requests |
//!
//! # Minimum supported Rust version
//! 1.89.
#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]

mod backoff;
mod blocking;
mod budget;
mod builder;
mod error;
mod hooks;
#[cfg(feature = "tower")]
mod layer;
mod metrics;
mod policy;
mod retrying;

pub use backoff::{Backoff, DEFAULT_MAX_DELAY, Jitter};
pub use blocking::RetryingBlocking;
pub use budget::RetryBudget;
pub use builder::{BackoffBuilder, RetryBudgetBuilder, RetryPolicyBuilder};
pub use error::{AttemptError, ConfigError, RetryError};
#[cfg(feature = "tower")]
pub use layer::{ResponseFuture, Retry, RetryLayer};
pub use metrics::Metrics;
pub use policy::RetryPolicy;
pub use retrying::{NoNotify, NoRetryAfter, NoRetryIf, Retrying};
