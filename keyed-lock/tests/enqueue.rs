//! `enqueue`: a place in the key's FIFO taken at call time, not at first poll; and lookups by
//! a borrowed form of the key.

use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use parking_lot::Mutex;
use seawall_keyed_lock::KeyedLock;
use tokio::time::advance;

/// Places created in order 0..5 and first polled in reverse (4 first) are served 0..5. The
/// same with `lock` futures is served in reverse: `lock` joins the queue at its first poll,
/// which is why `enqueue` exists.
#[tokio::test(start_paused = true)]
async fn enqueued_places_keep_call_order_when_polled_in_reverse() {
    for use_enqueue in [true, false] {
        let locks = KeyedLock::<String>::new();
        let held = locks.lock("alice").await;
        let served = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        if use_enqueue {
            let places: Vec<_> = (0..5).map(|i| (i, locks.enqueue("alice"))).collect();
            assert!(places.iter().all(|(_, p)| !p.is_granted()));
            for (i, place) in places.into_iter().rev() {
                let served = Arc::clone(&served);
                tasks.push(tokio::spawn(async move {
                    let guard = place.await;
                    served.lock().push(i);
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    drop(guard);
                }));
                tokio::task::yield_now().await; // first polled now, in reverse order
            }
        } else {
            let mut futs: Vec<_> = (0..5)
                .map(|i| {
                    let locks = locks.clone();
                    (i, async move { locks.lock("alice").await })
                })
                .collect();
            while let Some((i, fut)) = futs.pop() {
                let served = Arc::clone(&served);
                tasks.push(tokio::spawn(async move {
                    let guard = fut.await;
                    served.lock().push(i);
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    drop(guard);
                }));
                tokio::task::yield_now().await;
            }
        }
        drop(held);
        for task in tasks {
            task.await.unwrap();
        }
        let served = served.lock().clone();
        if use_enqueue {
            assert_eq!(served, [0, 1, 2, 3, 4]);
        } else {
            assert_eq!(served, [4, 3, 2, 1, 0]);
        }
        assert_eq!(locks.len(), 0);
    }
}

/// A free key is granted when `enqueue` is called: later `try_lock`s see it busy, and the
/// lease runs from the call.
#[tokio::test(start_paused = true)]
async fn enqueue_on_a_free_key_grants_at_call_time() {
    let locks = KeyedLock::<u64>::new();
    let place = locks.enqueue_with_ttl(&1, Duration::from_secs(10));
    assert!(place.is_granted());
    assert!(locks.try_lock(&1).is_err());
    advance(Duration::from_secs(4)).await;
    let guard = place.await;
    assert_eq!(guard.remaining(), Duration::from_secs(6));
    drop(guard);
    assert!(locks.is_empty());
}

/// Dropping a place (granted or queued, polled or not) leaves nothing behind and passes a
/// grant on.
#[tokio::test(start_paused = true)]
async fn dropped_places_leave_no_trace() {
    let locks = KeyedLock::<u64>::new();
    let granted = locks.enqueue(&1);
    let mut queued = locks.enqueue(&1);
    let never_polled = locks.enqueue(&1);
    let last = locks.enqueue(&1);
    assert!(matches!(futures::poll!(&mut queued), Poll::Pending));
    drop(granted); // hands the key to `queued`
    drop(queued); // which passes it on, skipping nobody
    drop(never_polled); // leaves the queue
    let guard = last.await;
    assert_eq!(locks.len(), 1);
    drop(guard);
    assert!(locks.is_empty());

    // A place created while no runtime runs (enqueue needs none), dropped unpolled.
    let holder = locks.try_lock(&2).unwrap();
    let locks2 = locks.clone();
    let place = std::thread::spawn(move || locks2.enqueue(&2))
        .join()
        .unwrap();
    assert_eq!(locks.len(), 1);
    drop(place);
    drop(holder);
    assert!(locks.is_empty());
}

/// A queued place takes over from a holder whose lease expired, at its deadline.
#[tokio::test(start_paused = true)]
async fn enqueued_place_takes_over_an_expired_lease() {
    let locks = KeyedLock::<u64>::new();
    std::mem::forget(locks.lock_with_ttl(&1, Duration::from_secs(3)).await);
    let start = tokio::time::Instant::now();
    let guard = locks.enqueue(&1).await;
    assert_eq!(start.elapsed(), Duration::from_secs(3));
    drop(guard);
    assert!(locks.is_empty());
}

/// Every memory method takes `&str` for a `KeyedLock<String>` (this compiling is the API
/// proof); a present key is found without building a `String`.
#[tokio::test(start_paused = true)]
async fn string_keys_are_looked_up_by_str() {
    let locks = KeyedLock::<String>::new();
    let name: &str = "alice";
    let guard = locks.lock(name).await;
    assert!(locks.try_lock(name).is_err());
    assert!(
        locks
            .try_lock_with_ttl(name, Duration::from_secs(1))
            .is_err()
    );
    assert!(
        locks
            .lock_timeout(name, Duration::from_millis(5))
            .await
            .is_err()
    );
    assert!(
        locks
            .lock_timeout_with_ttl(name, Duration::ZERO, Duration::from_secs(1))
            .await
            .is_err()
    );
    let waiter = locks.enqueue(name);
    drop(guard);
    let guard = waiter.await;
    drop(guard);
    let got = locks
        .with_lock(name, async |g| g.token().get())
        .await
        .unwrap();
    assert!(got > 0);
    let guard = locks.lock_with_ttl(name, Duration::from_secs(1)).await;
    // The owned form works too.
    assert!(locks.try_lock(&"alice".to_owned()).is_err());
    drop(guard);
    assert!(locks.is_empty());
}

/// Many tasks on a multi-thread runtime take places on a few keys, some dropping them before,
/// during or after their grant: holders of one key never overlap, every awaited place is
/// granted, and nothing is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn enqueued_places_stay_exclusive_under_contention() {
    use std::sync::atomic::{AtomicUsize, Ordering};

    const KEYS: usize = 4;
    let locks = KeyedLock::<u64>::builder().shards(2).build().unwrap();
    let inside: Arc<Vec<AtomicUsize>> = Arc::new((0..KEYS).map(|_| AtomicUsize::new(0)).collect());
    let granted = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for worker in 0..16u64 {
        let (locks, inside, granted) = (locks.clone(), Arc::clone(&inside), Arc::clone(&granted));
        tasks.push(tokio::spawn(async move {
            let mut x = worker.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            for _ in 0..300 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let key = x % KEYS as u64;
                let place = locks.enqueue(&key);
                match x % 5 {
                    0 => drop(place), // cancelled before its first poll
                    1 => {
                        // cancelled while (maybe) waiting
                        let _ = tokio::time::timeout(std::time::Duration::ZERO, place).await;
                    }
                    _ => {
                        let guard = place.await;
                        let n = inside[key as usize].fetch_add(1, Ordering::SeqCst);
                        assert_eq!(n, 0, "two holders of key {key}");
                        tokio::task::yield_now().await;
                        inside[key as usize].fetch_sub(1, Ordering::SeqCst);
                        granted.fetch_add(1, Ordering::Relaxed);
                        drop(guard);
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert!(granted.load(Ordering::Relaxed) > 16 * 300 / 2);
    assert_eq!(locks.len(), 0);
}
