//! Shared by the tests that need a Redis server or cluster: their URLs and
//! cooldowns with names no other test (or engineer) uses.

#![allow(dead_code)]

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use seawall_cooldown::{RedisCooldown, RedisCooldownBuilder};

/// The server from `SEAWALL_REDIS_URL`; a clear failure when it is missing.
pub(crate) fn url() -> String {
    std::env::var("SEAWALL_REDIS_URL").unwrap_or_else(|_| {
        panic!(
            "SEAWALL_REDIS_URL is not set: the ignored tests need a throwaway redis-server, \
             e.g. SEAWALL_REDIS_URL=redis://127.0.0.1:6379/ cargo test -p seawall-cooldown \
             --all-features -- --ignored (or run `bash .ci/redis-tests`)"
        )
    })
}

/// A cooldown name unique to this test run and call.
pub(crate) fn unique_name() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let seed = RandomState::new().hash_one(std::process::id());
    format!("test-{seed:016x}-{}", N.fetch_add(1, Ordering::Relaxed))
}

/// A builder on the test server with a unique name.
pub(crate) fn builder(window: Duration) -> RedisCooldownBuilder<String> {
    for_test(RedisCooldown::builder(url()), window)
}

/// `target` (a server's or a cluster's builder) with a unique name, `window`
/// and a 2 s command timeout.
fn for_test(
    target: RedisCooldownBuilder<String>,
    window: Duration,
) -> RedisCooldownBuilder<String> {
    target
        .name(unique_name())
        .window(window)
        .command_timeout(Duration::from_secs(2))
}

/// A fresh cooldown on the test server.
pub(crate) fn cooldown(window: Duration) -> RedisCooldown<String> {
    builder(window).build().expect("valid config")
}

/// The cluster's node URLs from `SEAWALL_REDIS_CLUSTER_URLS`
/// (comma-separated); a clear failure when it is missing.
pub(crate) fn cluster_urls() -> Vec<String> {
    let urls = std::env::var("SEAWALL_REDIS_CLUSTER_URLS").unwrap_or_else(|_| {
        panic!(
            "SEAWALL_REDIS_CLUSTER_URLS is not set: the cluster tests need a Redis Cluster \
             (its node URLs, comma-separated, e.g. SEAWALL_REDIS_CLUSTER_URLS=\
             redis://127.0.0.1:7001/,redis://127.0.0.1:7002/; or run `bash .ci/redis-tests`)"
        )
    });
    let urls: Vec<String> = urls
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_owned)
        .collect();
    assert!(!urls.is_empty(), "SEAWALL_REDIS_CLUSTER_URLS lists no URL");
    urls
}

/// A builder on the test cluster with a unique name.
pub(crate) fn cluster_builder(window: Duration) -> RedisCooldownBuilder<String> {
    for_test(RedisCooldown::cluster(cluster_urls()), window)
}

/// A fresh cooldown on the test cluster.
pub(crate) fn cluster_cooldown(window: Duration) -> RedisCooldown<String> {
    cluster_builder(window).build().expect("valid config")
}
