//! The [`RedisCooldown`] side of the suite, shared by `conformance_redis.rs` (one server) and
//! `conformance_cluster.rs` (a Redis Cluster): they differ only in how a cooldown is made.

use std::time::Duration;

use seawall_cooldown::{Decision, Digest, Fire, RedisCooldown, RedisReservation, Suppressed};

use super::{Backend, Fixture, Reserved};

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

/// Real time with short sleeps (windows run on the server's clock): a fresh cooldown per
/// test from `make`, which gives it a name no other test uses.
pub(crate) struct RedisFixture(pub(crate) fn(Duration) -> RedisCooldown<String>);

impl Fixture for RedisFixture {
    type C = RedisCooldown<String>;
    const WINDOW: Duration = Duration::from_millis(400);
    const SLACK: Duration = Duration::from_millis(40);
    async fn cooldown(&self) -> RedisCooldown<String> {
        (self.0)(Self::WINDOW)
    }
    async fn pass(&self, d: Duration) {
        tokio::time::sleep(d).await;
    }
    async fn settle(&self) {
        // The rollback of a dropped reservation runs on a spawned task: one round trip (and
        // on a cluster perhaps a redirection).
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
