//! The Redis backends of `seawall-keyed-lock` and `seawall-cooldown` against the physical floor
//! measured in the same run: one `PING` round trip on the same kind of connection (a `redis`
//! 1.x connection manager), and for the lock the naive two-round-trip lock (`SET key val NX PX`
//! then `DEL`), which has neither a fencing token nor a compare-before-delete.
//!
//! Needs a server: `bash .ci/redis-tests cargo bench -p seawall-benches --bench redis` starts a
//! throwaway one. Without `SEAWALL_REDIS_URL` the bench prints why and measures nothing.
//!
//! Groups:
//! - `redis_lock/1_key`: `lock` + drop of the guard on one key, back to back. The release
//!   runs in the background (a `Drop` cannot await), and the next `lock` on the key waits in
//!   the in-process FIFO until it is done, so one iteration is two round trips, as the floor.
//! - `redis_lock/10k_keys`: the same over 10,000 keys in turn; here releases of earlier keys
//!   overlap the next acquire, so expect between one and two round trips.
//! - `redis_cooldown`: `check` on one key (suppressed after the first) and on 10,000 keys,
//!   against one `PING`.
//! - `redis_cluster` (when `SEAWALL_REDIS_CLUSTER_URLS` names a cluster's nodes): the lock over
//!   10,000 keys and the cooldown check, on the cluster client, against a `PING` through the
//!   same client (routed to one node).

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use criterion::{Criterion, measurement::WallTime};
use redis::aio::ConnectionManager;
use seawall_cooldown::RedisCooldown;
use seawall_keyed_lock::{KeyedLock, RedisBackend};
use tokio::runtime::Runtime;

const MANY: u64 = 10_000;

/// A prefix no earlier run used, so runs never see each other's keys (all of them expire).
fn run_id() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

fn next(i: &AtomicU64, keys: u64) -> u64 {
    i.fetch_add(1, Ordering::Relaxed) % keys
}

async fn ping(con: &mut ConnectionManager) {
    let pong: String = redis::cmd("PING").query_async(con).await.unwrap();
    black_box(pong);
}

fn floor_ping(
    group: &mut criterion::BenchmarkGroup<'_, WallTime>,
    rt: &Runtime,
    con: &ConnectionManager,
) {
    group.bench_function("ping_floor", |b| {
        b.to_async(rt).iter(|| {
            let mut con = con.clone();
            async move { ping(&mut con).await }
        });
    });
}

fn lock(c: &mut Criterion, rt: &Runtime, con: &ConnectionManager, url: &str, id: u128) {
    for (name, keys) in [("1_key", 1), ("10k_keys", MANY)] {
        let mut group = c.benchmark_group(format!("redis_lock/{name}"));
        floor_ping(&mut group, rt, con);

        let i = AtomicU64::new(0);
        group.bench_function("set_nx_px_del_floor", |b| {
            b.to_async(rt).iter(|| {
                let mut con = con.clone();
                let key = format!("seawall:bench:{id}:raw:{}", next(&i, keys));
                async move {
                    let ok: Option<String> = redis::cmd("SET")
                        .arg(&key)
                        .arg("holder")
                        .arg("NX")
                        .arg("PX")
                        .arg(30_000)
                        .query_async(&mut con)
                        .await
                        .unwrap();
                    assert!(ok.is_some(), "raw key {key} was held");
                    let _: u64 = redis::cmd("DEL")
                        .arg(&key)
                        .query_async(&mut con)
                        .await
                        .unwrap();
                }
            });
        });

        let locks = rt.block_on(async {
            let backend = RedisBackend::builder(url)
                .prefix(format!("seawall:bench:{id}:{name}:"))
                .build()
                .unwrap();
            KeyedLock::<u64>::builder()
                .name("bench")
                .ttl(Duration::from_secs(30))
                .build_with_backend(backend)
                .unwrap()
        });
        let i = AtomicU64::new(0);
        group.bench_function("seawall_lock_release", |b| {
            b.to_async(rt).iter(|| {
                let key = next(&i, keys);
                let locks = &locks;
                async move {
                    let guard = locks.lock(&key).await.unwrap();
                    black_box(guard.token());
                }
            });
        });
        group.finish();
    }
}

fn cooldown(c: &mut Criterion, rt: &Runtime, con: &ConnectionManager, url: &str, id: u128) {
    let mut group = c.benchmark_group("redis_cooldown");
    floor_ping(&mut group, rt, con);
    for (name, keys) in [("1_key", 1), ("10k_keys", MANY)] {
        let cooldown: RedisCooldown<u64> = rt.block_on(async {
            RedisCooldown::builder(url)
                .name(format!("bench-{id}-{name}"))
                .window(Duration::from_secs(60))
                .build()
                .unwrap()
        });
        let i = AtomicU64::new(0);
        group.bench_function(format!("seawall_check_{name}"), |b| {
            b.to_async(rt).iter(|| {
                let key = next(&i, keys);
                let cooldown = &cooldown;
                async move {
                    let decision = cooldown.check(&key).await;
                    black_box(decision);
                }
            });
        });
    }
    group.finish();
}

fn cluster(c: &mut Criterion, rt: &Runtime, urls: &[String], id: u128) {
    let con = rt.block_on(async {
        redis::cluster::ClusterClient::new(urls.to_vec())?
            .get_async_connection()
            .await
    });
    let con = match con {
        Ok(con) => con,
        Err(e) => {
            eprintln!("redis bench: cannot reach SEAWALL_REDIS_CLUSTER_URLS={urls:?}: {e}");
            std::process::exit(1);
        }
    };
    let mut group = c.benchmark_group("redis_cluster");
    group.bench_function("ping_floor", |b| {
        b.to_async(rt).iter(|| {
            let mut con = con.clone();
            async move {
                let pong: String = redis::cmd("PING").query_async(&mut con).await.unwrap();
                black_box(pong);
            }
        });
    });
    let (locks, cooldown) = rt.block_on(async {
        let backend = RedisBackend::cluster(urls)
            .prefix(format!("seawall:bench:{id}:cluster:"))
            .build()
            .unwrap();
        let locks = KeyedLock::<u64>::builder()
            .name("bench")
            .ttl(Duration::from_secs(30))
            .build_with_backend(backend)
            .unwrap();
        let cooldown: RedisCooldown<u64> = RedisCooldown::cluster(urls)
            .name(format!("bench-{id}-cluster"))
            .window(Duration::from_secs(60))
            .build()
            .unwrap();
        (locks, cooldown)
    });
    let i = AtomicU64::new(0);
    group.bench_function("seawall_lock_release_10k_keys", |b| {
        b.to_async(rt).iter(|| {
            let key = next(&i, MANY);
            let locks = &locks;
            async move {
                let guard = locks.lock(&key).await.unwrap();
                black_box(guard.token());
            }
        });
    });
    let i = AtomicU64::new(0);
    group.bench_function("seawall_cooldown_check_10k_keys", |b| {
        b.to_async(rt).iter(|| {
            let key = next(&i, MANY);
            let cooldown = &cooldown;
            async move { black_box(cooldown.check(&key).await) }
        });
    });
    group.finish();
}

fn main() {
    let Ok(url) = std::env::var("SEAWALL_REDIS_URL") else {
        eprintln!(
            "redis bench skipped: SEAWALL_REDIS_URL is not set \
             (run it with `bash .ci/redis-tests cargo bench -p seawall-benches --bench redis`)"
        );
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let con = rt.block_on(async {
        let client = redis::Client::open(url.as_str())?;
        ConnectionManager::new(client).await
    });
    let con = match con {
        Ok(con) => con,
        Err(e) => {
            eprintln!("redis bench: cannot reach SEAWALL_REDIS_URL={url}: {e}");
            std::process::exit(1);
        }
    };
    let id = run_id();
    let mut c = Criterion::default().configure_from_args();
    lock(&mut c, &rt, &con, &url, id);
    cooldown(&mut c, &rt, &con, &url, id);
    if let Ok(urls) = std::env::var("SEAWALL_REDIS_CLUSTER_URLS") {
        let urls: Vec<String> = urls.split(',').map(str::to_owned).collect();
        cluster(&mut c, &rt, &urls, id);
    }
    c.final_summary();
}
