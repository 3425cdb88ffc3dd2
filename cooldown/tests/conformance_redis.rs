//! The conformance suite (`tests/conformance/mod.rs`) against the
//! [`RedisCooldown`], on the server named by `SEAWALL_REDIS_URL`. Every test
//! is `#[ignore = "needs redis-server"]`; run them with `-- --ignored`.
//!
//! The one exception to the paused-clock rule: a Redis cooldown's windows run
//! on the Redis server's wall clock (`TIME` inside the scripts, key expiry),
//! which a paused tokio clock cannot move. So this fixture lets time pass
//! with short real sleeps, uses a 400 ms window, and compares durations and
//! instants within a slack of a few tens of milliseconds (the round trip and
//! scheduling noise on a loaded machine). Each test uses its own cooldown
//! name, so its keys (`seawall:cooldown:{<name>}:...`) collide with nothing
//! else on the server; keys expire on their own, nothing is flushed.

#![cfg(feature = "redis")]

use std::time::Duration;

use seawall_cooldown::{Decision, Digest, Fire, RedisCooldown, RedisReservation, Suppressed};

#[macro_use]
mod conformance;
mod redis_support;

use conformance::{Backend, Fixture, Reserved};

impl Reserved for RedisReservation<String> {
    fn fire(&self) -> &Fire {
        RedisReservation::fire(self)
    }
    async fn commit(self) {
        RedisReservation::commit(self)
            .await
            .expect("commit reached redis");
    }
    async fn rollback(self) {
        RedisReservation::rollback(self)
            .await
            .expect("rollback reached redis");
    }
}

impl Backend for RedisCooldown<String> {
    type Res = RedisReservation<String>;
    async fn check(&self, key: &str) -> Decision {
        self.try_check(&key.to_owned())
            .await
            .expect("redis answers")
    }
    async fn critical(&self, key: &str) -> Fire {
        let f = self.check_critical(&key.to_owned()).await;
        assert!(!f.degraded, "redis answers");
        f
    }
    async fn reserve(&self, key: &str) -> Result<Self::Res, Suppressed> {
        let r = RedisCooldown::reserve(self, &key.to_owned()).await;
        if let Ok(r) = &r {
            assert!(!r.fire().degraded, "redis answers");
        }
        r
    }
    async fn drain(&self) -> Vec<(String, Digest)> {
        self.drain_digests().await
    }
}

struct Redis;

impl Fixture for Redis {
    type C = RedisCooldown<String>;
    const WINDOW: Duration = Duration::from_millis(400);
    const SLACK: Duration = Duration::from_millis(40);
    async fn cooldown(&self) -> RedisCooldown<String> {
        redis_support::cooldown(Self::WINDOW)
    }
    async fn pass(&self, d: Duration) {
        tokio::time::sleep(d).await;
    }
    async fn settle(&self) {
        // The rollback of a dropped reservation runs on a spawned task: one
        // loopback round trip.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

conformance_suite!(Redis, #[tokio::test] #[ignore = "needs redis-server"]);
