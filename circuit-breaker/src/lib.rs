//! A circuit breaker for tokio services: stop calling a dependency that keeps failing, give it
//! time, probe it, recover.
//!
//! When a database or an API goes down, every call to it waits for a timeout, ties up a
//! task and a connection, and adds load to a service that is already struggling. A circuit
//! breaker counts the failures; once its trip policy says the dependency is down it *opens*
//! and rejects calls at once (with a `retry_after`), so the caller can fall back (spool to
//! disk, serve a cached answer, tell the user). After an open duration it lets a few *probe*
//! calls through; if they succeed it closes again, if not it stays open longer.
//!
//! # Guarantees
//!
//! - **Never stuck half-open, even when callers set no timeout.** A probe that never reports
//!   back (its future dropped, its task killed) frees its slot at once; a probe that is alive
//!   but hung counts as failed once it outlives the
//!   [maximum probe duration](CircuitBreakerBuilder::max_probe_duration) (default 30 s,
//!   cannot be turned off), which reopens the breaker and frees its slot.
//! - **A state that follows the clock.** [`state()`](CircuitBreaker::state) and the state
//!   gauge (computed when the registry is scraped) report what the next call would see: an
//!   open breaker reads half-open once its open duration has passed, without waiting for a
//!   call; the transition is emitted then, dated to when it became due.
//! - **Rate windows trip when they cross the threshold**, on whichever call that is: a
//!   success that brings the window to `min_calls` at 60 % failures trips a 50 % breaker.
//! - **Fail fast in tower.** While the breaker would reject, the layer's `poll_ready` is
//!   ready at once and `call` rejects without touching the inner service, so a saturated
//!   pool never delays a rejection (see [`layer`](crate#features)).
//! - **Bounded configuration.** Every setting is checked by `build` against a stated range
//!   ([`ConfigError`] names the setter); no allocation is sized by an unchecked input and no
//!   duration arithmetic can overflow or panic.
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
//!   failed or hung probe reopens.
//! - [`CircuitBreaker::call`] / [`call_with`](CircuitBreaker::call_with) for async code,
//!   [`try_acquire_ref`](CircuitBreaker::try_acquire_ref) and a [`PermitRef`] (borrowed; no
//!   shared write on the closed path) or [`try_acquire`](CircuitBreaker::try_acquire) and a
//!   `'static` [`Permit`] for everything else.
//! - Manual [`force_open`](CircuitBreaker::force_open), [`disable`](CircuitBreaker::disable),
//!   [`reset`](CircuitBreaker::reset).
//! - Every transition is a `tracing` event, a [`Transition`] on
//!   [`subscribe`](CircuitBreaker::subscribe), and counted in [`Metrics`].
//!
//! The closed-state success path of the consecutive-failure policy takes no lock and reads no
//! clock: one atomic load to check the state, one to see that the failure count is zero.
//!
//! # One breaker per key
//!
//! [`KeyedCircuitBreaker`] keeps one breaker per host, tenant or endpoint, created on first
//! use from one configuration ([`CircuitBreakerBuilder::keyed`]), so the one host that is down
//! is cut off while the others keep serving. Its memory is bounded without a background task:
//! idle breakers (closed, nothing counted, nothing in flight) are forgotten lazily, at most
//! [`max_keys`](KeyedCircuitBreakerBuilder::max_keys) are tracked, and when every slot holds
//! a breaker that cannot be forgotten a new key's call passes through untracked and is
//! counted: an open or half-open breaker is never forgotten. Metrics never carry a key;
//! [`subscribe`](KeyedCircuitBreaker::subscribe) and the tracing events do.
//!
//! ```
//! use std::time::Duration;
//! use seawall_circuit_breaker::{CircuitBreaker, KeyedCircuitBreaker, State};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let hosts: KeyedCircuitBreaker<String> = CircuitBreaker::builder()
//!     .name("upstream")
//!     .consecutive_failures(1)
//!     .open_duration(Duration::from_secs(30))
//!     .keyed()
//!     .max_keys(10_000)
//!     .build()
//!     .unwrap();
//!
//! let _ = hosts.call("eu.api", || async { Err::<(), _>("connection refused") }).await;
//! assert!(hosts.call("eu.api", || async { Ok::<_, &str>(()) }).await.unwrap_err().is_open());
//! assert_eq!(hosts.call("us.api", || async { Ok::<_, &str>(7) }).await, Ok(7));
//! assert_eq!(hosts.open_keys(), vec![("eu.api".to_owned(), State::Open)]);
//! # }
//! ```
//!
//! # Features
//!
//! | feature | default | what it adds |
//! | --- | --- | --- |
//! | `tower` | no | `layer::CircuitBreakerLayer`, a `tower::Layer` wrapping a service in the breaker; fail-fast: while the breaker would reject, `poll_ready` is ready at once and `call` rejects without touching the inner service (see its readiness contract). `keyed_layer::KeyedCircuitBreakerLayer`, one breaker per request key (e.g. the URI's host): `poll_ready` always ready, a rejected key never touches the inner service |
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
mod keyed;
#[cfg(feature = "tower")]
pub mod keyed_layer;
#[cfg(feature = "tower")]
pub mod layer;
mod limits;
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
pub use builder::{CircuitBreakerBuilder, KeyedCircuitBreakerBuilder};
pub use error::{ConfigError, Error, Rejected};
pub use keyed::{KeyedCircuitBreaker, KeyedTransition};
pub use metrics::Metrics;
pub use outcome::Outcome;
pub use permit::{Permit, PermitRef};
pub use policy::{SlowCalls, TripPolicy, Window};
pub use state::{Reason, State, Transition};
