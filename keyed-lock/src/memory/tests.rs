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

/// Keeps the thread busy for `d` of real time.
fn spin(d: Duration) {
    let until = std::time::Instant::now() + d;
    while std::time::Instant::now() < until {
        std::hint::spin_loop();
    }
}

/// Real time, because a multi-thread runtime cannot pause its clock (nothing here sleeps): 16
/// tasks on 2 workers take one key with 1 ms leases; a quarter of the holders spin up to 1.5 ms
/// on their worker, and a third of the tasks spin as long after releasing, so leases run out
/// while held and while handed to a waiter queued behind a busy task, not yet polled (about 265
/// orphans a run, counted by hand). A third of the takes give up after 50 µs, a sixth are places
/// dropped unpolled. Every task finishes (no lost wake-up), every guard has its own token, and
/// afterwards no entry and no orphan is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_leases_under_contention_leave_no_entry_or_orphan() {
    let locks = KeyedLock::<u64>::builder()
        .ttl(Duration::from_millis(1))
        .build()
        .unwrap();
    let tasks: Vec<_> = (0..16u64)
        .map(|t| {
            let locks = locks.clone();
            tokio::spawn(async move {
                let mut tokens = Vec::new();
                let mut seed = t.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                for i in 0..400u64 {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    let guard = match i % 6 {
                        0 | 1 => match locks.lock_timeout(&1, Duration::from_micros(50)).await {
                            Ok(guard) => guard,
                            Err(_) => continue,
                        },
                        2 => {
                            drop(locks.enqueue(&1)); // given up before its first poll
                            continue;
                        }
                        3 => locks.enqueue(&1).await,
                        _ => locks.lock(&1).await,
                    };
                    tokens.push(guard.token());
                    if seed % 4 == 0 {
                        // Hold past the lease while keeping this worker busy, so that a
                        // waiter woken meanwhile may not be polled before its lease ends.
                        spin(Duration::from_micros(seed % 1500));
                    }
                    for _ in 0..seed % 24 {
                        tokio::task::yield_now().await;
                    }
                    drop(guard);
                    if seed % 3 == 0 {
                        // Busy after the release too: the waiter it woke may be queued on
                        // this worker, behind this task, past its own lease.
                        spin(Duration::from_micros(seed % 1500));
                    }
                }
                tokens
            })
        })
        .collect();
    let mut tokens = Vec::new();
    for task in tasks {
        let done = tokio::time::timeout(Duration::from_secs(60), task)
            .await
            .expect("a task hung: a grant was lost")
            .unwrap();
        tokens.extend(done);
    }
    let granted = tokens.len();
    // `lock` and awaited `enqueue` takes always end with a guard.
    let sure = 16 * (0..400u64).filter(|i| i % 6 >= 3).count();
    assert!(
        granted >= sure,
        "{granted} grants, fewer than the {sure} sure ones"
    );
    tokens.sort_unstable();
    tokens.dedup();
    assert_eq!(tokens.len(), granted, "a token was handed out twice");
    assert!(locks.is_empty(), "{} entries left", locks.len());
    assert_eq!(orphans(&locks), 0);
}
