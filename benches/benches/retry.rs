//! seawall-retry beside backon, tokio-retry and tokio-retry2, each driven the way its users call
//! it: every contender is an async API, awaited inside one current-thread tokio runtime
//! (criterion's `to_async`), on the same work — an operation returning a ready
//! `Result<u32, Flaky>`, at most 3 attempts, zero delay between attempts — and its result is
//! flattened to one machine word for `black_box`. Seawall is called as its docs show:
//! `policy.retry(op).await` on a policy built once; the peers build their strategy per call as
//! their docs show (that is how they are used; it costs nothing, the strategies are plain values).
//!
//! - `retry/success_first_try`: the operation succeeds at once; `bare_await` is the same future
//!   awaited without any retry wrapper, so the difference is the wrapper's overhead. Target:
//!   `seawall` ≤ the best of `tokio_retry` / `tokio_retry2`, within ~3 ns of `bare_await`.
//! - `retry/fail_twice_zero_delay`: the operation fails twice, then succeeds. `hand_loop` is the
//!   floor. A library that hands a zero delay to the timer pays tokio's 1 ms tick per retry
//!   (`backon` with its default tokio sleeper, `tokio_retry`, `tokio_retry2`), so the fair peer is
//!   `backon_zero_skip`: backon with a sleeper that returns at once for a zero delay. Target:
//!   `seawall` ≤ `backon_zero_skip`.
//! - `seawall_metrics_budget` is the same seawall call with Prometheus metrics and a retry
//!   budget attached (the production setup), for information.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use seawall_retry::{Metrics, RetryBudget, RetryPolicy};

#[derive(Debug, Clone, Copy)]
struct Flaky;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// The operation under test: succeeds on attempt `fail_first + 1`.
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

fn seawall_policy() -> RetryPolicy {
    RetryPolicy::builder()
        .name("bench")
        .max_attempts(3)
        .constant(Duration::ZERO)
        .build()
        .expect("policy")
}

fn seawall_policy_instrumented() -> RetryPolicy {
    // The registry's type is inferred from `Metrics::register` (the benches crate does not
    // depend on prometheus-client itself).
    let metrics = Metrics::register(&mut Default::default());
    RetryPolicy::builder()
        .name("bench")
        .max_attempts(3)
        .constant(Duration::ZERO)
        // Ratio 2: each call deposits what its two retries withdraw, so the budget never refuses
        // and both seawall variants do the same work.
        .budget(RetryBudget::builder().ratio(2.0).build().expect("budget"))
        .metrics(metrics)
        .build()
        .expect("policy")
}

/// Every contender's result as one machine word (0 = failed), so that `black_box` sees the
/// same shape for all of them: an `Option<u32>` assembled from two 32-bit stores and read back
/// as one 64-bit load costs a store-forwarding stall (about 10 ns here) that would be measured
/// as the library's overhead.
fn flat<E>(r: Result<u32, E>) -> u64 {
    r.map_or(0, u64::from)
}

async fn bare(fail_first: u32) -> u64 {
    let mut f = op(fail_first);
    let mut r = f().await;
    // A hand-written loop: the floor for the zero-delay case.
    while r.is_err() {
        r = f().await;
    }
    flat(r)
}

async fn backon(fail_first: u32) -> u64 {
    use backon::Retryable;
    let r = op(fail_first)
        .retry(
            backon::ConstantBuilder::default()
                .with_delay(Duration::ZERO)
                .with_max_times(2),
        )
        .await;
    flat(r)
}

/// A backon sleeper that skips the timer for a zero delay (what seawall does by itself).
fn zero_skipping_sleep(
    d: Duration,
) -> futures::future::Either<std::future::Ready<()>, tokio::time::Sleep> {
    if d.is_zero() {
        futures::future::Either::Left(std::future::ready(()))
    } else {
        futures::future::Either::Right(tokio::time::sleep(d))
    }
}

async fn backon_zero_skip(fail_first: u32) -> u64 {
    use backon::Retryable;
    let r = op(fail_first)
        .retry(
            backon::ConstantBuilder::default()
                .with_delay(Duration::ZERO)
                .with_max_times(2),
        )
        .sleep(zero_skipping_sleep)
        .await;
    flat(r)
}

async fn tokio_retry(fail_first: u32) -> u64 {
    let strategy = tokio_retry::strategy::FixedInterval::new(Duration::ZERO).take(2);
    flat(tokio_retry::Retry::start(strategy, op(fail_first)).await)
}

async fn tokio_retry2(fail_first: u32) -> u64 {
    let strategy = tokio_retry2::strategy::FixedInterval::new(Duration::ZERO).take(2);
    let mut f = op(fail_first);
    let action = move || {
        let fut = f();
        async move { fut.await.map_err(tokio_retry2::RetryError::transient) }
    };
    flat(tokio_retry2::Retry::spawn(strategy, action).await)
}

fn bench(c: &mut Criterion, group_name: &str, fail_first: u32) {
    let rt = runtime();
    let policy = seawall_policy();
    let instrumented = seawall_policy_instrumented();
    // Every contender must actually succeed on attempt `fail_first + 1`.
    let want = u64::from(fail_first + 1);
    for _ in 0..20 {
        assert_eq!(rt.block_on(bare(fail_first)), want);
        assert_eq!(flat(rt.block_on(policy.retry(op(fail_first)))), want);
        assert_eq!(flat(rt.block_on(instrumented.retry(op(fail_first)))), want);
        assert_eq!(rt.block_on(backon(fail_first)), want);
        assert_eq!(rt.block_on(backon_zero_skip(fail_first)), want);
        assert_eq!(rt.block_on(tokio_retry(fail_first)), want);
        assert_eq!(rt.block_on(tokio_retry2(fail_first)), want);
    }

    let mut g = c.benchmark_group(group_name);
    let baseline = if fail_first == 0 {
        "bare_await"
    } else {
        "hand_loop"
    };
    g.bench_function(baseline, |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(bare(fail_first).await) })
    });
    g.bench_function("seawall", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(flat(policy.retry(op(fail_first)).await)) })
    });
    g.bench_function("seawall_metrics_budget", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(flat(instrumented.retry(op(fail_first)).await)) })
    });
    g.bench_function("backon", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(backon(fail_first).await) })
    });
    g.bench_function("backon_zero_skip", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(backon_zero_skip(fail_first).await) })
    });
    g.bench_function("tokio_retry", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(tokio_retry(fail_first).await) })
    });
    g.bench_function("tokio_retry2", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(tokio_retry2(fail_first).await) })
    });
    g.finish();
}

fn success_first_try(c: &mut Criterion) {
    bench(c, "retry/success_first_try", 0);
}

fn fail_twice_zero_delay(c: &mut Criterion) {
    bench(c, "retry/fail_twice_zero_delay", 2);
}

criterion_group!(benches, success_first_try, fail_twice_zero_delay);
criterion_main!(benches);
