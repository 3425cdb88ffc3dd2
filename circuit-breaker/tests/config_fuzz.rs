//! Config fuzz: random builder inputs (zero, huge, `Duration::MAX`, NaN / infinite /
//! negative ratios, empty and 100 kB names), built, then exercised with random calls,
//! verdicts, held and dropped probes, manual transitions, scrapes and time jumps on paused
//! tokio time. Seeded: the same cases every run; a failing case prints its seed.
//!
//! Some inputs could abort the process (a window sized `u32::MAX` used to allocate 64 GiB),
//! so the cases run in a child process (this test binary re-run with `FUZZ_CHILD_ENV`) under
//! a 4 GiB address-space limit: an abort or an attempted huge allocation fails the parent
//! test instead of taking the runner down. Inside the child every case runs under
//! `catch_unwind`; the child reports how many cases were built, rejected and panicked.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::Command;
use std::time::Duration;

use prometheus_client::registry::Registry;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use seawall_circuit_breaker::{
    CircuitBreaker, CircuitBreakerBuilder, Metrics, Outcome, SlowCalls, State, TripPolicy, Window,
};

const FUZZ_CHILD_ENV: &str = "SEAWALL_BREAKER_CONFIG_FUZZ_CHILD";
const CASES: u64 = 2_000;
const SEED: u64 = 0x5EA_3A11;

fn pick<T: Copy>(rng: &mut SmallRng, values: &[T]) -> T {
    values[rng.random_range(0..values.len())]
}

fn any_u32(rng: &mut SmallRng) -> u32 {
    match rng.random_range(0..4) {
        0 => pick(rng, &[0, 1, 2, 3, 5, 10, 1_000, 10_000, 10_001]),
        1 => pick(rng, &[100_000, 100_001, 1 << 20, u32::MAX - 1, u32::MAX]),
        2 => rng.random_range(0..20),
        _ => rng.random(),
    }
}

fn any_ratio(rng: &mut SmallRng) -> f64 {
    match rng.random_range(0..3) {
        0 => pick(
            rng,
            &[
                0.0,
                -0.0,
                -0.5,
                1.0,
                1.000_001,
                f64::NAN,
                f64::INFINITY,
                f64::NEG_INFINITY,
                f64::MIN_POSITIVE,
                f64::EPSILON,
                f64::MAX,
            ],
        ),
        _ => rng.random_range(0.0..1.0),
    }
}

fn any_duration(rng: &mut SmallRng) -> Duration {
    const DAY: u64 = 24 * 60 * 60;
    match rng.random_range(0..4) {
        0 => pick(
            rng,
            &[
                Duration::ZERO,
                Duration::from_nanos(1),
                Duration::from_millis(1),
                Duration::from_secs(1),
                Duration::from_secs(30),
                Duration::from_secs(365 * DAY),
                Duration::from_secs(365 * DAY) + Duration::from_nanos(1),
                Duration::from_secs(u64::MAX),
                Duration::MAX,
            ],
        ),
        1 => Duration::from_nanos(rng.random()),
        _ => Duration::from_millis(rng.random_range(0..120_000)),
    }
}

fn any_window(rng: &mut SmallRng) -> Window {
    let w = if rng.random() {
        Window::count(any_u32(rng))
    } else {
        Window::time(any_duration(rng), any_u32(rng))
    };
    if rng.random() {
        w.min_calls(any_u32(rng))
    } else {
        w
    }
}

fn any_name(rng: &mut SmallRng) -> String {
    match rng.random_range(0..5) {
        0 => String::new(),
        1 => "x".repeat(100 * 1024),
        2 => "name with \"quotes\", newlines\n and ünïcode".to_owned(),
        _ => format!("b{}", rng.random::<u16>()),
    }
}

/// A builder with random setters, in random order, some repeated.
fn any_builder(rng: &mut SmallRng, registry: &mut Registry) -> CircuitBreakerBuilder {
    let mut b = CircuitBreaker::builder();
    for _ in 0..rng.random_range(0..10) {
        b = match rng.random_range(0..15) {
            0 => b.name(any_name(rng)),
            1 => b.consecutive_failures(any_u32(rng)),
            2 => b.failure_rate(any_ratio(rng), any_window(rng)),
            3 => b.trip_policy(TripPolicy::FailureRate {
                threshold: any_ratio(rng),
                window: any_window(rng),
            }),
            4 => b.slow_calls_as_failures(any_duration(rng)),
            5 => b.slow_call_rate(any_duration(rng), any_ratio(rng), any_window(rng)),
            6 => b.slow_calls(rng.random::<bool>().then(|| SlowCalls::AsFailures {
                threshold: any_duration(rng),
            })),
            7 => b.open_duration(any_duration(rng)),
            8 => {
                let seq: Vec<Duration> = (0..rng.random_range(0..4))
                    .map(|_| any_duration(rng))
                    .collect();
                b.open_durations(seq)
            }
            9 => b.jitter(any_ratio(rng)),
            10 => b.seed(rng.random()),
            11 => b.probes(any_u32(rng)),
            12 => b.successes_to_close(any_u32(rng)),
            13 => b.max_probe_duration(any_duration(rng)),
            _ => b.metrics(Metrics::register(registry)),
        };
    }
    b
}

/// Random traffic on an accepted breaker, on paused time.
async fn exercise(rng: &mut SmallRng, b: &CircuitBreaker, registry: &Registry) {
    let mut held = Vec::new();
    for _ in 0..40 {
        match rng.random_range(0..12) {
            0..=3 => {
                if let Ok(p) = b.try_acquire() {
                    let outcome =
                        pick(rng, &[Outcome::Success, Outcome::Failure, Outcome::Ignored]);
                    p.record(outcome);
                }
            }
            4 => {
                if let Ok(p) = b.try_acquire() {
                    held.push(p);
                }
            }
            5 => {
                if !held.is_empty() {
                    let p = held.swap_remove(rng.random_range(0..held.len()));
                    if rng.random() {
                        p.failure();
                    } else {
                        drop(p);
                    }
                }
            }
            6 => {
                let d = Duration::from_millis(rng.random_range(0..5_000));
                let _ = b
                    .call(|| async move {
                        tokio::time::sleep(d).await;
                        Err::<(), _>("down")
                    })
                    .await;
            }
            7 => {
                // Up to 400 days: past every bound the builder accepts.
                let d = pick(
                    rng,
                    &[
                        Duration::from_millis(1),
                        Duration::from_secs(31),
                        Duration::from_secs(3_600),
                        Duration::from_secs(400 * 24 * 3_600),
                    ],
                );
                tokio::time::advance(d).await;
            }
            8 => {
                let _ = b.state();
            }
            9 => match rng.random_range(0..3) {
                0 => b.reset(),
                1 => b.force_open(),
                _ => b.disable(),
            },
            10 => {
                let mut text = String::new();
                prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
            }
            _ => {
                if let Err(r) = b.try_acquire() {
                    assert!(r.retry_after <= CircuitBreakerBuilder::MAX_DURATION);
                    assert_ne!(r.state, State::Closed);
                }
            }
        }
    }
}

/// Runs every case; returns (built, rejected, panicked seeds).
fn run_cases() -> (u64, u64, Vec<u64>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let (mut built, mut rejected, mut panicked) = (0, 0, Vec::new());
    for case in 0..CASES {
        let seed = SEED ^ case;
        let result = catch_unwind(AssertUnwindSafe(|| {
            let mut rng = SmallRng::seed_from_u64(seed);
            let mut registry = Registry::default();
            let builder = any_builder(&mut rng, &mut registry);
            match builder.build() {
                Ok(b) => {
                    rt.block_on(exercise(&mut rng, &b, &registry));
                    true
                }
                Err(e) => {
                    // The reason states a range: it is never empty, and Display follows the
                    // shared shape.
                    assert!(!e.reason().is_empty());
                    assert_eq!(
                        e.to_string(),
                        format!("invalid `{}`: {}", e.field(), e.reason())
                    );
                    false
                }
            }
        }));
        match result {
            Ok(true) => built += 1,
            Ok(false) => rejected += 1,
            Err(_) => panicked.push(seed),
        }
    }
    (built, rejected, panicked)
}

/// The child: runs the cases and prints one summary line.
#[test]
#[ignore = "run by config_fuzz_in_a_child_process"]
fn config_fuzz_child() {
    if std::env::var_os(FUZZ_CHILD_ENV).is_none() {
        return;
    }
    let (built, rejected, panicked) = run_cases();
    println!(
        "FUZZ built={built} rejected={rejected} panicked={} seeds={panicked:?}",
        panicked.len()
    );
}

#[test]
fn config_fuzz_in_a_child_process() {
    let exe = std::env::current_exe().unwrap();
    // 4 GiB of address space: the allocations the fuzz hunts for fail fast instead of
    // swapping a shared machine.
    let output = Command::new("sh")
        .arg("-c")
        .arg("ulimit -v 4194304 2>/dev/null; exec \"$0\" \"$@\"")
        .arg(&exe)
        .args([
            "--ignored",
            "--exact",
            "config_fuzz_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(FUZZ_CHILD_ENV, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the fuzz child died ({:?}): {stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let summary = stdout
        .lines()
        .find_map(|l| l.split_once("FUZZ ").map(|(_, s)| s.to_owned()))
        .unwrap_or_else(|| panic!("no summary in {stdout}"));
    eprintln!("config fuzz: {CASES} cases, {summary}");
    assert!(summary.contains("panicked=0 "), "{summary}");
    // The generator reaches both sides.
    let count = |key: &str| -> u64 {
        summary
            .split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .and_then(|n| n.parse().ok())
            .unwrap()
    };
    assert!(count("built=") > CASES / 10, "{summary}");
    assert!(count("rejected=") > CASES / 10, "{summary}");
}
