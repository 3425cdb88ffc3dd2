//! Instruction counts (callgrind, through `gungraun`) of each Seawall hot path beside its best
//! peer on the same work. Wall time on a shared machine is noise; instructions are repeatable.
//!
//! Every contender is driven the way its users call it: sync peers are called synchronously,
//! async APIs (ours and the async peers) are awaited inside one current-thread tokio runtime.
//! Each benchmark runs [`OPS`] operations after a setup that is not counted (building the
//! runtime and the instance, warming every key), so the count per operation is the total
//! divided by [`OPS`]; `.ci/instructions` prints that table with the ratio per case and fails
//! when a Seawall case costs more than its best peer.
//!
//! Cases (group / contender):
//! - `breaker_call`: a closed breaker around a call that succeeds — `seawall` (`call`, awaited)
//!   vs `failsafe` (consecutive-failures policy, sync `call`).
//! - `breaker_permit`: the same through the permit API — `seawall` (`try_acquire` +
//!   `success`) vs `failsafe` (`is_call_permitted` + `on_success`).
//! - `retry_ok`: an operation that succeeds on the first try — `seawall` vs `tokio_retry` and
//!   `tokio_retry2` (the best of the two is the peer); `bare_await` is the floor, not a peer.
//! - `retry_fail2`: fails twice, then succeeds, with a zero delay — `seawall` vs `backon` with a
//!   sleeper that skips zero delays (tokio rounds `sleep(0)` up to a 1 ms tick).
//! - `lock_1key` / `lock_10k`: lock + unlock, uncontended — `seawall` vs `dashmap_evict` (a
//!   `DashMap<u64, Arc<tokio::sync::Mutex<()>>>` that evicts idle entries, the leak-free way
//!   people write it).
//! - `cooldown_1key` / `cooldown_10k`: a suppressed check — `seawall` vs `governor` (keyed
//!   limiter, one per window). Under valgrind a clock read is a syscall whose kernel time is
//!   not counted, so these two also need their criterion ratio (`benches/cooldown.rs`).
//!
//! The spool is not here: its cost is `write` and `fdatasync`, which callgrind does not count;
//! `benches/fallback_sink.rs` measures it against a raw write loop.

// gungraun's macros generate undocumented modules, functions and constants.
#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use failsafe::CircuitBreaker as _;
use gungraun::{library_benchmark, library_benchmark_group, main};
use tokio::runtime::Runtime;

/// Operations per benchmark run.
const OPS: u64 = 1_000;
/// Keys visited round-robin in the `*_10k` cases.
const MANY: u64 = 10_000;
const WINDOW: Duration = Duration::from_secs(1800);

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

#[inline(never)]
fn dependency() -> Result<u64, ()> {
    Ok(black_box(1))
}

// ---------------------------------------------------------------------------------------------
// breaker

fn seawall_breaker() -> (Runtime, seawall_circuit_breaker::CircuitBreaker) {
    let breaker = seawall_circuit_breaker::CircuitBreaker::builder()
        .name("bench")
        .consecutive_failures(5)
        .build()
        .expect("breaker");
    (runtime(), breaker)
}

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

#[library_benchmark]
#[bench::seawall(setup = seawall_breaker)]
fn breaker_call_seawall(
    (rt, breaker): (Runtime, seawall_circuit_breaker::CircuitBreaker),
) -> (Runtime, seawall_circuit_breaker::CircuitBreaker) {
    rt.block_on(async {
        for _ in 0..OPS {
            let r = breaker.call(|| async { dependency() }).await;
            black_box(r).expect("closed");
        }
    });
    (rt, breaker)
}

#[library_benchmark]
#[bench::failsafe(setup = failsafe_breaker)]
fn breaker_call_failsafe(breaker: Failsafe) -> Failsafe {
    for _ in 0..OPS {
        black_box(breaker.call(dependency)).expect("closed");
    }
    breaker
}

#[library_benchmark]
#[bench::seawall(setup = seawall_breaker)]
fn breaker_permit_seawall(
    (rt, breaker): (Runtime, seawall_circuit_breaker::CircuitBreaker),
) -> (Runtime, seawall_circuit_breaker::CircuitBreaker) {
    for _ in 0..OPS {
        let permit = breaker.try_acquire().expect("closed");
        black_box(dependency()).expect("ok");
        permit.success();
    }
    (rt, breaker)
}

#[library_benchmark]
#[bench::failsafe(setup = failsafe_breaker)]
fn breaker_permit_failsafe(breaker: Failsafe) -> Failsafe {
    for _ in 0..OPS {
        assert!(breaker.is_call_permitted());
        black_box(dependency()).expect("ok");
        breaker.on_success();
    }
    breaker
}

library_benchmark_group!(
    name = breaker;
    benchmarks = breaker_call_seawall, breaker_call_failsafe, breaker_permit_seawall,
        breaker_permit_failsafe
);

// ---------------------------------------------------------------------------------------------
// retry

#[derive(Debug, Clone, Copy)]
struct Flaky;

/// Succeeds on attempt `fail_first + 1`.
fn op(fail_first: u32) -> impl FnMut() -> std::future::Ready<Result<u32, Flaky>> {
    let mut n = 0;
    move || {
        n += 1;
        std::future::ready(if n <= black_box(fail_first) {
            Err(Flaky)
        } else {
            Ok(n)
        })
    }
}

fn seawall_retry() -> (Runtime, seawall_retry::RetryPolicy) {
    let policy = seawall_retry::RetryPolicy::builder()
        .name("bench")
        .max_attempts(3)
        .constant(Duration::ZERO)
        .build()
        .expect("policy");
    (runtime(), policy)
}

#[library_benchmark]
#[bench::ok(args = (0), setup = with_seawall_retry)]
#[bench::fail2(args = (2), setup = with_seawall_retry)]
fn retry_seawall(
    (rt, policy, fail_first): (Runtime, seawall_retry::RetryPolicy, u32),
) -> (Runtime, seawall_retry::RetryPolicy) {
    rt.block_on(async {
        for _ in 0..OPS {
            let r = policy.retry(op(fail_first)).await;
            assert_eq!(black_box(r.ok()), Some(fail_first + 1));
        }
    });
    (rt, policy)
}

fn with_seawall_retry(fail_first: u32) -> (Runtime, seawall_retry::RetryPolicy, u32) {
    let (rt, policy) = seawall_retry();
    (rt, policy, fail_first)
}

fn with_runtime(fail_first: u32) -> (Runtime, u32) {
    (runtime(), fail_first)
}

#[library_benchmark]
#[bench::ok(args = (0), setup = with_runtime)]
fn retry_bare_await((rt, fail_first): (Runtime, u32)) -> Runtime {
    rt.block_on(async {
        for _ in 0..OPS {
            let mut f = op(fail_first);
            let mut r = f().await;
            while r.is_err() {
                r = f().await;
            }
            assert_eq!(black_box(r.ok()), Some(fail_first + 1));
        }
    });
    rt
}

#[library_benchmark]
#[bench::ok(args = (0), setup = with_runtime)]
fn retry_tokio_retry((rt, fail_first): (Runtime, u32)) -> Runtime {
    rt.block_on(async {
        for _ in 0..OPS {
            let strategy = tokio_retry::strategy::FixedInterval::new(Duration::ZERO).take(2);
            let r = tokio_retry::Retry::start(strategy, op(fail_first)).await;
            assert_eq!(black_box(r.ok()), Some(fail_first + 1));
        }
    });
    rt
}

#[library_benchmark]
#[bench::ok(args = (0), setup = with_runtime)]
fn retry_tokio_retry2((rt, fail_first): (Runtime, u32)) -> Runtime {
    rt.block_on(async {
        for _ in 0..OPS {
            let strategy = tokio_retry2::strategy::FixedInterval::new(Duration::ZERO).take(2);
            let mut f = op(fail_first);
            let action = move || {
                let fut = f();
                async move { fut.await.map_err(tokio_retry2::RetryError::transient) }
            };
            let r = tokio_retry2::Retry::spawn(strategy, action).await;
            assert_eq!(black_box(r.ok()), Some(fail_first + 1));
        }
    });
    rt
}

/// backon's tokio sleeper, except that a zero delay does not touch the timer: the fair peer
/// for the zero-delay case (otherwise backon pays tokio's 1 ms tick per retry).
#[derive(Debug, Clone, Copy, Default)]
struct ZeroSkippingSleeper;

impl backon::Sleeper for ZeroSkippingSleeper {
    type Sleep = futures::future::Either<std::future::Ready<()>, tokio::time::Sleep>;

    fn sleep(&self, dur: Duration) -> Self::Sleep {
        if dur.is_zero() {
            futures::future::Either::Left(std::future::ready(()))
        } else {
            futures::future::Either::Right(tokio::time::sleep(dur))
        }
    }
}

#[library_benchmark]
#[bench::fail2(args = (2), setup = with_runtime)]
fn retry_backon((rt, fail_first): (Runtime, u32)) -> Runtime {
    use backon::Retryable as _;
    rt.block_on(async {
        for _ in 0..OPS {
            let r = op(fail_first)
                .retry(
                    backon::ConstantBuilder::default()
                        .with_delay(Duration::ZERO)
                        .with_max_times(2),
                )
                .sleep(ZeroSkippingSleeper)
                .await;
            assert_eq!(black_box(r.ok()), Some(fail_first + 1));
        }
    });
    rt
}

library_benchmark_group!(
    name = retry;
    benchmarks = retry_seawall, retry_bare_await, retry_tokio_retry, retry_tokio_retry2,
        retry_backon
);

// ---------------------------------------------------------------------------------------------
// keyed lock

type DashLocks = DashMap<u64, Arc<tokio::sync::Mutex<()>>>;

fn next_key(i: &mut u64, keys: u64) -> u64 {
    *i += 1;
    if *i >= keys {
        *i = 0;
    }
    *i
}

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

// ---------------------------------------------------------------------------------------------
// cooldown

type Governor = governor::DefaultKeyedRateLimiter<u64>;

fn seawall_cooldown(keys: u64) -> (Runtime, seawall_cooldown::Cooldown<u64>, u64) {
    let rt = runtime();
    let cooldown = rt.block_on(async {
        let cooldown = seawall_cooldown::Cooldown::builder()
            .window(WINDOW)
            .build()
            .expect("cooldown");
        for k in 0..keys {
            assert!(cooldown.check(&k).is_fire());
        }
        cooldown
    });
    (rt, cooldown, keys)
}

fn governor_limiter(keys: u64) -> (Governor, u64) {
    let limiter =
        governor::RateLimiter::keyed(governor::Quota::with_period(WINDOW).expect("quota"));
    for k in 0..keys {
        assert!(limiter.check_key(&k).is_ok());
    }
    (limiter, keys)
}

#[library_benchmark]
#[bench::one_key(args = (1), setup = seawall_cooldown)]
#[bench::many_keys(args = (MANY), setup = seawall_cooldown)]
fn cooldown_seawall(
    (rt, cooldown, keys): (Runtime, seawall_cooldown::Cooldown<u64>, u64),
) -> (Runtime, seawall_cooldown::Cooldown<u64>) {
    let _enter = rt.enter();
    let mut i = 0;
    for _ in 0..OPS {
        let k = next_key(&mut i, keys);
        let d = cooldown.check(&k);
        assert!(!black_box(&d).is_fire());
    }
    drop(_enter);
    (rt, cooldown)
}

#[library_benchmark]
#[bench::one_key(args = (1), setup = governor_limiter)]
#[bench::many_keys(args = (MANY), setup = governor_limiter)]
fn cooldown_governor((limiter, keys): (Governor, u64)) -> Governor {
    let mut i = 0;
    for _ in 0..OPS {
        let k = next_key(&mut i, keys);
        assert!(black_box(limiter.check_key(&k)).is_err());
    }
    limiter
}

library_benchmark_group!(
    name = cooldown;
    benchmarks = cooldown_seawall, cooldown_governor
);

main!(
    library_benchmark_groups = breaker,
    retry,
    keyed_lock,
    cooldown
);
