//! The suppressed path of a per-key cooldown (the hot path when an alert storm hits): seawall's
//! `Cooldown::check` beside governor's keyed rate limiter with a quota of one per window
//! (`DefaultKeyedRateLimiter::check_key`) and a naive `DashMap<K, Instant>` that compares the
//! last fire with now. Every key has already fired, so every measured call is suppressed.
//!
//! Groups (the three contenders in each, so ratios read off one run):
//! - `cooldown_suppressed/1key`: one hot key.
//! - `cooldown_suppressed/10k_keys`: 10 000 keys, visited round-robin.
//! - `cooldown_suppressed/1key_2threads`: one hot key, a second thread hammering the same
//!   instance with the same key for the whole measurement.
//! - `cooldown_suppressed/1key_2workers`: the same, as two tasks on a two-worker tokio runtime
//!   (how a service calls it: inside a multi-thread runtime, where seawall has to find out that
//!   the runtime's clock cannot be paused).
//!
//! `clock_floor` is one `tokio::time::Instant::now()` (what seawall reads per call, a vDSO
//! `clock_gettime`); governor reads the TSC through `quanta` instead, which is cheaper but does
//! not follow tokio's paused test clock. `tsc_clock_floor` is one read of governor's clock (its
//! `DefaultClock`, quanta): the difference between the two floors is what following tokio's
//! clock costs per call.
//!
//! `count_floor` is one `fetch_add` on the key's own `AtomicU64`, and `locked_count_floor` one
//! increment of the key's `u64` under a `parking_lot::Mutex` (seawall keeps each key's count
//! under its shard's mutex): the least that counting suppressions per key costs. With two
//! threads on one key both write one cache line on every call (governor's rejection writes its
//! map shard's read-lock word); these floors show how much of the two-thread time is that
//! write. `locked_count_other_line_floor` keeps the count on its own heap line beside the
//! mutex: the second line's cost. In the two-thread groups seawall's key has a hot cell (its
//! lock was contended), so a suppression takes no lock: one `fetch_add` on the cell's count, a
//! line both threads write (the `count_floor` work), then a `fetch_max` and a `fetch_add` on the
//! calling thread's own slot, plus the rest of a check.
//!
//! Seawall counts every suppressed event and stays bounded (`max_keys`, sweeps); governor
//! counts nothing and grows until `retain_recent` is called; the naive map counts nothing and
//! never shrinks.

use std::hash::Hash;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use dashmap::DashMap;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use seawall_cooldown::Cooldown;
use tokio::time::Instant;

const WINDOW: Duration = Duration::from_secs(1800);
const MANY: u64 = 10_000;

/// The naive cooldown people write first: last fire per key, unbounded, nothing counted.
struct Naive<K> {
    last: DashMap<K, Instant>,
}

impl<K: Hash + Eq> Naive<K> {
    fn new() -> Self {
        Self {
            last: DashMap::new(),
        }
    }

    /// True when the event fires.
    fn check(&self, key: K) -> bool {
        let now = Instant::now();
        match self.last.entry(key) {
            dashmap::Entry::Occupied(mut e) => {
                if now.duration_since(*e.get()) >= WINDOW {
                    e.insert(now);
                    true
                } else {
                    false
                }
            }
            dashmap::Entry::Vacant(e) => {
                e.insert(now);
                true
            }
        }
    }
}

fn seawall() -> Cooldown<u64> {
    Cooldown::builder().window(WINDOW).build().unwrap()
}

fn governor() -> DefaultKeyedRateLimiter<u64> {
    RateLimiter::keyed(Quota::with_period(WINDOW).unwrap())
}

/// Times `iters` calls of `op(i)` on this thread; with `contended`, a second thread runs the
/// same op on the same instance until the measurement ends.
fn measure<F>(iters: u64, contended: bool, op: F) -> Duration
where
    F: Fn(u64) + Sync,
{
    let stop = AtomicBool::new(false);
    let ready = Barrier::new(if contended { 2 } else { 1 });
    std::thread::scope(|s| {
        if contended {
            s.spawn(|| {
                ready.wait();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    op(i);
                    i = i.wrapping_add(1);
                }
            });
        }
        ready.wait();
        let start = std::time::Instant::now();
        for i in 0..iters {
            op(i);
        }
        let elapsed = start.elapsed();
        stop.store(true, Ordering::Relaxed);
        elapsed
    })
}

/// How the measured calls are made.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// One thread, nothing else running.
    Alone,
    /// A second thread makes the same calls meanwhile.
    TwoThreads,
    /// Two tasks on a two-worker tokio runtime, both making the calls.
    TwoWorkers,
}

/// Times `iters` calls of `op(i)` in a task of `rt` while a second task makes the same calls.
///
/// Both tasks are spawned from outside the runtime (into its shared queue) and meet at a
/// rendezvous that spins, so that each ends up on its own worker. (An async barrier would wake
/// the second task into the first worker's LIFO slot, which no other worker can steal from:
/// the busy first task would then never let it run.) A worker can also take both tasks from the
/// shared queue in one batch: so the spin yields now and then (the waiting task goes to the
/// back of its worker's queue, where the other can run or be stolen), and the second task
/// yields every 4096 calls, so a run can never hang with both on one worker.
fn measure_on_workers<F>(rt: &tokio::runtime::Runtime, iters: u64, op: &Arc<F>) -> Duration
where
    F: Fn(u64) + Send + Sync + 'static,
{
    let stop = Arc::new(AtomicBool::new(false));
    let arrived = Arc::new(AtomicUsize::new(0));
    async fn meet(arrived: &AtomicUsize) {
        arrived.fetch_add(1, Ordering::SeqCst);
        let mut spins = 0u32;
        while arrived.load(Ordering::SeqCst) < 2 {
            std::hint::spin_loop();
            spins += 1;
            if spins.is_multiple_of(1 << 16) {
                tokio::task::yield_now().await;
            }
        }
    }
    let (o, s, a) = (op.clone(), stop.clone(), arrived.clone());
    let other = rt.spawn(async move {
        meet(&a).await;
        let mut i = 0u64;
        while !s.load(Ordering::Relaxed) {
            o(i);
            i = i.wrapping_add(1);
            if i.is_multiple_of(4096) {
                tokio::task::yield_now().await;
            }
        }
    });
    let op = op.clone();
    let measured = rt.spawn(async move {
        meet(&arrived).await;
        let start = std::time::Instant::now();
        for i in 0..iters {
            op(i);
        }
        let elapsed = start.elapsed();
        stop.store(true, Ordering::Relaxed);
        elapsed
    });
    rt.block_on(async {
        let elapsed = measured.await.expect("measured task");
        other.await.expect("second task");
        elapsed
    })
}

/// Times `iters` calls of `op` made the way `mode` says.
fn run<F>(mode: Mode, rt: &tokio::runtime::Runtime, iters: u64, op: &Arc<F>) -> Duration
where
    F: Fn(u64) + Send + Sync + 'static,
{
    match mode {
        Mode::Alone => measure(iters, false, |i| op(i)),
        Mode::TwoThreads => measure(iters, true, |i| op(i)),
        Mode::TwoWorkers => measure_on_workers(rt, iters, op),
    }
}

fn bench_group(c: &mut Criterion, name: &str, keys: u64, mode: Mode) {
    let mut group = c.benchmark_group(format!("cooldown_suppressed/{name}"));

    let ours = Arc::new(seawall());
    let limiter = Arc::new(governor());
    let naive = Arc::new(Naive::new());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("runtime");

    for k in 0..keys {
        assert!(ours.check(&k).is_fire());
        assert!(limiter.check_key(&k).is_ok());
        assert!(naive.check(k));
    }
    assert!(ours.check(&0).is_suppressed());
    assert!(limiter.check_key(&0).is_err());
    assert!(!naive.check(0));

    // Each op is in an `Arc` so that the worker tasks can own it (statically dispatched).
    let o = ours.clone();
    let op = Arc::new(move |i| {
        black_box(o.check(&black_box(i % keys)));
    });
    group.bench_function("seawall", |b| {
        b.iter_custom(|iters| run(mode, &rt, iters, &op))
    });
    let l = limiter.clone();
    let op = Arc::new(move |i| {
        let _ = black_box(l.check_key(&black_box(i % keys)));
    });
    group.bench_function("governor", |b| {
        b.iter_custom(|iters| run(mode, &rt, iters, &op))
    });
    let n = naive.clone();
    let op = Arc::new(move |i| {
        black_box(n.check(black_box(i % keys)));
    });
    group.bench_function("dashmap_naive", |b| {
        b.iter_custom(|iters| run(mode, &rt, iters, &op))
    });
    let op = Arc::new(|_| {
        black_box(Instant::now());
    });
    group.bench_function("clock_floor", |b| {
        b.iter_custom(|iters| run(mode, &rt, iters, &op))
    });
    let tsc = governor::clock::DefaultClock::default();
    let op = Arc::new(move |_| {
        black_box(governor::clock::Clock::now(&tsc));
    });
    group.bench_function("tsc_clock_floor", |b| {
        b.iter_custom(|iters| run(mode, &rt, iters, &op))
    });
    let counts: Arc<Vec<std::sync::atomic::AtomicU64>> = Arc::new(
        (0..keys)
            .map(|_| std::sync::atomic::AtomicU64::new(0))
            .collect(),
    );
    let op = Arc::new(move |i: u64| {
        black_box(counts[black_box(i % keys) as usize].fetch_add(1, Ordering::Relaxed));
    });
    group.bench_function("count_floor", |b| {
        b.iter_custom(|iters| run(mode, &rt, iters, &op))
    });
    let locked: Arc<Vec<parking_lot::Mutex<u64>>> =
        Arc::new((0..keys).map(|_| parking_lot::Mutex::new(0)).collect());
    let op = Arc::new(move |i: u64| {
        let mut count = locked[black_box(i % keys) as usize].lock();
        *count += 1;
        black_box(*count);
    });
    group.bench_function("locked_count_floor", |b| {
        b.iter_custom(|iters| run(mode, &rt, iters, &op))
    });
    let boxed: Arc<Vec<parking_lot::Mutex<Box<[u64; 8]>>>> = Arc::new(
        (0..keys)
            .map(|_| parking_lot::Mutex::new(Box::new([0; 8])))
            .collect(),
    );
    let op = Arc::new(move |i: u64| {
        let mut count = boxed[black_box(i % keys) as usize].lock();
        count[0] += 1;
        black_box(count[0]);
    });
    group.bench_function("locked_count_other_line_floor", |b| {
        b.iter_custom(|iters| run(mode, &rt, iters, &op))
    });
    group.finish();

    // Still bounded, still exact: every key tracked once, nothing fired again.
    assert_eq!(ours.len() as u64, keys);
    assert!(ours.check(&0).is_suppressed());
}

fn suppressed(c: &mut Criterion) {
    bench_group(c, "1key", 1, Mode::Alone);
    bench_group(c, "10k_keys", MANY, Mode::Alone);
    bench_group(c, "1key_2threads", 1, Mode::TwoThreads);
    bench_group(c, "1key_2workers", 1, Mode::TwoWorkers);
}

criterion_group!(benches, suppressed);
criterion_main!(benches);
