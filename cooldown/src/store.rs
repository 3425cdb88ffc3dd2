//! The in-memory store behind [`Cooldown`](crate::Cooldown): sharded per-key
//! records driven by [`crate::state`], the `max_keys` policy and the sweeps.

use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use hashbrown::{DefaultHashBuilder, HashTable};
use parking_lot::{Mutex, MutexGuard};
use tokio::time::Instant;

use crate::clock::{Clock, duration_ticks};
use crate::hot::HotCell;

use crate::metrics::InstanceMetrics;
use crate::state::{KeyState, Pending, RawFire, RawSuppressed, Verdict};
use crate::{Decision, Digest, Fire, Metrics, Suppressed};

/// Most shards a cooldown uses.
const MAX_SHARDS: usize = 16;
/// Fewest keys per shard worth a shard of their own.
const MIN_KEYS_PER_SHARD: usize = 64;
/// Shortest interval between two sweeps, so a tiny window cannot make every
/// call walk the whole store.
const MIN_SWEEP_INTERVAL: u64 = 1_000_000;

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
struct Shard<K, P> {
    table: Mutex<Table<K, P>>,
    /// True while `hot` holds a cell. Written only under `table`'s lock (so
    /// exact there), read without it so a check skips `hot` when there is
    /// none.
    has_hot: AtomicBool,
    /// The key whose suppressions are counted without the lock, if any
    /// (`crate::hot`).
    hot: ArcSwapOption<HotCell<K>>,
}

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
    clock: Clock,
    len: AtomicUsize,
    next_sweep: AtomicU64,
    metrics: Option<InstanceMetrics>,
    /// Tests: install a hot cell on every eligible suppression, not only
    /// when the shard's lock was contended.
    #[cfg(test)]
    always_hot: bool,
    /// Tests: suppressions counted in a hot cell.
    #[cfg(test)]
    hot_counted: AtomicU64,
}

impl<K, P> Inner<K, P> {
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn window(&self) -> Duration {
        self.window
    }

    pub(crate) fn max_keys(&self) -> usize {
        self.max_keys
    }

    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    fn now_ticks(&self) -> u64 {
        self.clock.now_ticks()
    }

    fn instant(&self, ticks: u64) -> Instant {
        // `ticks` is at most `now + window`, so this only saturates past the year 2500.
        let d = Duration::from_nanos(ticks);
        let base = self.clock.base();
        base.checked_add(d)
            .unwrap_or_else(|| base + Duration::from_secs(86_400 * 365 * 30))
    }

    fn ticks(&self, at: Instant) -> u64 {
        duration_ticks(at.saturating_duration_since(self.clock.base()))
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
    pub(crate) fn new(
        name: String,
        window: Duration,
        max_keys: usize,
        metrics: Option<Metrics>,
    ) -> Self {
        let shards = (max_keys / MIN_KEYS_PER_SHARD).clamp(1, MAX_SHARDS);
        // Round down to a power of two so a mask picks the shard.
        let shards = 1usize << (usize::BITS - 1 - shards.leading_zeros());
        let window_ticks = duration_ticks(window);
        Inner {
            shards: (0..shards)
                .map(|_| Shard {
                    table: Mutex::new(Table {
                        entries: HashTable::new(),
                        tokens: 0,
                    }),
                    has_hot: AtomicBool::new(false),
                    hot: ArcSwapOption::empty(),
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
            clock: Clock::new(),
            len: AtomicUsize::new(0),
            next_sweep: AtomicU64::new(window_ticks.max(MIN_SWEEP_INTERVAL)),
            #[cfg(test)]
            always_hot: false,
            #[cfg(test)]
            hot_counted: AtomicU64::new(0),
        }
    }

    pub(crate) fn check_critical<Q>(&self, key: &Q) -> Fire<P>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let inner = self;
        let now = inner.now_ticks();
        let hash = inner.hasher.hash_one(key);
        let raw = inner.with_entry::<_, _, false>(inner.shard(hash), key, hash, now, |state, _| {
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

    /// Claims the key's next fire: the owned key, its hash, the reservation's token
    /// and the fire it reports.
    pub(crate) fn reserve<Q>(
        &self,
        key: &Q,
        payload: impl FnOnce() -> Option<P>,
    ) -> Result<(K, u64, u32, Fire<P>), Suppressed>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let inner = self;
        let now = inner.now_ticks();
        let hash = inner.hasher.hash_one(key);
        let result =
            inner.with_entry::<_, _, false>(inner.shard(hash), key, hash, now, |state, tokens| {
                *tokens = tokens.wrapping_add(1).max(1);
                let token = *tokens;
                state
                    .reserve(now, inner.window_ticks, payload, token)
                    .map(|raw| (raw, token))
            });
        match result {
            Ok((raw, token)) => Ok((key.to_owned(), hash, token, inner.fire_from(raw))),
            Err(raw) => {
                if let Some(m) = &inner.metrics {
                    m.suppressed.inc();
                }
                Err(inner.suppressed_from(raw))
            }
        }
    }

    pub(crate) fn drain_digests(&self) -> Vec<(K, Digest<P>)> {
        let inner = self;
        let now = inner.now_ticks();
        let window = inner.window_ticks;
        let mut out = Vec::new();
        let mut hk = Housekeeping::default();
        for shard in &inner.shards {
            let mut table = shard.table.lock();
            inner.fold_hot(shard, &mut table);
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

    pub(crate) fn sweep(&self) -> usize {
        let now = self.now_ticks();
        self.sweep_at(now)
    }

    fn shard(&self, hash: u64) -> &Shard<K, P> {
        // hashbrown indexes buckets with the low bits and tags with the top 7,
        // so the shard is picked from bits in between.
        &self.shards[((hash >> 32) & self.shard_mask) as usize]
    }

    /// Runs `f` on the key's record (a fresh one if the key is not tracked)
    /// under its shard lock, with the shard's reservation token counter. A
    /// fresh record is kept only if `f` left something to remember.
    ///
    /// The key's hot cell, if it has one, is folded into the record first.
    /// With `HOT` (a plain check), a suppression that found the lock
    /// contended installs one (`crate::hot`).
    #[inline]
    fn with_entry<Q, R, const HOT: bool>(
        &self,
        shard: &Shard<K, P>,
        key: &Q,
        hash: u64,
        now: u64,
        f: impl FnOnce(&mut KeyState<P>, &mut u32) -> R,
    ) -> R
    where
        K: Borrow<Q>,
        Q: Eq + ToOwned<Owned = K> + ?Sized,
    {
        if HOT {
            // A lock held on arrival is the contention a hot cell relieves.
            // The contended case is a path of its own, so that an
            // uncontended call carries no flag for it.
            match shard.table.try_lock() {
                Some(table) => {
                    self.with_locked::<_, _, true, false>(shard, table, key, hash, now, f)
                }
                None => self.with_contended(shard, key, hash, now, f),
            }
        } else {
            self.with_locked::<_, _, false, false>(shard, shard.table.lock(), key, hash, now, f)
        }
    }

    /// [`with_entry`](Self::with_entry) for a plain check that found the lock
    /// held: waits for it, and may install a hot cell.
    #[cold]
    #[inline(never)]
    fn with_contended<Q, R>(
        &self,
        shard: &Shard<K, P>,
        key: &Q,
        hash: u64,
        now: u64,
        f: impl FnOnce(&mut KeyState<P>, &mut u32) -> R,
    ) -> R
    where
        K: Borrow<Q>,
        Q: Eq + ToOwned<Owned = K> + ?Sized,
    {
        self.with_locked::<_, _, true, true>(shard, shard.table.lock(), key, hash, now, f)
    }

    /// The body of [`with_entry`](Self::with_entry), with the lock taken.
    /// With `HOT` and `CONTENDED`, leaves a hot cell for the key when it may
    /// have one.
    #[inline(always)]
    fn with_locked<Q, R, const HOT: bool, const CONTENDED: bool>(
        &self,
        shard: &Shard<K, P>,
        mut guard: MutexGuard<'_, Table<K, P>>,
        key: &Q,
        hash: u64,
        now: u64,
        f: impl FnOnce(&mut KeyState<P>, &mut u32) -> R,
    ) -> R
    where
        K: Borrow<Q>,
        Q: Eq + ToOwned<Owned = K> + ?Sized,
    {
        let (out, hk) = {
            let table = &mut *guard;
            if shard.has_hot.load(Ordering::Relaxed) {
                self.fold_hot_of(shard, table, key, hash);
            }
            if let Some(entry) = table.entries.find_mut(hash, |e| e.key.borrow() == key) {
                let out = f(&mut entry.state, &mut table.tokens);
                if self.wants_hot::<HOT>(CONTENDED) {
                    self.install_hot(shard, entry, now);
                }
                (out, None)
            } else {
                let mut state = KeyState::default();
                let out = f(&mut state, &mut table.tokens);
                if state.is_dead(now, self.window_ticks) {
                    (out, None)
                } else {
                    let hk = self.insert(shard, table, hash, key.to_owned(), state, now);
                    (out, Some(hk))
                }
            }
        };
        drop(guard);
        if let Some(hk) = hk {
            self.account(&hk);
        }
        self.maybe_sweep(now);
        out
    }

    /// Whether a plain check installs a hot cell (when its record may have
    /// one): when it found the lock contended.
    #[inline(always)]
    fn wants_hot<const HOT: bool>(&self, contended: bool) -> bool {
        #[cfg(test)]
        if HOT && self.always_hot {
            return true;
        }
        HOT && contended
    }

    /// One event, as [`Cooldown::check`](crate::Cooldown::check) (`HOT`, no
    /// payload: its suppressions may be counted in a hot cell) or
    /// [`Cooldown::check_with`](crate::Cooldown::check_with).
    pub(crate) fn check<Q, const HOT: bool>(
        &self,
        key: &Q,
        payload: impl FnOnce() -> Option<P>,
    ) -> Decision<P>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let now = self.now_ticks();
        let hash = self.hasher.hash_one(key);
        let shard = self.shard(hash);
        if HOT
            && shard.has_hot.load(Ordering::Relaxed)
            && let Some(raw) = self.hot_suppress(shard, key, hash, now)
        {
            #[cfg(test)]
            self.hot_counted.fetch_add(1, Ordering::Relaxed);
            self.maybe_sweep(now);
            if let Some(m) = &self.metrics {
                m.suppressed.inc();
            }
            return Decision::Suppressed(self.suppressed_from(raw));
        }
        let verdict = self.with_entry::<_, _, HOT>(shard, key, hash, now, |state, _| {
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
        self.with_entry::<_, _, false>(self.shard(hash), key, hash, now, |state, _| {
            state.commit(now, token)
        });
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
        let owned = self.with_entry::<_, _, false>(self.shard(hash), key, hash, now, |state, _| {
            state.rollback(token, pending)
        });
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
        shard: &Shard<K, P>,
        table: &mut Table<K, P>,
        hash: u64,
        key: K,
        state: KeyState<P>,
        now: u64,
    ) -> Housekeeping {
        let mut hk = if table.entries.len() >= self.shard_cap {
            self.make_room(shard, table, now)
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
    fn make_room(&self, shard: &Shard<K, P>, table: &mut Table<K, P>, now: u64) -> Housekeeping {
        // Evictions rank keys by their records: bring the hot one's up to date.
        self.fold_hot(shard, table);
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

    /// Sweeps if the interval has passed; one caller wins the race. The
    /// check is inlined into every call, the sweep is not.
    #[inline(always)]
    fn maybe_sweep(&self, now: u64) {
        let due = self.next_sweep.load(Ordering::Relaxed);
        if now >= due {
            self.sweep_due(now, due);
        }
    }

    #[cold]
    #[inline(never)]
    fn sweep_due(&self, now: u64, due: u64) {
        if self
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
            let mut table = shard.table.lock();
            self.fold_hot(shard, &mut table);
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

mod hot_cells;

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
