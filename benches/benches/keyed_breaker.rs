//! Keyed circuit breakers: per-call overhead in the closed state and memory per tracked key.
//!
//! Contenders, each driven the way its users would call it, around a call that succeeds at
//! once (async APIs are polled in place, without a runtime):
//!
//! - `single_seawall`: one `seawall_circuit_breaker::CircuitBreaker`, `call(|| fut)`: the
//!   floor a keyed breaker adds its lookup to.
//! - `single_failsafe`: one failsafe breaker (consecutive failures, 5, constant 30 s), `call`.
//! - `keyed_seawall`: `KeyedCircuitBreaker<String>::call(&str, || fut)`, consecutive failures
//!   (5). With `max_keys` 100 000, 10 000 healthy keys stay tracked (no shard reaches its
//!   sweep size).
//! - `keyed_seawall_churn`: the same with the default `max_keys` (10 000), as many keys as
//!   `max_keys`: healthy keys are idle, so routine shard sweeps (past `max_keys / 64` keys)
//!   may forget them, sparing once a key used since the previous sweep; a forgotten key is
//!   re-created on its next call. The price of bounded memory on a workload of only healthy
//!   keys at the bound.
//! - `diy_dashmap_failsafe`: what users write today: a `DashMap<String, failsafe breaker>`,
//!   `get(&str)` then `call`, `entry(key.to_owned()).or_insert_with(..)` on a miss. Keeps
//!   every key for ever.
//!
//! `*/1key`: every call on one key. `*/10k_keys`: calls go round-robin over 10 000 keys
//! (`host-{i}.example`), all created before measuring.
//!
//! Memory per tracked key is measured before the timings and printed: each contender tracks
//! 100 000 keys (each with one failure recorded, so none is idle) in a child process, and the
//! growth of its resident set (`/proc/self/statm`) is divided by the keys. The workspace
//! forbids `unsafe`, so no counting global allocator; the resident set includes allocator
//! overhead, which is what a service pays. The keys' own `String`s are counted where the
//! structure stores a copy.

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::process::Command;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use criterion::{Criterion, criterion_group};
use dashmap::DashMap;
use failsafe::CircuitBreaker as _;
use seawall_circuit_breaker::{CircuitBreaker, KeyedCircuitBreaker};

const KEYS: usize = 10_000;
const MEMORY_KEYS: usize = 100_000;
const PROBE_ENV: &str = "SEAWALL_KEYED_MEMORY_PROBE";

type Failsafe = failsafe::StateMachine<
    failsafe::failure_policy::ConsecutiveFailures<failsafe::backoff::Constant>,
    (),
>;

fn failsafe_breaker() -> Failsafe {
    failsafe::Config::new()
        .failure_policy(failsafe::failure_policy::consecutive_failures(
            5,
            failsafe::backoff::constant(Duration::from_secs(30)),
        ))
        .build()
}

fn keyed(max_keys: usize) -> KeyedCircuitBreaker<String> {
    CircuitBreaker::builder()
        .name("bench")
        .consecutive_failures(5)
        .keyed()
        .max_keys(max_keys)
        .build()
        .unwrap()
}

/// The protected call: succeeds at once.
#[inline]
fn dependency() -> Result<u64, ()> {
    Ok(black_box(1))
}

#[inline(always)]
fn spin_on<F: Future>(f: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    let mut f = pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::hint::spin_loop();
    }
}

/// The DIY keyed breaker: look up, create on a miss.
#[inline]
fn diy_call(map: &DashMap<String, Failsafe>, key: &str) -> Result<u64, failsafe::Error<()>> {
    if let Some(breaker) = map.get(key) {
        return breaker.call(dependency);
    }
    let breaker = map
        .entry(key.to_owned())
        .or_insert_with(failsafe_breaker)
        .clone();
    breaker.call(dependency)
}

fn host_keys(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("host-{i}.example")).collect()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("keyed_breaker");
    let keys = host_keys(KEYS);
    let one = keys[0].as_str();

    let single = CircuitBreaker::builder()
        .name("bench")
        .consecutive_failures(5)
        .build()
        .unwrap();
    group.bench_function("single_seawall/1key", |b| {
        b.iter(|| black_box(spin_on(single.call(|| async { dependency() }))).unwrap())
    });
    let single_failsafe = failsafe_breaker();
    group.bench_function("single_failsafe/1key", |b| {
        b.iter(|| black_box(single_failsafe.call(dependency)).unwrap())
    });

    let wide = keyed(100_000);
    let churn = keyed(10_000);
    let diy: DashMap<String, Failsafe> = DashMap::new();
    for key in &keys {
        spin_on(wide.call(key.as_str(), || async { dependency() })).unwrap();
        spin_on(churn.call(key.as_str(), || async { dependency() })).unwrap();
        diy_call(&diy, key).unwrap();
    }
    assert_eq!(wide.len(), KEYS);
    assert_eq!(diy.len(), KEYS);

    group.bench_function("keyed_seawall/1key", |b| {
        b.iter(|| black_box(spin_on(wide.call(one, || async { dependency() }))).unwrap())
    });
    group.bench_function("diy_dashmap_failsafe/1key", |b| {
        b.iter(|| black_box(diy_call(&diy, one)).unwrap())
    });
    for (name, keyed) in [("keyed_seawall", &wide), ("keyed_seawall_churn", &churn)] {
        group.bench_function(format!("{name}/10k_keys"), |b| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) % KEYS;
                let key = keys[i].as_str();
                black_box(spin_on(keyed.call(key, || async { dependency() }))).unwrap()
            })
        });
    }
    group.bench_function("diy_dashmap_failsafe/10k_keys", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % KEYS;
            black_box(diy_call(&diy, &keys[i])).unwrap()
        })
    });
    group.finish();
    assert!(wide.len() <= wide.max_keys() && churn.len() <= churn.max_keys());
}

/// Resident set size in bytes, from `/proc/self/statm`; `None` off Linux.
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// In the child: tracks `MEMORY_KEYS` keys in `contender`, prints the growth per key.
fn probe(contender: &str) {
    let keys = host_keys(MEMORY_KEYS);
    let before = resident_bytes().unwrap_or(0);
    let kept: Box<dyn std::any::Any> = match contender {
        "keyed_seawall" => {
            let keyed = keyed(MEMORY_KEYS);
            for key in &keys {
                keyed.try_acquire(key.as_str()).unwrap().failure();
            }
            assert_eq!(keyed.len(), MEMORY_KEYS);
            Box::new(keyed)
        }
        "diy_dashmap_failsafe" => {
            let map: DashMap<String, Failsafe> = DashMap::new();
            for key in &keys {
                map.entry(key.clone())
                    .or_insert_with(failsafe_breaker)
                    .call(|| Err::<(), ()>(()))
                    .unwrap_err();
            }
            Box::new(map)
        }
        "single_seawall" => {
            let breakers: Vec<CircuitBreaker> = keys
                .iter()
                .map(|_| {
                    let b = CircuitBreaker::builder().build().unwrap();
                    b.try_acquire().unwrap().failure();
                    b
                })
                .collect();
            Box::new(breakers)
        }
        other => panic!("unknown contender {other}"),
    };
    let after = resident_bytes().unwrap_or(0);
    black_box(&kept);
    println!("{}", after.saturating_sub(before) / MEMORY_KEYS as u64);
}

fn memory_report() {
    let exe = std::env::current_exe().expect("bench binary path");
    println!(
        "memory per tracked key ({MEMORY_KEYS} keys, resident set growth / keys; keys stored as String):"
    );
    for contender in ["keyed_seawall", "diy_dashmap_failsafe", "single_seawall"] {
        let out = Command::new(&exe).env(PROBE_ENV, contender).output();
        let bytes = match out {
            Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_owned(),
            Ok(o) => format!(
                "probe failed: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => format!("probe failed: {e}"),
        };
        let what = if contender == "single_seawall" {
            "(one CircuitBreaker per key in a Vec, no map: the per-breaker share)"
        } else {
            ""
        };
        println!("  {contender:<22} {bytes:>6} B/key {what}");
    }
}

criterion_group!(benches, bench);

fn main() {
    if let Ok(contender) = std::env::var(PROBE_ENV) {
        probe(&contender);
        return;
    }
    memory_report();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
