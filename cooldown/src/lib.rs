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
//! let key = "db-down";
//!
//! // The send may fail: reserve, send, commit.
//! let reservation = alerts.reserve(key).expect("first event fires");
//! reservation.commit(); // sent: the key is quiet for 30 min
//!
//! for _ in 0..12 {
//!     assert!(matches!(alerts.check(key), Decision::Suppressed(_)));
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
//! given `now`; the store around it is separate, and the Redis backend (feature
//! `redis`) makes the same decisions in its scripts. The in-memory store shards
//! keys over up to 16 `parking_lot` mutexes by hash. Lookups take any `&Q` the
//! key borrows as (`&str` for `String` keys), so checking a tracked key
//! allocates nothing.
//!
//! When several threads storm one key, its shard's mutex is contended on
//! every call. A plain [`Cooldown::check`] suppressed inside its key's window
//! that finds the shard's mutex held gives the key a *hot cell*: later plain
//! checks of that key count in it with atomic adds (one of them on a line
//! the threads share) and no lock, and still get the exact `suppressed`
//! number. Everything else that reads or changes the key (and every sweep,
//! drain and eviction) folds the cell back into the record first. A shard
//! has at most one cell.
//!
//! Keys with nothing left to remember are forgotten lazily (when room is
//! needed) and by a sweep that some call runs at most once per window, and
//! [`CooldownBuilder::max_keys`] caps the total with a stated eviction policy.
//!
//! # Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `redis` | no | `RedisCooldown`: the cooldown's state in Redis (one server or a Redis Cluster), shared by every replica (the `redis` crate 1.x, tokio, connection manager / cluster connection, scripts); see [Redis backend](#redis-backend) and [Redis Cluster](#redis-cluster) |
//!
//! [`Metrics`] (prometheus-client) and `tracing` events are always available
//! and cost nothing unless used.
//!
//! # Redis backend
//!
//! With the `redis` feature, `RedisCooldown` makes the same decisions as
//! [`Cooldown`] with its state in Redis, so a bot running as several
//! replicas sends each alert once, not once per replica. Its methods are
//! `async` (`check(&key).await`, `reserve(&key).await` with an awaited
//! `commit()` / `rollback()`, `drain_digests().await`); keys are written with
//! `Display` and read back with `FromStr`; no payload is kept (it would need
//! serializing).
//!
//! - **Shared across replicas**: per key, the window (a key set with `PX` =
//!   the window, or holding a reservation token), the pending digest (count,
//!   first and last suppressed times, in a hash) and `last_fired`; a sorted
//!   set indexes keys with a pending digest by window end, so
//!   `drain_digests` finds quiet keys without `SCAN`. Every decision is one
//!   Lua script (`EVALSHA`, reloaded on `NOSCRIPT`), so deciding and counting
//!   are atomic across replicas. Nothing is cached locally.
//! - **Time source**: the Redis server's clock (`TIME` inside the scripts),
//!   so replicas with skewed clocks agree. Times in a `Fire` or `Digest` are
//!   converted to local `tokio::time::Instant`s from the server's "now" in
//!   each reply (accurate to a round trip).
//! - **A crashed sender** holds its key only for the reservation timeout
//!   (default 60 s), not for the window; a dropped reservation rolls back on
//!   a spawned task.
//! - **When Redis does not answer**, every call is bounded by a timeout
//!   (default 1 s) and the `UnreachablePolicy` decides: `Fire` (default: an
//!   alert must not be lost because the throttle's store is down) or
//!   `Suppress`. The decision is marked (`Fire::degraded`,
//!   `Suppressed::degraded`), counted in `seawall_cooldown_degraded_total`
//!   and logged (`warn` when the outage begins, `info` when it ends);
//!   `try_check` returns the `RedisCooldownError`
//!   instead. Critical events always fire.
//! - **A lost reply** (the script ran, the connection broke or the answer
//!   came too late) is not a lost decision: a decision (`check`,
//!   `check_critical`, `reserve`) that gets no reply within two thirds of
//!   the timeout, or whose connection fails, is sent once more with the same
//!   call id within the rest of the timeout, and the script answers a
//!   repeated id with the reply it gave the first time (the last fire's and
//!   the last suppression's replies are kept in the key's state hash). What
//!   can still be lost: if the retry fails too (Redis unreachable for the
//!   rest of the timeout) after the first attempt ran a fire, the digest
//!   that fire took out of Redis is gone, and under the `Suppress` policy
//!   the window has started in Redis while no replica fired (that event is
//!   not sent, the next one after the window is); a suppression retried
//!   after another suppression of the same key came in between is counted
//!   twice.
//! - **Bounded**: every key written expires: windows with the window (or the
//!   reservation timeout), state and index `retention` after the window ends
//!   (default: the window, at least 10 min), so digests no drain took are
//!   dropped then and nothing piles up. `build()` rejects durations Redis or
//!   the scripts' arithmetic cannot hold: `window`, `reservation_timeout` and
//!   `retention` at most `MAX_REDIS_DURATION` (10 years), `retention` at least
//!   `MIN_RETENTION` (1 s).
//! - **Redis Cluster**: all keys of one cooldown share the hash tag `{name}`
//!   (`seawall:cooldown:{alerts}:w:db-down`), so every script touches one
//!   slot; see [Redis Cluster](#redis-cluster).
//!
//! Its tests need a server and a cluster: `SEAWALL_REDIS_URL=redis://127.0.0.1:6379/
//! SEAWALL_REDIS_CLUSTER_URLS=redis://127.0.0.1:7001/,redis://127.0.0.1:7002/,redis://127.0.0.1:7003/
//! cargo test -p seawall-cooldown --all-features -- --ignored` (or `bash .ci/redis-tests`,
//! which starts throwaway ones).
//!
//! # Redis Cluster
//!
//! `RedisCooldown::cluster(["redis://10.0.0.1:6379/", ...])`
//! runs the cooldown on a Redis Cluster: the `redis` crate's cluster
//! connection (made on first use, like the single-server one) learns the slot
//! map from any listed node and sends each script to the master that owns its
//! keys' slot, following `MOVED`/`ASK` redirections.
//!
//! - **One cooldown = one slot.** Every key of a cooldown (the window and
//!   state keys of each of its keys, and its digest index) carries the hash
//!   tag `{name}`, and every script names all its keys in `KEYS[]` (nothing
//!   scans), so each decision is still one atomic script on one master. The
//!   trade-off: one cooldown lives on one master; spread load over several
//!   cooldown names, not over keys. (So `prefix` must not contain `{` or `}`.)
//! - **Timeouts and outages** are as above: the `command_timeout` bounds each call
//!   whole (connecting, redirections and the client's few retries included);
//!   errors name the seed nodes (`redis cluster at 10.0.0.1:6379,10.0.0.2:6379
//!   unreachable: ...`, `RedisCooldownError::addr` is `cluster 10.0.0.1:6379,...`)
//!   and the `UnreachablePolicy` decides.
//! - **Failover.** Redis replicates asynchronously. If a cooldown's master
//!   fails before its last writes reached the replica that takes over, those
//!   writes are lost: a window that had just started is gone (the key can
//!   fire again: a duplicate alert), a reservation is gone (another replica
//!   can win the key while the first is still sending), and recently counted
//!   suppressions are missing from the next digest. The same happens on a
//!   single server restarted without persistence. While the cluster elects a
//!   new master, calls fail (`Unreachable`, `Timeout`, or a `CLUSTERDOWN` /
//!   `TRYAGAIN` `Server` error) and the policy decides.
//!
//! # Metrics and tracing
//!
//! [`Metrics`] registers `seawall_cooldown_decisions_total`,
//! `seawall_cooldown_keys` and `seawall_cooldown_evictions_total` (and, with
//! the `redis` feature, `seawall_cooldown_degraded_total`). Rolled-back
//! reservations, sweeps and drains are `debug` events; early evictions under
//! `max_keys` pressure are `warn` events. Checks emit nothing.
//!
//! # Time
//!
//! All time comes from `tokio::time`, so tests run a 30-minute window in
//! microseconds with a paused clock.
//! The Redis backend is the exception by necessity: its windows run on the
//! Redis server's clock.
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
mod clock;
mod cooldown;
mod decision;
mod error;
mod hot;
mod metrics;
#[cfg(feature = "redis")]
mod redis;
mod reservation;
mod state;
mod store;
mod sync;

pub use builder::{
    CooldownBuilder, DEFAULT_MAX_KEYS, DEFAULT_NAME, DEFAULT_WINDOW, MAX_MAX_KEYS, MAX_WINDOW,
};
pub use cooldown::Cooldown;
pub use decision::{Decision, Digest, Fire, Suppressed};
pub use error::ConfigError;
pub use metrics::Metrics;
#[cfg(feature = "redis")]
pub use redis::{
    DEFAULT_COMMAND_TIMEOUT, DEFAULT_PREFIX, DEFAULT_RESERVATION_TIMEOUT, MAX_REDIS_DURATION,
    MIN_DEFAULT_RETENTION, MIN_RETENTION, RedisCooldown, RedisCooldownBuilder, RedisCooldownError,
    RedisReservation, UnreachablePolicy,
};
pub use reservation::Reservation;
