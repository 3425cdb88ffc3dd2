//! The key map behind [`KeyedCircuitBreaker`](super::KeyedCircuitBreaker): shards of
//! breakers, creating a key's breaker on first use and forgetting idle ones (see the parent
//! module's docs for the rules).

use super::*;
pub(super) struct Shared<K> {
    pub(super) name: Arc<str>,
    pub(super) template: Template,
    pub(super) overrides: HashMap<K, Template>,
    pub(super) seed: u64,
    pub(super) max_keys: usize,
    /// A shard never sweeps below this size.
    pub(super) sweep_floor: usize,
    pub(super) hasher: RandomState,
    pub(super) shards: Box<[RwLock<Shard<K>>]>,
    pub(super) len: AtomicUsize,
    pub(super) untracked: AtomicU64,
    pub(super) untracked_metric: Option<Counter>,
    pub(super) series: Option<BreakerMetrics>,
    pub(super) events: broadcast::Sender<KeyedTransition<K>>,
    /// Serves untracked calls: disabled, so it lets everything through and counts nothing.
    pub(super) overflow: CircuitBreaker,
    pub(super) base: Instant,
    /// Nanoseconds since `base` before which a full sweep is not tried again.
    pub(super) full_sweep_after: AtomicU64,
}

impl<K: fmt::Debug> fmt::Debug for Shared<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedCircuitBreaker")
            .field("name", &self.name)
            .field("len", &self.len.load(Ordering::Relaxed))
            .field("max_keys", &self.max_keys)
            .field("untracked", &self.untracked.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

pub(super) struct Shard<K> {
    pub(super) map: HashMap<K, Entry>,
    /// Sweep when the map reaches this size.
    pub(super) sweep_at: usize,
}

pub(super) struct Entry {
    pub(super) breaker: CircuitBreaker,
    /// Looked up since the shard's last routine sweep: a routine sweep spares it once
    /// (a second chance), so a healthy key in steady use is not forgotten and re-created
    /// on its next call. Sweeps made to find room ignore it.
    pub(super) used: AtomicBool,
}

/// Tags one key's transitions with the key.
pub(super) struct KeyObserver<K> {
    pub(super) key: K,
    pub(super) events: broadcast::Sender<KeyedTransition<K>>,
}

impl<K: fmt::Debug> fmt::Debug for KeyObserver<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyObserver")
            .field("key", &self.key)
            .finish()
    }
}

impl<K> Observe for KeyObserver<K>
where
    K: Clone + fmt::Debug + Send + Sync + 'static,
{
    fn observe(&self, t: &Transition) {
        tracing::info!(
            breaker = %t.breaker,
            key = ?self.key,
            from = t.from.as_str(),
            to = t.to.as_str(),
            reason = t.reason.as_str(),
            detail = %t.reason,
            "keyed circuit breaker state changed"
        );
        if self.events.receiver_count() > 0 {
            let _ = self.events.send(KeyedTransition {
                key: self.key.clone(),
                transition: t.clone(),
            });
        }
    }
}

pub(super) fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    // The maps stay consistent across a panic (no user code runs under these locks).
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

pub(super) fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

/// Forgetting `breaker` loses nothing: idle, and no call, permit or handle holds it (the map
/// holds the only reference, and the caller holds the shard's write lock, so no one can take
/// one).
pub(super) fn forgettable(breaker: &CircuitBreaker) -> bool {
    Arc::strong_count(&breaker.inner) == 1 && breaker.inner.is_idle()
}

impl<K> Shared<K>
where
    K: Hash + Eq + Clone + fmt::Debug + Send + Sync + 'static,
{
    pub(super) fn shard<Q>(&self, key: &Q) -> &RwLock<Shard<K>>
    where
        Q: Hash + ?Sized,
    {
        // Truncation is fine: any bits pick a shard.
        #[allow(clippy::cast_possible_truncation)]
        let index = self.hasher.hash_one(key) as usize % SHARDS;
        &self.shards[index]
    }

    pub(super) fn get<Q>(&self, key: &Q) -> Option<CircuitBreaker>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        read(self.shard(key))
            .map
            .get(key)
            .map(|e| e.breaker.clone())
    }

    /// The key's breaker, created if it is new and there is room; `None` when it must go
    /// untracked.
    #[inline]
    pub(super) fn lookup<Q>(&self, key: &Q) -> Option<CircuitBreaker>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let shard = self.shard(key);
        if let Some(entry) = read(shard).map.get(key) {
            if !entry.used.load(Ordering::Relaxed) {
                entry.used.store(true, Ordering::Relaxed);
            }
            return Some(entry.breaker.clone());
        }
        self.insert(shard, key)
    }

    #[cold]
    pub(super) fn insert<Q>(&self, shard: &RwLock<Shard<K>>, key: &Q) -> Option<CircuitBreaker>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        for attempt in 0..2 {
            {
                let mut shard = write(shard);
                if let Some(entry) = shard.map.get(key) {
                    return Some(entry.breaker.clone());
                }
                if shard.map.len() >= shard.sweep_at {
                    self.sweep(&mut shard, false);
                }
                if self.reserve() || (self.sweep(&mut shard, true) > 0 && self.reserve()) {
                    let key = key.to_owned();
                    let breaker = self.make(&key);
                    let entry = Entry {
                        breaker: breaker.clone(),
                        used: AtomicBool::new(true),
                    };
                    shard.map.insert(key, entry);
                    return Some(breaker);
                }
            }
            // Full, and this shard had nothing to forget: look at the others (without holding
            // this shard's lock, so two tasks doing this cannot deadlock).
            if attempt == 1 || self.sweep_all(false) == 0 {
                break;
            }
        }
        self.untracked.fetch_add(1, Ordering::Relaxed);
        if let Some(m) = &self.untracked_metric {
            m.inc();
        }
        None
    }

    /// Takes a slot under `max_keys`.
    pub(super) fn reserve(&self) -> bool {
        self.len
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_keys).then_some(n + 1)
            })
            .is_ok()
    }

    /// Forgets the shard's idle breakers; returns how many. A routine sweep (not `hard`)
    /// spares, once, an idle breaker looked up since the previous one.
    pub(super) fn sweep(&self, shard: &mut Shard<K>, hard: bool) -> usize {
        let before = shard.map.len();
        shard.map.retain(|_, e| {
            if !forgettable(&e.breaker) {
                return true;
            }
            !hard && e.used.swap(false, Ordering::Relaxed)
        });
        let forgotten = before - shard.map.len();
        self.len.fetch_sub(forgotten, Ordering::AcqRel);
        shard.sweep_at = shard.map.len().saturating_mul(2).max(self.sweep_floor);
        forgotten
    }

    /// Sweeps every shard, one lock at a time, unless `force` is false and a sweep that
    /// forgot nothing happened less than `FULL_SWEEP_BACKOFF` ago.
    pub(super) fn sweep_all(&self, force: bool) -> usize {
        let now = self.nanos();
        if !force && now < self.full_sweep_after.load(Ordering::Acquire) {
            return 0;
        }
        let forgotten: usize = self
            .shards
            .iter()
            .map(|shard| self.sweep(&mut write(shard), true))
            .sum();
        if forgotten == 0 {
            let backoff = u64::try_from(FULL_SWEEP_BACKOFF.as_nanos()).unwrap_or(u64::MAX);
            self.full_sweep_after
                .store(now.saturating_add(backoff), Ordering::Release);
        }
        forgotten
    }

    pub(super) fn nanos(&self) -> u64 {
        u64::try_from(
            Instant::now()
                .saturating_duration_since(self.base)
                .as_nanos(),
        )
        .unwrap_or(u64::MAX)
    }

    pub(super) fn make(&self, key: &K) -> CircuitBreaker {
        let template = self.overrides.get(key).unwrap_or(&self.template);
        // Each key gets its own jitter sequence, reproducible under a configured seed.
        let mut hasher = DefaultHasher::new();
        key.hash(&mut hasher);
        let seed = self.seed ^ hasher.finish();
        let breaker = template.instantiate(Arc::clone(&self.name), Some(seed), self.series.clone());
        breaker.inner.set_observer(Box::new(KeyObserver {
            key: key.clone(),
            events: self.events.clone(),
        }));
        breaker
    }

    pub(super) fn for_each(&self, mut f: impl FnMut(&K, &CircuitBreaker)) {
        for shard in self.shards.iter() {
            for (key, entry) in &read(shard).map {
                f(key, &entry.breaker);
            }
        }
    }
}

impl<K> CountKeys for Shared<K>
where
    K: Hash + Eq + Clone + fmt::Debug + Send + Sync + 'static,
{
    fn name(&self) -> &str {
        &self.name
    }

    fn count_states(&self) -> [i64; 5] {
        let mut counts = [0i64; 5];
        self.for_each(|_, breaker| {
            // `state()` makes the transitions that are due.
            let state = breaker.state();
            #[allow(clippy::cast_possible_truncation)]
            let slot = &mut counts[state.code() as usize];
            *slot = slot.saturating_add(1);
        });
        counts
    }
}
