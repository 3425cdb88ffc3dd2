//! Per-key alert throttling for tokio services that reports what it suppressed.
//!
//! An alert channel flooded by the same alert every minute gets muted by the
//! people it is meant to wake; an alert service that sends at most one alert
//! per key per 30 minutes and silently drops the rest hides how bad things
//! got. [`Cooldown`] fires the first event for a key, suppresses and *counts*
//! the rest for a window (default 1800 s), and reports what it suppressed:
//! with the key's next fire ([`Fire::digest`]) or, for keys that went quiet,
//! through [`Cooldown::drain_digests`], so "12 more like this in the last
//! 30 min" reaches a person. A send that fails must not silence a key for
//! half an hour, so [`Cooldown::reserve`] hands out a [`Reservation`] that
//! starts the window only when committed and rolls back when dropped.
//! Memory stays bounded without a background task.
//!
//! # Quick example
//!
//! ```
//! use std::time::Duration;
//! use seawall_cooldown::{Cooldown, Decision};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let alerts: Cooldown<String> = Cooldown::builder()
//!     .name("alerts")
//!     .window(Duration::from_secs(1800))
//!     .build()
//!     .unwrap();
//! let key = "db-down".to_owned();
//!
//! // The send may fail: reserve, send, commit.
//! let reservation = alerts.reserve(&key).expect("first event fires");
//! reservation.commit(); // sent: the key is quiet for 30 min
//!
//! for _ in 0..12 {
//!     assert!(matches!(alerts.check(&key), Decision::Suppressed(_)));
//! }
//! tokio::time::advance(Duration::from_secs(1800)).await;
//!
//! // The key went quiet: its digest is still reported.
//! for (key, digest) in alerts.drain_digests() {
//!     println!("{key}: {} more like this", digest.count);
//!     assert_eq!(digest.count, 12);
//! }
//! # }
//! ```
//!
//! # Design
//!
//! The decision for one key is a pure transition of a small record (when it
//! last fired, the unreported suppressed events, the reservation in flight)
//! given `now`; the store around it is separate, so a distributed store can
//! make the same decisions. The in-memory store shards keys over up to 16
//! `parking_lot` mutexes by hash.
//!
//! Keys with nothing left to remember are forgotten lazily (when room is
//! needed) and by a sweep that some call runs at most once per window, and
//! [`CooldownBuilder::max_keys`] caps the total with a stated eviction policy.
//!
//! # Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | (none) | | the crate has no optional features; [`Metrics`] (prometheus-client) and `tracing` events are always available and cost nothing unless used |
//!
//! # Metrics and tracing
//!
//! [`Metrics`] registers `seawall_cooldown_decisions_total`,
//! `seawall_cooldown_keys` and `seawall_cooldown_evictions_total`. Rolled-back
//! reservations, sweeps and drains are `debug` events; early evictions under
//! `max_keys` pressure are `warn` events. Checks emit nothing.
//!
//! # Time
//!
//! All time comes from `tokio::time`, so tests run a 30-minute window in
//! microseconds with a paused clock.
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

mod builder;
mod cooldown;
mod decision;
mod error;
mod metrics;
#[cfg(feature = "redis")]
mod redis;
mod reservation;
mod state;

pub use builder::{CooldownBuilder, DEFAULT_MAX_KEYS, DEFAULT_NAME, DEFAULT_WINDOW};
pub use cooldown::Cooldown;
pub use decision::{Decision, Digest, Fire, Suppressed};
pub use error::ConfigError;
pub use metrics::Metrics;
#[cfg(feature = "redis")]
pub use redis::{
    DEFAULT_PREFIX, DEFAULT_RESERVATION_TIMEOUT, DEFAULT_TIMEOUT, MIN_DEFAULT_RETENTION,
    RedisCooldown, RedisCooldownBuilder, RedisCooldownError, RedisReservation, UnreachablePolicy,
};
pub use reservation::Reservation;
