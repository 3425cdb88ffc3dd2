//! The Redis store: every decision is one Lua script on the shared server.

use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::marker::PhantomData;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use ::redis::{FromRedisValue, Script};
use prometheus_client::metrics::counter::Counter;
use tokio::runtime::Handle;
use tokio::time::Instant;

use super::builder::RedisCooldownBuilder;
use super::conn::Conn;
use super::error::RedisCooldownError;
use super::policy::UnreachablePolicy;
use super::reservation::{RedisReservation, Taken};
use super::scripts::SCRIPTS;
use crate::metrics::InstanceMetrics;
use crate::{Decision, Digest, Fire, Metrics, Suppressed};

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
/// the two must round-trip (`String`, integers). No payload is kept with a
/// digest (`P = ()`): it would need serializing.
///
/// Cloning is cheap; clones share the connection.
///
/// # When Redis does not answer
///
/// Every call is bounded by the [`timeout`](RedisCooldownBuilder::timeout).
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
/// let alerts: RedisCooldown<String> = RedisCooldown::builder()
///     .url("redis://127.0.0.1:6379/")
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
            .field("addr", &self.inner.addr)
            .field("prefix", &self.inner.prefix)
            .field("window", &self.inner.window)
            .field("timeout", &self.inner.timeout)
            .field("unreachable", &self.inner.policy)
            .finish_non_exhaustive()
    }
}

pub(crate) struct RedisInner {
    conn: Conn,
    handle: Handle,
    addr: String,
    /// `<prefix>:{<name>}:`
    prefix: String,
    index: String,
    name: String,
    window: Duration,
    window_us: u64,
    timeout: Duration,
    reservation_ms: u64,
    retention_us: u64,
    policy: UnreachablePolicy,
    metrics: Option<(InstanceMetrics, Counter)>,
    token_seed: u64,
    tokens: AtomicU64,
    /// Set while calls fail, so the outage is logged when it starts and ends,
    /// not on every call.
    down: AtomicBool,
    /// Set once a drain met a member that does not parse as the key type.
    warned_unparsable: AtomicBool,
}

/// The server's clock at the moment a reply arrived, to turn server times
/// into local instants.
#[derive(Clone, Copy)]
struct ServerNow {
    server_us: i64,
    local: Instant,
}

impl ServerNow {
    fn instant(self, server_us: i64) -> Instant {
        let delta = Duration::from_micros(server_us.abs_diff(self.server_us));
        if server_us <= self.server_us {
            self.local.checked_sub(delta).unwrap_or(self.local)
        } else {
            self.local + delta
        }
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl RedisInner {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        conn: Conn,
        handle: Handle,
        addr: String,
        prefix: String,
        name: String,
        window: Duration,
        timeout: Duration,
        reservation_timeout: Duration,
        retention: Duration,
        policy: UnreachablePolicy,
        metrics: Option<Metrics>,
    ) -> Self {
        let token_seed = RandomState::new().hash_one((
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        ));
        Self {
            conn,
            handle,
            addr,
            index: format!("{prefix}idx"),
            prefix,
            metrics: metrics.map(|m| (m.instance(&name), m.degraded(&name))),
            name,
            window,
            window_us: micros(window),
            timeout,
            reservation_ms: u64::try_from(reservation_timeout.as_millis())
                .unwrap_or(u64::MAX)
                .max(1),
            retention_us: micros(retention),
            policy,
            token_seed,
            tokens: AtomicU64::new(0),
            down: AtomicBool::new(false),
            warned_unparsable: AtomicBool::new(false),
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn addr(&self) -> &str {
        &self.addr
    }

    fn protocol(&self, what: &str) -> RedisCooldownError {
        RedisCooldownError::Server {
            addr: self.addr.clone(),
            reason: format!("unexpected reply from the cooldown script: {what}"),
        }
    }

    /// Runs `script` on the key's three keys with `args` after the common
    /// ones, bounded by the timeout.
    async fn run<T: FromRedisValue>(
        &self,
        script: &Script,
        member: &str,
        args: &[&str],
    ) -> Result<T, RedisCooldownError> {
        let mut inv = script.prepare_invoke();
        self.keys_and_args(&mut inv, member, args);
        self.bounded(invoke(&inv, &self.conn)).await
    }

    /// The key's three keys, the common arguments, then `args`.
    fn keys_and_args(&self, inv: &mut ::redis::ScriptInvocation<'_>, member: &str, args: &[&str]) {
        inv.key(format!("{}w:{member}", self.prefix))
            .key(format!("{}s:{member}", self.prefix))
            .key(&self.index)
            .arg(member)
            .arg(self.window_us)
            .arg(self.retention_us);
        for a in args {
            inv.arg(*a);
        }
    }

    async fn bounded<T>(
        &self,
        call: impl Future<Output = ::redis::RedisResult<T>>,
    ) -> Result<T, RedisCooldownError> {
        let result = match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(RedisCooldownError::from_redis(&self.addr, self.timeout, &e)),
            Err(_) => Err(RedisCooldownError::Timeout {
                addr: self.addr.clone(),
                after: self.timeout,
            }),
        };
        match &result {
            Ok(_) => {
                if self.down.load(Ordering::Relaxed) && self.down.swap(false, Ordering::Relaxed) {
                    tracing::info!(
                        cooldown = %self.name,
                        addr = %self.addr,
                        "redis cooldown: redis answers again; decisions are shared again"
                    );
                }
            }
            Err(e) => {
                if !self.down.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        cooldown = %self.name,
                        addr = %self.addr,
                        policy = ?self.policy,
                        error = %e,
                        "redis cooldown: redis does not answer; decisions are degraded until it does"
                    );
                }
            }
        }
        result
    }

    /// Spawns `task` on the caller's runtime, or on the one the cooldown was
    /// built in when the caller is not on a tokio runtime.
    pub(crate) fn spawn<T: Send + 'static>(
        &self,
        task: impl Future<Output = T> + Send + 'static,
    ) -> tokio::task::JoinHandle<T> {
        match Handle::try_current() {
            Ok(current) => current.spawn(task),
            Err(_) => self.handle.spawn(task),
        }
    }

    fn next_token(&self) -> String {
        let n = self.tokens.fetch_add(1, Ordering::Relaxed);
        format!("{:016x}{n:x}", self.token_seed)
    }

    /// One `DECIDE` call. `mode` is `c`, `x` or `r`; `id` is unique to the
    /// call (the reservation token for `r`).
    ///
    /// Sent at most twice with the same id: if the first attempt gets no
    /// reply within two thirds of the timeout, or its connection fails, it is
    /// sent again within what is left. The script answers a repeated id with
    /// the reply it gave the first time, so a fire whose reply was lost after
    /// it ran (the digest it took, the window it started) is still reported.
    async fn decide(&self, member: &str, mode: &str, id: &str) -> Result<Raw, RedisCooldownError> {
        let reservation_ms = self.reservation_ms.to_string();
        let mut inv = SCRIPTS.decide.prepare_invoke();
        self.keys_and_args(&mut inv, member, &[mode, id, &reservation_ms]);
        let first_share = self.timeout.saturating_mul(2) / 3;
        let call = async {
            match tokio::time::timeout(first_share, invoke::<Vec<i64>>(&inv, &self.conn)).await {
                Ok(Ok(reply)) => Ok(reply),
                Ok(Err(e)) if !lost_reply(&e) => Err(e),
                Ok(Err(_)) | Err(_) => invoke(&inv, &self.conn).await,
            }
        };
        let reply: Vec<i64> = self.bounded(call).await?;
        let local = Instant::now();
        match *reply.as_slice() {
            [0, _now, remaining, count] => Ok(Raw::Suppressed(Suppressed {
                remaining: Duration::from_micros(remaining.max(0).cast_unsigned()),
                suppressed: count.max(0).cast_unsigned(),
                degraded: false,
            })),
            [1, now, fired, count, first, last, bypassed] => {
                let clock = ServerNow {
                    server_us: now,
                    local,
                };
                let last_fired = (fired >= 0).then(|| clock.instant(fired));
                let digest = (count > 0).then(|| Digest {
                    count: count.cast_unsigned(),
                    first_suppressed: clock.instant(first),
                    last_suppressed: clock.instant(last),
                    last_fired,
                    last_payload: None,
                });
                Ok(Raw::Fire(
                    Fire {
                        suppressed_since_last: count.max(0).cast_unsigned(),
                        last_fired,
                        digest,
                        bypassed: bypassed == 1,
                        degraded: false,
                    },
                    Taken {
                        count: count.max(0),
                        first,
                        last,
                    },
                ))
            }
            _ => Err(self.protocol(&format!("{reply:?}"))),
        }
    }

    pub(crate) async fn commit(&self, member: &str, token: &str) -> Result<(), RedisCooldownError> {
        let reply: Vec<i64> = self.run(&SCRIPTS.commit, member, &[token]).await?;
        match *reply.as_slice() {
            [owned, _now] => {
                if let Some((m, _)) = &self.metrics {
                    m.fire.inc();
                }
                if owned == 0 {
                    tracing::debug!(
                        cooldown = %self.name,
                        "cooldown reservation committed after it had expired in redis"
                    );
                }
                Ok(())
            }
            _ => Err(self.protocol(&format!("{reply:?}"))),
        }
    }

    pub(crate) async fn rollback(
        &self,
        member: &str,
        token: &str,
        taken: Taken,
    ) -> Result<(), RedisCooldownError> {
        let (count, first, last) = (
            taken.count.to_string(),
            taken.first.to_string(),
            taken.last.to_string(),
        );
        let reply: Vec<i64> = self
            .run(&SCRIPTS.rollback, member, &[token, &count, &first, &last])
            .await?;
        match *reply.as_slice() {
            [owned, _now] => {
                if let Some((m, _)) = &self.metrics {
                    m.rolled_back.inc();
                }
                tracing::debug!(
                    cooldown = %self.name,
                    still_owned = owned == 1,
                    "cooldown reservation rolled back"
                );
                Ok(())
            }
            _ => Err(self.protocol(&format!("{reply:?}"))),
        }
    }

    /// Counts and logs a call Redis did not serve; the caller applies the policy.
    pub(crate) fn degraded(&self, what: &'static str, err: &RedisCooldownError) {
        if let Some((_, degraded)) = &self.metrics {
            degraded.inc();
        }
        // The outage itself was logged at `warn` when it began (`bounded`).
        tracing::debug!(
            cooldown = %self.name,
            call = what,
            policy = ?self.policy,
            error = %err,
            "redis cooldown call degraded"
        );
    }

    fn count(&self, d: &Decision) {
        if let Some((m, _)) = &self.metrics {
            match d {
                Decision::Fire(f) if f.bypassed => m.bypass.inc(),
                Decision::Fire(_) => m.fire.inc(),
                Decision::Suppressed(_) => m.suppressed.inc(),
            };
        }
    }

    fn degraded_fire() -> Fire {
        Fire {
            suppressed_since_last: 0,
            last_fired: None,
            digest: None,
            bypassed: false,
            degraded: true,
        }
    }

    fn degraded_suppressed() -> Suppressed {
        Suppressed {
            remaining: Duration::ZERO,
            suppressed: 0,
            degraded: true,
        }
    }
}

/// A decision as the script returned it, with what a reservation took.
enum Raw {
    Fire(Fire, Taken),
    Suppressed(Suppressed),
}

impl<K> RedisCooldown<K> {
    /// Starts building a Redis cooldown; see [`RedisCooldownBuilder`] for the
    /// settings and their defaults.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use seawall_cooldown::RedisCooldown;
    /// let c: RedisCooldown<u64> = RedisCooldown::builder()
    ///     .url("redis://127.0.0.1:6379/")
    ///     .name("pages")
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(c.name(), "pages");
    /// # }
    /// ```
    pub fn builder() -> RedisCooldownBuilder<K> {
        RedisCooldownBuilder::default()
    }

    pub(crate) fn from_inner(inner: RedisInner) -> Self {
        Self {
            inner: Arc::new(inner),
            _key: PhantomData,
        }
    }

    /// The instance name (the `cooldown` metric label and Redis hash tag).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The window a key stays quiet after it fires.
    pub fn window(&self) -> Duration {
        self.inner.window
    }

    /// The Redis server, `host:port` (or a socket path); for a cluster
    /// `cluster ` followed by the seed nodes, comma-separated.
    pub fn addr(&self) -> &str {
        &self.inner.addr
    }

    /// What the cooldown decides when Redis does not answer.
    pub fn unreachable_policy(&self) -> UnreachablePolicy {
        self.inner.policy
    }
}

impl<K: fmt::Display> RedisCooldown<K> {
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
    /// let c: RedisCooldown<&str> = RedisCooldown::builder()
    ///     .url("redis://127.0.0.1:1/")
    ///     .timeout(Duration::from_millis(200))
    ///     .build()
    ///     .unwrap();
    /// let Decision::Fire(fire) = c.check(&"db-down").await else { unreachable!() };
    /// assert!(fire.degraded);
    /// # }
    /// ```
    pub async fn check(&self, key: &K) -> Decision {
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
    /// let c: RedisCooldown<&str> = RedisCooldown::builder()
    ///     .url("redis://127.0.0.1:1/")
    ///     .timeout(Duration::from_millis(200))
    ///     .build()
    ///     .unwrap();
    /// let err = c.try_check(&"db-down").await.unwrap_err();
    /// assert_eq!(err.addr(), "127.0.0.1:1");
    /// # }
    /// ```
    pub async fn try_check(&self, key: &K) -> Result<Decision, RedisCooldownError> {
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
    /// let c: RedisCooldown<&str> = RedisCooldown::builder()
    ///     .url("redis://127.0.0.1:1/")
    ///     .timeout(Duration::from_millis(200))
    ///     .unreachable(UnreachablePolicy::Suppress)
    ///     .build()
    ///     .unwrap();
    /// assert!(c.check(&"db-down").await.is_suppressed()); // the policy
    /// assert!(c.check_critical(&"db-down").await.degraded); // critical still fires
    /// # }
    /// ```
    pub async fn check_critical(&self, key: &K) -> Fire {
        let member = key.to_string();
        let id = self.inner.next_token();
        match self.inner.decide(&member, "x", &id).await {
            Ok(Raw::Fire(fire, _)) => {
                self.inner.count(&Decision::Fire(fire.clone()));
                fire
            }
            Ok(Raw::Suppressed(_)) => {
                let e = self.inner.protocol("a critical event was suppressed");
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
    /// let c: RedisCooldown<&str> = RedisCooldown::builder()
    ///     .url("redis://127.0.0.1:1/") // unreachable: the default policy fires
    ///     .timeout(Duration::from_millis(200))
    ///     .build()
    ///     .unwrap();
    /// let reservation = c.reserve(&"db-down").await.unwrap();
    /// assert!(reservation.fire().degraded);
    /// // ... send ...
    /// assert!(reservation.commit().await.is_err()); // still unreachable
    /// # }
    /// ```
    pub async fn reserve(&self, key: &K) -> Result<RedisReservation<K>, Suppressed>
    where
        K: Clone + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        // On a task of its own, so a reservation won in Redis is never lost
        // with a cancelled caller: the task's unclaimed output is dropped,
        // which rolls it back.
        match self.inner.spawn(reserve_task(inner, key.clone())).await {
            Ok(result) => result,
            Err(e) => {
                // The task was cancelled (its runtime shut down) or panicked:
                // Redis gave no answer we know of, so the policy decides, as
                // for any call Redis did not serve.
                let e = RedisCooldownError::Server {
                    addr: self.inner.addr.clone(),
                    reason: format!("the reservation task did not finish: {e}"),
                };
                self.inner.degraded("reserve", &e);
                let token = self.inner.next_token();
                by_policy(&self.inner, key.clone(), key.to_string(), token)
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

async fn reserve_task<K: fmt::Display>(
    inner: Arc<RedisInner>,
    key: K,
) -> Result<RedisReservation<K>, Suppressed> {
    let member = key.to_string();
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
    /// let c: RedisCooldown<String> = RedisCooldown::builder()
    ///     .url("redis://127.0.0.1:1/") // unreachable: nothing to drain
    ///     .timeout(Duration::from_millis(200))
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
            let due: Vec<String> = inner.bounded(invoke(&inv, &inner.conn)).await?;
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
                let local = Instant::now();
                match *reply.as_slice() {
                    [0, _] => {}
                    [1, now, fired, count, first, last] => {
                        let clock = ServerNow {
                            server_us: now,
                            local,
                        };
                        let digest = Digest {
                            count: count.max(0).cast_unsigned(),
                            first_suppressed: clock.instant(first),
                            last_suppressed: clock.instant(last),
                            last_fired: (fired >= 0).then(|| clock.instant(fired)),
                            last_payload: None,
                        };
                        out.push((key, digest));
                    }
                    _ => return Err(inner.protocol(&format!("{reply:?}"))),
                }
            }
            if due.len() < DRAIN_BATCH {
                break;
            }
        }
        Ok(())
    }
}

/// Whether a failed call may have run in Redis without its reply reaching
/// us (the connection broke or timed out), so sending it again with the same
/// call id is worth it; not for an error Redis itself replied.
fn lost_reply(e: &::redis::RedisError) -> bool {
    e.is_timeout()
        || e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_unrecoverable_error()
}

/// How many more times a script call is sent after NOSCRIPT beyond the one reload
/// `invoke_async` does itself.
const NOSCRIPT_RELOADS: u32 = 2;

/// Runs a script: `invoke_async` answers NOSCRIPT by loading the script and sending EVALSHA
/// again; a `SCRIPT FLUSH` (or a failover) between that load and the retry makes the retry
/// fail with NOSCRIPT too, so go round again, a bounded number of times.
async fn invoke<T: ::redis::FromRedisValue>(
    inv: &::redis::ScriptInvocation<'_>,
    conn: &Conn,
) -> ::redis::RedisResult<T> {
    let mut conn = conn.clone();
    let mut reloads = 0;
    loop {
        match inv.invoke_async(&mut conn).await {
            Err(e)
                if e.kind() == ::redis::ErrorKind::Server(::redis::ServerErrorKind::NoScript)
                    && reloads < NOSCRIPT_RELOADS =>
            {
                reloads += 1;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_times_become_local_instants_relative_to_the_reply() {
        let local = Instant::now();
        let clock = ServerNow {
            server_us: 1_000_000_000,
            local,
        };
        assert_eq!(clock.instant(1_000_000_000), local);
        assert_eq!(
            clock.instant(999_750_000),
            local - Duration::from_millis(250)
        );
        assert_eq!(
            clock.instant(1_000_000_001),
            local + Duration::from_micros(1)
        );
    }

    #[test]
    fn micros_saturate() {
        assert_eq!(micros(Duration::from_nanos(1_999)), 1);
        assert_eq!(micros(Duration::MAX), u64::MAX);
    }
}
