//! Many tasks on a multi-thread runtime: mutual exclusion, increasing tokens, no leaks, and
//! release racing with cancelled and timed-out waiters (the hand-over path).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use seawall_keyed_lock::KeyedLock;

const HOT_KEYS: u64 = 3;
const COLD_KEYS: u64 = 2_000;

struct PerKey {
    inside: AtomicUsize,
    last_token: AtomicU64,
    entered: AtomicU64,
}

fn per_key(n: u64) -> Arc<Vec<PerKey>> {
    Arc::new(
        (0..n)
            .map(|_| PerKey {
                inside: AtomicUsize::new(0),
                last_token: AtomicU64::new(0),
                entered: AtomicU64::new(0),
            })
            .collect(),
    )
}

fn critical_section(state: &PerKey, token: u64) {
    assert_eq!(
        state.inside.fetch_add(1, Ordering::SeqCst),
        0,
        "two holders at once"
    );
    let last = state.last_token.swap(token, Ordering::SeqCst);
    assert!(token > last, "token {token} not above {last}");
    state.entered.fetch_add(1, Ordering::SeqCst);
}

fn leave(state: &PerKey) {
    assert_eq!(state.inside.fetch_sub(1, Ordering::SeqCst), 1);
}

/// Leaves the critical section when dropped.
struct Inside<'a>(&'a PerKey);

impl Drop for Inside<'_> {
    fn drop(&mut self) {
        leave(self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hot_and_cold_keys_stay_exclusive_and_leave_no_entries() {
    let locks = KeyedLock::<u64>::builder().shards(8).build().unwrap();
    let keys = per_key(HOT_KEYS + COLD_KEYS);
    let tasks = 64;
    let iterations = 1_500u64;
    let mut handles = Vec::new();
    for t in 0..tasks {
        let locks = locks.clone();
        let keys = Arc::clone(&keys);
        handles.push(tokio::spawn(async move {
            let mut x = t as u64 * 7919 + 1;
            for i in 0..iterations {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let key = if i % 2 == 0 {
                    (x >> 33) % HOT_KEYS
                } else {
                    HOT_KEYS + (x >> 33) % COLD_KEYS
                };
                let guard = match i % 5 {
                    0 => match locks.try_lock(&key) {
                        Ok(g) => g,
                        Err(_) => continue,
                    },
                    1 => match locks.lock_timeout(&key, Duration::from_micros(50)).await {
                        Ok(g) => g,
                        Err(_) => continue,
                    },
                    2 => {
                        // Give up after one poll if not granted at once: a cancelled waiter.
                        let mut fut = Box::pin(locks.lock(&key));
                        match futures::poll!(fut.as_mut()) {
                            std::task::Poll::Ready(g) => g,
                            std::task::Poll::Pending => {
                                tokio::task::yield_now().await;
                                drop(fut);
                                continue;
                            }
                        }
                    }
                    _ => locks.lock(&key).await,
                };
                let state = &keys[key as usize];
                critical_section(state, guard.token().get());
                if i % 3 == 0 {
                    tokio::task::yield_now().await;
                }
                leave(state);
                drop(guard);
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    assert_eq!(locks.len(), 0, "entries left behind");
    let entered: u64 = keys.iter().map(|k| k.entered.load(Ordering::SeqCst)).sum();
    assert!(
        entered > tasks as u64 * iterations / 2,
        "too few entries: {entered}"
    );
    // Every lock call on a free key still works after all that.
    for k in 0..HOT_KEYS {
        let g = locks.try_lock(&k).unwrap();
        assert!(g.token().get() > keys[k as usize].last_token.load(Ordering::SeqCst));
    }
}

/// The hand-over race in isolation: a holder releases while the first waiter is being
/// cancelled; the key must reach a live waiter or be removed, never lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn release_racing_with_cancellation_never_loses_the_key() {
    let locks = KeyedLock::<u64>::builder().shards(1).build().unwrap();
    for round in 0..2_000u64 {
        let holder = locks.lock(&round).await;
        let l1 = locks.clone();
        let doomed = tokio::spawn(async move { l1.lock(&round).await.token() });
        let l2 = locks.clone();
        let survivor = tokio::spawn(async move { l2.lock(&round).await.token() });
        tokio::task::yield_now().await;
        let releaser = tokio::spawn(async move { drop(holder) });
        doomed.abort();
        releaser.await.unwrap();
        // Watchdog only: a lost hand-over would otherwise hang the test instead of failing it.
        let token = tokio::time::timeout(Duration::from_secs(20), survivor)
            .await
            .unwrap_or_else(|_| panic!("round {round}: the key was lost in the hand-over"))
            .unwrap();
        assert!(token.get() > 0);
        let _ = doomed.await;
        assert_eq!(locks.len(), 0, "round {round}");
    }
}

/// FIFO on a multi-thread runtime with the grant sent after the shard is unlocked: places are
/// taken in order (`enqueue`), awaited by tasks spread over four workers, and some are dropped
/// before, during or right after their turn. Every place that is served is served in the
/// order it was taken (tokens increase with the place's index), holders never overlap, and
/// no entry is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn places_are_served_in_order_across_workers_while_some_give_up() {
    let locks = KeyedLock::<u64>::builder().shards(1).build().unwrap();
    for round in 0..200u64 {
        let state = Arc::new(PerKey {
            inside: AtomicUsize::new(0),
            last_token: AtomicU64::new(0),
            entered: AtomicU64::new(0),
        });
        let served = Arc::new(std::sync::Mutex::new(Vec::new()));
        let holder = locks.lock(&round).await;
        let mut tasks = Vec::new();
        for i in 0..16u64 {
            let place = locks.enqueue(&round);
            let state = Arc::clone(&state);
            let served = Arc::clone(&served);
            tasks.push(tokio::spawn(async move {
                let guard = place.await;
                critical_section(&state, guard.token().get());
                // Leaves on drop too: a task aborted while its poll is still running (its
                // worker preempted) can be granted in that same poll and then be dropped at
                // the yield below, holding the guard. It must leave before the guard (declared
                // earlier, dropped later) releases the key.
                let _inside = Inside(&state);
                served.lock().unwrap().push((i, guard.token().get()));
                if i % 3 == 0 {
                    tokio::task::yield_now().await;
                }
            }));
        }
        // Give up on some places: before, while or after their turn comes.
        for (i, t) in tasks.iter().enumerate() {
            if i % 5 == 2 {
                t.abort();
            }
        }
        drop(holder);
        for t in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(20), t)
                .await
                .unwrap_or_else(|_| panic!("round {round}: a place was never served"));
        }
        let served = served.lock().unwrap().clone();
        let mut by_index = served.clone();
        by_index.sort();
        assert!(
            by_index.windows(2).all(|w| w[0].1 < w[1].1),
            "round {round}: served out of order: {served:?}"
        );
        assert!(served.len() >= 16 - 4, "round {round}: {served:?}");
        assert_eq!(locks.len(), 0, "round {round}");
    }
}
