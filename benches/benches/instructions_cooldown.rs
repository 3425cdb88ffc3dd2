//! Instruction counts of a suppressed cooldown check (`cooldown_1key`, `cooldown_10k`) beside governor. See `instructions/common.rs` for
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

const WINDOW: Duration = Duration::from_secs(1800);

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

main!(library_benchmark_groups = cooldown);
