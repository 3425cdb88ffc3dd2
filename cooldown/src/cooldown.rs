//! The in-memory store: sharded per-key records driven by [`crate::state`].

use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use hashbrown::{DefaultHashBuilder, HashTable};
use parking_lot::Mutex;
use tokio::time::Instant;

use crate::builder::CooldownBuilder;
use crate::metrics::InstanceMetrics;
use crate::state::{KeyState, Pending, RawFire, RawSuppressed, Verdict};
use crate::{Decision, Digest, Fire, Metrics, Reservation, Suppressed};

/// Most shards a cooldown uses.
const MAX_SHARDS: usize = 16;
/// Fewest keys per shard worth a shard of their own.
const MIN_KEYS_PER_SHARD: usize = 64;
/// Shortest interval between two sweeps, so a tiny window cannot make every
/// call walk the whole store.
const MIN_SWEEP_INTERVAL: u64 = 1_000_000;

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
            .field("name", &self.inner.name)
            .field("window", &self.inner.window)
            .field("max_keys", &self.inner.max_keys)
            .field("len", &self.inner.len.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

struct Entry<K, P> {
    key: K,
    state: KeyState<P>,
}

struct Table<K, P> {
    entries: HashTable<Entry<K, P>>,
    /// Last reservation token handed out in this shard (0 means none). A
    /// token only has to differ from that of a stale reservation for the same
    /// key still alive after the key was evicted and re-created, so 32 bits
    /// (four billion reservations per shard before reuse) are plenty.
    tokens: u32,
}

/// One shard, on its own cache lines so shards do not false-share.
#[repr(align(128))]
struct Shard<K, P>(Mutex<Table<K, P>>);

/// What a call did to the set of tracked keys, accounted after the lock.
#[derive(Default)]
struct Housekeeping {
    inserted: usize,
    expired: usize,
    evicted: usize,
    lost_suppressed: u64,
}

pub(crate) struct Inner<K, P> {
    shards: Box<[Shard<K, P>]>,
    hasher: DefaultHashBuilder,
    shard_mask: u64,
    shard_cap: usize,
    name: String,
    window: Duration,
    window_ticks: u64,
    max_keys: usize,
    sweep_every: u64,
    base: Instant,
    len: AtomicUsize,
    next_sweep: AtomicU64,
    metrics: Option<InstanceMetrics>,
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
        CooldownBuilder::default()
    }
}

impl<K, P> Cooldown<K, P> {
    /// The instance name (the `cooldown` metric label).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The window a key stays quiet after it fires.
    pub fn window(&self) -> Duration {
        self.inner.window
    }

    /// The cap on tracked keys.
    pub fn max_keys(&self) -> usize {
        self.inner.max_keys
    }

    /// Number of keys tracked right now, never more than
    /// [`max_keys`](Self::max_keys). Keys with nothing left to remember are
    /// counted until a sweep, a drain or a full shard forgets them.
    pub fn len(&self) -> usize {
        self.inner.len.load(Ordering::Relaxed)
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
        let shards = (max_keys / MIN_KEYS_PER_SHARD).clamp(1, MAX_SHARDS);
        // Round down to a power of two so a mask picks the shard.
        let shards = 1usize << (usize::BITS - 1 - shards.leading_zeros());
        let window_ticks = duration_ticks(window);
        let inner = Inner {
            shards: (0..shards)
                .map(|_| {
                    Shard(Mutex::new(Table {
                        entries: HashTable::new(),
                        tokens: 0,
                    }))
                })
                .collect(),
            hasher: DefaultHashBuilder::default(),
            shard_mask: shards as u64 - 1,
            shard_cap: max_keys / shards,
            metrics: metrics.map(|m| m.instance(&name)),
            name,
            window,
            window_ticks,
            max_keys,
            sweep_every: window_ticks.max(MIN_SWEEP_INTERVAL),
            base: Instant::now(),
            len: AtomicUsize::new(0),
            next_sweep: AtomicU64::new(window_ticks.max(MIN_SWEEP_INTERVAL)),
        };
        Self {
            inner: Arc::new(inner),
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
    pub fn check(&self, key: &K) -> Decision<P> {
        self.inner.check(key, || None)
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
    pub fn check_with(&self, key: &K, payload: &P) -> Decision<P>
    where
        P: Clone,
    {
        self.inner.check(key, || Some(payload.clone()))
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
    pub fn check_critical(&self, key: &K) -> Fire<P> {
        let inner = &*self.inner;
        let now = inner.now_ticks();
        let hash = inner.hasher.hash_one(key);
        let raw = inner.with_entry(key, hash, now, |state, _| {
            state.bypass(now, inner.window_ticks)
        });
        if let Some(m) = &inner.metrics {
            if raw.bypassed {
                m.bypass.inc();
            } else {
                m.fire.inc();
            }
        }
        inner.fire_from(raw)
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
    pub fn reserve(&self, key: &K) -> Result<Reservation<K, P>, Suppressed> {
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
    pub fn reserve_with(&self, key: &K, payload: &P) -> Result<Reservation<K, P>, Suppressed>
    where
        P: Clone,
    {
        self.reserve_inner(key, || Some(payload.clone()))
    }

    fn reserve_inner(
        &self,
        key: &K,
        payload: impl FnOnce() -> Option<P>,
    ) -> Result<Reservation<K, P>, Suppressed> {
        let inner = &*self.inner;
        let now = inner.now_ticks();
        let hash = inner.hasher.hash_one(key);
        let result = inner.with_entry(key, hash, now, |state, tokens| {
            *tokens = tokens.wrapping_add(1).max(1);
            let token = *tokens;
            state
                .reserve(now, inner.window_ticks, payload, token)
                .map(|raw| (raw, token))
        });
        match result {
            Ok((raw, token)) => {
                let fire = inner.fire_from(raw);
                Ok(Reservation::new(
                    Arc::clone(&self.inner),
                    key.clone(),
                    hash,
                    token,
                    fire,
                ))
            }
            Err(raw) => {
                if let Some(m) = &inner.metrics {
                    m.suppressed.inc();
                }
                Err(inner.suppressed_from(raw))
            }
        }
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
        let inner = &*self.inner;
        let now = inner.now_ticks();
        let window = inner.window_ticks;
        let mut out = Vec::new();
        let mut hk = Housekeeping::default();
        for shard in &inner.shards {
            let mut table = shard.0.lock();
            let before = table.entries.len();
            table.entries.retain(|e| {
                if let Some(pending) = e.state.take_ready_digest(now, window) {
                    let digest = inner.digest_from(pending, e.state.fired_at());
                    out.push((e.key.clone(), digest));
                }
                !e.state.is_dead(now, window)
            });
            hk.expired += before - table.entries.len();
            inner.maybe_shrink(&mut table);
        }
        inner.account(&hk);
        if !out.is_empty() {
            tracing::debug!(cooldown = %inner.name, digests = out.len(), "drained cooldown digests");
        }
        out
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
        let now = self.inner.now_ticks();
        self.inner.sweep_at(now)
    }
}

impl<K, P> Inner<K, P> {
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    fn now_ticks(&self) -> u64 {
        duration_ticks(Instant::now().saturating_duration_since(self.base))
    }

    fn instant(&self, ticks: u64) -> Instant {
        self.base + Duration::from_nanos(ticks)
    }

    fn ticks(&self, at: Instant) -> u64 {
        duration_ticks(at.saturating_duration_since(self.base))
    }

    fn digest_from(&self, pending: Pending<P>, last_fired: Option<u64>) -> Digest<P> {
        Digest {
            count: pending.count,
            first_suppressed: self.instant(pending.first),
            last_suppressed: self.instant(pending.last),
            last_fired: last_fired.map(|t| self.instant(t)),
            last_payload: pending.payload,
        }
    }

    fn fire_from(&self, raw: RawFire<P>) -> Fire<P> {
        let digest = raw.digest.map(|p| self.digest_from(p, raw.last_fired));
        Fire {
            suppressed_since_last: digest.as_ref().map_or(0, |d| d.count),
            last_fired: raw.last_fired.map(|t| self.instant(t)),
            digest,
            bypassed: raw.bypassed,
            degraded: false,
        }
    }

    fn suppressed_from(&self, raw: RawSuppressed) -> Suppressed {
        Suppressed {
            remaining: Duration::from_nanos(raw.remaining),
            suppressed: raw.suppressed,
            degraded: false,
        }
    }

    /// Updates `len`, the gauge and the eviction counter after a lock is
    /// released, and says so when keys were evicted early.
    fn account(&self, hk: &Housekeeping) {
        let removed = hk.expired + hk.evicted;
        if hk.inserted > removed {
            self.len.fetch_add(hk.inserted - removed, Ordering::Relaxed);
        } else if removed > hk.inserted {
            self.len.fetch_sub(removed - hk.inserted, Ordering::Relaxed);
        }
        if let Some(m) = &self.metrics {
            let delta = hk.inserted as i64 - removed as i64;
            if delta != 0 {
                m.keys.inc_by(delta);
            }
            if hk.evicted > 0 {
                m.evictions.inc_by(hk.evicted as u64);
            }
        }
        if hk.evicted > 0 {
            tracing::warn!(
                cooldown = %self.name,
                evicted = hk.evicted,
                lost_suppressed = hk.lost_suppressed,
                max_keys = self.max_keys,
                "cooldown full: evicted the longest-quiet keys before their window ended"
            );
        }
    }

    /// Releases memory a sweep freed, keeping room to grow back.
    fn maybe_shrink(&self, table: &mut Table<K, P>)
    where
        K: Hash,
    {
        let len = table.entries.len();
        if table.entries.capacity() > 64 && table.entries.capacity() / 4 > len {
            table
                .entries
                .shrink_to(len * 2, |e| self.hasher.hash_one(&e.key));
        }
    }
}

impl<K: Hash + Eq + Clone, P> Inner<K, P> {
    fn shard(&self, hash: u64) -> &Mutex<Table<K, P>> {
        // hashbrown indexes buckets with the low bits and tags with the top 7,
        // so the shard is picked from bits in between.
        &self.shards[((hash >> 32) & self.shard_mask) as usize].0
    }

    /// Runs `f` on the key's record (a fresh one if the key is not tracked)
    /// under its shard lock, with the shard's reservation token counter. A
    /// fresh record is kept only if `f` left something to remember.
    fn with_entry<R>(
        &self,
        key: &K,
        hash: u64,
        now: u64,
        f: impl FnOnce(&mut KeyState<P>, &mut u32) -> R,
    ) -> R {
        let (out, hk) = {
            let mut guard = self.shard(hash).lock();
            let table = &mut *guard;
            if let Some(entry) = table.entries.find_mut(hash, |e| e.key == *key) {
                (f(&mut entry.state, &mut table.tokens), None)
            } else {
                let mut state = KeyState::default();
                let out = f(&mut state, &mut table.tokens);
                if state.is_dead(now, self.window_ticks) {
                    (out, None)
                } else {
                    let hk = self.insert(table, hash, key.clone(), state, now);
                    (out, Some(hk))
                }
            }
        };
        if let Some(hk) = hk {
            self.account(&hk);
        }
        self.maybe_sweep(now);
        out
    }

    fn check(&self, key: &K, payload: impl FnOnce() -> Option<P>) -> Decision<P> {
        let now = self.now_ticks();
        let hash = self.hasher.hash_one(key);
        let verdict = self.with_entry(key, hash, now, |state, _| {
            state.check(now, self.window_ticks, payload)
        });
        match verdict {
            Verdict::Fire(raw) => {
                if let Some(m) = &self.metrics {
                    m.fire.inc();
                }
                Decision::Fire(self.fire_from(raw))
            }
            Verdict::Suppressed(raw) => {
                if let Some(m) = &self.metrics {
                    m.suppressed.inc();
                }
                Decision::Suppressed(self.suppressed_from(raw))
            }
        }
    }

    pub(crate) fn commit(&self, key: &K, hash: u64, token: u32) {
        let now = self.now_ticks();
        self.with_entry(key, hash, now, |state, _| state.commit(now, token));
        if let Some(m) = &self.metrics {
            m.fire.inc();
        }
    }

    pub(crate) fn rollback(&self, key: &K, hash: u64, token: u32, digest: Option<Digest<P>>) {
        let pending = digest.map(|d| Pending {
            count: d.count,
            first: self.ticks(d.first_suppressed),
            last: self.ticks(d.last_suppressed),
            payload: d.last_payload,
        });
        let now = self.now_ticks();
        let owned = self.with_entry(key, hash, now, |state, _| state.rollback(token, pending));
        if let Some(m) = &self.metrics {
            m.rolled_back.inc();
        }
        tracing::debug!(
            cooldown = %self.name,
            still_owned = owned,
            "cooldown reservation rolled back"
        );
    }

    /// Inserts a new key, first making room if its shard is full.
    fn insert(
        &self,
        table: &mut Table<K, P>,
        hash: u64,
        key: K,
        state: KeyState<P>,
        now: u64,
    ) -> Housekeeping {
        let mut hk = if table.entries.len() >= self.shard_cap {
            self.make_room(table, now)
        } else {
            Housekeeping::default()
        };
        table
            .entries
            .insert_unique(hash, Entry { key, state }, |e| self.hasher.hash_one(&e.key));
        hk.inserted = 1;
        hk
    }

    /// The `max_keys` policy: forget keys with nothing to remember; if that
    /// frees nothing, evict the eighth of the shard quiet the longest, keys
    /// with a send in flight last.
    fn make_room(&self, table: &mut Table<K, P>, now: u64) -> Housekeeping {
        let window = self.window_ticks;
        let mut hk = Housekeeping::default();
        let before = table.entries.len();
        table.entries.retain(|e| !e.state.is_dead(now, window));
        hk.expired = before - table.entries.len();
        if table.entries.len() < self.shard_cap {
            return hk;
        }
        let rank = |e: &Entry<K, P>| (e.state.is_reserved(), e.state.last_seen());
        let batch = (self.shard_cap / 8).clamp(1, table.entries.len());
        let full = table.entries.len();
        let mut ranks: Vec<(bool, u64)> = table.entries.iter().map(rank).collect();
        let (_, &mut threshold, _) = ranks.select_nth_unstable(batch - 1);
        let below = ranks.iter().filter(|r| **r < threshold).count();
        let mut ties = batch - below;
        let mut lost = 0u64;
        table.entries.retain(|e| {
            let r = rank(e);
            let evict = r < threshold || (r == threshold && ties > 0);
            if r == threshold && evict {
                ties -= 1;
            }
            if evict {
                lost = lost.saturating_add(e.state.pending_count());
            }
            !evict
        });
        hk.evicted = full - table.entries.len();
        hk.lost_suppressed = lost;
        hk
    }

    /// Sweeps if the interval has passed; one caller wins the race.
    fn maybe_sweep(&self, now: u64) {
        let due = self.next_sweep.load(Ordering::Relaxed);
        if now >= due
            && self
                .next_sweep
                .compare_exchange(
                    due,
                    now.saturating_add(self.sweep_every),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            self.sweep_at(now);
        }
    }

    fn sweep_at(&self, now: u64) -> usize {
        let window = self.window_ticks;
        let mut hk = Housekeeping::default();
        for shard in &self.shards {
            let mut table = shard.0.lock();
            let before = table.entries.len();
            table.entries.retain(|e| !e.state.is_dead(now, window));
            hk.expired += before - table.entries.len();
            self.maybe_shrink(&mut table);
        }
        self.account(&hk);
        if hk.expired > 0 {
            tracing::debug!(cooldown = %self.name, expired = hk.expired, "cooldown swept expired keys");
        }
        hk.expired
    }
}

/// A duration in ticks (nanoseconds), saturating (without `u128` arithmetic:
/// this runs on every call).
fn duration_ticks(d: Duration) -> u64 {
    d.as_secs()
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::from(d.subsec_nanos()))
}
