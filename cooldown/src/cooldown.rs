//! The public in-memory [`Cooldown`]: its API and docs. The sharded store
//! behind it is [`crate::store`], the per-key decisions [`crate::state`].

use std::borrow::Borrow;
use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use crate::builder::CooldownBuilder;
use crate::store::Inner;
use crate::{Decision, Digest, Fire, Metrics, Reservation, Suppressed};

/// Per-key cooldown: the first event for a key fires, later ones inside the
/// window are suppressed and counted, and what was suppressed is reported.
///
/// `K` is the key (an alert name, a user id), `P` an optional payload kept
/// with each key's digest (see [`CooldownBuilder::payload`]). Cloning is cheap
/// and clones share state.
///
/// - [`check`](Self::check) decides and counts in one atomic step per key.
/// - [`reserve`](Self::reserve) claims the next fire for a send that may fail;
///   the window starts only on [`Reservation::commit`].
/// - [`check_critical`](Self::check_critical) always fires.
/// - [`drain_digests`](Self::drain_digests) reports keys that went quiet with
///   suppressed events.
///
/// Memory is bounded without a background task: a key with nothing left to
/// remember (window over, no send in flight, nothing to report) is forgotten
/// by a sweep that runs at most once per window, on whichever call finds it
/// due (that call walks every key, one shard locked at a time), by
/// [`drain_digests`](Self::drain_digests), and whenever a full shard needs
/// room; [`max_keys`](CooldownBuilder::max_keys) caps the total.
///
/// # Time
///
/// Windows follow tokio's clock, so tests drive them with a paused clock
/// (`#[tokio::test(start_paused = true)]`, `tokio::time::advance`). A call
/// made where a tokio runtime that is not multi-thread is current (the only
/// kind tokio can pause) reads `tokio::time::Instant::now()`. Anywhere else (no
/// runtime, or a multi-thread runtime, where tokio's clock is the system's) the
/// cooldown reads the CPU's time-stamp counter through `quanta`, calibrated
/// once per process against the monotonic clock (at least 0.5 ms, at most
/// 200 ms, when the first cooldown is built): about 9 ns against 23 ns for
/// `clock_gettime`, most of a suppressed check's cost. The two may drift
/// apart by a few parts per million; the instants the cooldown reports
/// ([`Digest`], [`Fire::last_fired`]) are tokio instants either way.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use seawall_cooldown::{Cooldown, Decision};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let cooldown = Cooldown::builder().window(Duration::from_secs(1800)).build().unwrap();
/// assert!(cooldown.check(&"db-down").is_fire());
/// for _ in 0..12 {
///     assert!(cooldown.check(&"db-down").is_suppressed());
/// }
/// tokio::time::advance(Duration::from_secs(1800)).await;
/// let Decision::Fire(fire) = cooldown.check(&"db-down") else { unreachable!() };
/// assert_eq!(fire.suppressed_since_last, 12); // "12 more like this"
/// # }
/// ```
pub struct Cooldown<K, P = ()> {
    inner: Arc<Inner<K, P>>,
}

impl<K, P> Clone for Cooldown<K, P> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K, P> fmt::Debug for Cooldown<K, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cooldown")
            .field("name", &self.inner.name())
            .field("window", &self.inner.window())
            .field("max_keys", &self.inner.max_keys())
            .field("len", &self.inner.len())
            .finish_non_exhaustive()
    }
}

impl<K> Cooldown<K, ()> {
    /// Starts building a cooldown; see [`CooldownBuilder`] for the settings
    /// and their defaults.
    ///
    /// # Examples
    ///
    /// ```
    /// use seawall_cooldown::Cooldown;
    /// let cooldown: Cooldown<u64> = Cooldown::builder().name("alerts").build().unwrap();
    /// assert_eq!(cooldown.name(), "alerts");
    /// ```
    pub fn builder() -> CooldownBuilder<K, ()> {
        CooldownBuilder::new()
    }
}

impl<K: Hash + Eq + Clone> Cooldown<K, ()> {
    /// A cooldown with the default settings (see [`CooldownBuilder`]): a
    /// 1800 s window, at most 100 000 keys, named `"default"`.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let cooldown = seawall_cooldown::Cooldown::<String>::new();
    /// assert!(cooldown.check("db-down").is_fire());
    /// assert!(cooldown.check("db-down").is_suppressed());
    /// # }
    /// ```
    #[must_use]
    pub fn new() -> Self {
        Self::from_config(
            crate::DEFAULT_NAME.to_owned(),
            crate::DEFAULT_WINDOW,
            crate::DEFAULT_MAX_KEYS,
            None,
        )
    }
}

impl<K: Hash + Eq + Clone> Default for Cooldown<K, ()> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K, P> Cooldown<K, P> {
    /// The instance name (the `cooldown` metric label).
    ///
    /// # Examples
    ///
    /// ```
    /// let cooldown = seawall_cooldown::Cooldown::<u64>::new();
    /// assert_eq!(cooldown.name(), "default");
    /// ```
    pub fn name(&self) -> &str {
        self.inner.name()
    }

    /// The window a key stays quiet after it fires.
    pub fn window(&self) -> Duration {
        self.inner.window()
    }

    /// The cap on tracked keys.
    ///
    /// # Examples
    ///
    /// ```
    /// let cooldown = seawall_cooldown::Cooldown::<u64>::builder().max_keys(500).build().unwrap();
    /// assert_eq!(cooldown.max_keys(), 500);
    /// ```
    pub fn max_keys(&self) -> usize {
        self.inner.max_keys()
    }

    /// Number of keys tracked right now, never more than
    /// [`max_keys`](Self::max_keys). Keys with nothing left to remember are
    /// counted until a sweep, a drain or a full shard forgets them.
    ///
    /// # Examples
    ///
    /// ```
    /// let cooldown = seawall_cooldown::Cooldown::<u64>::new();
    /// cooldown.check(&1);
    /// cooldown.check(&2);
    /// assert_eq!(cooldown.len(), 2);
    /// ```
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// True when no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<K: Hash + Eq + Clone, P> Cooldown<K, P> {
    pub(crate) fn from_config(
        name: String,
        window: Duration,
        max_keys: usize,
        metrics: Option<Metrics>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner::new(name, window, max_keys, metrics)),
        }
    }

    /// One event for `key`: [`Decision::Fire`] if the key is not inside its
    /// window (a new window starts now), otherwise [`Decision::Suppressed`]
    /// with the time left and the number of events suppressed so far.
    ///
    /// Deciding and counting are one atomic step per key: of any number of
    /// concurrent checks on a key outside its window, exactly one fires. An
    /// event arriving while a [`Reservation`] for the key is in flight is
    /// suppressed. A fire reports (and clears) the key's pending digest.
    ///
    /// # Panics
    ///
    /// Never.
    ///
    /// # Examples
    ///
    /// ```
    /// use seawall_cooldown::{Cooldown, Decision};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let cooldown = Cooldown::builder().build().unwrap();
    /// assert!(matches!(cooldown.check(&"db-down"), Decision::Fire(_)));
    /// match cooldown.check(&"db-down") {
    ///     Decision::Suppressed(s) => assert_eq!(s.suppressed, 1),
    ///     Decision::Fire(_) => unreachable!(),
    /// }
    /// # }
    /// ```
    pub fn check<Q>(&self, key: &Q) -> Decision<P>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        self.inner.check::<_, true>(key, || None)
    }

    /// Like [`check`](Self::check), and if the event is suppressed, keeps a
    /// clone of `payload` as the key's [`Digest::last_payload`]. The payload is
    /// cloned only when the event is suppressed.
    ///
    /// # Panics
    ///
    /// Never (unless `P::clone` panics).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use seawall_cooldown::Cooldown;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// let cooldown = Cooldown::builder().payload::<&str>().build().unwrap();
    /// cooldown.check_with(&"disk", &"90% full");
    /// cooldown.check_with(&"disk", &"95% full");
    /// cooldown.check_with(&"disk", &"99% full");
    /// tokio::time::advance(cooldown.window()).await;
    /// let (key, digest) = cooldown.drain_digests().pop().unwrap();
    /// assert_eq!((key, digest.count, digest.last_payload), ("disk", 2, Some("99% full")));
    /// # }
    /// ```
    pub fn check_with<Q>(&self, key: &Q, payload: &P) -> Decision<P>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
        P: Clone,
    {
        self.inner.check::<_, false>(key, || Some(payload.clone()))
    }

    /// A critical event: always fires, even inside the key's window or while
    /// a send is in flight, reports the pending digest, and starts a new
    /// window (so the ordinary events that follow it stay quiet).
    /// [`Fire::bypassed`] tells whether it would otherwise have been
    /// suppressed; such fires are counted as `decision="bypass"`.
    ///
    /// # Panics
    ///
    /// Never.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let cooldown = seawall_cooldown::Cooldown::builder().build().unwrap();
    /// assert!(cooldown.check(&"db-down").is_fire());
    /// let fire = cooldown.check_critical(&"db-down");
    /// assert!(fire.bypassed);
    /// # }
    /// ```
    pub fn check_critical<Q>(&self, key: &Q) -> Fire<P>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        self.inner.check_critical(key)
    }

    /// Claims the next fire for `key`, for a send that may fail.
    ///
    /// Wins exactly when [`check`](Self::check) would fire; of concurrent
    /// reservations for one key, only one wins. The window starts when the
    /// reservation is [committed](Reservation::commit); until then other
    /// events for the key are suppressed. Dropping the reservation without
    /// commit rolls back. The winning reservation carries the [`Fire`] to
    /// report ([`Reservation::fire`]).
    ///
    /// # Errors
    ///
    /// [`Suppressed`] when the key is inside its window or another
    /// reservation is in flight; the event is counted in the key's digest.
    ///
    /// # Panics
    ///
    /// Never.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let cooldown = seawall_cooldown::Cooldown::builder().build().unwrap();
    /// let first = cooldown.reserve(&"db-down").expect("wins");
    /// assert!(cooldown.reserve(&"db-down").is_err()); // one send at a time
    /// first.commit();
    /// assert_eq!(cooldown.reserve(&"db-down").unwrap_err().suppressed, 2);
    /// # }
    /// ```
    pub fn reserve<Q>(&self, key: &Q) -> Result<Reservation<K, P>, Suppressed>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        self.reserve_inner(key, || None)
    }

    /// Like [`reserve`](Self::reserve), and if the event is suppressed, keeps
    /// a clone of `payload` as the key's [`Digest::last_payload`].
    ///
    /// # Errors
    ///
    /// As [`reserve`](Self::reserve).
    ///
    /// # Panics
    ///
    /// Never (unless `P::clone` panics).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let cooldown = seawall_cooldown::Cooldown::builder().payload::<u32>().build().unwrap();
    /// let sending = cooldown.reserve_with(&"cpu", &91).unwrap();
    /// assert!(cooldown.reserve_with(&"cpu", &97).is_err());
    /// drop(sending); // the send failed: the suppressed event is reported next
    /// let fire = cooldown.reserve_with(&"cpu", &99).unwrap();
    /// assert_eq!(fire.fire().digest.as_ref().unwrap().last_payload, Some(97));
    /// # }
    /// ```
    pub fn reserve_with<Q>(&self, key: &Q, payload: &P) -> Result<Reservation<K, P>, Suppressed>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
        P: Clone,
    {
        self.reserve_inner(key, || Some(payload.clone()))
    }

    fn reserve_inner<Q>(
        &self,
        key: &Q,
        payload: impl FnOnce() -> Option<P>,
    ) -> Result<Reservation<K, P>, Suppressed>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let (key, hash, token, fire) = self.inner.reserve(key, payload)?;
        Ok(Reservation::new(
            Arc::clone(&self.inner),
            key,
            hash,
            token,
            fire,
        ))
    }

    /// Takes the digests of keys whose window ended with suppressed events
    /// that no fire has reported yet: the keys that went quiet. Each
    /// suppressed event is reported once, here or by the key's next fire.
    ///
    /// Walks every tracked key (one shard locked at a time) and forgets keys
    /// with nothing left to remember, so it also sweeps. Call it periodically,
    /// e.g. every minute, and send one summary per digest.
    ///
    /// # Panics
    ///
    /// Never.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// let cooldown = seawall_cooldown::Cooldown::builder().build().unwrap();
    /// cooldown.check(&"db-down");
    /// cooldown.check(&"db-down");
    /// assert!(cooldown.drain_digests().is_empty()); // window still open
    /// tokio::time::advance(cooldown.window()).await;
    /// let digests = cooldown.drain_digests();
    /// assert_eq!(digests.len(), 1);
    /// assert_eq!((digests[0].0, digests[0].1.count), ("db-down", 1));
    /// assert!(cooldown.drain_digests().is_empty()); // reported once
    /// # }
    /// ```
    pub fn drain_digests(&self) -> Vec<(K, Digest<P>)> {
        self.inner.drain_digests()
    }

    /// Forgets every key with nothing left to remember (window over, no send
    /// in flight, nothing to report) and returns how many. Not needed for
    /// bounded memory (calls sweep on their own at most once per window);
    /// useful before reading [`len`](Self::len).
    ///
    /// # Panics
    ///
    /// Never.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// let cooldown = seawall_cooldown::Cooldown::builder().build().unwrap();
    /// cooldown.check(&1);
    /// cooldown.check(&2);
    /// tokio::time::advance(cooldown.window()).await;
    /// assert_eq!(cooldown.sweep(), 2);
    /// assert!(cooldown.is_empty());
    /// # }
    /// ```
    pub fn sweep(&self) -> usize {
        self.inner.sweep()
    }
}
