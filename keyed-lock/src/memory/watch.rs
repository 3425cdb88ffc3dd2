//! A key's lease timer and the waker it is registered with.
//!
//! One timer per contended key watches the holder's deadline (see `Slot::timer`). It is
//! registered with the key's own waker, made once with the timer, rather than with the waker of
//! the waiter that watches it: handing the watcher role to the next waiter is then an id
//! written under the shard lock. Registering each watcher's waker instead (tokio's timer keeps
//! one) cost a waker clone, the previous watcher's waker drop and the timer's poll on every
//! contended hand-over, under the shard lock: two tasks on one key took 1.13-1.17× `DashMap` +
//! tokio `Mutex` with it, 0.94-0.96× with no timer at all (issue 14). When the timer fires,
//! the key's waker takes the shard lock and wakes the watcher, whose poll hands the key on or
//! re-arms the timer, as before.

use std::cell::Cell;
use std::future::Future;
use std::mem::ManuallyDrop;
use std::ops::{Deref, DerefMut};
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Wake, Waker};

use tokio::time::{Sleep, sleep_until};

use super::{Shard, Slot};

/// A key's timer, armed no later than its lease's deadline, and the waker it is registered
/// with.
pub(super) struct Armed {
    sleep: Pin<Box<Sleep>>,
    /// `sleep` has been polled with `watch` since it was made or reset (a poll that
    /// panicked, a runtime shutting down, leaves it unregistered).
    registered: bool,
    /// The key's waker (a [`Watch`]): the only waker the timer is ever polled with.
    watch: Waker,
    /// Names the slot for the watch (unique within the shard).
    id: u64,
}

/// A key's timer (see `Slot::timer`); none on the uncontended path, where dropping it is one
/// inlined test.
#[derive(Default)]
pub(super) struct Timer(ManuallyDrop<Option<Box<Armed>>>);

impl Deref for Timer {
    type Target = Option<Box<Armed>>;
    fn deref(&self) -> &Option<Box<Armed>> {
        &self.0
    }
}

impl DerefMut for Timer {
    fn deref_mut(&mut self) -> &mut Option<Box<Armed>> {
        &mut self.0
    }
}

impl Drop for Timer {
    #[inline]
    fn drop(&mut self) {
        if self.0.is_some() {
            drop_timer(&mut self.0);
        }
    }
}

/// Drops the timer, leaving `None`.
#[cold]
#[inline(never)]
fn drop_timer(timer: &mut Option<Box<Armed>>) {
    drop(timer.take());
}

#[cfg(test)]
impl Armed {
    pub(super) fn id(&self) -> u64 {
        self.id
    }
}

impl Timer {
    /// The timer, if it has not fired, is armed no later than `deadline`, and so will wake the
    /// key's watch by then.
    pub(super) fn watches(&self, deadline: tokio::time::Instant) -> bool {
        self.as_ref().is_some_and(|a| {
            a.registered && !a.sleep.is_elapsed() && a.sleep.deadline() <= deadline
        })
    }
}

thread_local! {
    /// Set while this thread polls or resets a key's timer, under the shard lock: a timer
    /// reset to a deadline that has passed fires at once, on this thread, and its watch must
    /// not take the shard lock again. The caller sees the firing in the poll that follows.
    static ARMING: Cell<bool> = const { Cell::new(false) };
}

/// Restores `ARMING` when dropped (also if tokio panics in a poll: a runtime shutting down).
struct Arming(bool);

impl Drop for Arming {
    fn drop(&mut self) {
        ARMING.with(|a| a.set(self.0));
    }
}

/// Polls the timer with the key's waker, `ARMING` set around it; resets it first to `reset`.
/// Returns `true` if it has fired. The poll is `unconstrained`: a timer polled by a task whose
/// tokio budget is spent would otherwise stay unregistered (tokio's `Sleep` checks the budget
/// before it registers), and this timer is not polled again while it looks armed.
fn poll_armed(armed: &mut Armed, reset: Option<tokio::time::Instant>) -> bool {
    let _arming = Arming(ARMING.with(|a| a.replace(true)));
    armed.registered = false;
    if let Some(deadline) = reset {
        armed.sleep.as_mut().reset(deadline);
    }
    let mut poll = tokio::task::unconstrained(armed.sleep.as_mut());
    let fired = Pin::new(&mut poll)
        .poll(&mut Context::from_waker(&armed.watch))
        .is_ready();
    armed.registered = true;
    fired
}

/// The key's waker: wakes whoever watches the key's timer.
struct Watch<K> {
    shards: Weak<[Shard<K>]>,
    shard: usize,
    hash: u64,
    id: u64,
}

impl<K: Send + 'static> Wake for Watch<K> {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if ARMING.with(Cell::get) {
            // Fired by our own reset, under the shard lock: the poll that follows sees it.
            return;
        }
        let Some(shards) = self.shards.upgrade() else {
            return;
        };
        let waker = {
            let mut state = shards[self.shard].0.lock();
            let Some(slot) = state.table.find_mut(self.hash, |s| {
                s.timer.as_ref().is_some_and(|a| a.id == self.id)
            }) else {
                return;
            };
            watcher_waker(slot)
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// The waker of the slot's watcher, choosing one (the last live waiter that has been polled)
/// if nobody watches.
fn watcher_waker<K>(slot: &mut Slot<K>) -> Option<Waker> {
    let current = slot.watcher;
    let (id, waker) = slot
        .queue
        .iter()
        .rev()
        .filter(|w| !w.cancelled)
        .find_map(|w| match (current, &w.waker) {
            (0, Some(waker)) => Some((w.id, waker.clone())),
            (0, None) => None,
            (watcher, waker) if w.id == watcher => waker.clone().map(|waker| (w.id, waker)),
            _ => None,
        })?;
    slot.watcher = id;
    Some(waker)
}

/// Makes sure the slot's timer is armed no later than the lease's deadline, and returns `true`
/// if that deadline has passed. Called only from a waiter's own poll, under the shard lock: a
/// timer that has fired (or never existed) is replaced by a new one made in the caller's
/// runtime, so a timer whose runtime has shut down (which fires them all) is never polled
/// again. A timer armed at an earlier deadline is kept: it fires early and is replaced then.
/// `id` names the slot if a watch has to be made.
pub(super) fn arm<K: Send + 'static>(
    slot: &mut Slot<K>,
    shards: &Arc<[Shard<K>]>,
    shard: usize,
    id: impl FnOnce() -> u64,
) -> bool {
    let deadline = slot.deadline;
    if slot.timer.watches(deadline) {
        return false;
    }
    let hash = slot.hash;
    let armed = slot.timer.get_or_insert_with(|| {
        let id = id();
        let watch = Waker::from(Arc::new(Watch {
            shards: Arc::downgrade(shards),
            shard,
            hash,
            id,
        }));
        Box::new(Armed {
            sleep: Box::pin(sleep_until(deadline)),
            registered: false,
            watch,
            id,
        })
    });
    loop {
        if armed.sleep.is_elapsed() {
            armed.sleep = Box::pin(sleep_until(deadline));
        }
        let reset = (armed.sleep.deadline() > deadline).then_some(deadline);
        if !poll_armed(armed, reset) {
            return false;
        }
        if armed.sleep.deadline() >= deadline {
            return true;
        }
    }
}

/// Makes sure a live, polled waiter watches the slot's timer, armed no later than the
/// lease's deadline: after the watcher left, or after the deadline moved. Callable from any
/// context (a guard dropped outside the runtime): it never makes a timer; when the timer
/// needs a new one, it wakes the new watcher, whose poll makes it. A waiter that has not been
/// polled yet has no waker; it takes the role when it is.
pub(super) fn rewatch<K>(slot: &mut Slot<K>) {
    let deadline = slot.deadline;
    if slot.watcher != 0 && slot.timer.watches(deadline) {
        return;
    }
    let Some(waker) = watcher_waker(slot) else {
        slot.watcher = 0;
        return;
    };
    match &mut *slot.timer {
        Some(armed) if !armed.sleep.is_elapsed() => {
            let reset = (armed.sleep.deadline() > deadline).then_some(deadline);
            if poll_armed(armed, reset) {
                waker.wake();
            }
        }
        // No live timer: the watcher's poll makes one in its runtime.
        _ => waker.wake(),
    }
}
