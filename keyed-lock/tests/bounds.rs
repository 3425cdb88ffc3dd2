//! Public types and the futures of public async fns are `Send + Sync` (+ `'static` where
//! relevant), so they work in `tokio::spawn`.

use std::time::Duration;

use seawall_keyed_lock::{
    Builder, Busy, ConfigError, FencingToken, Guard, KeyedLock, LeaseExpired, LeaseLost,
    LockEvents, MemoryBackend, MemoryLease, Metrics, Timeout,
};

fn send_sync_static<T: Send + Sync + 'static>() {}
fn send<T: Send>(_: &T) {}

#[test]
fn types_are_send_sync_static() {
    send_sync_static::<KeyedLock<u64>>();
    send_sync_static::<KeyedLock<String>>();
    send_sync_static::<Guard<String>>();
    send_sync_static::<Builder<String>>();
    send_sync_static::<MemoryBackend<String>>();
    send_sync_static::<MemoryLease>();
    send_sync_static::<Metrics>();
    send_sync_static::<LockEvents>();
    send_sync_static::<FencingToken>();
    send_sync_static::<Busy>();
    send_sync_static::<Timeout>();
    send_sync_static::<LeaseExpired>();
    send_sync_static::<LeaseLost>();
    send_sync_static::<ConfigError>();
}

#[tokio::test]
async fn futures_are_send() {
    let locks = KeyedLock::<String>::new();
    let key = "k".to_owned();
    send(&locks.lock(&key));
    send(&locks.lock_with_ttl(&key, Duration::from_secs(1)));
    send(&locks.lock_timeout(&key, Duration::from_secs(1)));
    send(&locks.lock_timeout_with_ttl(&key, Duration::from_secs(1), Duration::from_secs(1)));
    send(&locks.with_lock(&key, async |g| g.token()));
    let mut guard = locks.lock(&key).await;
    send(&guard.lost());
    send(&guard.extend(Duration::from_secs(1)));

    // Owned guards and with_lock move into spawned tasks.
    let l2 = locks.clone();
    let k2 = key.clone();
    let task = tokio::spawn(async move {
        l2.with_lock(&k2, async |g| {
            tokio::task::yield_now().await;
            g.token()
        })
        .await
    });
    let moved = tokio::spawn(async move { guard.token() });
    let token = moved.await.unwrap();
    assert!(task.await.unwrap().unwrap() > token);
}
