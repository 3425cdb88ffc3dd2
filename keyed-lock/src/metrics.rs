//! Prometheus metrics and the event sink backends report to.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::FencingToken;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct LockLabels {
    lock: String,
}

fn wait_histogram() -> Histogram {
    // 100 µs .. ~105 s
    Histogram::new(exponential_buckets(0.0001, 4.0, 11))
}

/// The metric families of keyed locks, registered once and shared by every lock built with it.
///
/// | family | type | meaning |
/// | --- | --- | --- |
/// | `seawall_keyed_lock_acquired_total{lock}` | counter | leases granted |
/// | `seawall_keyed_lock_contended_total{lock}` | counter | acquisitions that had to queue, `try_lock` calls that got `Busy`, and waits that timed out |
/// | `seawall_keyed_lock_timeouts_total{lock}` | counter | `lock_timeout` calls that gave up |
/// | `seawall_keyed_lock_expired_total{lock}` | counter | leases that ran past their TTL (taken over by the next holder, or released late) |
/// | `seawall_keyed_lock_wait_seconds{lock}` | histogram | time spent queued, for acquisitions that queued |
/// | `seawall_keyed_lock_held{lock}` | gauge | leases currently granted and not yet released or expired-and-taken-over |
/// | `seawall_keyed_lock_backend_errors_total{lock}` | counter | calls to a remote backend (Redis) that failed: unreachable, no answer in time, or an error reply |
///
/// The `lock` label is the lock's [`name`](crate::KeyedLockBuilder::name), never a key.
///
/// # Examples
///
/// ```
/// use prometheus_client::registry::Registry;
/// use seawall_keyed_lock::{KeyedLock, Metrics};
///
/// let mut registry = Registry::default();
/// let metrics = Metrics::register(&mut registry);
/// let locks = KeyedLock::<u64>::builder().name("users").metrics(metrics).build().unwrap();
/// assert!(locks.try_lock(&1).is_ok());
/// ```
#[derive(Debug, Clone)]
pub struct Metrics {
    acquired: Family<LockLabels, Counter>,
    contended: Family<LockLabels, Counter>,
    timeouts: Family<LockLabels, Counter>,
    expired: Family<LockLabels, Counter>,
    wait: Family<LockLabels, Histogram, fn() -> Histogram>,
    held: Family<LockLabels, Gauge>,
    backend_errors: Family<LockLabels, Counter>,
}

impl Metrics {
    /// Registers the `seawall_keyed_lock_*` families in `registry`.
    ///
    /// Call it once per registry and clone the result into every lock.
    ///
    /// # Panics
    ///
    /// Never.
    ///
    /// # Examples
    ///
    /// ```
    /// use prometheus_client::registry::Registry;
    /// use seawall_keyed_lock::{KeyedLock, Metrics};
    ///
    /// let mut registry = Registry::default();
    /// let metrics = Metrics::register(&mut registry);
    /// let locks = KeyedLock::<u64>::builder().name("users").metrics(metrics).build().unwrap();
    /// drop(locks.try_lock(&1).unwrap());
    /// let mut text = String::new();
    /// prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    /// assert!(text.contains("seawall_keyed_lock_acquired_total{lock=\"users\"} 1"), "{text}");
    /// ```
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            acquired: Family::default(),
            contended: Family::default(),
            timeouts: Family::default(),
            expired: Family::default(),
            wait: Family::new_with_constructor(wait_histogram as fn() -> Histogram),
            held: Family::default(),
            backend_errors: Family::default(),
        };
        registry.register(
            "seawall_keyed_lock_acquired",
            "Leases granted",
            metrics.acquired.clone(),
        );
        registry.register(
            "seawall_keyed_lock_contended",
            "Acquisitions that found the key locked (queued, Busy or timed out)",
            metrics.contended.clone(),
        );
        registry.register(
            "seawall_keyed_lock_timeouts",
            "Timed acquisitions that gave up",
            metrics.timeouts.clone(),
        );
        registry.register(
            "seawall_keyed_lock_expired",
            "Leases that ran past their TTL",
            metrics.expired.clone(),
        );
        registry.register(
            "seawall_keyed_lock_wait_seconds",
            "Time spent queued for a lease",
            metrics.wait.clone(),
        );
        registry.register(
            "seawall_keyed_lock_held",
            "Leases currently held",
            metrics.held.clone(),
        );
        registry.register(
            "seawall_keyed_lock_backend_errors",
            "Calls to a remote lock backend that failed",
            metrics.backend_errors.clone(),
        );
        metrics
    }

    fn resolve(&self, name: &str) -> Resolved {
        let labels = LockLabels {
            lock: name.to_owned(),
        };
        Resolved {
            acquired: self.acquired.get_or_create_owned(&labels),
            contended: self.contended.get_or_create_owned(&labels),
            timeouts: self.timeouts.get_or_create_owned(&labels),
            expired: self.expired.get_or_create_owned(&labels),
            wait: self.wait.get_or_create_owned(&labels),
            held: self.held.get_or_create_owned(&labels),
            backend_errors: self.backend_errors.get_or_create_owned(&labels),
        }
    }
}

#[derive(Debug, Clone)]
struct Resolved {
    acquired: Counter,
    contended: Counter,
    timeouts: Counter,
    expired: Counter,
    wait: Histogram,
    held: Gauge,
    backend_errors: Counter,
}

/// Where a [`LockBackend`](crate::LockBackend) reports what happened to leases: metrics and
/// `tracing` events of one lock.
///
/// Every lease is reported exactly once as [`granted`](Self::granted) and at most once as
/// ended, either by [`released`](Self::released) or by [`taken_over`](Self::taken_over), so
/// the `held` gauge never drifts. A lease whose holder vanished and that nobody ever takes
/// over stays counted as held.
///
/// Cloning is cheap (reference-counted handles), so a backend can keep one per lease for
/// reports that happen in the background.
#[derive(Debug, Clone)]
pub struct LockEvents {
    name: Arc<str>,
    metrics: Option<Resolved>,
}

impl LockEvents {
    pub(crate) fn new(name: Arc<str>, metrics: Option<&Metrics>) -> Self {
        let metrics = metrics.map(|m| m.resolve(&name));
        Self { name, metrics }
    }

    /// The lock's name (the `lock` label).
    ///
    /// # Examples
    ///
    /// ```
    /// let locks = seawall_keyed_lock::KeyedLock::<u64>::builder().name("users").build().unwrap();
    /// assert_eq!(locks.name(), "users");
    /// ```
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether anything listens for expiries on release, i.e. whether
    /// [`released`](Self::released) needs an accurate `expired` flag. When it is `false` a
    /// backend may skip reading the clock on release.
    #[must_use]
    pub fn observes_expiry(&self) -> bool {
        self.metrics.is_some()
    }

    /// Whether [`granted`](Self::granted) records how long a waiter queued: when it is
    /// `false` a backend need not read the clock when a waiter joins the queue.
    pub(crate) fn observes_waits(&self) -> bool {
        self.metrics.is_some()
    }

    /// A lease was granted; `queued` is how long the caller waited in the queue, `None` when it
    /// did not queue.
    pub fn granted(&self, queued: Option<Duration>) {
        if let Some(m) = &self.metrics {
            m.acquired.inc();
            m.held.inc();
            if let Some(waited) = queued {
                m.contended.inc();
                m.wait.observe(waited.as_secs_f64());
            }
        }
    }

    /// A non-waiting acquisition found the key held.
    pub fn busy(&self) {
        if let Some(m) = &self.metrics {
            m.contended.inc();
        }
    }

    /// A timed acquisition gave up after `waited`.
    pub fn timed_out(&self, waited: Duration) {
        if let Some(m) = &self.metrics {
            m.contended.inc();
            m.timeouts.inc();
        }
        tracing::debug!(lock = %self.name, ?waited, "keyed lock wait timed out");
    }

    /// The holder of a live lease released it; `expired` if it released after its deadline
    /// (nobody had taken over).
    pub fn released(&self, expired: bool) {
        if let Some(m) = &self.metrics {
            m.held.dec();
            if expired {
                m.expired.inc();
            }
        }
        if expired {
            tracing::info!(lock = %self.name, "keyed lock lease released after its TTL");
        }
    }

    /// A call to a remote backend failed (unreachable, no answer in time, error reply).
    pub fn backend_error(&self, error: &dyn std::error::Error) {
        if let Some(m) = &self.metrics {
            m.backend_errors.inc();
        }
        tracing::warn!(lock = %self.name, %error, "keyed lock backend call failed");
    }

    /// A lease ran past its deadline and was ended so the next acquirer could proceed.
    pub fn taken_over(&self, token: FencingToken, held_for: Duration) {
        if let Some(m) = &self.metrics {
            m.held.dec();
            m.expired.inc();
        }
        tracing::warn!(
            lock = %self.name,
            token = token.get(),
            ?held_for,
            "keyed lock lease expired; handing the key to the next acquirer"
        );
    }
}
