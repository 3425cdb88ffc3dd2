//! Instruction counts of a closed circuit breaker (`breaker_call`, `breaker_permit`) beside failsafe. See `instructions/common.rs` for
//! how every contender is driven and why each primitive has its own binary.

// gungraun's macros generate undocumented modules, functions and constants.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use failsafe::CircuitBreaker as _;
use gungraun::{library_benchmark, library_benchmark_group, main};
use tokio::runtime::Runtime;

#[path = "instructions/common.rs"]
mod common;
use common::*;

#[inline(never)]
fn dependency() -> Result<u64, ()> {
    Ok(black_box(1))
}

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

main!(library_benchmark_groups = breaker);
