//! The Redis backend: leases in Redis, a per-key FIFO in front of it in each process.

use std::fmt::{self, Display};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::builder::RedisBackendBuilder;
use super::inner::{Inner, Renewal};
use super::lease::RedisLease;
use super::ttl::ttl_valid;
use super::{RedisBackendError, acquire};
use crate::backend::{Grant, LockBackend, Refused, Wait};
use crate::{ExtendError, FencingToken, LeaseExpired, LockEvents};

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
/// let guard = locks.lock("alice").await?;                  // FIFO in this process
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
            .field("addr", self.inner.addr())
            .field("prefix", &self.inner.prefix)
            .field("command_timeout", &self.inner.client.command_timeout())
            .field("auto_renew", &self.inner.auto_renew)
            .field("backoff", &self.inner.backoff)
            .finish_non_exhaustive()
    }
}

impl RedisBackend {
    /// A builder for a backend on the server at `url` (`redis://host:port/db`,
    /// `redis+unix:///path`). TLS is not built in: the workspace's `redis` dependency has no
    /// TLS feature, so `rediss://` URLs are refused by [`build`](RedisBackendBuilder::build);
    /// use a TLS proxy or tunnel.
    ///
    /// An invalid URL is reported by [`build`](RedisBackendBuilder::build) (field `url`).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use seawall_keyed_lock::RedisBackend;
    /// let backend = RedisBackend::builder("redis://127.0.0.1:6379/0").build().unwrap();
    /// assert_eq!(backend.addr(), "127.0.0.1:6379");
    /// assert_eq!(RedisBackend::builder("http://nope").build().unwrap_err().field(), "url");
    /// # }
    /// ```
    pub fn builder(url: impl AsRef<str>) -> RedisBackendBuilder {
        RedisBackendBuilder::from_url(url.as_ref())
    }

    /// A builder for a backend on an already configured `redis::Client`.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use seawall_keyed_lock::RedisBackend;
    /// let client = redis::Client::open("redis://127.0.0.1:6379/").unwrap();
    /// let backend = RedisBackend::builder_with_client(client).build().unwrap();
    /// assert_eq!(backend.addr(), "127.0.0.1:6379");
    /// # }
    /// ```
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
            addr: Arc::clone(self.inner.addr()),
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
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use seawall_keyed_lock::RedisBackend;
    /// let backend = RedisBackend::builder("redis://10.0.0.7:6380/").build().unwrap();
    /// assert_eq!(backend.addr(), "10.0.0.7:6380");
    /// # }
    /// ```
    #[must_use]
    pub fn addr(&self) -> &str {
        self.inner.addr()
    }

    /// The prefix of every Redis key this backend writes.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use seawall_keyed_lock::RedisBackend;
    /// let backend = RedisBackend::builder("redis://127.0.0.1/").prefix("app:lock:").build().unwrap();
    /// assert_eq!(backend.prefix(), "app:lock:");
    /// # }
    /// ```
    #[must_use]
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// The bound on every Redis call.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use seawall_keyed_lock::{DEFAULT_COMMAND_TIMEOUT, RedisBackend};
    /// let backend = RedisBackend::builder("redis://127.0.0.1/").build().unwrap();
    /// assert_eq!(backend.command_timeout(), DEFAULT_COMMAND_TIMEOUT);
    /// # }
    /// ```
    #[must_use]
    pub fn command_timeout(&self) -> Duration {
        self.inner.client.command_timeout()
    }

    /// Whether guards renew their lease in the background.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use seawall_keyed_lock::RedisBackend;
    /// let backend = RedisBackend::builder("redis://127.0.0.1/").auto_renew(true).build().unwrap();
    /// assert!(backend.auto_renew());
    /// # }
    /// ```
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
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use seawall_keyed_lock::RedisBackend;
    /// let backend = RedisBackend::builder("redis://127.0.0.1/").build().unwrap();
    /// assert_eq!(backend.local_len(), 0);
    /// # }
    /// ```
    #[must_use]
    pub fn local_len(&self) -> usize {
        self.inner.local.len()
    }

    /// Acquires a lease on the key that displays as `key`.
    pub(crate) async fn acquire_by(
        &self,
        key: &(dyn Display + Sync),
        ttl: Duration,
        wait: Wait,
        events: &LockEvents,
    ) -> Result<Grant<RedisLease>, Refused<RedisBackendError>> {
        if let Some(e) = self.invalid_ttl(ttl) {
            return Err(Refused::Backend(e));
        }
        acquire::acquire(&self.inner, key, ttl, wait, events).await
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
        Ok(self.inner.check(st).await?.then(|| st.deadline()))
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
        self.acquire_by(key, ttl, wait, events)
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
