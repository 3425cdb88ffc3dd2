//! A place in a key's queue, taken at call time: [`KeyedLock::enqueue`].

use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::backend::Grant;
use crate::memory::{MemoryLease, Place};
use crate::{Guard, KeyedLock, MemoryBackend};

/// A future that holds a place in a key's FIFO queue from the moment it was created, and
/// resolves to the [`Guard`] when its turn comes. Returned by [`KeyedLock::enqueue`].
///
/// [`KeyedLock::lock`] is an `async fn`: it joins the queue when it is first polled, so two
/// `lock` futures created in order but first polled in the other order are served in the
/// other order. `Enqueued` joins the queue when [`enqueue`](KeyedLock::enqueue) is called
/// (like tokio's `Notified::enable`), so the order in which `enqueue` was called is the
/// order of the grants, however late or in whatever order the futures are polled. It owns
/// its handle to the lock (it is `'static + Send`), so it can be created in order in a
/// dispatcher and moved into a spawned task.
///
/// If the key is free when `enqueue` is called, the lease is granted at once and its TTL
/// starts then; awaiting returns it.
///
/// # Cancel safety
///
/// Dropping it leaves the queue at once and leaves no entry behind; if the key had already
/// been granted to it, the key passes to the next waiter. Once it has returned its guard,
/// polling it again never resolves (there is no second guard to give).
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use seawall_keyed_lock::KeyedLock;
///
/// let locks = KeyedLock::<String>::new();
/// let held = locks.lock("alice").await;
/// let first = locks.enqueue("alice"); // in the queue now, not when first polled
/// let second = locks.enqueue("alice");
/// let late = tokio::spawn(async move { second.await.token() });
/// let early = tokio::spawn(async move { first.await.token() });
/// drop(held);
/// assert!(early.await.unwrap() < late.await.unwrap());
/// # }
/// ```
#[must_use = "the place in the queue is left as soon as it is dropped"]
pub struct Enqueued<K>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    lock: KeyedLock<K>,
    state: State<K>,
}

enum State<K> {
    /// The key was free: granted at call time, not yet handed out.
    Granted(Grant<MemoryLease>),
    /// Waiting in the queue.
    Queued { key: K, ttl: Duration, place: Place },
    /// The guard was handed out.
    Done,
}

impl<K> Enqueued<K>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    pub(crate) fn granted(lock: KeyedLock<K>, grant: Grant<MemoryLease>) -> Self {
        Self {
            lock,
            state: State::Granted(grant),
        }
    }

    pub(crate) fn queued(lock: KeyedLock<K>, key: K, ttl: Duration, place: Place) -> Self {
        Self {
            lock,
            state: State::Queued { key, ttl, place },
        }
    }

    /// Whether the key was already granted to this place (awaiting it returns at once).
    ///
    /// # Examples
    ///
    /// ```
    /// let locks = seawall_keyed_lock::KeyedLock::<u64>::new();
    /// let first = locks.enqueue(&1);
    /// let second = locks.enqueue(&1);
    /// assert!(first.is_granted());
    /// assert!(!second.is_granted());
    /// ```
    pub fn is_granted(&self) -> bool {
        matches!(self.state, State::Granted(_))
    }
}

impl<K> fmt::Debug for Enqueued<K>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Granted(_) => "granted",
            State::Queued { .. } => "queued",
            State::Done => "done",
        };
        f.debug_struct("Enqueued")
            .field("lock", &self.lock.name())
            .field("state", &state)
            .finish()
    }
}

// Nothing in an `Enqueued` is ever pinned in place (its timers are boxed), so it may move
// while waiting, whatever `K` is.
impl<K> Unpin for Enqueued<K> where K: Hash + Eq + Clone + Send + Sync + 'static {}

impl<K> Future for Enqueued<K>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    type Output = Guard<K>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Guard<K>> {
        let this = self.get_mut();
        loop {
            match &mut this.state {
                State::Granted(_) => {
                    let State::Granted(grant) = std::mem::replace(&mut this.state, State::Done)
                    else {
                        unreachable!("matched above")
                    };
                    return Poll::Ready(this.lock.guard(grant));
                }
                State::Queued { key, ttl, place } => {
                    let shared = this.lock.shared();
                    let backend: &MemoryBackend<K> = &shared.backend;
                    match place.poll_grant(backend, &*key, &shared.events, cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Some(Ok(grant))) => {
                            this.state = State::Done;
                            return Poll::Ready(this.lock.guard(grant));
                        }
                        // No timeout was asked for, so `TimedOut` cannot come; and the entry
                        // cannot vanish while this place is counted as live. Both are handled
                        // as "take a new place" rather than a panic.
                        Poll::Ready(Some(Err(_)) | None) => {
                            match backend.acquire_or_enqueue(
                                &*key,
                                *ttl,
                                None,
                                &shared.events,
                                Some(cx.waker()),
                            ) {
                                Ok(grant) => this.state = State::Granted(grant),
                                Err(again) => *place = again,
                            }
                        }
                    }
                }
                State::Done => {
                    // Polled after completion: there is no second guard to give.
                    return Poll::Pending;
                }
            }
        }
    }
}

impl<K> Drop for Enqueued<K>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    fn drop(&mut self) {
        let shared = self.lock.shared();
        match &mut self.state {
            State::Granted(grant) => {
                // Hand the unclaimed grant to the guard logic, whose drop releases it.
                let grant = grant.clone();
                self.state = State::Done;
                drop(self.lock.guard(grant));
            }
            State::Queued { key, place, .. } => {
                place.cancel(&shared.backend, &*key, &shared.events);
            }
            State::Done => {}
        }
    }
}
