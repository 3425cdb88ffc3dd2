//! Behaviour through the public API on paused tokio time.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use seawall_keyed_lock::{ConfigError, KeyedLock};
use tokio::time::{Instant, advance};

fn locks(ttl_secs: u64) -> KeyedLock<u64> {
    KeyedLock::builder()
        .name("test")
        .ttl(Duration::from_secs(ttl_secs))
        .shards(4)
        .build()
        .unwrap()
}

/// Lets every runnable task run (paused time: nothing advances).
async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn ten_waiters_are_served_in_fifo_order() {
    let locks = locks(300);
    let first = locks.lock(&1).await;
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..10 {
        let locks = locks.clone();
        let order = Arc::clone(&order);
        tasks.push(tokio::spawn(async move {
            let guard = locks.lock(&1).await;
            order.lock().unwrap().push((i, guard.token().get()));
            tokio::time::sleep(Duration::from_millis(1)).await;
        }));
        // Make sure task i is queued before task i+1 asks.
        settle().await;
    }
    assert_eq!(locks.len(), 1);
    drop(first);
    for t in tasks {
        t.await.unwrap();
    }
    let order = order.lock().unwrap().clone();
    assert_eq!(
        order.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
        (0..10).collect::<Vec<_>>()
    );
    assert!(order.windows(2).all(|w| w[0].1 < w[1].1));
    assert_eq!(locks.len(), 0);
}

#[tokio::test(start_paused = true)]
async fn try_lock_reports_busy_since_when_held() {
    let locks = locks(300);
    let start = Instant::now();
    let guard = locks.try_lock(&5).unwrap();
    advance(Duration::from_secs(7)).await;
    let busy = locks.try_lock(&5).unwrap_err();
    assert_eq!(busy.held_since, start);
    assert_eq!(busy.expires_at, start + Duration::from_secs(300));
    assert!(busy.to_string().contains("held for 7s"), "{busy}");
    // Other keys are independent.
    assert!(locks.try_lock(&6).is_ok());
    drop(guard);
    let again = locks.try_lock(&5).unwrap();
    assert!(again.token() > busy_token_floor());
    assert_eq!(locks.len(), 1);
}

fn busy_token_floor() -> seawall_keyed_lock::FencingToken {
    seawall_keyed_lock::FencingToken::new(1)
}

#[tokio::test(start_paused = true)]
async fn lock_timeout_gives_up_and_leaves_no_trace() {
    let locks = locks(300);
    let guard = locks.lock(&1).await;
    let start = Instant::now();
    let err = locks
        .lock_timeout(&1, Duration::from_secs(3))
        .await
        .unwrap_err();
    assert_eq!(err.after, Duration::from_secs(3));
    assert_eq!(Instant::now() - start, Duration::from_secs(3));
    drop(guard);
    assert_eq!(locks.len(), 0);

    // A timed wait that is served in time returns the guard.
    let guard = locks.lock(&1).await;
    let l2 = locks.clone();
    let waiter = tokio::spawn(async move { l2.lock_timeout(&1, Duration::from_secs(3)).await });
    advance(Duration::from_secs(2)).await;
    drop(guard);
    let got = waiter.await.unwrap().unwrap();
    assert_eq!(Instant::now() - start, Duration::from_secs(5));
    drop(got);
    assert_eq!(locks.len(), 0);

    // A zero timeout is an immediate attempt.
    let _g = locks.lock(&1).await;
    assert_eq!(
        locks
            .lock_timeout(&1, Duration::ZERO)
            .await
            .unwrap_err()
            .after,
        Duration::ZERO
    );
}

#[tokio::test(start_paused = true)]
async fn ttl_expiry_hands_over_to_the_next_waiter() {
    let locks = locks(10);
    let start = Instant::now();
    let stale = locks.lock(&1).await;
    let l2 = locks.clone();
    let waiter = tokio::spawn(async move {
        let g = l2.lock(&1).await;
        (Instant::now(), g)
    });
    settle().await;
    assert!(!waiter.is_finished());
    // The stale holder does nothing; the waiter takes over at the deadline.
    let (granted_at, fresh) = waiter.await.unwrap();
    assert_eq!(granted_at - start, Duration::from_secs(10));
    assert!(fresh.token() > stale.token());
    assert!(stale.is_expired());
    assert!(!fresh.is_expired());

    // The stale guard's lost() resolves at once; its drop does not release the new holder.
    tokio::time::timeout(Duration::from_millis(1), stale.lost())
        .await
        .expect("lost() resolves for a stale guard");
    drop(stale);
    assert!(locks.try_lock(&1).is_err());
    assert_eq!(locks.len(), 1);
    drop(fresh);
    assert_eq!(locks.len(), 0);
}

#[tokio::test(start_paused = true)]
async fn lost_resolves_at_the_deadline_and_follows_extensions() {
    let locks = locks(10);
    let start = Instant::now();
    let mut guard = locks.lock(&1).await;
    advance(Duration::from_secs(8)).await;
    guard.extend(Duration::from_secs(10)).await.unwrap();
    guard.lost().await;
    assert_eq!(Instant::now() - start, Duration::from_secs(18));
    assert!(guard.is_expired());
}

#[tokio::test(start_paused = true)]
async fn expired_lease_without_waiters_is_taken_over_lazily() {
    let locks = locks(10);
    let stale = locks.lock(&1).await;
    std::mem::forget(locks.lock(&2).await); // a holder that crashed
    advance(Duration::from_secs(11)).await;
    assert_eq!(locks.len(), 2, "no timer runs when nobody waits");
    let fresh = locks.try_lock(&1).unwrap();
    assert!(fresh.token() > stale.token());
    let crashed_over = locks.try_lock(&2).unwrap();
    drop(stale);
    assert!(locks.try_lock(&1).is_err());
    drop(fresh);
    drop(crashed_over);
    assert_eq!(locks.len(), 0);
}

#[tokio::test(start_paused = true)]
async fn extend_renews_a_live_lease_and_fails_on_an_expired_one() {
    let locks = locks(10);
    let start = Instant::now();
    let mut guard = locks.lock(&1).await;
    advance(Duration::from_secs(9)).await;
    let deadline = guard.extend(Duration::from_secs(10)).await.unwrap();
    assert_eq!(deadline - start, Duration::from_secs(19));
    assert_eq!(guard.deadline(), deadline);
    // A waiter must now wait for the extended deadline.
    let l2 = locks.clone();
    let waiter = tokio::spawn(async move {
        let g = l2.lock(&1).await;
        (Instant::now(), g.token())
    });
    advance(Duration::from_secs(5)).await; // t = 14 s: old deadline (10 s) long gone
    assert!(!waiter.is_finished());
    let (at, token) = waiter.await.unwrap();
    assert_eq!(at - start, Duration::from_secs(19));
    assert!(token > guard.token());
    let err = guard.extend(Duration::from_secs(10)).await.unwrap_err();
    assert_eq!(err.token, guard.token());

    // Expired but not taken over: extend still fails.
    let mut lonely = locks.lock(&2).await;
    advance(Duration::from_secs(10)).await;
    let err = lonely.extend(Duration::from_secs(10)).await.unwrap_err();
    assert_eq!(err.expired_at, lonely.deadline());
    drop(lonely);
    assert_eq!(locks.len(), 0);
}

#[tokio::test(start_paused = true)]
async fn live_guard_drop_wakes_the_next_waiter_at_once() {
    let locks = locks(300);
    let guard = locks.lock(&1).await;
    let l2 = locks.clone();
    let start = Instant::now();
    let waiter = tokio::spawn(async move { l2.lock(&1).await.acquired_at() });
    settle().await;
    drop(guard);
    assert_eq!(waiter.await.unwrap(), start);
}

#[tokio::test(start_paused = true)]
async fn cancelled_waiters_leave_no_trace_and_lose_no_wakeup() {
    let locks = locks(300);
    let guard = locks.lock(&1).await;
    let l2 = locks.clone();
    let cancelled = tokio::spawn(async move { l2.lock(&1).await });
    let l3 = locks.clone();
    let served = tokio::spawn(async move { l3.lock(&1).await.token() });
    settle().await;
    cancelled.abort();
    assert!(cancelled.await.unwrap_err().is_cancelled());
    drop(guard);
    let token = served.await.unwrap();
    assert!(token.get() > 1);
    assert_eq!(locks.len(), 0);

    // A waiter dropped after the key was handed to it passes the key on.
    let guard = locks.lock(&1).await;
    let mut first = Box::pin(locks.lock(&1));
    assert!(futures::poll!(first.as_mut()).is_pending());
    let l4 = locks.clone();
    let second = tokio::spawn(async move { l4.lock(&1).await.token() });
    settle().await;
    drop(guard); // hands the key to `first`, which never looks
    drop(first);
    assert!(second.await.unwrap().get() > 1);
    assert_eq!(locks.len(), 0);
}

#[tokio::test(start_paused = true)]
async fn with_lock_runs_work_and_cancels_it_when_the_lease_is_lost() {
    let locks = locks(10);
    let v = locks
        .with_lock(&1, async |guard| guard.token().get() * 2)
        .await
        .unwrap();
    assert_eq!(v, 2);
    assert_eq!(locks.len(), 0);

    let start = Instant::now();
    let reached_end = Arc::new(Mutex::new(false));
    let flag = Arc::clone(&reached_end);
    let lost = locks
        .with_lock(&1, async move |_guard| {
            tokio::time::sleep(Duration::from_secs(60)).await;
            *flag.lock().unwrap() = true;
        })
        .await
        .unwrap_err();
    assert_eq!(Instant::now() - start, Duration::from_secs(10));
    assert_eq!(lost.deadline - start, Duration::from_secs(10));
    assert!(!*reached_end.lock().unwrap());

    // Extending inside the work postpones the cancellation.
    let start = Instant::now();
    let out = locks
        .with_lock(&1, async |guard| {
            tokio::time::sleep(Duration::from_secs(8)).await;
            guard.extend(Duration::from_secs(10)).await.unwrap();
            tokio::time::sleep(Duration::from_secs(8)).await;
            "done"
        })
        .await
        .unwrap();
    assert_eq!(out, "done");
    assert_eq!(Instant::now() - start, Duration::from_secs(16));
    assert_eq!(locks.len(), 0);
}

#[tokio::test(start_paused = true)]
async fn try_lock_on_expired_key_with_waiters_serves_the_queue_first() {
    let locks = locks(10);
    let stale = locks.lock(&1).await;
    let l2 = locks.clone();
    let mut waiter = Box::pin(async move { l2.lock(&1).await.token() });
    assert!(futures::poll!(waiter.as_mut()).is_pending());
    advance(Duration::from_secs(10)).await;
    // The waiter has not run yet; try_lock must not jump the queue.
    let busy = locks.try_lock(&1).unwrap_err();
    assert_eq!(busy.held_since, Instant::now());
    let token = waiter.await;
    assert!(token > stale.token());
}

#[test]
fn builder_rejects_invalid_settings() {
    let e: ConfigError = KeyedLock::<u64>::builder()
        .ttl(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(e.field(), "ttl");
    let e = KeyedLock::<u64>::builder().name("").build().unwrap_err();
    assert_eq!(e.field(), "name");
    let e = KeyedLock::<u64>::builder().shards(3).build().unwrap_err();
    assert_eq!(e.field(), "shards");
    assert!(e.to_string().contains("shards"));
    let ok = KeyedLock::<u64>::builder().shards(8).build().unwrap();
    assert_eq!(ok.backend().shards(), 8);
    assert_eq!(ok.ttl(), Duration::from_secs(300));
    assert_eq!(ok.name(), "default");
}

#[tokio::test(start_paused = true)]
async fn huge_ttl_does_not_overflow() {
    let locks = locks(10);
    let g = locks.lock_with_ttl(&1, Duration::MAX).await;
    assert!(!g.is_expired());
    assert!(g.remaining() > Duration::from_secs(86_400 * 365));
}

#[tokio::test(start_paused = true)]
async fn purge_expired_removes_only_abandoned_expired_entries() {
    let locks = locks(10);
    std::mem::forget(locks.lock(&1).await); // crashed holder, nobody waits
    let live = locks.lock_with_ttl(&2, Duration::from_secs(60)).await;
    let stale = locks.lock(&3).await; // expired but its guard is still around
    advance(Duration::from_secs(10)).await;
    assert_eq!(locks.purge_expired(), 2);
    assert_eq!(locks.len(), 1);
    // The stale guard's drop is a no-op; a new holder of key 3 is unaffected.
    let fresh = locks.try_lock(&3).unwrap();
    drop(stale);
    assert!(locks.try_lock(&3).is_err());
    drop(fresh);
    drop(live);
    assert_eq!(locks.purge_expired(), 0);
    assert_eq!(locks.len(), 0);
}
