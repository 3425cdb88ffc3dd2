//! The operations on one key's slot, under its shard's lock: creating it, expiring and
//! re-granting its lease, handing it to the next waiter, arming and moving the key's one
//! lease timer, and releasing it (the grant itself is sent after the lock is dropped).

use super::*;
use crate::clock::Clock;

pub(super) fn insert<K, Q>(
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
        queue: Queue::default(),
        live: 0,
        timer: Timer::default(),
        watcher: 0,
        unclaimed: 0,
    });
    events.granted(None);
    Grant::new(
        MemoryLease { hash },
        FencingToken::new(token),
        now,
        deadline,
    )
}

/// Reports the end of the slot's current (expired) lease, before it is replaced or removed. If
/// it was handed to a waiter that has not picked it up yet, the grant is kept for that waiter
/// in `orphans`.
pub(super) fn expire<K>(
    slot: &mut Slot<K>,
    orphans: &mut Vec<Orphan>,
    now: Instant,
    events: &LockEvents,
) {
    if slot.unclaimed != 0 {
        orphans.push((slot.unclaimed, lease_of(slot)));
        slot.unclaimed = 0;
    }
    events.taken_over(
        FencingToken::new(slot.token),
        now.saturating_duration_since(slot.since),
    );
}

/// The slot's current lease, as a grant.
pub(super) fn lease_of<K>(slot: &Slot<K>) -> Grant<MemoryLease> {
    Grant::new(
        MemoryLease { hash: slot.hash },
        FencingToken::new(slot.token),
        slot.since,
        slot.deadline,
    )
}

/// Takes the grant handed to waiter `id` of `key`, if any: the slot's current lease, or an
/// orphan (a grant taken over before the waiter picked it up).
pub(super) fn take_grant<K, Q>(
    state: &mut ShardState<K>,
    hash: u64,
    key: &Q,
    id: u64,
) -> Option<Grant<MemoryLease>>
where
    K: Borrow<Q>,
    Q: Eq + ?Sized,
{
    if let Some(slot) = state.table.find_mut(hash, |s| s.key.borrow() == key) {
        claim(slot, id)
    } else {
        None
    }
    .or_else(|| take_orphan(&mut state.orphans, id))
}

/// The slot's current lease if it was handed to waiter `id` and not picked up yet.
pub(super) fn claim<K>(slot: &mut Slot<K>, id: u64) -> Option<Grant<MemoryLease>> {
    if slot.unclaimed != id {
        return None;
    }
    slot.unclaimed = 0;
    Some(lease_of(slot))
}

/// Waiter `id`'s orphan, if it has one.
pub(super) fn take_orphan(orphans: &mut Vec<Orphan>, id: u64) -> Option<Grant<MemoryLease>> {
    if orphans.is_empty() {
        return None;
    }
    let at = orphans.iter().position(|(waiter, _)| *waiter == id)?;
    Some(orphans.swap_remove(at).1)
}

/// Makes the first live waiter the holder of the slot's lease from `now` and takes it off the
/// queue; it picks the grant up at its next poll. Returns its waker (to wake once the shard is
/// unlocked), or `None` without a live waiter (the caller then removes the slot).
fn grant_next<K>(
    slot: &mut Slot<K>,
    next_token: &mut u64,
    now: Instant,
    events: &LockEvents,
) -> Option<Option<Waker>> {
    debug_assert_eq!(
        slot.unclaimed, 0,
        "the lease being replaced was picked up or orphaned"
    );
    while let Some(waiter) = slot.queue.pop_front() {
        if waiter.cancelled {
            continue;
        }
        let token = *next_token;
        *next_token += 1;
        slot.token = token;
        slot.since = now;
        slot.deadline = deadline_after(now, waiter.ttl);
        slot.unclaimed = waiter.id;
        slot.live -= 1;
        if slot.watcher == waiter.id {
            slot.watcher = 0;
        }
        if slot.live > 0 {
            rewatch(slot);
        }
        events.granted(Some(now.saturating_duration_since(waiter.since)));
        return Some(waiter.waker);
    }
    None
}

/// Grants the slot to the caller itself (nobody queued).
pub(super) fn regrant<K>(
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

/// Grants the slot to the first waiter still waiting and wakes it. Returns `false` if there is
/// none (the caller then removes the slot).
pub(super) fn hand_over<K>(
    slot: &mut Slot<K>,
    next_token: &mut u64,
    now: Instant,
    events: &LockEvents,
) -> bool {
    match grant_next(slot, next_token, now, events) {
        Some(waker) => {
            if let Some(waker) = waker {
                waker.wake();
            }
            true
        }
        None => false,
    }
}

/// [`release_locked`], except that the next waiter's waker is returned for the caller to wake
/// after unlocking. The waiter has left the queue already (it no longer counts as live) and
/// holds the lease: if it gives up before it is polled, it releases the lease in turn.
pub(super) fn release_deferred<K>(
    state: &mut ShardState<K>,
    hash: u64,
    token: u64,
    events: &LockEvents,
    clock: &Clock,
) -> Option<Waker> {
    let ShardState {
        table, next_token, ..
    } = state;
    let Ok(mut entry) = table.find_entry(hash, |s| s.token == token) else {
        return None;
    };
    let slot = entry.get_mut();
    if slot.live == 0 {
        let expired = events.observes_expiry() && slot.deadline <= clock.now();
        entry.remove();
        events.released(expired);
        return None;
    }
    let now = clock.now();
    events.released(slot.deadline <= now);
    match grant_next(slot, next_token, now, events) {
        Some(waker) => waker,
        None => {
            entry.remove();
            None
        }
    }
}

pub(super) fn release_locked<K>(
    state: &mut ShardState<K>,
    hash: u64,
    token: u64,
    events: &LockEvents,
    clock: &Clock,
) {
    let ShardState {
        table, next_token, ..
    } = state;
    let Ok(mut entry) = table.find_entry(hash, |s| s.token == token) else {
        // Stale: the lease expired and someone else holds (or held) the key.
        return;
    };
    let slot = entry.get_mut();
    if slot.live == 0 {
        let expired = events.observes_expiry() && slot.deadline <= clock.now();
        entry.remove();
        events.released(expired);
        return;
    }
    let now = clock.now();
    events.released(slot.deadline <= now);
    if !hand_over(slot, next_token, now, events) {
        entry.remove();
    }
}
