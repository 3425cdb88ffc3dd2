//! The conformance suite (`tests/conformance/mod.rs`) a third time: the Redis backend on a
//! Redis Cluster whose node URLs are in `SEAWALL_REDIS_CLUSTER_URLS` (comma-separated;
//! ignored by default: run with `-- --ignored`). Plus a check that distinct keys really
//! spread over several masters (so redirections were followed), each lease next to its fence.
//!
//! Real time and short real sleeps, as in `conformance_redis.rs` (Redis expires keys on its
//! own clock). Every key is namespaced by a random prefix; nothing flushes the cluster.

#![cfg(feature = "redis")]

mod conformance;

use std::collections::BTreeMap;
use std::time::Duration;

use conformance::Fixture;
use conformance::redis::{RedisFixture, TTL, test_prefix};
use redis::cluster_async::ClusterConnection;
use seawall_keyed_lock::{KeyedLock, RedisBackend};

fn urls() -> Vec<String> {
    let urls = std::env::var("SEAWALL_REDIS_CLUSTER_URLS").unwrap_or_else(|_| {
        panic!(
            "SEAWALL_REDIS_CLUSTER_URLS is not set: these tests need a Redis Cluster \
             (its node URLs, comma-separated, e.g. \
             SEAWALL_REDIS_CLUSTER_URLS=redis://127.0.0.1:7001/,redis://127.0.0.1:7002/; \
             or run .ci/redis-tests)"
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

type Cluster = RedisFixture<ClusterConnection>;

fn replica(urls: &[String], prefix: &str, auto_renew: bool) -> KeyedLock<String, RedisBackend> {
    conformance::redis::replica(RedisBackend::cluster(urls).auto_renew(auto_renew), prefix)
}

async fn cluster_conn(urls: &[String]) -> ClusterConnection {
    redis::cluster::ClusterClient::new(urls.to_vec())
        .unwrap()
        .get_async_connection()
        .await
        .expect("SEAWALL_REDIS_CLUSTER_URLS is not reachable")
}

async fn cluster() -> Cluster {
    let urls = urls();
    let prefix = test_prefix();
    Cluster {
        locks: replica(&urls, &prefix, false),
        other: replica(&urls, &prefix, false),
        conn: cluster_conn(&urls).await,
    }
}

redis_conformance!(cluster);

// Cluster-only checks.

/// The masters of the cluster, as `host:port`, from `CLUSTER NODES`.
async fn masters(conn: &mut ClusterConnection) -> Vec<String> {
    let nodes: String = redis::cmd("CLUSTER")
        .arg("NODES")
        .query_async(conn)
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

/// 50 distinct keys held at once land on several masters (the script calls were routed,
/// redirections followed), each lease on the same node as its fence counter; all are gone
/// once the guards are dropped.
#[tokio::test]
#[ignore = "needs redis-server"]
async fn keys_spread_over_several_masters_with_each_fence_beside_its_lease() {
    let fx = cluster().await;
    let keys: Vec<String> = (0..50).map(|i| format!("spread-{i}")).collect();
    let mut guards = Vec::new();
    for key in &keys {
        guards.push(fx.locks.lock_timeout(key, TTL).await.unwrap());
    }
    let mut conn = fx.conn.clone();
    let masters = masters(&mut conn).await;
    assert!(masters.len() >= 2, "not a cluster: masters {masters:?}");

    // Ask every master directly (no redirections) which lease keys it holds.
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    let mut found = 0;
    for master in &masters {
        let mut node = redis::Client::open(format!("redis://{master}/"))
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        for key in &keys {
            let lease_key = fx.locks.backend().lease_key(key);
            // A key of another node's slot is answered with MOVED: not here.
            let here: Result<(usize, usize), _> = redis::pipe()
                .cmd("EXISTS")
                .arg(&lease_key)
                .cmd("EXISTS")
                .arg(format!("{lease_key}:fence"))
                .query_async(&mut node)
                .await;
            if let Ok((lease, fence)) = here {
                assert_eq!((lease, fence), (1, 1), "{key} on {master}");
                *per_node.entry(master.clone()).or_default() += 1;
                found += 1;
            }
        }
    }
    assert_eq!(
        found,
        keys.len(),
        "each lease on exactly one node: {per_node:?}"
    );
    assert!(
        per_node.len() >= 2,
        "50 keys all on one master: {per_node:?}"
    );

    drop(guards);
    for key in &keys {
        assert_eq!(fx.leftovers(key).await, 0, "{key}");
    }
}

/// Auto-renew and tokens across replicas work through the cluster too.
#[tokio::test]
#[ignore = "needs redis-server"]
async fn auto_renew_and_increasing_tokens_across_replicas() {
    let urls = urls();
    let prefix = test_prefix();
    let renewing = replica(&urls, &prefix, true);
    let other = replica(&urls, &prefix, false);
    let key = "renewed".to_owned();
    let guard = renewing.lock(&key).await.unwrap();
    assert!(
        tokio::time::timeout(TTL * 3, guard.lost()).await.is_err(),
        "lost() resolved although the lease was renewed"
    );
    assert!(matches!(
        other.try_lock(&key).await,
        Err(seawall_keyed_lock::TryLockError::Busy(_))
    ));
    let mut last = guard.token().get();
    drop(guard);
    for i in 0..4 {
        let locks = if i % 2 == 0 { &other } else { &renewing };
        let next = locks.lock_timeout(&key, TTL).await.unwrap();
        assert!(next.token().get() > last, "{} <= {last}", next.token());
        last = next.token().get();
    }
    let fx = Cluster {
        locks: renewing,
        other,
        conn: cluster_conn(&urls).await,
    };
    assert_eq!(fx.leftovers(&key).await, 0);
}

/// Keys that would give an empty or cut hash tag unescaped (empty, starting with `}`, with
/// braces or backslashes) work on a cluster (their lease and fence share a slot, or the
/// scripts would fail with CrossSlot), and all of them are distinct locks: held at once.
#[tokio::test]
#[ignore = "needs redis-server"]
async fn keys_with_braces_or_empty_work_on_a_cluster() {
    let fx = cluster().await;
    let keys = [
        "", "}x", "x}", "{", "}", "{}", "a{b}c", "\\", "\\(", "\\e", "\\)",
    ];
    let mut guards = Vec::new();
    for key in keys {
        let guard =
            tokio::time::timeout(Duration::from_secs(3), fx.locks.try_lock(&key.to_owned()))
                .await
                .expect("try_lock() hung")
                .unwrap_or_else(|e| panic!("{key:?}: {e:?}"));
        guards.push(guard);
    }
    let mut conn = fx.conn.clone();
    for (key, guard) in keys.iter().zip(&guards) {
        let lease_key = fx.locks.backend().lease_key(key);
        let value: String = redis::cmd("GET")
            .arg(&lease_key)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(value, guard.lease().value(), "{key:?}");
        let slots: Vec<u16> = {
            let mut slots = Vec::new();
            for k in [lease_key.clone(), format!("{lease_key}:fence")] {
                let slot: u16 = redis::cmd("CLUSTER")
                    .arg("KEYSLOT")
                    .arg(k)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                slots.push(slot);
            }
            slots
        };
        assert_eq!(slots[0], slots[1], "{key:?}: {lease_key}");
        assert!(matches!(
            fx.other.try_lock(&(*key).to_owned()).await,
            Err(seawall_keyed_lock::TryLockError::Busy(_))
        ));
    }
    drop(guards);
    for key in keys {
        assert_eq!(fx.leftovers(key).await, 0, "{key:?}");
    }
}
