//! The conformance suite (`tests/conformance/mod.rs`) on the in-memory backend, on paused
//! tokio time: every instant is asserted exactly.

mod conformance;

use std::time::Duration;

use conformance::Fixture;
use seawall_keyed_lock::{KeyedLock, MemoryBackend};

struct Memory {
    locks: KeyedLock<String>,
}

fn memory() -> Memory {
    Memory {
        locks: KeyedLock::builder()
            .name("conformance")
            .ttl(Duration::from_secs(10))
            .shards(4)
            .build()
            .unwrap(),
    }
}

impl Fixture for Memory {
    type B = MemoryBackend<String>;

    fn locks(&self) -> &KeyedLock<String, Self::B> {
        &self.locks
    }

    fn other(&self) -> &KeyedLock<String, Self::B> {
        &self.locks
    }

    fn ttl(&self) -> Duration {
        Duration::from_secs(10)
    }

    fn drift(&self, _ttl: Duration) -> Duration {
        Duration::ZERO
    }

    fn slack(&self) -> Duration {
        Duration::ZERO
    }

    fn handoff(&self) -> Duration {
        Duration::ZERO
    }

    async fn pass(&self, d: Duration) {
        tokio::time::advance(d).await;
    }

    async fn settle(&self) {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }

    async fn leftovers(&self, _key: &str) -> usize {
        self.locks.len()
    }
}

#[tokio::test(start_paused = true)]
async fn fifo() {
    conformance::fifo(&memory()).await;
}

#[tokio::test(start_paused = true)]
async fn try_busy() {
    conformance::try_busy(&memory()).await;
}

#[tokio::test(start_paused = true)]
async fn timeout() {
    conformance::timeout(&memory()).await;
}

#[tokio::test(start_paused = true)]
async fn ttl_takeover() {
    conformance::ttl_takeover(&memory()).await;
}

#[tokio::test(start_paused = true)]
async fn extend() {
    conformance::extend(&memory()).await;
}

#[tokio::test(start_paused = true)]
async fn lost() {
    conformance::lost(&memory()).await;
}

#[tokio::test(start_paused = true)]
async fn run_and_cancel() {
    conformance::run_and_cancel(&memory()).await;
}

#[tokio::test(start_paused = true)]
async fn cancelled_waiters() {
    conformance::cancelled_waiters(&memory()).await;
}
