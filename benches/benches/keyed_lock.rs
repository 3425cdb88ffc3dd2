//! `seawall-keyed-lock` beside the usual ways to lock per key in tokio: a `DashMap` of
//! `Arc<tokio::sync::Mutex<()>>` (with and without evicting idle entries), the `keyed-lock`
//! 0.2 crate and `lockable` 0.2's `LockPool`.
//!
//! Groups: `keyed_lock/uncontended_1_key`, `keyed_lock/uncontended_10k_keys` (one lock +
//! unlock per iteration on a current-thread runtime) and `keyed_lock/contended_1_key` (two
//! tasks on a two-worker runtime locking the same key; time per lock + unlock). Only ours
//! also keeps a lease deadline and a fencing token per grant.
//!
//! `clock_floor` (in the uncontended groups) is one `tokio::time::Instant::now()` awaited the same
//! way: the clock read that a lease deadline costs each grant, and that no peer makes.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{
    BenchmarkGroup, Criterion, criterion_group, criterion_main, measurement::WallTime,
};
use dashmap::DashMap;
use seawall_keyed_lock::KeyedLock;
use tokio::runtime::Runtime;

type DashLocks = DashMap<u64, Arc<tokio::sync::Mutex<()>>>;

/// The common hand-rolled approach.
async fn dashmap_lock(map: &DashLocks, key: u64, evict: bool) {
    let mutex = Arc::clone(
        map.entry(key)
            .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(())))
            .value(),
    );
    let guard = mutex.lock_owned().await;
    black_box(&guard);
    drop(guard);
    if evict {
        map.remove_if(&key, |_, m| Arc::strong_count(m) == 1);
    }
}

fn current_thread() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn ours() -> KeyedLock<u64> {
    KeyedLock::builder().name("bench").build().unwrap()
}

fn uncontended(group: &mut BenchmarkGroup<'_, WallTime>, rt: &Runtime, keys: u64) {
    let next = |i: &mut u64| {
        *i += 1;
        if *i == keys {
            *i = 0;
        }
        *i
    };
    let locks = ours();
    let mut i = 0;
    group.bench_function("seawall", |b| {
        b.to_async(rt).iter(|| {
            let key = next(&mut i);
            let locks = &locks;
            async move {
                let guard = locks.lock(&key).await;
                black_box(guard.token());
            }
        });
    });
    for (name, evict) in [("dashmap_mutex", false), ("dashmap_mutex_evicting", true)] {
        let map = DashLocks::new();
        group.bench_function(name, |b| {
            b.to_async(rt).iter(|| {
                let key = next(&mut i);
                let map = &map;
                async move { dashmap_lock(map, key, evict).await }
            });
        });
    }
    let peer = keyed_lock::r#async::KeyedLock::<u64>::new();
    group.bench_function("keyed_lock_0_2", |b| {
        b.to_async(rt).iter(|| {
            let key = next(&mut i);
            let peer = &peer;
            async move {
                let guard = peer.lock(key).await;
                black_box(&guard);
            }
        });
    });
    group.bench_function("clock_floor", |b| {
        b.to_async(rt).iter(|| async {
            black_box(tokio::time::Instant::now());
        });
    });
    let pool = lockable::LockPool::<u64>::new();
    group.bench_function("lockable_0_2", |b| {
        b.to_async(rt).iter(|| {
            let key = next(&mut i);
            let pool = &pool;
            async move {
                let guard = pool.async_lock(key).await;
                black_box(&guard);
            }
        });
    });
}

/// Runs `per_task` lock + unlock cycles in each of two tasks on a two-worker runtime and
/// returns the elapsed time for `iters` cycles in total.
fn contended_run<F, Fut>(rt: &Runtime, iters: u64, op: F) -> Duration
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    rt.block_on(async {
        let start = Instant::now();
        let tasks: Vec<_> = (0..2)
            .map(|_| {
                let op = Arc::clone(&op);
                tokio::spawn(async move {
                    for _ in 0..iters.div_ceil(2) {
                        op().await;
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        start.elapsed()
    })
}

fn contended(group: &mut BenchmarkGroup<'_, WallTime>) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let locks = ours();
    group.bench_function("seawall", |b| {
        b.iter_custom(|iters| {
            let locks = locks.clone();
            contended_run(&rt, iters, move || {
                let locks = locks.clone();
                async move {
                    let guard = locks.lock(&0).await;
                    black_box(guard.token());
                }
            })
        });
    });
    for (name, evict) in [("dashmap_mutex", false), ("dashmap_mutex_evicting", true)] {
        let map = Arc::new(DashLocks::new());
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let map = Arc::clone(&map);
                contended_run(&rt, iters, move || {
                    let map = Arc::clone(&map);
                    async move { dashmap_lock(&map, 0, evict).await }
                })
            });
        });
    }
    let peer = Arc::new(keyed_lock::r#async::KeyedLock::<u64>::new());
    group.bench_function("keyed_lock_0_2", |b| {
        b.iter_custom(|iters| {
            let peer = Arc::clone(&peer);
            contended_run(&rt, iters, move || {
                let peer = Arc::clone(&peer);
                async move {
                    let guard = peer.lock(0).await;
                    black_box(&guard);
                }
            })
        });
    });
    let pool = Arc::new(lockable::LockPool::<u64>::new());
    group.bench_function("lockable_0_2", |b| {
        b.iter_custom(|iters| {
            let pool = Arc::clone(&pool);
            contended_run(&rt, iters, move || {
                let pool = Arc::clone(&pool);
                async move {
                    let guard = pool.async_lock(0).await;
                    black_box(&guard);
                }
            })
        });
    });
}

fn benches(c: &mut Criterion) {
    let rt = current_thread();
    let mut group = c.benchmark_group("keyed_lock/uncontended_1_key");
    uncontended(&mut group, &rt, 1);
    group.finish();
    let mut group = c.benchmark_group("keyed_lock/uncontended_10k_keys");
    uncontended(&mut group, &rt, 10_000);
    group.finish();
    let mut group = c.benchmark_group("keyed_lock/contended_1_key");
    contended(&mut group);
    group.finish();
}

criterion_group!(keyed_lock_benches, benches);
criterion_main!(keyed_lock_benches);
