//! The conformance suite (`tests/conformance/mod.rs`) against the in-memory
//! [`Cooldown`], on a paused tokio clock: every duration and instant is
//! asserted exactly.

use std::time::Duration;

use seawall_cooldown::{Cooldown, Decision, Digest, Fire, Reservation, Suppressed};

#[macro_use]
mod conformance;

use conformance::{Backend, Fixture, Reserved};

impl Reserved for Reservation<String> {
    fn fire(&self) -> &Fire {
        Reservation::fire(self)
    }
    async fn commit(self) {
        Reservation::commit(self);
    }
    async fn rollback(self) {
        Reservation::rollback(self);
    }
}

impl Backend for Cooldown<String> {
    type Res = Reservation<String>;
    async fn check(&self, key: &str) -> Decision {
        Cooldown::check(self, &key.to_owned())
    }
    async fn critical(&self, key: &str) -> Fire {
        self.check_critical(&key.to_owned())
    }
    async fn reserve(&self, key: &str) -> Result<Self::Res, Suppressed> {
        Cooldown::reserve(self, &key.to_owned())
    }
    async fn drain(&self) -> Vec<(String, Digest)> {
        self.drain_digests()
    }
}

struct Memory;

impl Fixture for Memory {
    type C = Cooldown<String>;
    const WINDOW: Duration = Duration::from_secs(1800);
    const SLACK: Duration = Duration::ZERO;
    async fn cooldown(&self) -> Cooldown<String> {
        Cooldown::builder().window(Self::WINDOW).build().unwrap()
    }
    async fn pass(&self, d: Duration) {
        tokio::time::advance(d).await;
    }
    async fn settle(&self) {}
}

conformance_suite!(Memory, #[tokio::test(start_paused = true)]);
