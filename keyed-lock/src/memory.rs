//! The in-memory backend: a sharded map of per-key wait queues.

use std::borrow::Borrow;
use std::collections::VecDeque;
use std::fmt;
use std::future::{Future, poll_fn};
use std::hash::{BuildHasher, Hash};
use std::task::Poll;
use std::time::Duration;

use hashbrown::hash_table::{Entry, VacantEntry};
use hashbrown::{DefaultHashBuilder, HashTable};
use parking_lot::{Mutex, MutexGuard};
use tokio::sync::oneshot;
use tokio::time::Instant;

mod place;

pub(crate) use place::Place;
use place::Queued;

use crate::backend::{Grant, LockBackend, Refused, Wait};
use crate::{Busy, ExtendError, FencingToken, LeaseExpired, LockEvents};
use std::convert::Infallible;

/// Roughly 30 years: a deadline for TTLs too large to add to an `Instant`.
const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

/// `now + ttl` without overflow.
pub(crate) fn deadline_after(now: Instant, ttl: Duration) -> Instant {
    now.checked_add(ttl)
        .or_else(|| now.checked_add(FAR_FUTURE))
        .unwrap_or(now)
}

/// The in-memory backend's handle to a lease: where to find the key's entry again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryLease {
    hash: u64,
}

#[cfg(feature = "redis")]
impl MemoryLease {
    pub(crate) fn hash(self) -> u64 {
        self.hash
    }
}

type GrantTx = oneshot::Sender<Grant<MemoryLease>>;
type GrantRx = oneshot::Receiver<Grant<MemoryLease>>;

struct Waiter {
    tx: GrantTx,
    ttl: Duration,
    since: Instant,
}

/// One key's entry: the current lease and the queue behind it. It exists only while the key
/// is leased (live or expired-but-not-yet-replaced).
struct Slot<K> {
    hash: u64,
    key: K,
    token: u64,
    since: Instant,
    deadline: Instant,
    queue: VecDeque<Waiter>,
    /// Queued waiters that are still waiting (the queue may also hold cancelled ones).
    live: usize,
}

struct ShardState<K> {
    table: HashTable<Slot<K>>,
    next_token: u64,
}

/// Keeps shards on separate cache lines.
#[repr(align(128))]
struct Shard<K>(Mutex<ShardState<K>>);

/// Per-key leases kept in this process: the default backend of [`KeyedLock`](crate::KeyedLock).
///
/// Keys are spread over a power-of-two number of shards, each a `parking_lot` mutex around a
/// `hashbrown` table of entries. An entry exists only while its key is leased; it holds the
/// lease (token, grant time, deadline) and a FIFO queue of waiters, each with a one-shot
/// channel. Releasing hands the key straight to the first waiter still waiting, under the
/// shard lock, so a release and a cancelled wait can never both miss each other. The
/// uncontended path allocates nothing (unless the table grows), reads the clock once and
/// starts no timer: an expired lease is noticed by the next acquirer, or by the first waiter,
/// whose wait is bounded by the holder's deadline.
pub struct MemoryBackend<K> {
    shards: Box<[Shard<K>]>,
    hasher: DefaultHashBuilder,
    mask: u64,
}

impl<K> fmt::Debug for MemoryBackend<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryBackend")
            .field("shards", &self.shards.len())
            .field("entries", &self.len())
            .finish()
    }
}

impl<K> MemoryBackend<K> {
    /// A backend with `shards` shards, rounded up to a power of two (at least 1).
    ///
    /// # Examples
    ///
    /// ```
    /// use seawall_keyed_lock::MemoryBackend;
    /// assert_eq!(MemoryBackend::<u64>::new(5).shards(), 8);
    /// assert_eq!(MemoryBackend::<u64>::new(0).shards(), 1);
    /// ```
    #[must_use]
    pub fn new(shards: usize) -> Self {
        let n = shards.clamp(1, 1 << 16).next_power_of_two();
        let shards = (0..n)
            .map(|_| {
                Shard(Mutex::new(ShardState {
                    table: HashTable::new(),
                    next_token: 1,
                }))
            })
            .collect::<Vec<_>>()
            .into_boxed_slice();
        Self {
            shards,
            hasher: DefaultHashBuilder::default(),
            mask: n as u64 - 1,
        }
    }

    /// The number of keys that currently have an entry (held, or expired and not yet replaced).
    ///
    /// Cancelled and timed-out waiters leave no entry behind, so this is `0` whenever nobody
    /// holds or waits for any key.
    ///
    /// # Examples
    ///
    /// ```
    /// let locks = seawall_keyed_lock::KeyedLock::<u64>::new();
    /// let _guard = locks.try_lock(&1).unwrap();
    /// assert_eq!(locks.backend().len(), 1);
    /// ```
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.0.lock().table.len()).sum()
    }

    /// `len() == 0`.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes the entries of expired leases that nobody waits for (holders that crashed or
    /// leaked their guard on keys nobody locked again) and returns how many it removed. Each
    /// is reported as taken over. Their stale guards, if still alive, stay stale.
    pub fn purge_expired(&self, events: &LockEvents) -> usize {
        let now = Instant::now();
        let mut purged = 0;
        for shard in &self.shards {
            let mut state = shard.0.lock();
            state.table.retain(|slot| {
                let expired = slot.deadline <= now && slot.live == 0;
                if expired {
                    expire(slot, now, events);
                    purged += 1;
                }
                !expired
            });
        }
        purged
    }

    /// The number of shards.
    ///
    /// # Examples
    ///
    /// ```
    /// let locks = seawall_keyed_lock::KeyedLock::<u64>::builder().shards(2).build().unwrap();
    /// assert_eq!(locks.backend().shards(), 2);
    /// ```
    pub fn shards(&self) -> usize {
        self.shards.len()
    }

    fn shard(&self, hash: u64) -> MutexGuard<'_, ShardState<K>> {
        // hashbrown uses the low bits for buckets and the top 7 for tags: take the middle.
        self.shards[((hash >> 32) & self.mask) as usize].0.lock()
    }
}

impl<K: Hash + Eq + Clone> MemoryBackend<K> {
    fn hash<Q: Hash + ?Sized>(&self, key: &Q) -> u64 {
        self.hasher.hash_one(key)
    }

    /// Grants without queueing, or says who holds the key.
    pub(crate) fn try_acquire<Q>(
        &self,
        key: &Q,
        ttl: Duration,
        events: &LockEvents,
    ) -> Result<Grant<MemoryLease>, Busy>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let hash = self.hash(key);
        let mut state = self.shard(hash);
        let now = Instant::now();
        let ShardState { table, next_token } = &mut *state;
        match table.entry(hash, |s| s.key.borrow() == key, |s| s.hash) {
            Entry::Vacant(vacant) => Ok(insert(vacant, next_token, hash, key, ttl, now, events)),
            Entry::Occupied(mut occupied) => {
                let slot = occupied.get_mut();
                if slot.deadline <= now {
                    expire(slot, now, events);
                    if slot.live == 0 {
                        return Ok(regrant(slot, next_token, ttl, now, events));
                    }
                    hand_over(slot, next_token, now, events);
                }
                events.busy();
                Err(Busy {
                    held_since: slot.since,
                    expires_at: slot.deadline,
                })
            }
        }
    }

    /// Grants at once, or takes a place at the back of the key's queue.
    pub(crate) fn acquire_or_enqueue<Q>(
        &self,
        key: &Q,
        ttl: Duration,
        timeout: Option<Duration>,
        events: &LockEvents,
    ) -> Result<Grant<MemoryLease>, Place>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let hash = self.hash(key);
        let mut state = self.shard(hash);
        let now = Instant::now();
        let ShardState { table, next_token } = &mut *state;
        match table.entry(hash, |s| s.key.borrow() == key, |s| s.hash) {
            Entry::Vacant(vacant) => Ok(insert(vacant, next_token, hash, key, ttl, now, events)),
            Entry::Occupied(mut occupied) => {
                let slot = occupied.get_mut();
                if slot.deadline <= now {
                    expire(slot, now, events);
                    if slot.live == 0 {
                        return Ok(regrant(slot, next_token, ttl, now, events));
                    }
                    hand_over(slot, next_token, now, events);
                }
                let (tx, rx) = oneshot::channel();
                slot.queue.push_back(Waiter {
                    tx,
                    ttl,
                    since: now,
                });
                slot.live += 1;
                Err(Place::new(
                    hash,
                    rx,
                    slot.deadline,
                    timeout.map(|d| (deadline_after(now, d), d)),
                ))
            }
        }
    }

    pub(crate) async fn acquire_inner<Q>(
        &self,
        key: &Q,
        ttl: Duration,
        wait: Wait,
        events: &LockEvents,
    ) -> Result<Grant<MemoryLease>, Refused>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let timeout = match wait {
            Wait::No => return self.try_acquire(key, ttl, events).map_err(Refused::Busy),
            Wait::For(d) => Some(d),
            Wait::Forever => None,
        };
        match self.acquire_or_enqueue(key, ttl, timeout, events) {
            Ok(grant) => Ok(grant),
            // Boxed so that the uncontended future stays small.
            Err(place) => Box::pin(self.wait_queued(key, ttl, timeout, events, place)).await,
        }
    }

    async fn wait_queued<Q>(
        &self,
        key: &Q,
        ttl: Duration,
        timeout: Option<Duration>,
        events: &LockEvents,
        place: Place,
    ) -> Result<Grant<MemoryLease>, Refused>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let mut queued = Queued {
            backend: self,
            key,
            events,
            place,
        };
        poll_fn(|cx| {
            loop {
                let Queued {
                    backend,
                    key,
                    events,
                    place,
                } = &mut queued;
                match place.poll_grant(*backend, *key, events, cx) {
                    Poll::Ready(Some(result)) => return Poll::Ready(result),
                    Poll::Ready(None) => {
                        // The entry vanished under us (cannot happen while we are counted as
                        // live): start over rather than wait forever.
                        match backend.acquire_or_enqueue(*key, ttl, timeout, events) {
                            Ok(grant) => return Poll::Ready(Ok(grant)),
                            Err(again) => *place = again,
                        }
                    }
                    Poll::Pending => return Poll::Pending,
                }
            }
        })
        .await
    }

    /// Called by a waiter whose wait reached the holder's deadline: if the lease is indeed
    /// over, hand the key to the first live waiter. Returns the deadline to wait for next, or
    /// `None` if the key was handed over (the caller should look at its channel).
    fn expire_if_due<Q>(&self, key: &Q, hash: u64, events: &LockEvents) -> Option<Instant>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let mut state = self.shard(hash);
        let now = Instant::now();
        let ShardState { table, next_token } = &mut *state;
        let slot = table.find_mut(hash, |s| s.key.borrow() == key)?;
        if slot.deadline > now {
            return Some(slot.deadline);
        }
        expire(slot, now, events);
        hand_over(slot, next_token, now, events);
        None
    }

    fn release_inner(&self, hash: u64, token: u64, events: &LockEvents) {
        let mut state = self.shard(hash);
        release_locked(&mut state, hash, token, events);
    }

    fn deadline_inner(&self, hash: u64, token: u64) -> Option<Instant> {
        let state = self.shard(hash);
        state
            .table
            .find(hash, |s| s.token == token)
            .map(|s| s.deadline)
    }

    /// Sets the deadline of lease `token` if it is still the key's lease.
    #[cfg(feature = "redis")]
    pub(crate) fn set_deadline(&self, hash: u64, token: u64, deadline: Instant) {
        let mut state = self.shard(hash);
        if let Some(slot) = state.table.find_mut(hash, |s| s.token == token) {
            slot.deadline = deadline;
        }
    }

    fn extend_inner(&self, hash: u64, token: u64, ttl: Duration) -> Result<Instant, LeaseExpired> {
        let mut state = self.shard(hash);
        let now = Instant::now();
        match state.table.find_mut(hash, |s| s.token == token) {
            Some(slot) if slot.deadline > now => {
                slot.deadline = deadline_after(now, ttl);
                Ok(slot.deadline)
            }
            Some(slot) => Err(LeaseExpired {
                token: FencingToken::new(token),
                expired_at: slot.deadline,
            }),
            None => Err(LeaseExpired {
                token: FencingToken::new(token),
                expired_at: now,
            }),
        }
    }
}

fn insert<K, Q>(
    vacant: VacantEntry<'_, Slot<K>>,
    next_token: &mut u64,
    hash: u64,
    key: &Q,
    ttl: Duration,
    now: Instant,
    events: &LockEvents,
) -> Grant<MemoryLease>
where
    Q: ToOwned<Owned = K> + ?Sized,
{
    let token = *next_token;
    *next_token += 1;
    let deadline = deadline_after(now, ttl);
    vacant.insert(Slot {
        hash,
        key: key.to_owned(),
        token,
        since: now,
        deadline,
        queue: VecDeque::new(),
        live: 0,
    });
    events.granted(None);
    Grant::new(
        MemoryLease { hash },
        FencingToken::new(token),
        now,
        deadline,
    )
}

/// Reports the end of the slot's current (expired) lease.
fn expire<K>(slot: &Slot<K>, now: Instant, events: &LockEvents) {
    events.taken_over(
        FencingToken::new(slot.token),
        now.saturating_duration_since(slot.since),
    );
}

/// Grants the slot to the caller itself (nobody queued).
fn regrant<K>(
    slot: &mut Slot<K>,
    next_token: &mut u64,
    ttl: Duration,
    now: Instant,
    events: &LockEvents,
) -> Grant<MemoryLease> {
    let token = *next_token;
    *next_token += 1;
    slot.token = token;
    slot.since = now;
    slot.deadline = deadline_after(now, ttl);
    events.granted(None);
    Grant::new(
        MemoryLease { hash: slot.hash },
        FencingToken::new(token),
        now,
        slot.deadline,
    )
}

/// Grants the slot to the first waiter still waiting. Returns `false` if there is none (the
/// caller then removes the slot).
fn hand_over<K>(
    slot: &mut Slot<K>,
    next_token: &mut u64,
    now: Instant,
    events: &LockEvents,
) -> bool {
    while let Some(waiter) = slot.queue.pop_front() {
        if waiter.tx.is_closed() {
            continue;
        }
        let token = *next_token;
        *next_token += 1;
        let deadline = deadline_after(now, waiter.ttl);
        let grant = Grant::new(
            MemoryLease { hash: slot.hash },
            FencingToken::new(token),
            now,
            deadline,
        );
        // Under the shard lock a waiter cannot close its channel between the check and the send.
        if waiter.tx.send(grant).is_ok() {
            slot.token = token;
            slot.since = now;
            slot.deadline = deadline;
            slot.live -= 1;
            events.granted(Some(now.saturating_duration_since(waiter.since)));
            return true;
        }
    }
    false
}

fn release_locked<K>(state: &mut ShardState<K>, hash: u64, token: u64, events: &LockEvents) {
    let ShardState { table, next_token } = state;
    let Ok(mut entry) = table.find_entry(hash, |s| s.token == token) else {
        // Stale: the lease expired and someone else holds (or held) the key.
        return;
    };
    let slot = entry.get_mut();
    if slot.live == 0 {
        let expired = events.observes_expiry() && slot.deadline <= Instant::now();
        entry.remove();
        events.released(expired);
        return;
    }
    let now = Instant::now();
    events.released(slot.deadline <= now);
    if !hand_over(slot, next_token, now, events) {
        entry.remove();
    }
}

impl<K> LockBackend<K> for MemoryBackend<K>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    type Lease = MemoryLease;
    type Error = Infallible;

    fn acquire(
        &self,
        key: &K,
        ttl: Duration,
        wait: Wait,
        events: &LockEvents,
    ) -> impl Future<Output = Result<Grant<MemoryLease>, Refused<Infallible>>> + Send {
        self.acquire_inner(key, ttl, wait, events)
    }

    fn release(&self, lease: &MemoryLease, token: FencingToken, events: &LockEvents) {
        self.release_inner(lease.hash, token.get(), events);
    }

    fn extend(
        &self,
        lease: &MemoryLease,
        token: FencingToken,
        ttl: Duration,
    ) -> impl Future<Output = Result<Instant, ExtendError<Infallible>>> + Send {
        std::future::ready(
            self.extend_inner(lease.hash, token.get(), ttl)
                .map_err(ExtendError::Expired),
        )
    }

    fn deadline(
        &self,
        lease: &MemoryLease,
        token: FencingToken,
    ) -> impl Future<Output = Result<Option<Instant>, Infallible>> + Send {
        std::future::ready(Ok(self.deadline_inner(lease.hash, token.get())))
    }
}
