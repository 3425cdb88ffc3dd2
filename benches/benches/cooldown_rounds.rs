//! Two threads suppressing one cooldown key, measured as rounds rather than one criterion
//! estimate, because this case is bimodal for every contender: depending on where the scheduler
//! puts the two threads, the key's cache line moves between cores on every call or not. One
//! criterion median hides which mode a run was in (the same build measured seawall at 97 to
//! 159 ns and governor at 100 to 167 ns in three runs); the distribution over rounds shows it.
//!
//! Contenders, each called the way its users call it (synchronously, from two plain threads,
//! as `cooldown_suppressed/1key_2threads` does): `seawall` (`Cooldown::check`, which counts each
//! suppression and hands out its number) and `governor` (`DefaultKeyedRateLimiter::check_key`
//! with a quota of one per window, which counts nothing). The key has fired before the round, so
//! every measured call is suppressed. Rounds alternate which contender goes first, so that both
//! see the same machine load.
//!
//! `cargo bench -p seawall-benches --bench cooldown_rounds` prints every round (ns per call,
//! the two threads' calls over the round's wall time), then the median, min and max per
//! contender and their ratio. With `--test` (as `cargo bench -- --test` passes it) one short
//! round of each runs, as a smoke test.

#[path = "rounds/common.rs"]
mod common;

use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use seawall_cooldown::Cooldown;

const WINDOW: Duration = Duration::from_secs(1800);

/// Runs `per_thread` calls of `op` on each of two threads started together; ns per call.
fn round(per_thread: u64, op: &(dyn Fn() + Sync)) -> f64 {
    let start = Barrier::new(3);
    let elapsed = std::thread::scope(|s| {
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let start = &start;
                s.spawn(move || {
                    start.wait();
                    for _ in 0..per_thread {
                        op();
                    }
                })
            })
            .collect();
        start.wait();
        let t0 = Instant::now();
        for t in threads {
            t.join().expect("thread");
        }
        t0.elapsed()
    });
    elapsed.as_nanos() as f64 / (2 * per_thread) as f64
}

fn main() {
    let quick = std::env::args().any(|a| a == "--test");
    let (rounds, per_thread) = if quick { (1, 10_000) } else { (12, 2_000_000) };

    let ours: Cooldown<u64> = Cooldown::builder()
        .window(WINDOW)
        .build()
        .expect("cooldown");
    let limiter: DefaultKeyedRateLimiter<u64> =
        RateLimiter::keyed(Quota::with_period(WINDOW).expect("quota"));
    assert!(ours.check(&0).is_fire());
    assert!(limiter.check_key(&0).is_ok());

    let seawall = || {
        let d = ours.check(black_box(&0));
        debug_assert!(d.is_suppressed());
        black_box(d);
    };
    let peer = || {
        let _ = black_box(limiter.check_key(black_box(&0)));
    };
    let (mut a, mut b) = (Vec::new(), Vec::new());
    println!(
        "cooldown 2 threads, 1 key: ns per suppressed call, {per_thread} per thread per round"
    );
    println!("{:>5} {:>10} {:>10}", "round", "seawall", "governor");
    for r in 0..rounds {
        let (x, y) = if r % 2 == 0 {
            let x = round(per_thread, &seawall);
            (x, round(per_thread, &peer))
        } else {
            let y = round(per_thread, &peer);
            (round(per_thread, &seawall), y)
        };
        println!("{r:>5} {x:>10.1} {y:>10.1}");
        a.push(x);
        b.push(y);
    }
    println!("{}", common::summary(&mut a, &mut b));
    // Every call was suppressed and counted: the next fire reports them all.
    let fire = ours.check_critical(&0);
    assert_eq!(
        fire.suppressed_since_last,
        2 * per_thread * rounds,
        "the cooldown lost or added a count"
    );
}
