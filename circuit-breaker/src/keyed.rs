//! Keyed circuit breakers: one breaker per host, tenant or endpoint, from one configuration,
//! with bounded memory and no background task.
//!
//! The keys live in a fixed number of shards, each a `HashMap` behind an `RwLock`: a call for
//! a tracked key takes the shard's read lock, clones the key's breaker (one reference-count
//! increment) and releases the lock before the call runs. A new key takes the write lock.
//!
//! Forgetting is lazy. A breaker is *idle* when it is closed, counts no failure, holds no bad
//! call in its windows and no call or permit holds it: a fresh breaker would decide every
//! later call the same way, so forgetting it loses nothing. A shard forgets its idle breakers
//! when it has doubled since its last sweep and holds at least `max_keys / 64` keys
//! (amortized O(1) per new key; a key looked up since the previous sweep is spared once, so
//! healthy keys in steady use stay), and when the keyed breaker is full (`max_keys`; then
//! every idle breaker goes). Nothing else is ever forgotten.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::sync::broadcast;
use tokio::time::Instant;

use crate::builder::Template;
use crate::inner::Observe;
use crate::metrics::{BreakerMetrics, CountKeys};
use crate::{
    CircuitBreaker, Error, KeyedCircuitBreakerBuilder, Metrics, Outcome, Permit, Rejected, State,
    Transition,
};

mod shared;

use shared::{Shard, Shared};

/// Shards of the key map: enough that two tasks rarely meet on one lock.
const SHARDS: usize = 16;
/// A shard sweeps once it holds `max_keys / SHARDS / 4` keys (at least this many), then each
/// time it has doubled since: healthy keys in steady use are not forgotten and re-created on
/// every few calls, and idle ones hold at most about half of `max_keys` beyond the live ones.
const MIN_SWEEP: usize = 8;
/// After a sweep of every shard forgot nothing, the next waits this long (tokio clock), so a
/// full keyed breaker does not scan every key for each new key.
const FULL_SWEEP_BACKOFF: Duration = Duration::from_secs(1);

/// One state change of one key's breaker, from [`KeyedCircuitBreaker::subscribe`].
#[derive(Debug, Clone, PartialEq)]
pub struct KeyedTransition<K> {
    /// The key whose breaker changed.
    pub key: K,
    /// The change; its `breaker` is the keyed breaker's name.
    pub transition: Transition,
}

/// One circuit breaker per key (host, tenant, endpoint), created on first use from one
/// configuration, with bounded memory and no background task.
///
/// Built by [`CircuitBreakerBuilder::keyed`](crate::CircuitBreakerBuilder::keyed) or
/// [`KeyedCircuitBreaker::builder`]. Each key's breaker behaves exactly as a
/// [`CircuitBreaker`] built from that configuration would: the same trip policy, open
/// duration, probes, maximum probe duration, [`Permit`]s and errors.
///
/// **Memory.** A key's breaker is forgotten once it is *idle*: closed, with no failure counted,
/// no bad call in its windows, and no call or permit in flight. A fresh breaker would decide
/// every later call the same way, so forgetting it loses nothing (a forgotten rate window
/// restarts empty: it must see `min_calls` again, so it can only trip later, never sooner).
/// Idle breakers are forgotten lazily, with no background task: when a shard (one of 16) has
/// doubled since its last sweep and holds at least `max_keys / 64` keys (sparing, once, a key
/// used since the previous sweep), and when the keyed breaker is full; or at once by
/// [`forget_idle`](Self::forget_idle). So idle keys hold at
/// most about half of `max_keys` beyond the live ones, and a healthy key in steady use
/// is not re-created every few calls.
/// At most [`max_keys`](crate::KeyedCircuitBreakerBuilder::max_keys) keys are tracked; when
/// every one of them holds a breaker that cannot be forgotten, a call for a new key is
/// **passed through untracked** and counted ([`untracked_calls`](Self::untracked_calls)): an
/// open or half-open breaker is never forgotten, and a healthy host is never refused because
/// others are failing.
///
/// **Observability.** Metrics carry the keyed breaker's name, never a key: calls by outcome
/// and transitions summed over the keys, keys per state (computed at scrape time), untracked
/// calls. [`subscribe`](Self::subscribe) delivers every transition with its key, and each
/// transition is a tracing event with a `key` field (besides the breaker's own event).
///
/// Cheap to clone: clones share the keys. `Send + Sync + 'static`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use seawall_circuit_breaker::{CircuitBreaker, Error, KeyedCircuitBreaker, State};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let hosts: KeyedCircuitBreaker<String> = CircuitBreaker::builder()
///     .name("upstream")
///     .consecutive_failures(2)
///     .open_duration(Duration::from_secs(30))
///     .keyed()
///     .build()
///     .unwrap();
///
/// for _ in 0..2 {
///     let r = hosts.call("eu.api", || async { Err::<(), _>("connection refused") }).await;
///     assert_eq!(r, Err(Error::Inner("connection refused")));
/// }
/// // eu.api is cut off; us.api keeps serving.
/// assert!(hosts.call("eu.api", || async { Ok::<_, &str>(1) }).await.unwrap_err().is_open());
/// assert_eq!(hosts.call("us.api", || async { Ok::<_, &str>(2) }).await, Ok(2));
/// assert_eq!(hosts.open_keys(), vec![("eu.api".to_owned(), State::Open)]);
/// # }
/// ```
pub struct KeyedCircuitBreaker<K> {
    shared: Arc<Shared<K>>,
}

impl<K> Clone for KeyedCircuitBreaker<K> {
    fn clone(&self) -> Self {
        KeyedCircuitBreaker {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<K: fmt::Debug> fmt::Debug for KeyedCircuitBreaker<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.shared.fmt(f)
    }
}

impl<K> KeyedCircuitBreaker<K>
where
    K: Hash + Eq + Clone + fmt::Debug + Send + Sync + 'static,
{
    /// A builder with the defaults listed on [`KeyedCircuitBreakerBuilder`], the same as
    /// `CircuitBreaker::builder().keyed()`.
    ///
    /// # Examples
    ///
    /// ```
    /// use seawall_circuit_breaker::KeyedCircuitBreaker;
    ///
    /// let keyed = KeyedCircuitBreaker::<String>::builder().build().unwrap();
    /// assert_eq!(keyed.max_keys(), 10_000);
    /// ```
    pub fn builder() -> KeyedCircuitBreakerBuilder<K> {
        KeyedCircuitBreakerBuilder::default()
    }

    pub(crate) fn new(
        template: Template,
        overrides: HashMap<K, Template>,
        max_keys: usize,
        metrics: Option<Metrics>,
    ) -> Self {
        let name = Arc::clone(&template.name);
        let seed = template
            .seed
            .unwrap_or_else(|| SmallRng::from_os_rng().random());
        let (series, untracked_metric) = match &metrics {
            Some(m) => {
                let (series, untracked) = m.for_keyed(&name);
                (Some(series), Some(untracked))
            }
            None => (None, None),
        };
        let overflow = template.instantiate(Arc::clone(&name), Some(seed), None);
        // Not a transition anyone should see: this breaker is never anyone's key.
        tracing::subscriber::with_default(tracing::subscriber::NoSubscriber::default(), || {
            overflow.disable();
        });
        let sweep_floor = (max_keys / SHARDS / 4).max(MIN_SWEEP);
        let shared = Arc::new(Shared {
            name,
            template,
            overrides,
            seed,
            max_keys,
            sweep_floor,
            hasher: RandomState::new(),
            shards: (0..SHARDS)
                .map(|_| {
                    RwLock::new(Shard {
                        map: HashMap::new(),
                        sweep_at: sweep_floor,
                    })
                })
                .collect(),
            len: AtomicUsize::new(0),
            untracked: AtomicU64::new(0),
            untracked_metric,
            series,
            events: broadcast::channel(64).0,
            overflow,
            base: Instant::now(),
            full_sweep_after: AtomicU64::new(0),
        });
        if let Some(m) = &metrics {
            let weak: std::sync::Weak<dyn CountKeys> = Arc::downgrade(&shared) as _;
            m.track_keyed(weak);
        }
        KeyedCircuitBreaker { shared }
    }

    /// The keyed breaker's name (default `"default"`): the `breaker` label of its metrics and
    /// the `breaker` of its transitions.
    ///
    /// # Examples
    ///
    /// ```
    /// use seawall_circuit_breaker::{CircuitBreaker, KeyedCircuitBreaker};
    ///
    /// let keyed: KeyedCircuitBreaker<u32> = CircuitBreaker::builder().name("shards").keyed().build().unwrap();
    /// assert_eq!(keyed.name(), "shards");
    /// ```
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Runs `f` if `key`'s breaker permits, and records its outcome: `Ok` is a success, `Err`
    /// a failure. The key's breaker is created on first use; when the keyed breaker is full
    /// of breakers it cannot forget, `f` runs untracked (see
    /// [`untracked_calls`](Self::untracked_calls)).
    ///
    /// # Errors
    ///
    /// [`Error::Open`] without calling `f` when the key's breaker rejects the call;
    /// [`Error::Inner`] with `f`'s own error when it fails.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before it completes drops `f`'s future and counts the call as
    /// abandoned, as [`CircuitBreaker::call`] does.
    ///
    /// # Examples
    ///
    /// ```
    /// use seawall_circuit_breaker::KeyedCircuitBreaker;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let hosts = KeyedCircuitBreaker::<String>::builder().build().unwrap();
    /// let n = hosts.call("eu.api", || async { Ok::<_, std::io::Error>(42) }).await;
    /// assert_eq!(n.unwrap(), 42);
    /// # }
    /// ```
    pub async fn call<Q, F, Fut, T, E>(&self, key: &Q, f: F) -> Result<T, Error<E>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        match self.shared.lookup(key) {
            Some(breaker) => breaker.call(f).await,
            None => self.shared.overflow.call(f).await,
        }
    }

    /// Like [`call`](Self::call), with `classify` deciding how the result counts (see
    /// [`CircuitBreaker::call_with`]).
    ///
    /// # Errors
    ///
    /// As [`call`](Self::call).
    ///
    /// # Cancel safety
    ///
    /// As [`call`](Self::call): a dropped future counts as abandoned.
    ///
    /// # Examples
    ///
    /// ```
    /// use seawall_circuit_breaker::{CircuitBreaker, KeyedCircuitBreaker, Outcome, State};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let hosts: KeyedCircuitBreaker<String> =
    ///     CircuitBreaker::builder().consecutive_failures(1).keyed().build().unwrap();
    /// let not_found_is_healthy = |r: &Result<(), u16>| Outcome::of_error(r, |e| {
    ///     if *e == 404 { Outcome::Ignored } else { Outcome::Failure }
    /// });
    /// let _ = hosts.call_with("eu.api", not_found_is_healthy, || async { Err(404) }).await;
    /// assert_eq!(hosts.state("eu.api"), State::Closed);
    /// # }
    /// ```
    pub async fn call_with<Q, C, F, Fut, T, E>(
        &self,
        key: &Q,
        classify: C,
        f: F,
    ) -> Result<T, Error<E>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
        C: FnOnce(&Result<T, E>) -> Outcome,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        match self.shared.lookup(key) {
            Some(breaker) => breaker.call_with(classify, f).await,
            None => self.shared.overflow.call_with(classify, f).await,
        }
    }

    /// Asks `key`'s breaker for a permit to make one call; report the outcome on the
    /// [`Permit`]. An untracked call's permit is in the [`State::Disabled`] state and records
    /// nothing.
    ///
    /// # Errors
    ///
    /// [`Rejected`] when the key's breaker is open, forced open, or half-open with every
    /// probe slot taken.
    ///
    /// # Examples
    ///
    /// ```
    /// use seawall_circuit_breaker::{CircuitBreaker, KeyedCircuitBreaker, State};
    ///
    /// let hosts: KeyedCircuitBreaker<String> =
    ///     CircuitBreaker::builder().consecutive_failures(1).keyed().build().unwrap();
    /// hosts.try_acquire("eu.api").unwrap().failure();
    /// assert_eq!(hosts.try_acquire("eu.api").unwrap_err().state, State::Open);
    /// assert_eq!(hosts.try_acquire("us.api").unwrap().state(), State::Closed);
    /// ```
    #[inline]
    pub fn try_acquire<Q>(&self, key: &Q) -> Result<Permit, Rejected>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        match self.shared.lookup(key) {
            Some(breaker) => breaker.try_acquire(),
            None => self.shared.overflow.try_acquire(),
        }
    }

    /// The state the next call for `key` would see: `Closed` for a key not tracked (new, or
    /// forgotten because idle). Creates nothing. Time-driven transitions that are due are
    /// made, as [`CircuitBreaker::state`] does.
    ///
    /// # Examples
    ///
    /// ```
    /// use seawall_circuit_breaker::{KeyedCircuitBreaker, State};
    ///
    /// let hosts = KeyedCircuitBreaker::<String>::builder().build().unwrap();
    /// assert_eq!(hosts.state("never.seen"), State::Closed);
    /// assert_eq!(hosts.len(), 0);
    /// ```
    pub fn state<Q>(&self, key: &Q) -> State
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.shared
            .get(key)
            .map_or(State::Closed, |breaker| breaker.state())
    }

    /// `key`'s breaker if it is tracked, e.g. to [`force_open`](CircuitBreaker::force_open)
    /// or [`reset`](CircuitBreaker::reset) one host. While the handle is alive the key is
    /// not forgotten. Creates nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// use seawall_circuit_breaker::{KeyedCircuitBreaker, State};
    ///
    /// let hosts = KeyedCircuitBreaker::<String>::builder().build().unwrap();
    /// assert!(hosts.get("eu.api").is_none());
    /// hosts.try_acquire("eu.api").unwrap().success();
    /// let eu = hosts.get("eu.api").unwrap();
    /// eu.force_open();
    /// assert_eq!(hosts.state("eu.api"), State::ForcedOpen);
    /// ```
    pub fn get<Q>(&self, key: &Q) -> Option<CircuitBreaker>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.shared.get(key)
    }

    /// `key`'s breaker, created if it is not tracked (e.g. to force a host open before any
    /// call). `None` when the keyed breaker is full of breakers it cannot forget.
    ///
    /// # Examples
    ///
    /// ```
    /// use seawall_circuit_breaker::{KeyedCircuitBreaker, State};
    ///
    /// let hosts = KeyedCircuitBreaker::<String>::builder().build().unwrap();
    /// hosts.get_or_create("maintenance.host").unwrap().force_open();
    /// assert_eq!(hosts.open_keys(), vec![("maintenance.host".to_owned(), State::ForcedOpen)]);
    /// ```
    pub fn get_or_create<Q>(&self, key: &Q) -> Option<CircuitBreaker>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        self.shared.lookup(key)
    }

    /// How many keys are tracked now (idle ones not yet forgotten included); never more than
    /// [`max_keys`](Self::max_keys).
    ///
    /// # Examples
    ///
    /// ```
    /// use seawall_circuit_breaker::KeyedCircuitBreaker;
    ///
    /// let hosts = KeyedCircuitBreaker::<String>::builder().build().unwrap();
    /// hosts.try_acquire("a").unwrap().success();
    /// assert_eq!(hosts.len(), 1);
    /// ```
    pub fn len(&self) -> usize {
        self.shared.len.load(Ordering::Acquire)
    }

    /// `true` when no key is tracked.
    ///
    /// # Examples
    ///
    /// ```
    /// use seawall_circuit_breaker::KeyedCircuitBreaker;
    ///
    /// assert!(KeyedCircuitBreaker::<String>::builder().build().unwrap().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most keys tracked at once.
    ///
    /// # Examples
    ///
    /// ```
    /// use seawall_circuit_breaker::KeyedCircuitBreaker;
    ///
    /// let hosts = KeyedCircuitBreaker::<String>::builder().max_keys(64).build().unwrap();
    /// assert_eq!(hosts.max_keys(), 64);
    /// ```
    pub fn max_keys(&self) -> usize {
        self.shared.max_keys
    }

    /// Every tracked key whose breaker is not closed (open, half-open, forced open or
    /// disabled), with its state, sorted by nothing: a snapshot for health checks. Makes
    /// the transitions that are due, as [`state`](Self::state) does. Takes each shard's read
    /// lock in turn: O(tracked keys).
    ///
    /// # Examples
    ///
    /// ```
    /// use seawall_circuit_breaker::{CircuitBreaker, KeyedCircuitBreaker, State};
    ///
    /// let hosts: KeyedCircuitBreaker<String> =
    ///     CircuitBreaker::builder().consecutive_failures(1).keyed().build().unwrap();
    /// hosts.try_acquire("eu.api").unwrap().failure();
    /// hosts.try_acquire("us.api").unwrap().success();
    /// assert_eq!(hosts.open_keys(), vec![("eu.api".to_owned(), State::Open)]);
    /// ```
    pub fn open_keys(&self) -> Vec<(K, State)> {
        let mut keys = Vec::new();
        self.shared.for_each(|key, breaker| {
            let state = breaker.state();
            if state != State::Closed {
                keys.push((key.clone(), state));
            }
        });
        keys
    }

    /// Forgets every idle breaker now (closed, nothing counted, nothing in flight); returns
    /// how many. Never needed for the memory bound; useful before reading
    /// [`len`](Self::len) in a test or a report.
    ///
    /// # Examples
    ///
    /// ```
    /// use seawall_circuit_breaker::KeyedCircuitBreaker;
    ///
    /// let hosts = KeyedCircuitBreaker::<String>::builder().build().unwrap();
    /// hosts.try_acquire("a").unwrap().success();
    /// assert_eq!(hosts.forget_idle(), 1);
    /// assert!(hosts.is_empty());
    /// ```
    pub fn forget_idle(&self) -> usize {
        self.shared.sweep_all(true)
    }

    /// Calls passed through untracked because every slot held a breaker that could not be
    /// forgotten (see [`max_keys`](crate::KeyedCircuitBreakerBuilder::max_keys)); also the
    /// `outcome="untracked"` series of `seawall_circuit_breaker_calls_total`.
    ///
    /// # Examples
    ///
    /// ```
    /// use seawall_circuit_breaker::{CircuitBreaker, KeyedCircuitBreaker, State};
    ///
    /// let hosts: KeyedCircuitBreaker<String> =
    ///     CircuitBreaker::builder().consecutive_failures(1).keyed().max_keys(1).build().unwrap();
    /// hosts.try_acquire("down").unwrap().failure(); // open: never forgotten
    /// let permit = hosts.try_acquire("other").unwrap(); // no room: untracked
    /// assert_eq!(permit.state(), State::Disabled);
    /// permit.failure(); // records nothing
    /// assert_eq!(hosts.untracked_calls(), 1);
    /// assert_eq!(hosts.state("down"), State::Open);
    /// ```
    pub fn untracked_calls(&self) -> u64 {
        self.shared.untracked.load(Ordering::Relaxed)
    }

    /// A receiver of every later transition of every key, tagged with its key. The channel
    /// holds 64 transitions; a receiver that falls further behind gets
    /// [`RecvError::Lagged`](broadcast::error::RecvError::Lagged) and continues with the
    /// newest.
    ///
    /// # Examples
    ///
    /// ```
    /// use seawall_circuit_breaker::{CircuitBreaker, KeyedCircuitBreaker, State};
    ///
    /// let hosts: KeyedCircuitBreaker<String> =
    ///     CircuitBreaker::builder().consecutive_failures(1).keyed().build().unwrap();
    /// let mut events = hosts.subscribe();
    /// hosts.try_acquire("eu.api").unwrap().failure();
    /// let t = events.try_recv().unwrap();
    /// assert_eq!((t.key.as_str(), t.transition.to), ("eu.api", State::Open));
    /// ```
    pub fn subscribe(&self) -> broadcast::Receiver<KeyedTransition<K>> {
        self.shared.events.subscribe()
    }
}
