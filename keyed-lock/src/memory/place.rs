//! A waiter's place in a key's queue, and the borrowed wait around it.

use std::borrow::Borrow;
use std::future::Future;
use std::hash::Hash;
use std::mem::ManuallyDrop;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep, sleep_until};

use super::{MemoryBackend, MemoryLease, Polled, ShardState, release_locked, rewatch, take_grant};
use crate::LockEvents;
use crate::backend::{Grant, Refused};

/// A place in a key's FIFO queue, taken when it was created (under the shard lock) and kept
/// until it is granted, gives up (its timeout) or is [cancelled](Self::cancel).
///
/// It holds no borrow: whoever owns it passes the backend, the key and the events to each
/// call, so both a borrowed wait (`lock`) and an owned one ([`Enqueued`](crate::Enqueued))
/// use it. The owner must call [`cancel`](Self::cancel) when it drops a place that is not
/// done (both owners do, in their `Drop`): a place dropped without that stays a live waiter
/// in the queue, is handed the key in its turn, and holds it unclaimed until that lease runs
/// out.
pub(crate) struct Place {
    hash: u64,
    /// Names this place in its shard's queues (and the grant handed to it).
    id: u64,
    /// Whether the queue already knows the waker of the first poll (the place was taken from
    /// a poll): that poll need not visit the shard again (a grant made since wakes it). The
    /// key's timer (one per key, see `Slot::timer`) bounds the wait by the holder's deadline.
    fresh: bool,
    /// When to give up, and the timeout asked for.
    give_up: Option<(Instant, Duration)>,
    give_up_timer: Option<Pin<Box<Sleep>>>,
    done: bool,
}

impl Place {
    /// A place behind a lease that ends at `lease_deadline`, giving up at `give_up` (the
    /// instant, and the timeout asked for) if set.
    pub(super) fn new(
        hash: u64,
        id: u64,
        fresh: bool,
        give_up: Option<(Instant, Duration)>,
    ) -> Self {
        Self {
            hash,
            id,
            fresh,
            give_up,
            give_up_timer: None,
            done: false,
        }
    }

    /// Polls for the grant: `Some(Ok)` granted, `Some(Err(TimedOut))` gave up (and left the
    /// queue), `None` the key's entry vanished (the caller should take a new place).
    pub(crate) fn poll_grant<K, Q>(
        &mut self,
        backend: &MemoryBackend<K>,
        key: &Q,
        events: &LockEvents,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Grant<MemoryLease>, Refused>>>
    where
        K: Hash + Eq + Clone + Send + 'static + Borrow<Q>,
        Q: Eq + ?Sized,
    {
        if self.done {
            return Poll::Ready(None);
        }
        if let Some((at, waited)) = self.give_up {
            let timer = self
                .give_up_timer
                .get_or_insert_with(|| Box::pin(sleep_until(at)));
            if timer.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Some(self.time_out(backend, key, events, waited)));
            }
        }
        if std::mem::take(&mut self.fresh) {
            // Taken from this very poll: the queue has this waker already.
            return Poll::Pending;
        }
        match backend.poll_place(key, self.hash, self.id, cx.waker(), events) {
            Polled::Granted(grant) => {
                self.done = true;
                Poll::Ready(Some(Ok(grant)))
            }
            Polled::Waiting => Poll::Pending,
            Polled::Gone => {
                self.done = true;
                Poll::Ready(None)
            }
        }
    }

    fn time_out<K, Q>(
        &mut self,
        backend: &MemoryBackend<K>,
        key: &Q,
        events: &LockEvents,
        waited: Duration,
    ) -> Result<Grant<MemoryLease>, Refused>
    where
        K: Hash + Eq + Clone + Send + 'static + Borrow<Q>,
        Q: Eq + ?Sized,
    {
        self.done = true;
        let mut state = backend.shard(self.hash);
        if let Some(grant) = take_grant(&mut state, self.hash, key, self.id) {
            return Ok(grant);
        }
        leave_queue(&mut state, self.hash, key, self.id);
        events.timed_out(waited);
        Err(Refused::TimedOut)
    }

    /// Leaves the queue (or, if a grant arrived in the meantime, releases that grant to the
    /// next waiter). Does nothing once the place is done.
    pub(crate) fn cancel<K, Q>(&mut self, backend: &MemoryBackend<K>, key: &Q, events: &LockEvents)
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        if self.done {
            return;
        }
        self.done = true;
        let mut state = backend.shard(self.hash);
        match take_grant(&mut state, self.hash, key, self.id) {
            // A stale token (an orphan's lease was taken over) releases nothing.
            Some(grant) => release_locked(
                &mut state,
                self.hash,
                grant.token.get(),
                events,
                &backend.clock,
            ),
            None => leave_queue(&mut state, self.hash, key, self.id),
        }
    }
}

/// Marks waiter `id` of `key`'s slot cancelled (it was granted nothing), passing its watcher
/// role on and compacting the queue when cancelled waiters outnumber live ones.
fn leave_queue<K, Q>(state: &mut ShardState<K>, hash: u64, key: &Q, id: u64)
where
    K: Borrow<Q>,
    Q: Eq + ?Sized,
{
    if let Some(slot) = state.table.find_mut(hash, |s| s.key.borrow() == key) {
        let Some(waiter) = slot.queue.iter_mut().find(|w| w.id == id && !w.cancelled) else {
            return;
        };
        waiter.cancelled = true;
        waiter.waker = None;
        slot.live -= 1;
        if slot.queue.len() > 2 * slot.live + 8 {
            slot.queue.retain(|w| !w.cancelled);
        }
        if slot.watcher == id {
            slot.watcher = 0;
            if slot.live > 0 {
                rewatch(slot);
            }
        }
    }
}

/// A borrowed acquisition that may wait (under `lock`, `lock_timeout`, `acquire`). Its first
/// poll grants at once or takes a place with that poll's waker, so a contended acquire visits
/// the shard once to queue and once to pick its grant up, and the place lives in this future
/// (no box of its own). Dropping it before it resolves leaves the queue.
pub(super) struct Acquire<'a, K, Q: ?Sized>
where
    K: Borrow<Q>,
    Q: Eq,
{
    pub(super) backend: &'a MemoryBackend<K>,
    pub(super) key: &'a Q,
    pub(super) ttl: Duration,
    pub(super) timeout: Option<Duration>,
    pub(super) events: &'a LockEvents,
    /// Taken at the first poll if the key is held. `ManuallyDrop` so that an acquire that
    /// never queued drops with one inlined test (see `Drop`).
    pub(super) place: ManuallyDrop<Option<Place>>,
}

impl<K, Q> Future for Acquire<'_, K, Q>
where
    K: Hash + Eq + Clone + Send + 'static + Borrow<Q>,
    Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
{
    type Output = Result<Grant<MemoryLease>, Refused>;

    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if this.place.is_some() {
            return this.poll_wait(cx);
        }
        match this.backend.acquire_or_enqueue(
            this.key,
            this.ttl,
            this.timeout,
            this.events,
            Some(cx.waker()),
        ) {
            Ok(grant) => Poll::Ready(Ok(grant)),
            Err(place) => {
                *this.place = Some(place);
                this.poll_wait(cx)
            }
        }
    }
}

impl<K, Q> Acquire<'_, K, Q>
where
    K: Hash + Eq + Clone + Send + 'static + Borrow<Q>,
    Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
{
    /// Polls the place: the grant, the timeout, or (if the key's entry vanished, which cannot
    /// happen while the place counts as live) a new place, taken with this poll's waker.
    #[inline(never)]
    fn poll_wait(&mut self, cx: &mut Context<'_>) -> Poll<Result<Grant<MemoryLease>, Refused>> {
        while let Some(place) = &mut *self.place {
            match place.poll_grant(self.backend, self.key, self.events, cx) {
                Poll::Ready(Some(result)) => return Poll::Ready(result),
                Poll::Ready(None) => {
                    match self.backend.acquire_or_enqueue(
                        self.key,
                        self.ttl,
                        self.timeout,
                        self.events,
                        Some(cx.waker()),
                    ) {
                        Ok(grant) => return Poll::Ready(Ok(grant)),
                        Err(again) => *place = again,
                    }
                }
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Pending
    }
}

impl<K, Q> Drop for Acquire<'_, K, Q>
where
    K: Borrow<Q>,
    Q: Eq + ?Sized,
{
    #[inline]
    fn drop(&mut self) {
        if self.place.is_some() {
            self.leave();
        }
    }
}

impl<K, Q> Acquire<'_, K, Q>
where
    K: Borrow<Q>,
    Q: Eq + ?Sized,
{
    /// Cancels the place (a no-op once it is done) and drops it.
    #[cold]
    #[inline(never)]
    fn leave(&mut self) {
        if let Some(mut place) = std::mem::take(&mut *self.place) {
            place.cancel(self.backend, self.key, self.events);
        }
    }
}
