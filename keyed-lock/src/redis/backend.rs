//! The Redis backend: leases in Redis, a per-key FIFO in front of it in each process.

use std::fmt::{self, Display};
use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ::redis::{FromRedisValue, ScriptInvocation, Value};
use tokio::runtime::Handle;
use tokio::time::{Instant, sleep_until};

use super::builder::RedisBackendBuilder;
use super::conn::Conn;
use super::failures::Failures;
use super::lease::{LeaseState, RedisLease};
use super::scripts::Scripts;
use super::{RedisBackendError, renew};
use crate::backend::{Grant, LockBackend, Refused, Wait};
use crate::memory::deadline_after;
use crate::{
    Busy, ExtendError, FencingToken, LeaseExpired, LockEvents, MemoryBackend, MemoryLease,
};

/// The longest TTL sent to Redis: about ten years, in milliseconds.
const MAX_TTL_MS: u64 = 10 * 365 * 86_400 * 1000;

/// Leases kept in Redis, shared by every process that uses the same server and prefix.
///
/// Use it with [`KeyedLock`](crate::KeyedLock): `KeyedLock<K, RedisBackend>` has the same
/// methods as the in-memory lock, with fallible signatures (see
/// [the crate docs](crate#redis-backend) for the guarantees). Keys are any `K: Display`; the
/// Redis keys are `<prefix>{<key>}` (the lease) and `<prefix>{<key>}:fence` (the fencing
/// counter), with braces and backslashes in the key escaped (see
/// [`lease_key`](Self::lease_key)), hash-tagged so both live in one Cluster slot: on a Redis Cluster
/// ([`cluster`](Self::cluster)) every script goes to the node that owns its key's slot.
///
/// Cloning is cheap (the connection and the in-process queues are shared).
///
/// # Examples
///
/// ```no_run
/// // no_run: needs a Redis server.
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use seawall_keyed_lock::{KeyedLock, RedisBackend};
///
/// let backend = RedisBackend::builder("redis://127.0.0.1:6379/").auto_renew(true).build()?;
/// let locks = KeyedLock::<String>::builder()
///     .name("users")
///     .ttl(Duration::from_secs(30))
///     .build_with_backend(backend)?;
///
/// let guard = locks.lock(&"alice".to_owned()).await?;     // FIFO in this process
/// let token = guard.token();                               // pass it to the store
/// # let _ = token;
/// drop(guard);                                             // released in the background
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisBackend {
    inner: Arc<Inner>,
}

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackend")
            .field("addr", &self.inner.addr)
            .field("prefix", &self.inner.prefix)
            .field("command_timeout", &self.inner.command_timeout)
            .field("auto_renew", &self.inner.auto_renew)
            .field("backoff", &self.inner.backoff)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    conn: Conn,
    addr: Arc<str>,
    prefix: String,
    command_timeout: Duration,
    auto_renew: bool,
    backoff: (Duration, Duration),
    /// Per-key FIFO queues in this process: only the head waiter contends on Redis.
    local: MemoryBackend<String>,
    local_events: LockEvents,
    nonce: u64,
    seq: AtomicU64,
    rng: AtomicU64,
    pub(crate) runtime: Handle,
    scripts: Scripts,
    /// Backend errors shared with the waiters queued in this process on the same key.
    failures: Arc<Failures>,
}

/// What one acquire script call found.
enum Attempt {
    Granted {
        token: u64,
        value: String,
    },
    Held {
        pttl: Option<Duration>,
        age: Duration,
    },
}

/// What one renewal found.
pub(crate) enum Renewal {
    Renewed {
        sent_at: Instant,
        deadline: Instant,
    },
    /// Another value (or none) in Redis.
    Gone,
    /// Redis extended it, but the local deadline had passed by the time it answered.
    Expired,
    Failed(RedisBackendError),
}

fn ttl_millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis())
        .unwrap_or(u64::MAX)
        .clamp(1, MAX_TTL_MS)
}

/// The margin taken off every lease for clock drift between this host and Redis (as
/// Redlock): 1 % of the TTL plus 2 ms.
fn drift(ttl: Duration) -> Duration {
    ttl / 100 + Duration::from_millis(2)
}

/// Whether a lease of `ttl` (as sent: whole milliseconds) is still valid for some time once
/// the drift margin is taken off.
fn ttl_valid(ttl: Duration) -> bool {
    let sent = Duration::from_millis(ttl_millis(ttl));
    sent > drift(sent)
}

fn lease_deadline(sent_at: Instant, ttl: Duration) -> Instant {
    deadline_after(sent_at, ttl.saturating_sub(drift(ttl)))
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Inner {
    pub(crate) fn new(
        conn: Conn,
        addr: Arc<str>,
        prefix: String,
        command_timeout: Duration,
        auto_renew: bool,
        backoff: (Duration, Duration),
        runtime: Handle,
    ) -> Self {
        let nonce = RandomState::new().hash_one(std::process::id());
        Self {
            conn,
            local_events: LockEvents::new(Arc::from(format!("{addr} local queue")), None),
            addr,
            prefix,
            command_timeout,
            auto_renew,
            backoff,
            local: MemoryBackend::new(16),
            nonce,
            seq: AtomicU64::new(0),
            rng: AtomicU64::new(splitmix(nonce)),
            runtime,
            scripts: Scripts::new(),
            failures: Arc::default(),
        }
    }

    fn lease_key(&self, key: &(dyn Display + Sync)) -> String {
        super::keys::lease_key(&self.prefix, key)
    }

    /// A fresh owner id: the process nonce and a sequence number.
    fn owner(&self) -> String {
        format!(
            "{:016x}.{}",
            self.nonce,
            self.seq.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// A random duration in `[0, cap]`.
    fn jitter(&self, cap: Duration) -> Duration {
        let r = splitmix(self.rng.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed));
        let nanos = u64::try_from(cap.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(r % nanos.saturating_add(1))
    }

    fn error(&self, e: ::redis::RedisError) -> RedisBackendError {
        RedisBackendError::classify(&self.addr, self.command_timeout, e)
    }

    fn unexpected(&self, reply: impl fmt::Debug) -> RedisBackendError {
        RedisBackendError::UnexpectedReply {
            addr: Arc::clone(&self.addr),
            reply: format!("{reply:?}"),
        }
    }

    /// Runs one script call, bounded by the command timeout.
    async fn invoke<T: FromRedisValue>(
        &self,
        invocation: &ScriptInvocation<'_>,
    ) -> Result<T, RedisBackendError> {
        let mut conn = self.conn.clone();
        let start = Instant::now();
        let call = async {
            // `invoke_async` answers NOSCRIPT by loading the script and sending EVALSHA again;
            // a `SCRIPT FLUSH` (or a failover) between that load and the retry makes the retry
            // fail with NOSCRIPT too, so go round again, a bounded number of times.
            let mut reloads = 0;
            let mut stale_retried = false;
            loop {
                match invocation.invoke_async(&mut conn).await {
                    Err(e) if is_noscript(&e) && reloads < NOSCRIPT_RELOADS => reloads += 1,
                    // A timeout long before the client's own timeouts (the command timeout)
                    // could run out is the stale outcome of an earlier connection attempt: the
                    // connection manager hands it to the next caller and reconnects. Nothing
                    // was sent; ask once more on the new connection.
                    Err(e)
                        if e.is_timeout()
                            && !stale_retried
                            && start.elapsed() < self.command_timeout / 2 =>
                    {
                        stale_retried = true;
                    }
                    other => return other,
                }
            }
        };
        match tokio::time::timeout(self.command_timeout, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(self.error(e)),
            Err(_) => Err(RedisBackendError::NoAnswer {
                addr: Arc::clone(&self.addr),
                within: self.command_timeout,
            }),
        }
    }

    async fn try_grant(
        &self,
        lease_key: &str,
        fence_key: &str,
        ttl_ms: u64,
        owner: &str,
    ) -> Result<Attempt, RedisBackendError> {
        let mut inv = self.scripts.acquire.prepare_invoke();
        inv.key(lease_key).key(fence_key).arg(ttl_ms).arg(owner);
        let reply: Vec<Value> = self.invoke(&inv).await?;
        let int = |v: &Value| match v {
            Value::Int(i) => Some(*i),
            _ => None,
        };
        match reply.as_slice() {
            [Value::Int(1), token, value] => {
                let token = int(token).and_then(|t| u64::try_from(t).ok());
                let value = match value {
                    Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
                    Value::SimpleString(s) => Some(s.clone()),
                    _ => None,
                };
                match (token, value) {
                    (Some(token), Some(value)) => Ok(Attempt::Granted { token, value }),
                    _ => Err(self.unexpected(&reply)),
                }
            }
            [Value::Int(0), pttl, age] => {
                let (Some(pttl), Some(age)) = (int(pttl), int(age)) else {
                    return Err(self.unexpected(&reply));
                };
                Ok(Attempt::Held {
                    pttl: u64::try_from(pttl).ok().map(Duration::from_millis),
                    age: Duration::from_micros(u64::try_from(age).unwrap_or(0)),
                })
            }
            _ => Err(self.unexpected(&reply)),
        }
    }

    /// Extends `lease` by `ttl` if it is still ours.
    pub(crate) async fn renew(&self, st: &LeaseState, ttl: Duration) -> Renewal {
        let sent_at = Instant::now();
        let ttl_ms = ttl_millis(ttl);
        let mut inv = self.scripts.extend.prepare_invoke();
        inv.key(&st.lease_key)
            .key(&st.fence_key)
            .arg(&st.value)
            .arg(ttl_ms);
        match self.invoke::<i64>(&inv).await {
            Ok(1) => {
                let deadline = lease_deadline(sent_at, Duration::from_millis(ttl_ms));
                if !st.renewed(deadline) {
                    // The local deadline passed while the call was in flight: the lease is
                    // over for this process even though Redis extended the key (the guard's
                    // release deletes it).
                    st.mark_gone(Instant::now());
                    return Renewal::Expired;
                }
                self.local
                    .set_deadline(st.local.hash(), st.local_token.get(), deadline);
                Renewal::Renewed { sent_at, deadline }
            }
            Ok(_) => {
                st.mark_gone(Instant::now());
                Renewal::Gone
            }
            Err(e) => {
                st.events.backend_error(&e);
                Renewal::Failed(e)
            }
        }
    }

    /// Spawns the release of `lease` (from `Drop`: must not wait).
    fn spawn_release(self: &Arc<Self>, lease: RedisLease) {
        let expired = Instant::now() >= lease.0.deadline();
        let task = ReleaseTask {
            inner: Arc::clone(self),
            lease,
            expired,
            reported: false,
        };
        // If the runtime is gone the task is dropped unrun: its Drop frees the local queue and
        // the Redis lease ends by its TTL.
        drop(self.runtime.spawn(task.run()));
    }

    /// Deletes a lease that an abandoned acquisition may have been granted.
    fn spawn_abandon(self: &Arc<Self>, lease_key: String, owner: String) {
        let inner = Arc::clone(self);
        drop(self.runtime.spawn(async move {
            let mut inv = inner.scripts.abandon.prepare_invoke();
            inv.key(&lease_key).arg(format!(":{owner}"));
            if let Err(e) = inner.invoke::<i64>(&inv).await {
                tracing::debug!(%e, key = %lease_key, "keyed lock: could not clean up an abandoned acquisition; it ends by its TTL");
            }
        }));
    }
}

/// Releases the lease in Redis, then the in-process queue (so the next local waiter finds
/// the Redis key free). Reports the end of the lease exactly once, even if never run.
struct ReleaseTask {
    inner: Arc<Inner>,
    lease: RedisLease,
    expired: bool,
    reported: bool,
}

impl ReleaseTask {
    async fn run(mut self) {
        let st = &self.lease.0;
        let mut inv = self.inner.scripts.release.prepare_invoke();
        inv.key(&st.lease_key).arg(&st.value);
        match self.inner.invoke::<i64>(&inv).await {
            Ok(1) => st.events.released(self.expired),
            Ok(_) => st.events.taken_over(
                st.token,
                Instant::now().saturating_duration_since(st.acquired_at),
            ),
            Err(e) => {
                st.events.backend_error(&e);
                st.events.released(self.expired);
                // The waiters queued behind this guard fail with this error rather than each
                // trying (and waiting) in turn.
                self.inner.failures.record(&st.lease_key, &e);
            }
        }
        self.reported = true;
    }
}

impl Drop for ReleaseTask {
    fn drop(&mut self) {
        let st = &self.lease.0;
        if !self.reported {
            st.events.released(self.expired);
        }
        self.inner
            .local
            .release(&st.local, st.local_token, &self.inner.local_events);
    }
}

/// The in-process queue position of an acquisition; released on drop unless handed to a
/// lease.
struct LocalHold<'a> {
    inner: &'a Inner,
    lease: MemoryLease,
    token: FencingToken,
    armed: bool,
}

impl Drop for LocalHold<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.inner
                .local
                .release(&self.lease, self.token, &self.inner.local_events);
        }
    }
}

/// An acquire script in flight: if dropped before its reply is read (cancelled, timed out,
/// failed), whatever it may have been granted is deleted in the background.
struct InFlight<'a> {
    inner: &'a Arc<Inner>,
    lease_key: &'a str,
    owner: &'a str,
    armed: bool,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.inner
                .spawn_abandon(self.lease_key.to_owned(), self.owner.to_owned());
        }
    }
}

impl RedisBackend {
    /// A builder for a backend on the server at `url` (`redis://host:port/db`,
    /// `redis+unix:///path`). TLS is not built in: the workspace's `redis` dependency has no
    /// TLS feature, so `rediss://` URLs are refused by [`build`](RedisBackendBuilder::build);
    /// use a TLS proxy or tunnel.
    ///
    /// An invalid URL is reported by [`build`](RedisBackendBuilder::build) (field `url`).
    pub fn builder(url: impl AsRef<str>) -> RedisBackendBuilder {
        RedisBackendBuilder::from_url(url.as_ref())
    }

    /// A builder for a backend on an already configured `redis::Client`.
    pub fn builder_with_client(client: ::redis::Client) -> RedisBackendBuilder {
        RedisBackendBuilder::from_client(client)
    }

    /// A builder for a backend on a Redis Cluster, given the URLs of some of its nodes (the
    /// client discovers the others). Each script goes to the node that owns its keys' slot,
    /// following `MOVED`/`ASK` redirections; a lock key's lease and fence share one slot
    /// (see [the crate docs](crate#redis-cluster)).
    ///
    /// Connects on first use, like [`builder`](Self::builder). Invalid URLs or an empty list
    /// are reported by [`build`](RedisBackendBuilder::build) (field `nodes`).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use seawall_keyed_lock::RedisBackend;
    ///
    /// let backend = RedisBackend::cluster(["redis://10.0.0.1:6379/", "redis://10.0.0.2:6379/"])
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(backend.addr(), "cluster 10.0.0.1:6379,10.0.0.2:6379");
    ///
    /// let none: [&str; 0] = [];
    /// assert_eq!(RedisBackend::cluster(none).build().unwrap_err().field(), "nodes");
    /// # }
    /// ```
    pub fn cluster<S: AsRef<str>>(nodes: impl IntoIterator<Item = S>) -> RedisBackendBuilder {
        RedisBackendBuilder::from_cluster_urls(nodes)
    }

    /// The shortest TTL the backend grants or extends a lease for: 3 ms. TTLs are sent in
    /// whole milliseconds and every lease loses a clock-drift margin of 1 % + 2 ms, so a
    /// shorter one would be expired when granted. A shorter default TTL is a `ConfigError`
    /// (`ttl`) at build time; a shorter per-call TTL is
    /// [`RedisBackendError::InvalidTtl`], before anything is sent.
    pub const MIN_TTL: Duration = Duration::from_millis(3);

    fn invalid_ttl(&self, ttl: Duration) -> Option<RedisBackendError> {
        (!ttl_valid(ttl)).then(|| RedisBackendError::InvalidTtl {
            addr: Arc::clone(&self.inner.addr),
            ttl,
        })
    }

    pub(crate) fn from_inner(inner: Inner) -> Self {
        Self {
            inner: Arc::new(inner),
        }
    }

    /// The server, as `host:port` (as errors name it); for a cluster `cluster ` followed by
    /// the seed nodes, comma-separated.
    #[must_use]
    pub fn addr(&self) -> &str {
        &self.inner.addr
    }

    /// The prefix of every Redis key this backend writes.
    #[must_use]
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// The bound on every Redis call.
    #[must_use]
    pub fn command_timeout(&self) -> Duration {
        self.inner.command_timeout
    }

    /// Whether guards renew their lease in the background.
    #[must_use]
    pub fn auto_renew(&self) -> bool {
        self.inner.auto_renew
    }

    /// The Redis key of `key`'s lease: `<prefix>{<tag>}`; its fencing counter is that plus
    /// `:fence`.
    ///
    /// The hash tag `<tag>` is `key`'s `Display` output with `\` written `\\`, `{` written
    /// `\(` and `}` written `\)`; the empty key is written `\e`. So the tag is never empty
    /// and holds no brace (both Redis keys of a lock key share one Cluster slot, whatever the
    /// key), and distinct keys get distinct Redis keys.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let backend = seawall_keyed_lock::RedisBackend::builder("redis://127.0.0.1/").build().unwrap();
    /// assert_eq!(backend.lease_key(&42), "seawall:lock:{42}");
    /// assert_eq!(backend.lease_key(&"a{b}"), r"seawall:lock:{a\(b\)}");
    /// assert_eq!(backend.lease_key(&""), r"seawall:lock:{\e}");
    /// # }
    /// ```
    #[must_use]
    pub fn lease_key(&self, key: &impl Display) -> String {
        super::keys::lease_key(&self.inner.prefix, key)
    }

    /// The number of keys that this process holds or waits for (its in-process queues).
    /// `0` when no guard of this backend is alive and nobody waits: cancelled waiters leave
    /// nothing behind. Releases run in the background, so it drops to `0` shortly after the
    /// last guard is dropped.
    #[must_use]
    pub fn local_len(&self) -> usize {
        self.inner.local.len()
    }

    async fn acquire_inner(
        &self,
        key: &(dyn Display + Sync),
        ttl: Duration,
        wait: Wait,
        events: &LockEvents,
    ) -> Result<Grant<RedisLease>, Refused<RedisBackendError>> {
        if let Some(e) = self.invalid_ttl(ttl) {
            return Err(Refused::Backend(e));
        }
        let inner = &self.inner;
        let start = Instant::now();
        let give_up = match wait {
            Wait::For(d) => Some((deadline_after(start, d), d)),
            _ => None,
        };
        let lease_key = inner.lease_key(key);
        let fence_key = format!("{lease_key}:fence");

        // 1. The in-process queue: FIFO per key, and only its head talks to Redis.
        let mut contended = false;
        let mut registration = None;
        let local = match inner
            .local
            .try_acquire(&lease_key, Duration::MAX, &inner.local_events)
        {
            Ok(grant) => grant,
            Err(busy) => {
                if wait == Wait::No {
                    events.busy();
                    return Err(Refused::Busy(busy));
                }
                contended = true;
                registration = Some(inner.failures.register(&lease_key));
                match inner
                    .local
                    .acquire(&lease_key, Duration::MAX, wait, &inner.local_events)
                    .await
                {
                    Ok(grant) => grant,
                    Err(Refused::Busy(busy)) => {
                        events.busy();
                        return Err(Refused::Busy(busy));
                    }
                    Err(Refused::TimedOut) => {
                        events.timed_out(give_up.map_or(Duration::ZERO, |(_, d)| d));
                        return Err(Refused::TimedOut);
                    }
                    Err(Refused::Backend(never)) => match never {},
                }
            }
        };
        let mut local = LocalHold {
            inner,
            lease: local.lease,
            token: local.token,
            armed: true,
        };
        // A call on this key failed while this waiter was queued: fail with it at once (the
        // next waiter then does the same), rather than starting another full command timeout.
        if registration.is_some()
            && let Some(e) = inner.failures.failed_since(&lease_key, start)
        {
            events.backend_error(&e);
            return Err(Refused::Backend(e));
        }

        // 2. Redis, with jittered exponential backoff while another process holds the key.
        let ttl_ms = ttl_millis(ttl);
        let ttl = Duration::from_millis(ttl_ms);
        let mut cap = inner.backoff.0;
        loop {
            let owner = inner.owner();
            let sent_at = Instant::now();
            let mut in_flight = InFlight {
                inner,
                lease_key: &lease_key,
                owner: &owner,
                armed: true,
            };
            let grant = inner.try_grant(&lease_key, &fence_key, ttl_ms, &owner);
            let attempt = match give_up {
                // `lock_timeout(d)` returns by `d`: an attempt still in flight then is
                // abandoned (`in_flight` deletes whatever it may have been granted).
                Some((at, waited)) => {
                    if sent_at >= at {
                        in_flight.armed = false; // nothing was sent
                        events.timed_out(waited);
                        return Err(Refused::TimedOut);
                    }
                    match tokio::time::timeout_at(at, grant).await {
                        Ok(attempt) => attempt,
                        Err(_) => {
                            events.timed_out(waited);
                            return Err(Refused::TimedOut);
                        }
                    }
                }
                None => grant.await,
            };
            in_flight.armed = attempt.is_err();
            drop(in_flight);
            match attempt {
                Err(e) => {
                    events.backend_error(&e);
                    inner.failures.record(&lease_key, &e);
                    return Err(Refused::Backend(e));
                }
                Ok(Attempt::Granted { token, value }) => {
                    let deadline = lease_deadline(sent_at, ttl);
                    inner
                        .local
                        .set_deadline(local.lease.hash(), local.token.get(), deadline);
                    local.armed = false;
                    events.granted(contended.then(|| start.elapsed()));
                    let token = FencingToken::new(token);
                    let lease = RedisLease(Arc::new(LeaseState::new(
                        lease_key,
                        fence_key,
                        value,
                        token,
                        ttl,
                        sent_at,
                        deadline,
                        (local.lease, local.token),
                        events.clone(),
                    )));
                    if inner.auto_renew {
                        renew::spawn(inner, &lease);
                    }
                    return Ok(Grant::new(lease, token, sent_at, deadline));
                }
                Ok(Attempt::Held { pttl, age }) => {
                    let now = Instant::now();
                    if wait == Wait::No {
                        events.busy();
                        return Err(Refused::Busy(Busy {
                            held_since: now.checked_sub(age).unwrap_or(now),
                            expires_at: deadline_after(now, pttl.unwrap_or(Duration::ZERO)),
                        }));
                    }
                    contended = true;
                    if let Some((at, waited)) = give_up
                        && now >= at
                    {
                        events.timed_out(waited);
                        return Err(Refused::TimedOut);
                    }
                    let mut delay = inner.jitter(cap).max(Duration::from_millis(1));
                    if let Some(pttl) = pttl {
                        delay = delay.min(pttl + Duration::from_millis(1));
                    }
                    let mut until = now + delay;
                    if let Some((at, _)) = give_up {
                        // The last attempt goes out early enough for its reply to arrive
                        // before the give-up time (twice this round trip, plus 1 ms).
                        let rtt = now.saturating_duration_since(sent_at);
                        let last = at
                            .checked_sub(rtt * 2 + Duration::from_millis(1))
                            .unwrap_or(now);
                        until = until.min(last.max(now));
                    }
                    sleep_until(until).await;
                    cap = (cap * 2).min(inner.backoff.1);
                }
            }
        }
    }

    async fn extend_inner(
        &self,
        lease: &RedisLease,
        token: FencingToken,
        ttl: Duration,
    ) -> Result<Instant, ExtendError<RedisBackendError>> {
        if let Some(e) = self.invalid_ttl(ttl) {
            return Err(ExtendError::Backend(e));
        }
        let st = &lease.0;
        let deadline = st.deadline();
        if st.is_gone() || st.is_released() || Instant::now() >= deadline {
            return Err(ExtendError::Expired(LeaseExpired {
                token,
                expired_at: deadline,
            }));
        }
        match self.inner.renew(st, ttl).await {
            Renewal::Renewed { deadline, .. } => Ok(deadline),
            Renewal::Gone | Renewal::Expired => Err(ExtendError::Expired(LeaseExpired {
                token,
                expired_at: st.deadline(),
            })),
            Renewal::Failed(e) => Err(ExtendError::Backend(e)),
        }
    }

    async fn deadline_inner(
        &self,
        lease: &RedisLease,
    ) -> Result<Option<Instant>, RedisBackendError> {
        let st = &lease.0;
        if st.is_gone() || st.is_released() {
            return Ok(None);
        }
        let mut inv = self.inner.scripts.check.prepare_invoke();
        inv.key(&st.lease_key).arg(&st.value);
        match self.inner.invoke::<i64>(&inv).await {
            Ok(-3) => {
                st.mark_gone(Instant::now());
                Ok(None)
            }
            Ok(_) => Ok(Some(st.deadline())),
            Err(e) => {
                st.events.backend_error(&e);
                Err(e)
            }
        }
    }
}

impl<K> LockBackend<K> for RedisBackend
where
    K: Display + Send + Sync + 'static,
{
    type Lease = RedisLease;
    type Error = RedisBackendError;

    fn acquire(
        &self,
        key: &K,
        ttl: Duration,
        wait: Wait,
        events: &LockEvents,
    ) -> impl Future<Output = Result<Grant<RedisLease>, Refused<RedisBackendError>>> + Send {
        self.acquire_inner(key, ttl, wait, events)
    }

    fn check_ttl(&self, ttl: Duration) -> Result<(), crate::ConfigError> {
        if ttl_valid(ttl) {
            Ok(())
        } else {
            Err(crate::ConfigError::new(
                "ttl",
                "too short for the redis backend: a lease needs at least 3ms (the clock-drift margin is 1 % + 2 ms)",
            ))
        }
    }

    fn release(&self, lease: &RedisLease, _token: FencingToken, _events: &LockEvents) {
        if lease.0.start_release() {
            self.inner.spawn_release(lease.clone());
        }
    }

    fn extend(
        &self,
        lease: &RedisLease,
        token: FencingToken,
        ttl: Duration,
    ) -> impl Future<Output = Result<Instant, ExtendError<RedisBackendError>>> + Send {
        self.extend_inner(lease, token, ttl)
    }

    fn deadline(
        &self,
        lease: &RedisLease,
        _token: FencingToken,
    ) -> impl Future<Output = Result<Option<Instant>, RedisBackendError>> + Send {
        self.deadline_inner(lease)
    }

    fn current_deadline(&self, lease: &RedisLease) -> Option<Instant> {
        Some(lease.0.deadline())
    }

    fn lost(
        &self,
        lease: &RedisLease,
        _token: FencingToken,
        _deadline: Instant,
    ) -> impl Future<Output = Instant> + Send {
        lease.0.lost()
    }
}

/// How many more times a script call is sent after NOSCRIPT beyond the one reload
/// `invoke_async` does itself.
const NOSCRIPT_RELOADS: u32 = 2;

fn is_noscript(e: &::redis::RedisError) -> bool {
    e.kind() == ::redis::ErrorKind::Server(::redis::ServerErrorKind::NoScript)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_ttl_is_the_shortest_valid_ttl() {
        assert!(ttl_valid(RedisBackend::MIN_TTL));
        assert!(!ttl_valid(RedisBackend::MIN_TTL - Duration::from_nanos(1)));
        assert!(!ttl_valid(Duration::ZERO));
        assert!(ttl_valid(Duration::from_secs(3600)));
        let sent = Duration::from_millis(ttl_millis(RedisBackend::MIN_TTL));
        assert!(lease_deadline(Instant::now(), sent) > Instant::now());
    }
}
