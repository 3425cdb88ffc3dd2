//! No leaks: entries exist only while a key is held or awaited.

use std::task::Poll;

use seawall_keyed_lock::KeyedLock;

#[tokio::test]
async fn a_million_distinct_keys_leave_no_entries() {
    let locks = KeyedLock::<u64>::builder().shards(16).build().unwrap();
    // Tokens count grants per shard: the busiest of 16 shards made at least 1/16 of them.
    let mut max_token = 0;
    for key in 0..1_000_000u64 {
        let guard = locks.lock(&key).await;
        max_token = max_token.max(guard.token().get());
        drop(guard);
    }
    assert!(max_token >= 1_000_000 / 16, "{max_token}");
    assert_eq!(locks.len(), 0);
}

#[tokio::test]
async fn a_hundred_thousand_cancelled_waiters_leave_no_trace() {
    let locks = KeyedLock::<u64>::builder().shards(4).build().unwrap();
    let holders: Vec<_> = (0..10u64).map(|k| locks.try_lock(&k).unwrap()).collect();
    // Queue 100,000 waiters behind the holders (10,000 per key), then cancel them all.
    let keys: Vec<u64> = (0..10).collect();
    let mut waiters = Vec::with_capacity(100_000);
    for i in 0..100_000u64 {
        let mut fut = Box::pin(locks.lock(&keys[(i % 10) as usize]));
        assert!(matches!(futures::poll!(fut.as_mut()), Poll::Pending));
        waiters.push(fut);
    }
    assert_eq!(locks.len(), 10);
    drop(waiters);
    assert_eq!(locks.len(), 10);
    // The holders' release finds nobody to hand over to.
    drop(holders);
    assert_eq!(locks.len(), 0);

    // Waiters cancelled while their key is free again leave nothing either, and a waiter
    // cancelled one at a time never wakes anyone wrongly.
    let holder = locks.try_lock(&1).unwrap();
    for _ in 0..10_000 {
        let mut fut = Box::pin(locks.lock(&1));
        assert!(matches!(futures::poll!(fut.as_mut()), Poll::Pending));
    }
    drop(holder);
    assert_eq!(locks.len(), 0);
    assert!(locks.try_lock(&1).is_ok());
}
