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

/// The id of key 1's watch, if its timer exists.
fn watch_id(locks: &KeyedLock<u64>) -> Option<u64> {
    let backend = locks.backend();
    let hash = backend.hash(&1u64);
    let state = backend.shard(hash);
    let slot = state.table.find(hash, |s| s.key == 1)?;
    slot.timer.as_ref().map(|armed| armed.id())
}

/// Spawns a task that locks key 1 with `ttl` and reports its token (and keeps the guard until
/// told to drop it, if ever).
fn locker(
    locks: &KeyedLock<u64>,
    ttl: Duration,
) -> (
    tokio::task::JoinHandle<u64>,
    tokio::sync::oneshot::Sender<()>,
    tokio::sync::oneshot::Receiver<u64>,
) {
    let locks = locks.clone();
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let (granted, on_grant) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let guard = locks.lock_with_ttl(&1, ttl).await;
        let token = guard.token().get();
        let _ = granted.send(token);
        let _ = released.await;
        drop(guard);
        token
    });
    (task, release, on_grant)
}

/// The watcher role passes from waiter to waiter without a new timer or a new waker for it:
/// the key's timer keeps its watch while three waiters in turn take the role, and it still
/// hands the key on when a holder keeps it past its deadline.
#[tokio::test(start_paused = true)]
async fn the_watch_outlives_its_watchers_and_still_takes_over() {
    let locks = KeyedLock::<u64>::new();
    let held = locks.lock_with_ttl(&1, TTL).await;
    let (a, release_a, granted_a) = locker(&locks, TTL);
    tokio::task::yield_now().await; // `a` queued: it watches, and made the timer
    let id = watch_id(&locks).expect("a queued waiter arms the key's timer");
    drop(held);
    let token_a = granted_a.await.unwrap();
    let (b, release_b, mut granted_b) = locker(&locks, TTL);
    tokio::task::yield_now().await; // `b` queued behind `a`: the role is `b`'s
    assert_eq!(watch_id(&locks), Some(id), "same timer, same watch");
    // `a` keeps the key past its deadline: the timer wakes `b` through the watch.
    advance(TTL + Duration::from_millis(1)).await;
    let token_b = tokio::time::timeout(Duration::from_millis(1), &mut granted_b)
        .await
        .expect("the timer handed the key to `b`")
        .unwrap();
    assert!(token_b > token_a);
    let (c, release_c, granted_c) = locker(&locks, TTL);
    tokio::task::yield_now().await;
    release_b.send(()).unwrap();
    let token_c = granted_c.await.unwrap();
    assert!(token_c > token_b);
    release_a.send(()).unwrap(); // a stale guard: releases nothing
    release_c.send(()).unwrap();
    assert_eq!(
        (a.await.unwrap(), b.await.unwrap(), c.await.unwrap()),
        (token_a, token_b, token_c)
    );
    assert!(locks.is_empty());
}

/// A hand-over to a waiter with a zero TTL moves the deadline to now, before the timer's: the
/// timer is reset to a deadline that has passed, which fires it at once, on the releasing
/// thread, under the shard lock. The watch must not take that lock again (it would deadlock);
/// the reset's own poll sees the firing and wakes the next waiter, which takes the key over.
///
/// A deadlock would hang the runtime's own thread, so the scenario runs on a thread of its own
/// and the test waits for it in real time (30 s, only ever reached when it fails).
#[test]
fn a_timer_reset_into_the_past_fires_without_deadlock() {
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap()
            .block_on(reset_into_the_past());
        let _ = done.send(());
    });
    finished
        .recv_timeout(Duration::from_secs(30))
        .expect("the scenario finished (no deadlock, no panic)");
}

async fn reset_into_the_past() {
    let locks = KeyedLock::<u64>::new();
    let held = locks.lock_with_ttl(&1, TTL).await;
    let instant = locks.enqueue_with_ttl(&1, Duration::ZERO);
    let (next, release_next, granted_next) = locker(&locks, TTL);
    tokio::task::yield_now().await; // `next` queued and watching, timer at `held`'s deadline
    assert!(watch_id(&locks).is_some());
    let start = tokio::time::Instant::now();
    drop(held); // granted to `instant`, whose lease ends at once
    let token_next = tokio::time::timeout(Duration::from_secs(1), granted_next)
        .await
        .expect("the next waiter takes the key over without waiting for `held`'s deadline")
        .unwrap();
    assert!(tokio::time::Instant::now() - start < TTL);
    let stale = instant.await;
    assert!(stale.is_expired() && stale.token().get() < token_next);
    drop(stale);
    release_next.send(()).unwrap();
    assert_eq!(next.await.unwrap(), token_next);
    assert!(locks.is_empty());
}

/// A task that has spent its tokio budget (128 ready operations in one poll) before a
/// contended `lock` still arms the key's timer: tokio's `Sleep` checks the budget before it
/// registers, and the key's timer is not polled again while it looks armed, so the holder's
/// deadline must wake this waiter anyway.
#[tokio::test(start_paused = true)]
async fn a_waiter_with_its_budget_spent_still_takes_over_a_leaked_lease() {
    let locks = KeyedLock::<u64>::new();
    std::mem::forget(locks.lock_with_ttl(&1, TTL).await);
    let waiter = {
        let locks = locks.clone();
        tokio::spawn(async move {
            for _ in 0..128 {
                tokio::task::consume_budget().await;
            }
            locks.lock_with_ttl(&1, TTL).await.token()
        })
    };
    let token = tokio::time::timeout(TTL * 2, waiter)
        .await
        .expect("the leaked lease's deadline handed the key on")
        .unwrap();
    assert_eq!(token.get(), 2);
}

/// The watcher times out while the newest waiter is a place nobody has polled (it has no
/// waker): the role goes to the newest waiter that can be woken, so a leaked lease is still
/// handed to the head of the queue at its deadline.
#[tokio::test(start_paused = true)]
async fn the_watch_skips_waiters_that_were_never_polled() {
    let locks = KeyedLock::<u64>::new();
    std::mem::forget(locks.lock_with_ttl(&1, TTL).await);
    let (head, _release_head, granted_head) = locker(&locks, TTL);
    tokio::task::yield_now().await; // `head` queued and watching
    let unpolled = locks.enqueue_with_ttl(&1, TTL);
    let watcher = {
        let locks = locks.clone();
        tokio::spawn(async move { locks.lock_timeout(&1, TTL / 2).await.is_err() })
    };
    tokio::task::yield_now().await; // `watcher` queued last: it watches
    assert!(watcher.await.unwrap(), "timed out after TTL / 2");
    let token = tokio::time::timeout(TTL, granted_head)
        .await
        .expect("`head` was woken at the leaked lease's deadline")
        .unwrap();
    assert!(token > 1);
    drop(unpolled);
    head.abort();
}

/// A contended `lock` on a runtime without a time driver panics when it arms the key's timer
/// (tokio refuses to make a timer there). The panicking waiter must not stay queued: the
/// holder's release then frees the key instead of handing it to a waiter that is gone.
#[test]
fn a_waiter_that_panics_arming_the_timer_leaves_no_place_behind() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let locks = KeyedLock::<u64>::new();
    rt.block_on(async {
        let held = locks.lock_with_ttl(&1, TTL).await;
        let waiter = {
            let locks = locks.clone();
            tokio::spawn(async move {
                drop(locks.lock_with_ttl(&1, TTL).await);
            })
        };
        assert!(
            waiter.await.unwrap_err().is_panic(),
            "no timers on this runtime"
        );
        drop(held);
        assert!(locks.is_empty(), "released to nobody");
        assert!(locks.try_lock(&1).is_ok());
    });
}

/// With no metrics and no timeout, a `lock` that finds its key held in a shard where waiters
/// queued lately reads no clock before it queues, so it does not see that the lease has run
/// out. Its timer, armed at the passed deadline, fires when it is registered, and the waiter
/// takes the key over at once, without the clock moving.
#[tokio::test(start_paused = true)]
async fn a_waiter_that_reads_no_clock_still_takes_over_an_expired_lease_at_once() {
    let locks = KeyedLock::<u64>::new();
    let held = locks.lock_with_ttl(&1, TTL).await;
    let stale_token = held.token();
    let gave_up = {
        let locks = locks.clone();
        tokio::spawn(async move { locks.lock_timeout(&1, TTL / 2).await.is_err() })
    };
    assert!(gave_up.await.unwrap(), "a waiter queued (and timed out)");
    std::mem::forget(held);
    advance(TTL).await; // the lease has run out; nobody waits
    let start = tokio::time::Instant::now();
    let mut next = Box::pin(locks.lock_with_ttl(&1, TTL));
    let mut polls = 0;
    let guard = std::future::poll_fn(|cx| {
        polls += 1;
        assert!(polls < 10, "taken over within a few polls");
        next.as_mut().poll(cx)
    })
    .await;
    assert_eq!(tokio::time::Instant::now(), start, "no time passed");
    assert!(guard.token() > stale_token);
    assert!(!guard.is_expired());
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
