//! The in-memory backend: a sharded map of per-key wait queues.

use std::borrow::Borrow;
use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, Hash};
use std::mem::ManuallyDrop;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Waker;
use std::time::Duration;

use hashbrown::hash_table::{Entry, VacantEntry};
use hashbrown::{DefaultHashBuilder, HashTable};
use parking_lot::{Mutex, MutexGuard};
use tokio::time::Instant;

mod place;
mod slot;
#[cfg(test)]
mod tests;
mod watch;

use place::Acquire;
pub(crate) use place::Place;
use slot::{
    claim, expire, hand_over, insert, regrant, release_deferred, release_locked, take_grant,
    take_orphan,
};
use watch::{Timer, arm, rewatch};

use crate::backend::{Grant, LockBackend, Refused, Wait};
use crate::clock::Clock;
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

/// A grant that a waiter has not picked up, kept in its shard because the lease it names was
/// taken over (it ran out) before the waiter was polled: the waiter gets it, expired, at its
/// next poll, as it would have had it been polled in time.
type Orphan = (u64, Grant<MemoryLease>);

struct Waiter {
    ttl: Duration,
    since: Instant,
    /// Names the waiter within its shard (for the watcher role).
    id: u64,
    /// The waiter's task, once it has been polled: woken when the key is handed to it, and by
    /// the slot's timer if it watches.
    waker: Option<Waker>,
    /// It gave up (dropped, or timed out); skipped by hand-overs, removed by compaction.
    cancelled: bool,
}

/// One key's entry: the current lease and the queue behind it. It exists only while the key
/// is leased (live or expired-but-not-yet-replaced).
struct Slot<K> {
    hash: u64,
    key: K,
    token: u64,
    since: Instant,
    deadline: Instant,
    queue: Queue,
    /// Queued waiters that are still waiting (the queue may also hold cancelled ones).
    live: usize,
    /// One timer per key, not per waiter: it wakes the watcher no later than the lease's
    /// deadline, so that a lease that runs out is handed on without its holder. Made by the
    /// first waiter that is polled, kept while the entry lives; it is re-armed only when it
    /// fires early (a hand-over or an extension moved the deadline later) or when the
    /// deadline moves earlier, so a busy key hands over without touching the timer wheel.
    /// It is registered with the key's own waker, never a waiter's (see `watch.rs`).
    timer: Timer,
    /// The id of the waiter that the key's timer wakes (0: none), through the key's waker.
    /// The last waiter to join takes the role; passing it on is writing this id.
    watcher: u64,
    /// The id of the waiter the current lease was handed to, until it picks the grant up at
    /// its next poll (0: none, the holder has its guard). Grants travel through the slot, under
    /// the shard lock, rather than through a channel per waiter.
    unclaimed: u64,
}

/// A key's wait queue. Empty and unallocated on the uncontended path, which removes the slot at
/// every release: dropping it then is one inlined test (`VecDeque`'s drop glue, called out of
/// line, cost the uncontended lock + unlock about 36 instructions).
#[derive(Default)]
struct Queue(ManuallyDrop<VecDeque<Waiter>>);

impl Deref for Queue {
    type Target = VecDeque<Waiter>;
    fn deref(&self) -> &VecDeque<Waiter> {
        &self.0
    }
}

impl DerefMut for Queue {
    fn deref_mut(&mut self) -> &mut VecDeque<Waiter> {
        &mut self.0
    }
}

impl Drop for Queue {
    #[inline]
    fn drop(&mut self) {
        if self.0.capacity() != 0 {
            drop_queue(&mut self.0);
        }
    }
}

/// Drops the waiters and frees the buffer, leaving an empty deque that owns nothing.
#[cold]
#[inline(never)]
fn drop_queue(queue: &mut VecDeque<Waiter>) {
    drop(std::mem::take(queue));
}

/// Takes the next id from a shard's counter (waiters and key watches share it).
fn next_id(counter: &mut u64) -> u64 {
    let id = *counter;
    *counter += 1;
    id
}

/// What a queued waiter's poll found.
enum Polled {
    /// The key was handed to it: its grant.
    Granted(Grant<MemoryLease>),
    /// Still waiting (its waker is recorded).
    Waiting,
    /// Its key's entry is gone (the caller takes a new place).
    Gone,
}

struct ShardState<K> {
    table: HashTable<Slot<K>>,
    next_token: u64,
    next_waiter: u64,
    /// Grants taken over before their waiter picked them up (see [`Orphan`]); almost always
    /// empty, and never longer than the number of waiting places.
    orphans: Vec<Orphan>,
}

/// Keeps shards on separate cache lines. The flag, read before the lock, says whether a
/// waiter queued in this shard since a key of it was last freed with nobody waiting: a hint
/// (only where the clock is read depends on it) that the next acquire will queue.
#[repr(align(128))]
struct Shard<K>(Mutex<ShardState<K>>, AtomicBool);

/// Per-key leases kept in this process: the default backend of [`KeyedLock`](crate::KeyedLock).
///
/// Keys are spread over a power-of-two number of shards, each a `parking_lot` mutex around a
/// `hashbrown` table of entries. An entry exists only while its key is leased; it holds the
/// lease (token, grant time, deadline) and a FIFO queue of waiters. Releasing picks the first
/// waiter still waiting and makes it the holder under the shard lock, so a release and a
/// cancelled wait can never both miss each other, and wakes it after unlocking; the waiter
/// picks its grant up from the entry (a waiter that gave up first passes it on). The
/// uncontended path allocates nothing (unless the table grows), reads the clock once and
/// starts no timer. An expired lease is noticed by the next acquirer, or by the key's one
/// timer: armed at the holder's deadline, it wakes a waiter (the watcher), which hands the key
/// to the first waiter then.
pub struct MemoryBackend<K> {
    /// Shared with the keys' timers' wakers (see `watch.rs`), which hold it weakly.
    shards: Arc<[Shard<K>]>,
    /// Tokio's clock, or the TSC where tokio's cannot be paused (see `clock.rs`).
    clock: Clock,
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
                Shard(
                    Mutex::new(ShardState {
                        table: HashTable::new(),
                        next_token: 1,
                        next_waiter: 1,
                        orphans: Vec::new(),
                    }),
                    AtomicBool::new(false),
                )
            })
            .collect::<Vec<_>>()
            .into();
        Self {
            shards,
            clock: Clock::new(),
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
        let now = self.now();
        let mut purged = 0;
        for shard in self.shards.iter() {
            let mut state = shard.0.lock();
            let ShardState { table, orphans, .. } = &mut *state;
            table.retain(|slot| {
                let expired = slot.deadline <= now && slot.live == 0;
                if expired {
                    expire(slot, orphans, now, events);
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

    /// Tokio's now, or its TSC stand-in where tokio's clock cannot be paused (a multi-thread
    /// runtime, or no runtime): about 10 ns instead of a 16-23 ns `clock_gettime` (issue 14).
    #[inline]
    fn now(&self) -> Instant {
        self.clock.now()
    }

    fn shard(&self, hash: u64) -> MutexGuard<'_, ShardState<K>> {
        self.shards[self.shard_index(hash)].0.lock()
    }

    fn shard_index(&self, hash: u64) -> usize {
        // hashbrown uses the low bits for buckets and the top 7 for tags: take the middle.
        ((hash >> 32) & self.mask) as usize
    }
}

impl<K: Hash + Eq + Clone + Send + 'static> MemoryBackend<K> {
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
        // The clock is read before the shard lock, so the read (see `now`, 10-23 ns)
        // is not part of the critical section the other tasks wait for. A grant's `since` and
        // deadline are then earlier than the grant by the wait for the shard lock, if any: the
        // lease can only end early by that much, never late.
        let now = self.now();
        let mut state = self.shard(hash);
        let ShardState {
            table,
            next_token,
            orphans,
            ..
        } = &mut *state;
        match table.entry(hash, |s| s.key.borrow() == key, |s| s.hash) {
            Entry::Vacant(vacant) => Ok(insert(vacant, next_token, hash, key, ttl, now, events)),
            Entry::Occupied(mut occupied) => {
                let slot = occupied.get_mut();
                if slot.deadline <= now {
                    expire(slot, orphans, now, events);
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

    /// Grants at once, or takes a place at the back of the key's queue. `waker` is the
    /// waiting task's, if known (the call is made from a poll): the place then watches the
    /// lease's deadline from the start.
    pub(crate) fn acquire_or_enqueue<Q>(
        &self,
        key: &Q,
        ttl: Duration,
        timeout: Option<Duration>,
        events: &LockEvents,
        waker: Option<&Waker>,
    ) -> Result<Grant<MemoryLease>, Place>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let hash = self.hash(key);
        // A queued waiter needs the time only to notice a lease that has run out (the key's
        // timer, armed with its waker, notices it too: it fires at once), to start its
        // timeout, and to report its wait to the metrics. Without the last two, and where the
        // shard's hint says the key is likely held, the acquire reads no clock: one read less
        // per hand-over between two tasks (issue 14). Otherwise it reads the clock before the
        // shard lock, as `try_acquire` does (read under the uncontended lock, it cost ~7 ns).
        let shard = &self.shards[self.shard_index(hash)];
        let lazy = waker.is_some()
            && timeout.is_none()
            && !events.observes_waits()
            && shard.1.load(Ordering::Relaxed);
        let now = (!lazy).then(|| self.now());
        let mut state = shard.0.lock();
        let ShardState {
            table,
            next_token,
            next_waiter,
            orphans,
        } = &mut *state;
        match table.entry(hash, |s| s.key.borrow() == key, |s| s.hash) {
            Entry::Vacant(vacant) => {
                let now = now.unwrap_or_else(|| self.now());
                Ok(insert(vacant, next_token, hash, key, ttl, now, events))
            }
            Entry::Occupied(occupied) => self.join_queue(
                occupied.into_mut(),
                (next_token, next_waiter, orphans),
                (ttl, timeout, now),
                events,
                waker,
            ),
        }
    }

    /// `acquire_or_enqueue` for a key that has an entry: re-grants it if its lease ran out and
    /// nobody waits, else queues. Out of line, so that the uncontended path's frame stays
    /// small (inlined, it cost that path 15 instructions of register saves).
    #[inline(never)]
    fn join_queue(
        &self,
        slot: &mut Slot<K>,
        (next_token, next_waiter, orphans): (&mut u64, &mut u64, &mut Vec<Orphan>),
        (ttl, timeout, now): (Duration, Option<Duration>, Option<Instant>),
        events: &LockEvents,
        waker: Option<&Waker>,
    ) -> Result<Grant<MemoryLease>, Place> {
        if let Some(now) = now
            && slot.deadline <= now
        {
            expire(slot, orphans, now, events);
            if slot.live == 0 {
                return Ok(regrant(slot, next_token, ttl, now, events));
            }
            hand_over(slot, next_token, now, events);
        }
        let id = next_id(next_waiter);
        let queued = &self.shards[self.shard_index(slot.hash)].1;
        if !queued.load(Ordering::Relaxed) {
            queued.store(true, Ordering::Relaxed);
        }
        // The timer first: `arm` can panic (no time driver, a runtime shutting down), and a
        // waiter queued before that would stay live with nobody to cancel it.
        let shard = self.shard_index(slot.hash);
        let passed = waker.is_some() && arm(slot, &self.shards, shard, || next_id(next_waiter));
        slot.queue.push_back(Waiter {
            ttl,
            // Without a clock read (see `acquire_or_enqueue`) nothing reports the wait.
            since: now.unwrap_or(slot.since),
            id,
            waker: waker.cloned(),
            cancelled: false,
        });
        slot.live += 1;
        if let Some(waker) = waker {
            slot.watcher = id;
            if passed {
                // Only a zero TTL ends at once: let the waiter's poll expire it.
                waker.wake_by_ref();
            }
        }
        Err(Place::new(
            slot.hash,
            id,
            waker.is_some(),
            timeout.zip(now).map(|(d, now)| (deadline_after(now, d), d)),
        ))
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
        Acquire {
            backend: self,
            key,
            ttl,
            timeout,
            events,
            place: ManuallyDrop::new(None),
        }
        .await
    }

    /// Called by a queued waiter's poll (unless its place was taken in that very poll): picks
    /// up the grant if the key was handed to it; otherwise records its waker, takes the watcher
    /// role if nobody has it, and, if it watches, hands the key on when the lease is over or
    /// re-arms the timer at the lease's deadline.
    fn poll_place<Q>(
        &self,
        key: &Q,
        hash: u64,
        id: u64,
        waker: &Waker,
        events: &LockEvents,
    ) -> Polled
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let mut state = self.shard(hash);
        let ShardState {
            table,
            next_token,
            next_waiter,
            orphans,
        } = &mut *state;
        let Some(slot) = table.find_mut(hash, |s| s.key.borrow() == key) else {
            return take_orphan(orphans, id).map_or(Polled::Gone, Polled::Granted);
        };
        if let Some(grant) = claim(slot, id).or_else(|| take_orphan(orphans, id)) {
            return Polled::Granted(grant);
        }
        let Some(waiter) = slot.queue.iter_mut().find(|w| w.id == id && !w.cancelled) else {
            // Neither granted nor queued: cannot happen; the caller takes a new place.
            return Polled::Gone;
        };
        match &mut waiter.waker {
            Some(known) if known.will_wake(waker) => {}
            known => *known = Some(waker.clone()),
        }
        if slot.watcher != 0 && slot.watcher != id {
            return Polled::Waiting;
        }
        slot.watcher = id;
        let shard = self.shard_index(hash);
        while arm(slot, &self.shards, shard, || next_id(next_waiter)) {
            // Tokio's clock, the timer's own: the TSC stand-in (`self.now`) may differ from it
            // by a microsecond, and this path is taken once per timer firing.
            let now = Instant::now();
            if slot.deadline > now {
                // The timer fired a hair before the clock reached the deadline: look again.
                waker.wake_by_ref();
                break;
            }
            // The lease is over: hand the key to the first live waiter (perhaps this one).
            expire(slot, orphans, now, events);
            if !hand_over(slot, next_token, now, events) || slot.watcher != id {
                break;
            }
        }
        claim(slot, id).map_or(Polled::Waiting, Polled::Granted)
    }

    /// Releases lease `token`. The next waiter is woken after the shard lock is released, as
    /// tokio's own mutex wakes its waiter after unlocking: the wake may have to unpark another
    /// worker thread (a syscall), and the other worker, about to run, must not find the shard
    /// locked meanwhile. If that waiter gives up before it is polled, it passes the lease on
    /// itself (under the shard lock, so nothing is lost in between).
    fn release_inner(&self, hash: u64, token: u64, events: &LockEvents) {
        let shard = &self.shards[self.shard_index(hash)];
        let next = {
            let mut state = shard.0.lock();
            release_deferred(&mut state, hash, token, events, &self.clock)
        };
        match next {
            Some(waker) => waker.wake(),
            // Freed with nobody waiting (or a stale token): the next acquire likely finds the
            // key free.
            None if shard.1.load(Ordering::Relaxed) => shard.1.store(false, Ordering::Relaxed),
            None => {}
        }
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
            rewatch(slot);
        }
    }

    fn extend_inner(&self, hash: u64, token: u64, ttl: Duration) -> Result<Instant, LeaseExpired> {
        let mut state = self.shard(hash);
        let now = self.now();
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
