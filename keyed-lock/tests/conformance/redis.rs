//! The fixture of the Redis instances (`conformance_redis.rs` on one server,
//! `conformance_cluster.rs` on a Redis Cluster): they differ only in how the two replicas and
//! the test's own connection are made.

use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

use redis::aio::ConnectionLike;
use seawall_keyed_lock::{KeyedLock, RedisBackend, RedisBackendBuilder};

use super::Fixture;

/// The default TTL of the Redis instances: several round trips, short enough to wait out.
pub const TTL: Duration = Duration::from_millis(300);

/// A key prefix no other test run uses: servers may be shared, and nothing flushes them.
pub fn test_prefix() -> String {
    let r = RandomState::new().hash_one((std::process::id(), std::time::SystemTime::now()));
    format!("seawall:test:{r:016x}:")
}

/// A replica: a lock named `conformance` with the default [`TTL`], on a backend from `builder`
/// (a server's or a cluster's) with the test's `prefix` and a 1 s command timeout.
pub fn replica(builder: RedisBackendBuilder, prefix: &str) -> KeyedLock<String, RedisBackend> {
    let backend = builder
        .prefix(prefix)
        .command_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    KeyedLock::builder()
        .name("conformance")
        .ttl(TTL)
        .build_with_backend(backend)
        .unwrap()
}

/// The conformance suite as `#[ignore = "needs redis-server"]` tests, each on a fresh fixture
/// from `$fixture` (an async fn returning a [`RedisFixture`]).
#[macro_export]
macro_rules! redis_conformance {
    ($fixture:path) => {
        redis_conformance!(@tests $fixture;
            fifo, try_busy, timeout, ttl_takeover, extend, lost, run_and_cancel, cancelled_waiters);
    };
    (@tests $fixture:path; $($name:ident),*) => {
        $(
            #[tokio::test]
            #[ignore = "needs redis-server"]
            async fn $name() {
                conformance::$name(&$fixture().await).await;
            }
        )*
    };
}

/// Two replicas on one prefix, and a connection (`C`) for the test's own reads.
pub struct RedisFixture<C> {
    pub locks: KeyedLock<String, RedisBackend>,
    /// A second backend on the same prefix: another replica.
    pub other: KeyedLock<String, RedisBackend>,
    pub conn: C,
}

impl<C> Fixture for RedisFixture<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    type B = RedisBackend;

    fn locks(&self) -> &KeyedLock<String, Self::B> {
        &self.locks
    }

    fn other(&self) -> &KeyedLock<String, Self::B> {
        &self.other
    }

    fn ttl(&self) -> Duration {
        TTL
    }

    fn drift(&self, ttl: Duration) -> Duration {
        ttl / 100 + Duration::from_millis(2)
    }

    fn slack(&self) -> Duration {
        Duration::from_millis(60)
    }

    /// The waiting replica's backoff is capped at 100 ms.
    fn handoff(&self) -> Duration {
        Duration::from_millis(100) + self.slack()
    }

    async fn pass(&self, d: Duration) {
        tokio::time::sleep(d).await;
    }

    async fn settle(&self) {
        tokio::time::sleep(Duration::from_millis(30)).await;
    }

    /// In-process queue entries plus the lease key in Redis, once background releases had
    /// up to 500 ms to finish.
    async fn leftovers(&self, key: &str) -> usize {
        let lease_key = self.locks.backend().lease_key(&key);
        let mut conn = self.conn.clone();
        let mut left = 0;
        for _ in 0..50 {
            let exists: usize = redis::cmd("EXISTS")
                .arg(&lease_key)
                .query_async(&mut conn)
                .await
                .unwrap();
            left = self.locks.backend().local_len() + self.other.backend().local_len() + exists;
            if left == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        left
    }
}
