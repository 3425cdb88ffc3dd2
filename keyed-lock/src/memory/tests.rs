//! Grants handed to a waiter that is not polled before its lease runs out: the grant travels
//! through the key's entry, and when the lease is taken over first it is kept for the waiter
//! (an orphan) until it is polled or dropped. These cases need a place that is granted but not
//! yet polled, which only `enqueue` makes, and a look at the shard's orphans.

use std::time::Duration;

use futures::FutureExt;
use tokio::time::advance;

use crate::KeyedLock;

const TTL: Duration = Duration::from_secs(10);

fn orphans(locks: &KeyedLock<u64>) -> usize {
    locks
        .backend()
        .shards
        .iter()
        .map(|s| s.0.lock().orphans.len())
        .sum()
}

/// A waiter granted the key and polled only after its lease was taken over by `try_lock` gets
/// that (expired) lease: an older token than the new holder's, already stale. Its guard's drop
/// releases nothing, and the orphan is gone once picked up.
#[tokio::test(start_paused = true)]
async fn a_grant_taken_over_before_its_first_poll_is_still_delivered_expired() {
    let locks = KeyedLock::<u64>::new();
    let held = locks.lock_with_ttl(&1, TTL).await;
    let place = locks.enqueue_with_ttl(&1, TTL);
    assert!(!place.is_granted());
    drop(held); // granted to `place`, which nobody polls
    advance(TTL + Duration::from_secs(1)).await;
    let thief = locks.try_lock(&1).expect("the lease ran out: taken over");
    assert_eq!(orphans(&locks), 1);
    let stale = place.await;
    assert_eq!(orphans(&locks), 0);
    assert!(stale.token() < thief.token());
    assert!(stale.is_expired());
    drop(stale);
    assert!(locks.try_lock(&1).is_err(), "the thief still holds the key");
    drop(thief);
    assert!(locks.is_empty());
}

/// The same takeover by `purge_expired` (nobody else waits), and a place dropped without ever
/// being polled leaves no orphan behind.
#[tokio::test(start_paused = true)]
async fn a_purged_grant_is_delivered_or_forgotten_with_its_place() {
    for poll_it in [true, false] {
        let locks = KeyedLock::<u64>::new();
        let held = locks.lock_with_ttl(&1, TTL).await;
        let place = locks.enqueue_with_ttl(&1, TTL);
        drop(held);
        advance(TTL).await;
        assert_eq!(locks.purge_expired(), 1);
        assert!(locks.is_empty());
        assert_eq!(orphans(&locks), 1);
        if poll_it {
            let stale = place.await;
            assert!(stale.is_expired());
        } else {
            drop(place);
        }
        assert_eq!(orphans(&locks), 0);
        assert!(locks.try_lock(&1).is_ok());
    }
}

/// A place granted the key and dropped before it was polled passes the key to the next place
/// at once, with nothing lost or left behind.
#[tokio::test(start_paused = true)]
async fn an_unpolled_grant_dropped_passes_the_key_on() {
    let locks = KeyedLock::<u64>::new();
    let held = locks.lock_with_ttl(&1, TTL).await;
    let first = locks.enqueue_with_ttl(&1, TTL);
    let second = locks.enqueue_with_ttl(&1, TTL);
    let first_token = held.token();
    drop(held); // granted to `first`
    drop(first); // which gives it up unpolled
    let guard = second.now_or_never().expect("granted at once");
    assert!(guard.token() > first_token);
    assert!(!guard.is_expired());
    drop(guard);
    assert!(locks.is_empty());
    assert_eq!(orphans(&locks), 0);
}

/// The key's timer hands an expired lease on while the head of the queue has a grant it has
/// not picked up: the next waiter (which watches the timer) gets the key, and the head gets
/// its expired lease when it is polled.
#[tokio::test(start_paused = true)]
async fn the_timer_takes_over_an_unclaimed_grant() {
    let locks = KeyedLock::<u64>::new();
    let held = locks.lock_with_ttl(&1, TTL).await;
    let head = locks.enqueue_with_ttl(&1, TTL);
    let next = {
        let locks = locks.clone();
        tokio::spawn(async move { locks.lock_with_ttl(&1, TTL).await.token() })
    };
    tokio::task::yield_now().await; // `next` queued behind `head`, watching the timer
    drop(held); // granted to `head`, not polled
    advance(TTL + Duration::from_millis(1)).await;
    let next_token = next.await.unwrap();
    let stale = head.await;
    assert!(stale.token() < next_token);
    assert!(stale.is_expired());
    drop(stale);
    assert!(locks.is_empty());
    assert_eq!(orphans(&locks), 0);
}
