//! Instruction counts of a retry policy (`retry_ok`, `retry_fail2`) beside tokio-retry, tokio-retry2 and backon. See `instructions/common.rs` for
//! how every contender is driven and why each primitive has its own binary.

// gungraun's macros generate undocumented modules, functions and constants.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use gungraun::{library_benchmark, library_benchmark_group, main};
use tokio::runtime::Runtime;

#[path = "instructions/common.rs"]
mod common;
use common::*;

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

main!(library_benchmark_groups = retry);
