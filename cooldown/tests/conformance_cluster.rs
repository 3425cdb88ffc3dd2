//! The conformance suite (`tests/conformance/mod.rs`) a third time: the
//! [`RedisCooldown`] on a Redis Cluster whose node URLs are in
//! `SEAWALL_REDIS_CLUSTER_URLS` (comma-separated). Every test is
//! `#[ignore = "needs redis-server"]`; run them with `-- --ignored`. Plus a
//! check that cooldowns with different names spread over several masters,
//! each with all its keys on one of them.
//!
//! Real time and short real sleeps, as in `conformance_redis.rs` (windows
//! run on the server's clock). Each test uses its own cooldown name; nothing
//! is flushed.

#![cfg(feature = "redis")]

use std::collections::BTreeMap;
use std::time::Duration;

#[macro_use]
mod conformance;
mod redis_support;

use conformance::redis::RedisFixture;

conformance_suite!(RedisFixture(redis_support::cluster_cooldown), #[tokio::test] #[ignore = "needs redis-server"]);

/// The masters of the cluster, as `host:port`, from `CLUSTER NODES`.
async fn masters() -> Vec<String> {
    let mut conn = redis::cluster::ClusterClient::new(redis_support::cluster_urls())
        .unwrap()
        .get_async_connection()
        .await
        .expect("SEAWALL_REDIS_CLUSTER_URLS is not reachable");
    let nodes: String = redis::cmd("CLUSTER")
        .arg("NODES")
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut masters: Vec<String> = nodes
        .lines()
        .filter(|l| l.split(' ').nth(2).is_some_and(|f| f.contains("master")))
        .filter_map(|l| l.split(' ').nth(1))
        .map(|a| a.split('@').next().unwrap_or(a).to_owned())
        .collect();
    masters.sort();
    masters
}

/// 20 cooldowns (distinct names) each fire and suppress a key through the
/// cluster; asked directly (no redirections), exactly one master holds each
/// cooldown's window key, state hash and digest index (all three), and
/// together they use more than one master.
#[tokio::test]
#[ignore = "needs redis-server"]
async fn cooldowns_spread_over_several_masters_each_in_one_slot() {
    let key = "db-down".to_owned();
    let mut names = Vec::new();
    for _ in 0..20 {
        let c = redis_support::cluster_cooldown(Duration::from_secs(30));
        assert!(c.try_check(&key).await.unwrap().is_fire());
        assert!(!c.try_check(&key).await.unwrap().is_fire());
        names.push(c.name().to_owned());
    }
    let masters = masters().await;
    assert!(masters.len() >= 2, "not a cluster: masters {masters:?}");
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    let mut found = 0;
    for master in &masters {
        let mut node = redis::Client::open(format!("redis://{master}/"))
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        for name in &names {
            let tag = format!("seawall:cooldown:{{{name}}}:");
            // A key of another node's slot is answered with MOVED: not here.
            let here: Result<(usize, usize, usize), _> = redis::pipe()
                .cmd("EXISTS")
                .arg(format!("{tag}w:{key}"))
                .cmd("EXISTS")
                .arg(format!("{tag}s:{key}"))
                .cmd("EXISTS")
                .arg(format!("{tag}idx"))
                .query_async(&mut node)
                .await;
            if let Ok(exists) = here {
                assert_eq!(exists, (1, 1, 1), "{name} on {master}");
                *per_node.entry(master.clone()).or_default() += 1;
                found += 1;
            }
        }
    }
    assert_eq!(
        found,
        names.len(),
        "each cooldown on one node: {per_node:?}"
    );
    assert!(
        per_node.len() >= 2,
        "20 cooldowns all on one master: {per_node:?}"
    );
}

/// Two replicas on the cluster share one cooldown: one fire, the other
/// suppressed and counted, the digest drained once.
#[tokio::test]
#[ignore = "needs redis-server"]
async fn replicas_share_one_cooldown_through_the_cluster() {
    let a = redis_support::cluster_cooldown(Duration::from_millis(300));
    let b = redis_support::cluster_builder(Duration::from_millis(300))
        .name(a.name())
        .build()
        .unwrap();
    let key = "db-down".to_owned();
    assert!(a.try_check(&key).await.unwrap().is_fire());
    for _ in 0..3 {
        assert!(!b.try_check(&key).await.unwrap().is_fire());
    }
    tokio::time::sleep(Duration::from_millis(350)).await;
    let drained = b.drain_digests().await;
    assert_eq!(drained.len(), 1, "{drained:?}");
    assert_eq!((drained[0].0.as_str(), drained[0].1.count), ("db-down", 3));
    assert!(a.drain_digests().await.is_empty());
}
