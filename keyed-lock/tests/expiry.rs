//! The lease deadline is watched by one timer per key (not one per waiter): whichever waiter
//! holds that role, the next waiter proceeds at the holder's deadline, exactly. These tests
//! move the role around (the watcher is cancelled, granted, or was never polled; the deadline
//! moves earlier or later) and check that nobody waits past a deadline. Paused tokio time.

use std::time::Duration;

use seawall_keyed_lock::KeyedLock;
use tokio::time::{Instant, advance};

fn locks(ttl_secs: u64) -> KeyedLock<u64> {
    KeyedLock::builder()
        .ttl(Duration::from_secs(ttl_secs))
        .shards(1)
        .build()
        .unwrap()
}

async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

/// The last waiter to join watches the deadline; cancelling it passes the role to another.
#[tokio::test(start_paused = true)]
async fn cancelled_watcher_passes_the_deadline_on() {
    let locks = locks(10);
    let start = Instant::now();
    let stale = locks.lock(&1).await;
    let l = locks.clone();
    let first = tokio::spawn(async move { (l.lock(&1).await.token(), Instant::now()) });
    settle().await;
    let l = locks.clone();
    let watcher = tokio::spawn(async move { l.lock(&1).await.token() });
    settle().await;
    watcher.abort();
    let _ = watcher.await;
    // Watchdog only: a deadline nobody watches would hang the test instead of failing it.
    let (token, at) = tokio::time::timeout(Duration::from_secs(3600), first)
        .await
        .expect("the first waiter was not served at the deadline")
        .unwrap();
    assert_eq!(at - start, Duration::from_secs(10));
    assert!(token > stale.token());
    drop(stale);
    assert!(locks.is_empty());
}

/// A waiter that times out while watching passes the role on as well.
#[tokio::test(start_paused = true)]
async fn timed_out_watcher_passes_the_deadline_on() {
    let locks = locks(10);
    let start = Instant::now();
    let _stale = locks.lock(&1).await;
    let l = locks.clone();
    let first = tokio::spawn(async move { (l.lock(&1).await.token(), Instant::now()) });
    settle().await;
    let l = locks.clone();
    let quitter = tokio::spawn(async move { l.lock_timeout(&1, Duration::from_secs(2)).await });
    settle().await;
    assert!(quitter.await.unwrap().is_err());
    assert_eq!(Instant::now() - start, Duration::from_secs(2));
    let (_, at) = tokio::time::timeout(Duration::from_secs(3600), first)
        .await
        .expect("the first waiter was not served at the deadline")
        .unwrap();
    assert_eq!(at - start, Duration::from_secs(10));
}

/// A grant with a shorter TTL than the lease before it moves the deadline earlier: the
/// waiter behind it proceeds at the shorter deadline, not at the timer's first one.
#[tokio::test(start_paused = true)]
async fn a_shorter_lease_pulls_the_watch_earlier() {
    let locks = locks(100);
    let start = Instant::now();
    let holder = locks.lock(&1).await;
    let l = locks.clone();
    let short = tokio::spawn(async move {
        let g = l.lock_with_ttl(&1, Duration::from_secs(3)).await;
        let at = Instant::now();
        // Hold it past its deadline without releasing: the next waiter takes over.
        tokio::time::sleep(Duration::from_secs(60)).await;
        (g.token(), at)
    });
    settle().await;
    let l = locks.clone();
    let last = tokio::spawn(async move { (l.lock(&1).await.token(), Instant::now()) });
    settle().await;
    advance(Duration::from_secs(5)).await;
    drop(holder);
    settle().await;
    let (last_token, last_at) = last.await.unwrap();
    // Granted to `short` at 5 s with a 3 s TTL: `last` proceeds at 8 s (the timer was first
    // armed at 100 s).
    assert_eq!(last_at - start, Duration::from_secs(8));
    let (short_token, short_at) = short.await.unwrap();
    assert_eq!(short_at - start, Duration::from_secs(5));
    assert!(last_token > short_token);
}

/// Extensions move the deadline later: the early firing re-arms and the waiter proceeds at
/// the extended deadline.
#[tokio::test(start_paused = true)]
async fn extensions_are_followed() {
    let locks = locks(10);
    let start = Instant::now();
    let mut holder = locks.lock(&1).await;
    let l = locks.clone();
    let waiter = tokio::spawn(async move {
        let _g = l.lock(&1).await;
        Instant::now()
    });
    settle().await;
    advance(Duration::from_secs(9)).await;
    holder.extend(Duration::from_secs(10)).await.unwrap();
    let at = waiter.await.unwrap();
    assert_eq!(at - start, Duration::from_secs(19));
    assert!(holder.is_expired());
}

/// A place taken with `enqueue` and never polled has no waker: the polled waiter behind it
/// watches, hands the key to it at the deadline, and the place gets it when first polled.
#[tokio::test(start_paused = true)]
async fn unpolled_place_is_served_by_a_polled_watcher() {
    let locks = locks(10);
    let start = Instant::now();
    let stale = locks.lock(&1).await;
    let early = locks.enqueue(&1);
    let l = locks.clone();
    let late = tokio::spawn(async move { (l.lock(&1).await.token(), Instant::now()) });
    settle().await;
    advance(Duration::from_secs(10)).await;
    settle().await;
    assert!(
        !late.is_finished(),
        "the late waiter must not overtake the place"
    );
    let early_guard = early.await;
    assert!(early_guard.token() > stale.token());
    assert_eq!(Instant::now() - start, Duration::from_secs(10));
    drop(early_guard);
    let (late_token, _) = late.await.unwrap();
    assert!(late_token > stale.token());
    drop(stale);
    assert!(locks.is_empty());
}

/// Many waiters: every one of them is served at its predecessor's deadline when nobody
/// releases (the role passes along the queue).
#[tokio::test(start_paused = true)]
async fn a_queue_of_stalled_holders_advances_one_ttl_at_a_time() {
    let locks = locks(10);
    let start = Instant::now();
    let _first = locks.lock(&1).await;
    let mut tasks = Vec::new();
    for _ in 0..5 {
        let l = locks.clone();
        tasks.push(tokio::spawn(async move {
            let g = l.lock(&1).await;
            let at = Instant::now();
            // Stall past the lease without releasing.
            tokio::time::sleep(Duration::from_secs(1000)).await;
            drop(g);
            at
        }));
        settle().await;
    }
    for (i, t) in tasks.into_iter().enumerate() {
        let at = t.await.unwrap();
        assert_eq!(at - start, Duration::from_secs(10 * (i as u64 + 1)));
    }
}

/// The key's timer belongs to the runtime of the waiter that made it. A waiter on another
/// runtime, queued after that runtime has shut down, is still served at the deadline (and
/// nothing panics polling a dead runtime's timer).
#[test]
fn a_timer_from_a_shut_down_runtime_is_replaced() {
    let locks = locks(1);
    let holder = locks.try_lock(&1).unwrap();
    let first = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // A waiter on the first runtime makes the key's timer, then that runtime goes away.
    let l = locks.clone();
    first.block_on(async move {
        let r = l.lock_timeout(&1, Duration::from_millis(20)).await;
        assert!(r.is_err());
    });
    let l = locks.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    let task = first.spawn(async move {
        let _g = l.lock(&1).await;
        let _ = tx.send(());
    });
    // Let it queue (and watch), then shut the runtime down with it queued.
    first.block_on(async { tokio::time::sleep(Duration::from_millis(5)).await });
    drop(first);
    assert!(rx.try_recv().is_err());
    drop(task);
    let second = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    let l = locks.clone();
    second.block_on(async move {
        let g = tokio::time::timeout(Duration::from_secs(10), l.lock(&1))
            .await
            .expect("served at the holder's deadline");
        assert!(g.token() > holder.token());
    });
    // Real time here (two real runtimes): served at the 1 s deadline, not at the watchdog.
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(locks.is_empty());
}
