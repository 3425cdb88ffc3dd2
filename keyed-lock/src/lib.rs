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
//! # Order across tasks, and borrowed keys
//!
//! [`KeyedLock::lock`] joins the key's queue when its future is first polled. To keep
//! arrival order when each message is handled in its own spawned task, take the place when
//! the message arrives with [`KeyedLock::enqueue`]: the returned [`Enqueued`] holds its place
//! in the FIFO from the call and is `'static + Send`.
//!
//! Lookups take any `&Q` the key borrows as: `locks.lock("alice")` on a `KeyedLock<String>`
//! allocates nothing when the key is present (creating an entry clones it once).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use seawall_keyed_lock::KeyedLock;
//!
//! let locks = KeyedLock::<String>::new();
//! let mut tasks = Vec::new();
//! for seq in 0..3 {
//!     let place = locks.enqueue("alice"); // arrival order is decided here
//!     tasks.push(tokio::spawn(async move { (place.await.token(), seq) }));
//! }
//! let mut served = Vec::new();
//! for t in tasks {
//!     served.push(t.await.unwrap());
//! }
//! served.sort();
//! assert_eq!(served.iter().map(|(_, seq)| *seq).collect::<Vec<_>>(), [0, 1, 2]);
//! # }
//! ```
//!
//! # Features
//!
//! | feature | default | what |
//! | --- | --- | --- |
//! | `redis` | no | `RedisBackend`: leases in Redis (one server or a Redis Cluster), shared by every replica ([`redis`](https://docs.rs/redis) 1.x, tokio) — see [Redis backend](#redis-backend) and [Redis Cluster](#redis-cluster) |
//!
//! Metrics ([`Metrics`], prometheus-client) and `tracing` events are always available and
//! cost nothing when unused.
//!
//! # Backends
//!
//! The in-memory [`MemoryBackend`] is the default. The guard, TTL and fencing logic sit on the
//! [`LockBackend`] trait; [`KeyedLock::acquire`], [`Guard::try_extend`] and [`Guard::run`]
//! work on every backend. A backend that talks to a server can fail: its
//! [`Error`](LockBackend::Error) comes back as [`Refused::Backend`] / [`ExtendError::Backend`].
//!
//! # Time
//!
//! Lease instants ([`Guard::acquired_at`], [`Guard::deadline`], [`Busy`]) are
//! `tokio::time::Instant`s, and a paused test clock drives them: on a `current_thread` runtime
//! (the only kind tokio pauses) the in-memory backend reads `tokio::time::Instant::now()`.
//! Elsewhere (a multi-thread runtime's tasks, no runtime) it reads the CPU's time-stamp counter,
//! calibrated once per process against the monotonic clock (the first `KeyedLock` built
//! calibrates it, 0.5 to 200 ms) and placed on tokio's timeline: about 10 ns instead of a
//! 16-23 ns `clock_gettime`, and within parts per million of tokio's clock.
//!
//! # Redis backend
//!
//! With the `redis` feature, `KeyedLock<K, RedisBackend>` (any `K: Display`) locks across
//! processes. It has the in-memory lock's methods (`lock`, `lock_with_ttl`, `try_lock`,
//! `lock_timeout`, `with_lock`, `Guard::extend`, `Guard::lost`) with fallible signatures:
//! every call returns a `RedisBackendError` naming the server when Redis is unreachable
//! (`redis at 10.0.0.5:6379 unreachable: Connection refused`), does not answer within the
//! command timeout (`did not answer within 1s`, default 1 s, connecting included), or answers with
//! an error. Nothing panics and nothing hangs. `try_lock` is `async` there: it asks Redis.
//!
//! ```no_run
//! // no_run: needs a Redis server.
//! # #[cfg(feature = "redis")]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use seawall_keyed_lock::{KeyedLock, RedisBackend};
//!
//! let backend = RedisBackend::builder("redis://127.0.0.1:6379/").auto_renew(true).build()?;
//! let locks = KeyedLock::<u64>::builder()
//!     .name("users")
//!     .ttl(Duration::from_secs(30))
//!     .build_with_backend(backend)?;
//! let guard = locks.lock(&42).await?;            // Err(RedisBackendError) if Redis is down
//! let token = guard.token();                     // send it with every write
//! # let _ = token;
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "redis"))]
//! # fn main() {}
//! ```
//!
//! **What it guarantees.** It is a *lease*, not a mutex. A grant is valid until a deadline
//! computed on this host's monotonic clock: the instant *before* the acquire was sent, plus the
//! TTL, minus a drift margin of 1 % + 2 ms (as Redlock); so TTLs shorter than 3 ms
//! (`RedisBackend::MIN_TTL`) are refused: at build time for the lock's default TTL
//! (`ConfigError`, field `ttl`), per call with `RedisBackendError::InvalidTtl`. Redis expires the key on its own clock
//! at least that late, so two holders never overlap *as long as both clocks run at about the
//! same rate* and the process is not paused (GC-like stalls, a suspended VM) past its deadline
//! without looking. A holder that may stall must pass its [`FencingToken`] to the store and let
//! the store reject lower tokens. [`Guard::lost`] resolves at the local deadline (or earlier,
//! see auto-renew); [`Guard::is_expired`] and [`Guard::deadline`] read the same local state.
//!
//! **Fencing tokens.** One Lua script grants the lease and computes the token:
//! `max(fence counter + 1, the server's TIME in µs)`. The counter lives next to the lease (and
//! an hour longer). Because of the server time, tokens keep increasing even after Redis lost
//! the counter (a restart without persistence, a failover to a replica that missed the last
//! writes) — provided the clock of the server that grants next reads later than the clock
//! that granted the last token did. That fails if the server's clock stepped back, or after
//! a failover to a replica whose clock is behind the old primary's by more than the time
//! between the two grants: a token can then be *lower* than one already handed out, and a
//! store that rejects lower tokens would reject the new holder instead of the old one (keep
//! the servers' clocks synchronised, e.g. NTP, and let a failover take longer than their
//! skew). Tokens are therefore large
//! (about 1.7 × 10¹⁵) and not dense.
//!
//! **Atomicity and ownership.** Acquire is `SET NX PX` plus the token in one script; release
//! and extend are compare-the-value-then-`DEL` / -`PEXPIRE` scripts: the lease value is
//! `<token>:<granted at>:<owner>`, where the owner is a random per-process nonce and a
//! per-attempt counter, so a stale holder can never release or extend someone else's lease.
//! Scripts are sent with `EVALSHA`; a server that lost its script cache (`NOSCRIPT`, after a
//! restart or `SCRIPT FLUSH`) gets them loaded again transparently.
//!
//! **Waiting and fairness.** In each process, waiters for a key queue in a FIFO in front of
//! Redis (the in-memory lock), so only the head of the queue talks to Redis and one process's
//! waiters are served in arrival order — one user's messages stay in order on one replica.
//! Across processes there is no order: the head waiter retries with full-jitter exponential
//! backoff (2 ms doubling to 100 ms by default, `RedisBackendBuilder::backoff`),
//! never sleeping past the holder's remaining TTL that the script returns. No busy polling,
//! no pub/sub. `lock_timeout(d)` returns by `d`: its last attempt is sent two round trips
//! before the give-up time, and an attempt still in flight at that time is abandoned.
//!
//! **Release.** Dropping a guard must not block, so the release script runs in a task spawned
//! on the runtime the backend was built in; the next waiter in the process is woken after it
//! ran. A guard dropped after that runtime shut down is not released in Redis: its lease ends
//! by its TTL. A `try_lock` right after dropping a guard may still see `Busy`; `lock` and
//! `lock_timeout` wait for the release.
//!
//! **Auto-renew** (`RedisBackendBuilder::auto_renew(true)`, off by default): a
//! watchdog task per guard extends the lease by its TTL every TTL/3 and stops when the guard
//! is dropped. If a renewal finds the lease gone (Redis restarted without persistence, or the
//! lease expired and another holder took it), `lost()` resolves at once and `extend` fails.
//! If Redis cannot be reached, it keeps trying until the local deadline, then `lost()`
//! resolves and the watchdog stops: a lease whose local deadline passed is never renewed
//! again (neither by the watchdog nor by `extend`, even if Redis still had the key). A guard that is leaked (`mem::forget`) with auto-renew keeps its key until the
//! process exits.
//!
//! **When Redis is unreachable** every call fails within the command timeout with a
//! `RedisBackendError`, counted in `seawall_keyed_lock_backend_errors_total` and logged as a
//! `warn` event. Waiters queued in one process on a key share the head's fate: when the call
//! of the head of the queue (or the release of the guard they wait for) fails, every waiter
//! already queued behind it fails at once with the same error, instead of each then sending
//! its own call. So a call fails at most one command timeout after it started, or after the
//! holder it waited for released the key (time spent waiting for a live holder is not bounded:
//! use `lock_timeout`). Held guards keep their local deadline; without auto-renew they do not notice
//! the outage. An acquisition cancelled (or timed out) while its grant was in flight deletes
//! that grant in the background, or it ends by its TTL.
//!
//! **Keys.** The keys are `<prefix>{<key>}` (the lease) and `<prefix>{<key>}:fence` (default
//! prefix `seawall:lock:`); the hash tag puts both in the same Cluster slot, as a script
//! touching both requires. In the tag, `\` is written `\\`, `{` is written `\(` and `}` is
//! written `\)`, and the empty key is written `\e` (`RedisBackend::lease_key`): the tag is
//! never empty nor cut short, and distinct keys get distinct Redis keys. Every script names all its keys in `KEYS[]`; nothing scans.
//!
//! # Redis Cluster
//!
//! `RedisBackend::cluster(["redis://10.0.0.1:6379/", ...])` builds the backend on a Redis
//! Cluster: the client (the `redis` crate's cluster connection, made on first use, like the
//! single-server one) learns the slot map from any listed node and sends each script to the
//! master that owns its lock key's slot, following `MOVED`/`ASK` redirections. Everything
//! above holds per key: one lock key is one slot, so its lease and fence counter live on one
//! master and each operation is still one atomic script there; different keys spread over the
//! masters. The command timeout bounds each call whole (connecting, redirections and the
//! cluster client's few retries included); an unreachable cluster fails like an unreachable
//! server, naming the seed nodes (`redis cluster at 10.0.0.1:6379,10.0.0.2:6379 unreachable:
//! ...`, `RedisBackendError::addr` is `cluster 10.0.0.1:6379,...`).
//!
//! Every key works on a cluster, including an empty one or one with braces: they are
//! escaped in the hash tag (see **Keys** above), so its two Redis keys always share a slot.
//!
//! **Failover.** Redis replicates asynchronously. If the master of a key's slot fails before
//! a grant reached its replica, the promoted replica does not have the lease, and another
//! process can be granted the same key while the first still holds it: two holders, as after
//! a restart without persistence. The fencing token still increases: the new grant's token is
//! at least the new master's `TIME` in µs, which is past the old grant's as long as the two
//! masters' clocks are not further apart than the time between the two grants (NTP keeps them
//! within milliseconds). So a store that rejects lower tokens still rejects the old holder's
//! writes; with auto-renew, the old holder's next renewal finds the lease gone and
//! [`Guard::lost`] resolves. During a failover or a slot migration calls may fail
//! (`Unreachable`, `Timeout`, or a `TRYAGAIN`/`CLUSTERDOWN` `Server` error) until the cluster
//! settles; nothing hangs past the command timeout.
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
mod builder;
// Byte for byte the cooldown's `clock.rs` (`.ci/run` compares them): this crate reads
// `Clock::now` (tokio's now, or its TSC stand-in on a multi-thread runtime), not ticks.
#[allow(dead_code)]
mod clock;
mod enqueued;
mod error;
mod guard;
mod lock;
mod memory;
mod metrics;
#[cfg(feature = "redis")]
mod redis;
mod token;

pub use backend::{Grant, LockBackend, Refused, Wait};
pub use builder::{DEFAULT_NAME, DEFAULT_TTL, KeyedLockBuilder, MAX_SHARDS};
pub use enqueued::Enqueued;
pub use error::{
    Busy, ConfigError, ExtendError, LeaseExpired, LeaseLost, LockTimeoutError, Timeout,
    TryLockError, WithLockError,
};
pub use guard::Guard;
pub use lock::KeyedLock;
pub use memory::{MemoryBackend, MemoryLease};
pub use metrics::{LockEvents, Metrics};
pub use token::FencingToken;

#[cfg(feature = "redis")]
#[doc(inline)]
pub use crate::redis::{
    DEFAULT_COMMAND_TIMEOUT, DEFAULT_PREFIX, RedisBackend, RedisBackendBuilder, RedisBackendError,
    RedisLease,
};
