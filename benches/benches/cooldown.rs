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
//!
//! `clock_floor` is one `tokio::time::Instant::now()` (what seawall reads per call, a vDSO
//! `clock_gettime`); governor reads the TSC through `quanta` instead, which is cheaper but does
//! not follow tokio's paused test clock. `tsc_clock_floor` is one read of governor's clock (its
//! `DefaultClock`, quanta): the difference between the two floors is what following tokio's
//! clock costs per call.
//!
//! Seawall counts every suppressed event and stays bounded (`max_keys`, sweeps); governor
//! counts nothing and grows until `retain_recent` is called; the naive map counts nothing and
//! never shrinks.

use std::hash::Hash;
use std::hint::black_box;
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, Ordering};
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

fn bench_group(c: &mut Criterion, name: &str, keys: u64, contended: bool) {
    let mut group = c.benchmark_group(format!("cooldown_suppressed/{name}"));

    let ours = seawall();
    let limiter = governor();
    let naive = Naive::new();
    for k in 0..keys {
        assert!(ours.check(&k).is_fire());
        assert!(limiter.check_key(&k).is_ok());
        assert!(naive.check(k));
    }
    assert!(ours.check(&0).is_suppressed());
    assert!(limiter.check_key(&0).is_err());
    assert!(!naive.check(0));

    group.bench_function("seawall", |b| {
        b.iter_custom(|iters| {
            measure(iters, contended, |i| {
                black_box(ours.check(&black_box(i % keys)));
            })
        })
    });
    group.bench_function("governor", |b| {
        b.iter_custom(|iters| {
            measure(iters, contended, |i| {
                let _ = black_box(limiter.check_key(&black_box(i % keys)));
            })
        })
    });
    group.bench_function("dashmap_naive", |b| {
        b.iter_custom(|iters| {
            measure(iters, contended, |i| {
                black_box(naive.check(black_box(i % keys)));
            })
        })
    });
    group.bench_function("clock_floor", |b| {
        b.iter_custom(|iters| {
            measure(iters, contended, |_| {
                black_box(Instant::now());
            })
        })
    });
    let tsc = governor::clock::DefaultClock::default();
    group.bench_function("tsc_clock_floor", |b| {
        b.iter_custom(|iters| {
            measure(iters, contended, |_| {
                black_box(governor::clock::Clock::now(&tsc));
            })
        })
    });
    group.finish();

    // Still bounded, still exact: every key tracked once, nothing fired again.
    assert_eq!(ours.len() as u64, keys);
    assert!(ours.check(&0).is_suppressed());
}

fn suppressed(c: &mut Criterion) {
    bench_group(c, "1key", 1, false);
    bench_group(c, "10k_keys", MANY, false);
    bench_group(c, "1key_2threads", 1, true);
}

criterion_group!(benches, suppressed);
criterion_main!(benches);
