//! A circuit breaker for tokio services: stop calling a dependency that keeps failing, give it
//! time, probe it, recover.
//!
//! When a database or an API goes down, every call to it waits for a timeout, ties up a
//! task and a connection, and adds load to a service that is already struggling. A circuit
//! breaker counts the failures; once its trip policy says the dependency is down it *opens*
//! and rejects calls at once (with a `retry_after`), so the caller can fall back (spool to
//! disk, serve a cached answer, tell the user). After an open duration it lets a few *probe*
//! calls through; if they succeed it closes again, if not it stays open longer. A probe that
//! never reports back (its future dropped, its task killed) frees its slot, so the breaker
//! can never get stuck half-open.
//!
//! # Quick example
//!
//! ```
//! use std::time::Duration;
//! use seawall_circuit_breaker::{CircuitBreaker, Error, State};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let breaker = CircuitBreaker::builder()
//!     .name("audit")
//!     .consecutive_failures(5)
//!     .open_duration(Duration::from_secs(30))
//!     .build()
//!     .unwrap();
//!
//! for _ in 0..5 {
//!     let _ = breaker.call(|| async { Err::<(), _>("connection refused") }).await;
//! }
//! assert_eq!(breaker.state(), State::Open);
//! match breaker.call(|| async { Ok::<_, &str>(()) }).await {
//!     Err(Error::Open { retry_after }) => println!("audit store down, retry in {retry_after:?}"),
//!     other => panic!("{other:?}"),
//! }
//!
//! tokio::time::advance(Duration::from_secs(30)).await;
//! // One probe passes; its success closes the breaker.
//! breaker.call(|| async { Ok::<_, &str>(()) }).await.unwrap();
//! assert_eq!(breaker.state(), State::Closed);
//! # }
//! ```
//!
//! # What it does
//!
//! - Trip policies ([`TripPolicy`]): consecutive failures (default 5), failure rate over the
//!   last N calls or over a time window ([`Window`]), and slow calls ([`SlowCalls`]) counted
//!   as failures or tripping on their own rate.
//! - Open duration fixed (default 30 s) or from any `Iterator<Item = Duration>` so repeated
//!   trips back off, with optional jitter.
//! - Half-open: `probes` concurrent probes (default 1), `successes_to_close` (default 1); any
//!   failed probe reopens.
//! - [`CircuitBreaker::call`] / [`call_with`](CircuitBreaker::call_with) for async code,
//!   [`try_acquire`](CircuitBreaker::try_acquire) and a [`Permit`] for everything else.
//! - Manual [`force_open`](CircuitBreaker::force_open), [`disable`](CircuitBreaker::disable),
//!   [`reset`](CircuitBreaker::reset).
//! - Every transition is a `tracing` event, a [`Transition`] on
//!   [`subscribe`](CircuitBreaker::subscribe), and counted in [`Metrics`].
//!
//! The closed-state success path of the consecutive-failure policy takes no lock and reads no
//! clock: one atomic load to check the state, one to see that the failure count is zero.
//!
//! # Features
//!
//! | feature | default | what it adds |
//! | --- | --- | --- |
//! | `tower` | no | `layer::CircuitBreakerLayer`, a `tower::Layer` wrapping a service in the breaker (see its `poll_ready` semantics) |
//!
//! # Minimum supported Rust version
//!
//! Rust 1.89.

#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]

mod breaker;
mod builder;
mod error;
mod inner;
#[cfg(feature = "tower")]
pub mod layer;
mod metrics;
mod open_duration;
mod outcome;
mod permit;
mod policy;
mod probes;
mod state;
mod sync;
mod word;

pub use breaker::CircuitBreaker;
pub use builder::CircuitBreakerBuilder;
pub use error::{ConfigError, Error, Rejected};
pub use metrics::Metrics;
pub use outcome::Outcome;
pub use permit::Permit;
pub use policy::{SlowCalls, TripPolicy, Window};
pub use state::{Reason, State, Transition};
