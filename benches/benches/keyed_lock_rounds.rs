//! Two tasks on a two-worker tokio runtime locking the same key, measured as rounds rather than
//! one criterion estimate, because this case is bimodal: a hand-off either finds the other
//! worker spinning (a few hundred ns) or parks and wakes a thread (microseconds). A single
//! median hides which mode a run was in; the distribution over rounds shows it.
//!
//! Contenders, each awaited the way its users call it: `seawall` (`KeyedLock::lock`, lease and
//! fencing token per grant) and `dashmap_evicting` (a `DashMap<u64, Arc<tokio::sync::Mutex<()>>>`
//! that removes idle entries, the leak-free hand-rolled way). Rounds alternate between the
//! contenders so that both see the same machine load.
//!
//! `cargo bench -p seawall-benches --bench keyed_lock_rounds` prints every round (ns per lock +
//! unlock), then the median, min and max per contender and their ratio. With `--test` (as
//! `cargo bench -- --test` passes it) one short round of each runs, as a smoke test.

#[path = "rounds/common.rs"]
mod common;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use seawall_keyed_lock::KeyedLock;
use tokio::runtime::Runtime;

type DashLocks = DashMap<u64, Arc<tokio::sync::Mutex<()>>>;

async fn dashmap_evicting(map: &DashLocks, key: u64) {
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

/// Runs `per_task` lock + unlock cycles in each of two spawned tasks; ns per cycle.
fn round<F, Fut>(rt: &Runtime, per_task: u64, op: F) -> f64
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let elapsed: Duration = rt.block_on(async {
        let start = Instant::now();
        let tasks: Vec<_> = (0..2)
            .map(|_| {
                let op = Arc::clone(&op);
                tokio::spawn(async move {
                    for _ in 0..per_task {
                        op().await;
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("task");
        }
        start.elapsed()
    });
    elapsed.as_nanos() as f64 / (2 * per_task) as f64
}

fn main() {
    let quick = std::env::args().any(|a| a == "--test");
    let (rounds, per_task) = if quick { (1, 1_000) } else { (12, 100_000) };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");

    let locks: KeyedLock<u64> = KeyedLock::builder().name("bench").build().expect("lock");
    let map = Arc::new(DashLocks::new());
    let mut ours = Vec::new();
    let mut peer = Vec::new();
    println!("keyed_lock 2 tasks, 1 key: ns per lock + unlock, {per_task} per task per round");
    println!(
        "{:>5} {:>12} {:>18}",
        "round", "seawall", "dashmap_evicting"
    );
    for r in 0..rounds {
        let l = locks.clone();
        let a = round(&rt, per_task, move || {
            let l = l.clone();
            async move {
                let guard = l.lock(&0).await;
                black_box(guard.token());
            }
        });
        let m = Arc::clone(&map);
        let b = round(&rt, per_task, move || {
            let m = Arc::clone(&m);
            async move { dashmap_evicting(&m, 0).await }
        });
        println!("{r:>5} {a:>12.1} {b:>18.1}");
        ours.push(a);
        peer.push(b);
    }
    println!("{}", common::summary(&mut ours, &mut peer));
    assert!(
        locks.is_empty(),
        "the keyed lock left an entry behind after the rounds"
    );
}
