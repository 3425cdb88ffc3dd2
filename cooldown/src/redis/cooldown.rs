//! The public face of the Redis cooldown: [`RedisCooldown`] and its methods.

use std::borrow::Borrow;
use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;

use super::builder::RedisCooldownBuilder;
use super::error::RedisCooldownError;
use super::inner::RedisInner;
use super::policy::UnreachablePolicy;
use super::reply::{self, Raw};
use super::reservation::{RedisReservation, Taken};
use super::scripts::SCRIPTS;
use crate::{Decision, Digest, Fire, Suppressed};

/// Most index members one `drain_digests` round asks for.
const DRAIN_BATCH: usize = 256;
/// Most rounds one `drain_digests` runs (so at most 256 Ki keys per call).
const DRAIN_ROUNDS: usize = 1024;

/// A per-key cooldown whose state lives in Redis, shared by every replica
/// that uses the same server, [`prefix`](RedisCooldownBuilder::prefix) and
/// [`name`](RedisCooldownBuilder::name).
///
/// It makes the same decisions as the in-memory [`Cooldown`](crate::Cooldown)
/// (fire, then suppress and count for a window; reserve / commit / rollback;
/// critical bypass; digests of keys that went quiet), but each call is one
/// Lua script on Redis, so the methods are `async`. Of any number of
/// concurrent events for a key outside its window, on any number of
/// replicas, exactly one fires.
///
/// `K` is the key type: written to Redis with [`Display`](fmt::Display) and
/// read back by [`drain_digests`](Self::drain_digests) with [`FromStr`], so
/// the two must round-trip (`String`, integers). The methods take any `&Q`
/// where `K: Borrow<Q>` and `Q: Display` displays as the `K` would (a
/// `RedisCooldown<String>` is asked with a `&str`, no `String` needed). No payload is kept with a
/// digest (`P = ()`): it would need serializing.
///
/// Cloning is cheap; clones share the connection.
///
/// # When Redis does not answer
///
/// Every call is bounded by the
/// [`command_timeout`](RedisCooldownBuilder::command_timeout).
/// A call that fails applies the [`UnreachablePolicy`] (default: fire, marked
/// `degraded`) and counts `seawall_cooldown_degraded_total`; the outage is
/// logged at `warn` when it begins and at `info` when it ends (each degraded
/// call at `debug`, so an outage during an alert storm does not flood the log);
/// [`try_check`](Self::try_check) returns the error instead. Nothing panics,
/// nothing hangs.
///
/// # Examples
///
/// Needs a Redis server, so it is not run here (`no_run`):
///
/// ```no_run
/// use std::time::Duration;
/// use seawall_cooldown::{Decision, RedisCooldown};
///
/// # #[tokio::main] async fn main() {
/// let alerts: RedisCooldown<String> = RedisCooldown::builder("redis://127.0.0.1:6379/")
///     .name("alerts")
///     .window(Duration::from_secs(1800))
///     .build()
///     .unwrap();
/// let key = "db-down".to_owned();
/// match alerts.check(&key).await {
///     Decision::Fire(fire) => println!("send it ({} more like this)", fire.suppressed_since_last),
///     Decision::Suppressed(s) => println!("quiet for {:?}", s.remaining),
/// }
/// # }
/// ```
pub struct RedisCooldown<K = String> {
    inner: Arc<RedisInner>,
    _key: PhantomData<fn(K) -> K>,
}

impl<K> Clone for RedisCooldown<K> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            _key: PhantomData,
        }
    }
}

impl<K> fmt::Debug for RedisCooldown<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisCooldown")
            .field("name", &self.inner.name)
            .field("addr", self.inner.addr())
            .field("prefix", &self.inner.prefix)
            .field("window", &self.inner.window)
            .field("command_timeout", &self.inner.client.command_timeout())
            .field("unreachable", &self.inner.policy)
            .finish_non_exhaustive()
    }
}

impl<K> RedisCooldown<K> {
    /// A builder for a cooldown on the server at `url` (`redis://host:port/db`,
    /// `redis+unix:///path`); see [`RedisCooldownBuilder`] for the settings
    /// and their defaults. TLS is not built in (the workspace's `redis`
    /// dependency has no TLS feature): a `rediss://` URL is refused by
    /// [`build`](RedisCooldownBuilder::build), as is any invalid URL (field
    /// `url`).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use seawall_cooldown::RedisCooldown;
    /// let c: RedisCooldown<u64> = RedisCooldown::builder("redis://127.0.0.1:6379/")
    ///     .name("pages")
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(c.name(), "pages");
    ///
    /// let err = RedisCooldown::<u64>::builder("rediss://127.0.0.1/").build().unwrap_err();
    /// assert_eq!(err.field(), "url");
    /// # }
    /// ```
    pub fn builder(url: impl AsRef<str>) -> RedisCooldownBuilder<K> {
        RedisCooldownBuilder::from_url(url.as_ref())
    }

    /// A builder for a cooldown on an already configured `redis::Client`
    /// (credentials, a TLS-enabled build of the `redis` crate).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use seawall_cooldown::RedisCooldown;
    /// let client = redis::Client::open("redis://127.0.0.1:6379/").unwrap();
    /// let c: RedisCooldown<u64> = RedisCooldown::builder_with_client(client).build().unwrap();
    /// assert_eq!(c.addr(), "127.0.0.1:6379");
    /// # }
    /// ```
    pub fn builder_with_client(client: ::redis::Client) -> RedisCooldownBuilder<K> {
        RedisCooldownBuilder::from_client(client)
    }

    /// A builder for a cooldown on a Redis Cluster, given the URLs of some of
    /// its nodes (the client discovers the others).
    ///
    /// Each script goes to the master that owns the cooldown's slot,
    /// following `MOVED`/`ASK` redirections: all keys of one cooldown share
    /// its [`name`](RedisCooldownBuilder::name) as hash tag, so one cooldown
    /// lives in one slot, and cooldowns with different names spread over the
    /// masters. Connects on first use, like [`builder`](Self::builder); the
    /// [`command_timeout`](RedisCooldownBuilder::command_timeout) bounds every
    /// call, connecting, redirections and retries included. See
    /// [the crate docs](crate#redis-cluster) for what a failover does.
    /// Invalid URLs or an empty list are reported by
    /// [`build`](RedisCooldownBuilder::build) (field `nodes`).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use seawall_cooldown::RedisCooldown;
    /// let c: RedisCooldown<u64> =
    ///     RedisCooldown::cluster(["redis://10.0.0.1:6379/", "redis://10.0.0.2:6379/"])
    ///         .build()
    ///         .unwrap();
    /// assert_eq!(c.addr(), "cluster 10.0.0.1:6379,10.0.0.2:6379");
    ///
    /// let none: [&str; 0] = [];
    /// assert_eq!(RedisCooldown::<u64>::cluster(none).build().unwrap_err().field(), "nodes");
    /// # }
    /// ```
    pub fn cluster<S: AsRef<str>>(nodes: impl IntoIterator<Item = S>) -> RedisCooldownBuilder<K> {
        RedisCooldownBuilder::from_cluster_urls(nodes)
    }

    pub(crate) fn from_inner(inner: RedisInner) -> Self {
        Self {
            inner: Arc::new(inner),
            _key: PhantomData,
        }
    }

    /// The instance name (the `cooldown` metric label and Redis hash tag).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use seawall_cooldown::{DEFAULT_NAME, RedisCooldown};
    /// let c: RedisCooldown<u64> = RedisCooldown::builder("redis://127.0.0.1/").build().unwrap();
    /// assert_eq!(c.name(), DEFAULT_NAME);
    /// # }
    /// ```
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The window a key stays quiet after it fires.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::time::Duration;
    /// use seawall_cooldown::RedisCooldown;
    /// let c: RedisCooldown<u64> = RedisCooldown::builder("redis://127.0.0.1/").build().unwrap();
    /// assert_eq!(c.window(), Duration::from_secs(1800));
    /// # }
    /// ```
    pub fn window(&self) -> Duration {
        self.inner.window
    }

    /// The Redis server, `host:port` (or a socket path); for a cluster
    /// `cluster ` followed by the seed nodes, comma-separated.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use seawall_cooldown::RedisCooldown;
    /// let c: RedisCooldown<u64> = RedisCooldown::builder("redis://10.0.0.7:6380/").build().unwrap();
    /// assert_eq!(c.addr(), "10.0.0.7:6380");
    /// # }
    /// ```
    pub fn addr(&self) -> &str {
        self.inner.addr()
    }

    /// The bound on every Redis call
    /// ([`command_timeout`](RedisCooldownBuilder::command_timeout)).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use seawall_cooldown::{DEFAULT_COMMAND_TIMEOUT, RedisCooldown};
    /// let c: RedisCooldown<u64> = RedisCooldown::builder("redis://127.0.0.1/").build().unwrap();
    /// assert_eq!(c.command_timeout(), DEFAULT_COMMAND_TIMEOUT);
    /// # }
    /// ```
    pub fn command_timeout(&self) -> Duration {
        self.inner.client.command_timeout()
    }

    /// The prefix of every Redis key ([`prefix`](RedisCooldownBuilder::prefix)).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use seawall_cooldown::{DEFAULT_PREFIX, RedisCooldown};
    /// let c: RedisCooldown<u64> = RedisCooldown::builder("redis://127.0.0.1/").build().unwrap();
    /// assert_eq!(c.prefix(), DEFAULT_PREFIX);
    /// # }
    /// ```
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// What the cooldown decides when Redis does not answer.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use seawall_cooldown::{RedisCooldown, UnreachablePolicy};
    /// let c: RedisCooldown<u64> = RedisCooldown::builder("redis://127.0.0.1/").build().unwrap();
    /// assert_eq!(c.unreachable_policy(), UnreachablePolicy::Fire);
    /// # }
    /// ```
    pub fn unreachable_policy(&self) -> UnreachablePolicy {
        self.inner.policy
    }
}

impl<K> RedisCooldown<K> {
    /// One event for `key`: [`Decision::Fire`] if the key is not inside its
    /// window on any replica (a new window starts now), otherwise
    /// [`Decision::Suppressed`] with the time left and the events suppressed
    /// so far. One Lua script: deciding and counting are atomic across
    /// replicas. A fire reports (and clears) the key's pending digest, with
    /// instants converted from Redis server time to local [`Instant`]s.
    ///
    /// If Redis does not answer within the timeout, the
    /// [`UnreachablePolicy`] decides (`degraded: true`).
    ///
    /// # Panics
    ///
    /// Never.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe in that nothing is left half-done locally; if the future is
    /// dropped after the script reached Redis, the event may have been
    /// counted (or may have fired) without the caller hearing the answer.
    ///
    /// # Examples
    ///
    /// Redis is unreachable here (a closed port), so the default policy fires:
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::time::Duration;
    /// use seawall_cooldown::{Decision, RedisCooldown};
    ///
    /// let c: RedisCooldown<&str> = RedisCooldown::builder("redis://127.0.0.1:1/")
    ///     .command_timeout(Duration::from_millis(200))
    ///     .build()
    ///     .unwrap();
    /// let Decision::Fire(fire) = c.check(&"db-down").await else { unreachable!() };
    /// assert!(fire.degraded);
    /// # }
    /// ```
    pub async fn check<Q>(&self, key: &Q) -> Decision
    where
        K: Borrow<Q>,
        Q: fmt::Display + ?Sized,
    {
        match self.try_check(key).await {
            Ok(d) => d,
            Err(e) => {
                self.inner.degraded("check", &e);
                let d = match self.inner.policy {
                    UnreachablePolicy::Fire => Decision::Fire(RedisInner::degraded_fire()),
                    UnreachablePolicy::Suppress => {
                        Decision::Suppressed(RedisInner::degraded_suppressed())
                    }
                };
                self.inner.count(&d);
                d
            }
        }
    }

    /// Like [`check`](Self::check), but returns the error when Redis does
    /// not serve the call instead of applying the [`UnreachablePolicy`]
    /// (nothing is counted as degraded then).
    ///
    /// # Errors
    ///
    /// [`RedisCooldownError`] when Redis is unreachable, does not answer
    /// within the timeout, or fails the script.
    ///
    /// # Panics
    ///
    /// Never.
    ///
    /// # Cancel safety
    ///
    /// As [`check`](Self::check).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::time::Duration;
    /// use seawall_cooldown::{RedisCooldown, RedisCooldownError};
    ///
    /// let c: RedisCooldown<&str> = RedisCooldown::builder("redis://127.0.0.1:1/")
    ///     .command_timeout(Duration::from_millis(200))
    ///     .build()
    ///     .unwrap();
    /// let err = c.try_check(&"db-down").await.unwrap_err();
    /// assert_eq!(err.addr(), "127.0.0.1:1");
    /// # }
    /// ```
    pub async fn try_check<Q>(&self, key: &Q) -> Result<Decision, RedisCooldownError>
    where
        K: Borrow<Q>,
        Q: fmt::Display + ?Sized,
    {
        let member = key.to_string();
        let id = self.inner.next_token();
        let d = match self.inner.decide(&member, "c", &id).await? {
            Raw::Fire(fire, _) => Decision::Fire(fire),
            Raw::Suppressed(s) => Decision::Suppressed(s),
        };
        self.inner.count(&d);
        Ok(d)
    }

    /// A critical event: always fires, even inside the key's window or while
    /// a send is in flight on any replica, reports the pending digest, and
    /// starts a new window. [`Fire::bypassed`] tells whether it would
    /// otherwise have been suppressed. Fires (`degraded: true`) when Redis
    /// does not answer, whatever the policy.
    ///
    /// # Panics
    ///
    /// Never.
    ///
    /// # Cancel safety
    ///
    /// As [`check`](Self::check).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::time::Duration;
    /// use seawall_cooldown::{RedisCooldown, UnreachablePolicy};
    ///
    /// let c: RedisCooldown<&str> = RedisCooldown::builder("redis://127.0.0.1:1/")
    ///     .command_timeout(Duration::from_millis(200))
    ///     .unreachable(UnreachablePolicy::Suppress)
    ///     .build()
    ///     .unwrap();
    /// assert!(c.check(&"db-down").await.is_suppressed()); // the policy
    /// assert!(c.check_critical(&"db-down").await.degraded); // critical still fires
    /// # }
    /// ```
    pub async fn check_critical<Q>(&self, key: &Q) -> Fire
    where
        K: Borrow<Q>,
        Q: fmt::Display + ?Sized,
    {
        let member = key.to_string();
        let id = self.inner.next_token();
        match self.inner.decide(&member, "x", &id).await {
            Ok(Raw::Fire(fire, _)) => {
                self.inner.count(&Decision::Fire(fire.clone()));
                fire
            }
            Ok(Raw::Suppressed(_)) => {
                let e = self.inner.unexpected("a critical event was suppressed");
                self.inner.degraded("check_critical", &e);
                RedisInner::degraded_fire()
            }
            Err(e) => {
                self.inner.degraded("check_critical", &e);
                let fire = RedisInner::degraded_fire();
                self.inner.count(&Decision::Fire(fire.clone()));
                fire
            }
        }
    }

    /// Claims the next fire for `key`, for a send that may fail.
    ///
    /// Wins exactly when [`check`](Self::check) would fire; of concurrent
    /// reservations on all replicas, only one wins. The key's window key then
    /// holds this reservation's token for at most the
    /// [`reservation_timeout`](RedisCooldownBuilder::reservation_timeout),
    /// and every other event for the key is suppressed and counted. The
    /// window starts on [`RedisReservation::commit`]; dropping the
    /// reservation rolls back (on a spawned task).
    ///
    /// When Redis does not answer (or the reservation task never finishes:
    /// its runtime shut down), [`UnreachablePolicy::Fire`] hands out a
    /// reservation whose fire is `degraded` (its commit still tries to start
    /// the window); [`UnreachablePolicy::Suppress`] returns a `degraded`
    /// suppression.
    ///
    /// # Errors
    ///
    /// [`Suppressed`] when the key is inside its window or a send for it is
    /// in flight (the event is counted in the key's digest), or by the
    /// `Suppress` policy.
    ///
    /// # Panics
    ///
    /// Never.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the script runs on a spawned task, and if this future is
    /// dropped, a reservation the task won is dropped with the task's
    /// unclaimed output, which rolls it back.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::time::Duration;
    /// use seawall_cooldown::RedisCooldown;
    ///
    /// let c: RedisCooldown<&str> = RedisCooldown::builder("redis://127.0.0.1:1/")
    ///     .command_timeout(Duration::from_millis(200)) // unreachable: the default policy fires
    ///     .build()
    ///     .unwrap();
    /// let reservation = c.reserve(&"db-down").await.unwrap();
    /// assert!(reservation.fire().degraded);
    /// // ... send ...
    /// assert!(reservation.commit().await.is_err()); // still unreachable
    /// # }
    /// ```
    pub async fn reserve<Q>(&self, key: &Q) -> Result<RedisReservation<K>, Suppressed>
    where
        K: Borrow<Q> + Send + 'static,
        Q: fmt::Display + ToOwned<Owned = K> + ?Sized,
    {
        let inner = Arc::clone(&self.inner);
        let member = key.to_string();
        // On a task of its own, so a reservation won in Redis is never lost
        // with a cancelled caller: the task's unclaimed output is dropped,
        // which rolls it back.
        let task = reserve_task(inner, key.to_owned(), member.clone());
        match self.inner.spawn(task).await {
            Ok(result) => result,
            Err(e) => {
                // The task was cancelled (its runtime shut down) or panicked:
                // Redis gave no answer we know of, so the policy decides, as
                // for any call Redis did not serve.
                let e = RedisCooldownError::Interrupted {
                    addr: Arc::clone(self.inner.addr()),
                    source: Arc::new(e),
                };
                self.inner.degraded("reserve", &e);
                let token = self.inner.next_token();
                by_policy(&self.inner, key.to_owned(), member, token)
            }
        }
    }
}

/// The reservation (or suppression) the [`UnreachablePolicy`] hands out when
/// Redis did not serve a reserve.
fn by_policy<K>(
    inner: &Arc<RedisInner>,
    key: K,
    member: String,
    token: String,
) -> Result<RedisReservation<K>, Suppressed> {
    match inner.policy {
        UnreachablePolicy::Fire => Ok(RedisReservation::new(
            Arc::clone(inner),
            key,
            member,
            token,
            RedisInner::degraded_fire(),
            Taken::NONE,
        )),
        UnreachablePolicy::Suppress => {
            let s = RedisInner::degraded_suppressed();
            inner.count(&Decision::Suppressed(s));
            Err(s)
        }
    }
}

async fn reserve_task<K>(
    inner: Arc<RedisInner>,
    key: K,
    member: String,
) -> Result<RedisReservation<K>, Suppressed> {
    let token = inner.next_token();
    match inner.decide(&member, "r", &token).await {
        Ok(Raw::Fire(fire, taken)) => Ok(RedisReservation::new(
            Arc::clone(&inner),
            key,
            member,
            token,
            fire,
            taken,
        )),
        Ok(Raw::Suppressed(s)) => {
            inner.count(&Decision::Suppressed(s));
            Err(s)
        }
        Err(e) => {
            inner.degraded("reserve", &e);
            by_policy(&inner, key, member, token)
        }
    }
}

impl<K: FromStr> RedisCooldown<K> {
    /// Takes the digests of keys whose window ended with suppressed events
    /// that no fire has reported yet, on any replica: the keys that went
    /// quiet. Each suppressed event is reported once, here or by the key's
    /// next fire, across all replicas.
    ///
    /// Finds the keys through the index (a sorted set scored by window end),
    /// then takes each key's digest with one script; at most 256 Ki keys per
    /// call. A key Redis holds that does not parse as `K` (another program
    /// shares the name) is skipped and its digest left in Redis, for a
    /// replica that can parse it or until the retention drops it (logged at
    /// `warn` the first time).
    ///
    /// If Redis stops answering midway, returns the digests taken so far (the
    /// rest stay in Redis for the next call) and counts a
    /// degraded call.
    ///
    /// # Panics
    ///
    /// Never.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: digests taken from Redis before the future was
    /// dropped are lost with it.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::time::Duration;
    /// use seawall_cooldown::RedisCooldown;
    ///
    /// let c: RedisCooldown<String> = RedisCooldown::builder("redis://127.0.0.1:1/")
    ///     .command_timeout(Duration::from_millis(200)) // unreachable: nothing to drain
    ///     .build()
    ///     .unwrap();
    /// assert!(c.drain_digests().await.is_empty());
    /// # }
    /// ```
    pub async fn drain_digests(&self) -> Vec<(K, Digest)> {
        let mut out = Vec::new();
        if let Err(e) = self.drain_into(&mut out).await {
            self.inner.degraded("drain_digests", &e);
        }
        if !out.is_empty() {
            tracing::debug!(cooldown = %self.inner.name, digests = out.len(), "drained cooldown digests");
        }
        out
    }

    async fn drain_into(&self, out: &mut Vec<(K, Digest)>) -> Result<(), RedisCooldownError> {
        let inner = &*self.inner;
        let mut skipped = 0usize;
        for _ in 0..DRAIN_ROUNDS {
            let mut inv = SCRIPTS.due.prepare_invoke();
            inv.key(&inner.index).arg(DRAIN_BATCH).arg(skipped);
            let due: Vec<String> = inner.invoke(&inv).await?;
            for member in &due {
                // Parse before taking: a digest whose key this replica cannot
                // read stays in Redis for one that can (or expires with the
                // retention), and later rounds skip past it.
                let Ok(key) = member.parse::<K>() else {
                    skipped += 1;
                    if !inner.warned_unparsable.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            cooldown = %inner.name,
                            key = %member,
                            "redis cooldown key does not parse as the key type; its digest is \
                             left in redis (warned once per cooldown)"
                        );
                    }
                    continue;
                };
                let reply: Vec<i64> = inner.run(&SCRIPTS.drain, member, &[]).await?;
                match reply::drained(&reply, Instant::now()) {
                    Some(Some(digest)) => out.push((key, digest)),
                    Some(None) => {}
                    None => return Err(inner.unexpected(&reply)),
                }
            }
            if due.len() < DRAIN_BATCH {
                break;
            }
        }
        Ok(())
    }
}
