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

#[macro_use]
mod conformance;
mod redis_support;

use conformance::redis::RedisFixture;

conformance_suite!(RedisFixture(redis_support::cooldown), #[tokio::test] #[ignore = "needs redis-server"]);
