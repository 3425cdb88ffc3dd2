//! Instruction counts of an uncontended keyed lock + unlock (`lock_1key`, `lock_10k`) beside a `DashMap` of tokio mutexes that evicts idle entries. See `instructions/common.rs` for
//! how every contender is driven and why each primitive has its own binary.

// gungraun's macros generate undocumented modules, functions and constants.
#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::Arc;

use dashmap::DashMap;
use gungraun::{library_benchmark, library_benchmark_group, main};
use tokio::runtime::Runtime;

#[path = "instructions/common.rs"]
mod common;
use common::*;

type DashLocks = DashMap<u64, Arc<tokio::sync::Mutex<()>>>;

fn seawall_lock(keys: u64) -> (Runtime, seawall_keyed_lock::KeyedLock<u64>, u64) {
    let rt = runtime();
    let locks = seawall_keyed_lock::KeyedLock::builder()
        .name("bench")
        .build()
        .expect("lock");
    rt.block_on(async {
        for k in 0..keys.min(16) {
            drop(locks.lock(&k).await);
        }
    });
    (rt, locks, keys)
}

fn dashmap_lock(keys: u64) -> (Runtime, DashLocks, u64) {
    let rt = runtime();
    let map = DashLocks::new();
    rt.block_on(async {
        for k in 0..keys.min(16) {
            dashmap_evict(&map, k).await;
        }
    });
    (rt, map, keys)
}

/// The leak-free hand-rolled per-key lock: a map of mutexes whose idle entries are evicted.
async fn dashmap_evict(map: &DashLocks, key: u64) {
    let mutex = Arc::clone(
        map.entry(key)
            .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(())))
            .value(),
    );
    let guard = mutex.lock_owned().await;
    black_box(&guard);
    drop(guard);
    map.remove_if(&key, |_, m| Arc::strong_count(m) == 1);
}

#[library_benchmark]
#[bench::one_key(args = (1), setup = seawall_lock)]
#[bench::many_keys(args = (MANY), setup = seawall_lock)]
fn lock_seawall(
    (rt, locks, keys): (Runtime, seawall_keyed_lock::KeyedLock<u64>, u64),
) -> (Runtime, seawall_keyed_lock::KeyedLock<u64>) {
    rt.block_on(async {
        let mut i = 0;
        for _ in 0..OPS {
            let guard = locks.lock(&next_key(&mut i, keys)).await;
            black_box(&guard);
            drop(guard);
        }
    });
    (rt, locks)
}

#[library_benchmark]
#[bench::one_key(args = (1), setup = dashmap_lock)]
#[bench::many_keys(args = (MANY), setup = dashmap_lock)]
fn lock_dashmap_evict((rt, map, keys): (Runtime, DashLocks, u64)) -> (Runtime, DashLocks) {
    rt.block_on(async {
        let mut i = 0;
        for _ in 0..OPS {
            dashmap_evict(&map, next_key(&mut i, keys)).await;
        }
    });
    (rt, map)
}

library_benchmark_group!(
    name = keyed_lock;
    benchmarks = lock_seawall, lock_dashmap_evict
);

main!(library_benchmark_groups = keyed_lock);
