//! Public types and the futures of public async fns are `Send + Sync` (+ `'static` where
//! relevant), so they work in `tokio::spawn`.

use std::time::Duration;

use std::convert::Infallible;

use seawall_keyed_lock::{
    Busy, ConfigError, Enqueued, ExtendError, FencingToken, Guard, KeyedLock, KeyedLockBuilder,
    LeaseExpired, LeaseLost, LockEvents, LockTimeoutError, MemoryBackend, MemoryLease, Metrics,
    Refused, Timeout, TryLockError, Wait, WithLockError,
};

fn send_sync_static<T: Send + Sync + 'static>() {}
fn send<T: Send>(_: &T) {}

#[test]
fn types_are_send_sync_static() {
    send_sync_static::<KeyedLock<u64>>();
    send_sync_static::<KeyedLock<String>>();
    send_sync_static::<Guard<String>>();
    send_sync_static::<KeyedLockBuilder<String>>();
    send_sync_static::<Enqueued<String>>();
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
    send_sync_static::<Refused>();
    send_sync_static::<Wait>();
    send_sync_static::<ExtendError<Infallible>>();
    send_sync_static::<TryLockError<Infallible>>();
    send_sync_static::<LockTimeoutError<Infallible>>();
    send_sync_static::<WithLockError<Infallible>>();
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
    send(&locks.acquire(&key, Duration::from_secs(1), Wait::No));
    // Borrowed keys: `&str` for a `KeyedLock<String>`.
    send(&locks.lock("k"));
    send(&locks.lock_timeout("k", Duration::from_secs(1)));
    send(&locks.with_lock("k", async |g| g.token()));
    send(&locks.enqueue("k"));
    let mut guard = locks.lock(&key).await;
    send(&guard.lost());
    send(&guard.extend(Duration::from_secs(1)));
    send(&guard.try_extend(Duration::from_secs(1)));
    send(&guard.run(async |g| g.token()));

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

#[cfg(feature = "redis")]
mod redis {
    use std::time::Duration;

    use seawall_keyed_lock::{
        ExtendError, Guard, KeyedLock, LockTimeoutError, RedisBackend, RedisBackendBuilder,
        RedisBackendError, RedisLease, Refused, TryLockError, Wait, WithLockError,
    };

    use super::{send, send_sync_static};

    #[test]
    fn redis_types_are_send_sync_static() {
        send_sync_static::<RedisBackend>();
        send_sync_static::<RedisBackendBuilder>();
        send_sync_static::<RedisBackendError>();
        send_sync_static::<RedisLease>();
        send_sync_static::<KeyedLock<String, RedisBackend>>();
        send_sync_static::<Guard<String, RedisBackend>>();
        send_sync_static::<Refused<RedisBackendError>>();
        send_sync_static::<ExtendError<RedisBackendError>>();
        send_sync_static::<TryLockError<RedisBackendError>>();
        send_sync_static::<LockTimeoutError<RedisBackendError>>();
        send_sync_static::<WithLockError<RedisBackendError>>();
    }

    /// Futures are only built, never polled: no server is needed (the backend connects
    /// lazily).
    #[tokio::test]
    async fn redis_futures_are_send() {
        let backend = RedisBackend::builder("redis://127.0.0.1:1/")
            .build()
            .unwrap();
        let locks = KeyedLock::<String>::builder()
            .build_with_backend(backend)
            .unwrap();
        let key = "k".to_owned();
        let d = Duration::from_secs(1);
        send(&locks.lock(&key));
        send(&locks.lock_with_ttl(&key, d));
        send(&locks.try_lock(&key));
        send(&locks.try_lock_with_ttl(&key, d));
        send(&locks.lock_timeout(&key, d));
        send(&locks.lock_timeout_with_ttl(&key, d, d));
        send(&locks.with_lock(&key, async |g| g.token()));
        send(&locks.acquire(&key, d, Wait::Forever));
        fn guard_futures(guard: &mut Guard<String, RedisBackend>) {
            send(&guard.lost());
            send(&guard.extend(Duration::from_secs(1)));
            send(&guard.try_extend(Duration::from_secs(1)));
            send(&guard.run(async |g| g.token()));
        }
        let _ = guard_futures;
    }
}
