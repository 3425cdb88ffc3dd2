//! The conformance suite (`tests/conformance/mod.rs`) on the Redis backend, against the server
//! at `SEAWALL_REDIS_URL` (ignored by default: run with `-- --ignored`).
//!
//! The one exception to the paused-time rule: Redis expires keys on its own wall clock, which
//! paused tokio time cannot move, so this instance lets time pass with short real sleeps and
//! uses TTLs of 300 ms. The assertions allow a small `slack` for round trips.
//!
//! Every key is namespaced by a random prefix (`seawall:test:<random>:`): the server may be
//! shared, and nothing here flushes it.

#![cfg(feature = "redis")]

mod conformance;

use std::time::Duration;

use conformance::Fixture;
use conformance::redis::{RedisFixture, TTL, test_prefix};
use seawall_keyed_lock::{KeyedLock, RedisBackend};

fn url() -> String {
    std::env::var("SEAWALL_REDIS_URL").unwrap_or_else(|_| {
        panic!(
            "SEAWALL_REDIS_URL is not set: these tests need a Redis server \
             (e.g. SEAWALL_REDIS_URL=redis://127.0.0.1:6379/, or run .ci/redis-tests)"
        )
    })
}

type Redis = RedisFixture<redis::aio::MultiplexedConnection>;

fn replica(url: &str, prefix: &str) -> KeyedLock<String, RedisBackend> {
    conformance::redis::replica(RedisBackend::builder(url), prefix)
}

async fn redis() -> Redis {
    let url = url();
    let prefix = test_prefix();
    let locks = replica(&url, &prefix);
    let other = replica(&url, &prefix);
    let conn = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("SEAWALL_REDIS_URL is not reachable");
    Redis { locks, other, conn }
}

redis_conformance!(redis);

// Redis-only behaviour (no in-memory counterpart).

/// Auto-renew keeps a lease alive well past its TTL while the guard lives, and stops when
/// the guard is dropped (the key is then free at once, not after a TTL).
///
/// That the watchdog stopped is observed directly: after the release, the test writes the
/// dropped guard's exact lease value back with a long PTTL. A watchdog still running would
/// find its value there at its next renewal (every TTL/3) and cut the PTTL down to the TTL.
#[tokio::test]
#[ignore = "needs redis-server"]
async fn auto_renew_keeps_the_lease_and_stops_on_drop() {
    let url = url();
    let prefix = test_prefix();
    let locks = conformance::redis::replica(RedisBackend::builder(&url).auto_renew(true), &prefix);
    let other = replica(&url, &prefix);
    let mut conn = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let key = "renewed".to_owned();
    let lease_key = locks.backend().lease_key(&key);
    let guard = locks.lock(&key).await.unwrap();
    let lost = tokio::time::timeout(TTL * 3, guard.lost()).await;
    assert!(
        lost.is_err(),
        "lost() resolved although the lease was renewed"
    );
    assert!(!guard.is_expired());
    assert!(guard.deadline() > guard.acquired_at() + TTL * 2);
    assert!(matches!(
        other.try_lock(&key).await,
        Err(seawall_keyed_lock::TryLockError::Busy(_))
    ));
    let token = guard.token();
    let value = guard.lease().value().to_owned();
    drop(guard);

    // Once the release deleted the key, put the same value back for 10 s.
    let start = tokio::time::Instant::now();
    loop {
        let exists: bool = redis::cmd("EXISTS")
            .arg(&lease_key)
            .query_async(&mut conn)
            .await
            .unwrap();
        if !exists {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(2), "not released");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let _: () = redis::cmd("SET")
        .arg(&lease_key)
        .arg(&value)
        .arg("PX")
        .arg(10_000)
        .query_async(&mut conn)
        .await
        .unwrap();
    // Three renewal periods.
    tokio::time::sleep(TTL).await;
    let pttl: i64 = redis::cmd("PTTL")
        .arg(&lease_key)
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = redis::cmd("DEL")
        .arg(&lease_key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        pttl > 9_000,
        "the watchdog still renewed the dropped guard's lease: PTTL {pttl} ms"
    );

    let next = other
        .lock_timeout(&key, TTL / 2)
        .await
        .expect("free after the drop");
    assert!(next.token() > token);
    drop(next);
    let fixture = Redis { locks, other, conn };
    assert_eq!(fixture.leftovers(&key).await, 0);
}

/// Fencing tokens keep increasing per key across holders on different replicas, and the
/// lease value names the token.
#[tokio::test]
#[ignore = "needs redis-server"]
async fn tokens_increase_across_replicas_and_are_stored_in_the_lease() {
    let fx = redis().await;
    let key = "tokens".to_owned();
    let mut last = 0;
    for i in 0..6 {
        let locks = if i % 2 == 0 { &fx.locks } else { &fx.other };
        let guard = locks.lock_timeout(&key, TTL).await.unwrap();
        assert!(guard.token().get() > last, "{} <= {last}", guard.token());
        last = guard.token().get();
        let mut conn = fx.conn.clone();
        let value: String = redis::cmd("GET")
            .arg(locks.backend().lease_key(&key))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(value, guard.lease().value());
        assert!(value.starts_with(&format!("{last}:")), "{value}");
    }
    assert_eq!(fx.leftovers(&key).await, 0);
}

/// `extend` with a TTL shorter than `RedisBackend::MIN_TTL` is refused before anything is
/// sent; the lease keeps its deadline.
#[tokio::test]
#[ignore = "needs redis-server"]
async fn extend_with_a_too_short_ttl_is_refused() {
    let fx = redis().await;
    let mut guard = fx.locks.lock(&"short-extend".to_owned()).await.unwrap();
    let deadline = guard.deadline();
    match guard.extend(Duration::from_millis(2)).await {
        Err(seawall_keyed_lock::ExtendError::Backend(
            seawall_keyed_lock::RedisBackendError::InvalidTtl { ttl, .. },
        )) => assert_eq!(ttl, Duration::from_millis(2)),
        other => panic!("{other:?}"),
    }
    assert_eq!(guard.deadline(), deadline);
    guard.extend(RedisBackend::MIN_TTL * 100).await.unwrap();
    drop(guard);
    assert_eq!(fx.leftovers("short-extend").await, 0);
}
