//! Config fuzz (issue 13 §2): random `CooldownBuilder` inputs — zero, huge and `Duration::MAX`
//! windows, `max_keys` from 0 to `usize::MAX`, empty and 100 kB names. Each case builds; a
//! rejected setting must be a `ConfigError` naming its setter with the ``invalid `field`: ``
//! Display, and whatever was accepted is exercised on paused time (check, check_with,
//! check_critical, reserve / commit / rollback, more keys than `max_keys`, drain, sweep, time
//! moving past the window where it is short). Panics are counted and must be 0.
//!
//! Seeded (`SEED`, `CASES`), so a failure reproduces. `max_keys` sizes the store, so an
//! unchecked value could abort the process (not a catchable panic): the cases run in a child
//! process (this test binary re-run with `CHILD_ENV` set), and the parent asserts that the
//! child exited normally and reported 0 panics.

use std::panic::AssertUnwindSafe;
use std::process::Command;
use std::time::Duration;

use futures::FutureExt as _;
use seawall_cooldown::{Cooldown, Decision};

const SEED: u64 = 0x00C0_01D0;
const CASES: usize = 1000;
const CHILD_ENV: &str = "SEAWALL_COOLDOWN_CONFIG_FUZZ_CHILD";

/// xorshift64*: a seeded generator without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn duration(rng: &mut Rng) -> Duration {
    match rng.below(10) {
        0 => Duration::ZERO,
        1 => Duration::from_nanos(1),
        2 => Duration::from_millis(rng.below(5_000)),
        3 => Duration::from_secs(rng.below(100_000)),
        4 => Duration::from_nanos(u64::MAX),
        5 => seawall_cooldown::MAX_WINDOW,
        6 => seawall_cooldown::MAX_WINDOW + Duration::from_nanos(1),
        7 => Duration::MAX,
        8 => Duration::new(rng.next(), (rng.below(1_000_000_000)) as u32),
        _ => Duration::from_secs(1),
    }
}

fn max_keys(rng: &mut Rng) -> Option<usize> {
    match rng.below(9) {
        0 => None,
        1 => Some(0),
        2 => Some(1),
        3 => Some(rng.below(200) as usize),
        4 => Some(seawall_cooldown::MAX_MAX_KEYS),
        5 => Some(seawall_cooldown::MAX_MAX_KEYS + 1),
        6 => Some(usize::MAX),
        7 => Some(rng.next() as usize),
        _ => Some(16),
    }
}

fn name(rng: &mut Rng) -> String {
    match rng.below(6) {
        0 => String::new(),
        1 => "a".to_owned(),
        2 => "x".repeat(256),
        3 => "n".repeat(100 * 1024),
        4 => "alerts \u{1F6A8} \"quoted\" {braces}\n".to_owned(),
        _ => "alerts".to_owned(),
    }
}

/// Runs every case; returns (accepted, rejected, panics).
fn run_cases() -> (usize, usize, usize) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let mut rng = Rng(SEED);
    let (mut accepted, mut rejected, mut panics) = (0, 0, 0);
    for case in 0..CASES {
        let (n, window, keys) = (name(&mut rng), duration(&mut rng), max_keys(&mut rng));
        let built = std::panic::catch_unwind(|| {
            let mut b = Cooldown::<String>::builder()
                .name(n.clone())
                .window(window)
                .payload::<u32>();
            if let Some(k) = keys {
                b = b.max_keys(k);
            }
            b.build()
        });
        let cooldown = match built {
            Err(_) => {
                eprintln!("case {case}: build panicked (window {window:?}, max_keys {keys:?})");
                panics += 1;
                continue;
            }
            Ok(Err(e)) => {
                rejected += 1;
                assert!(
                    ["name", "window", "max_keys"].contains(&e.field()),
                    "case {case}: {e}"
                );
                assert!(
                    e.to_string()
                        .starts_with(&format!("invalid `{}`: ", e.field())),
                    "case {case}: {e}"
                );
                assert!(!e.reason().is_empty());
                continue;
            }
            Ok(Ok(cooldown)) => cooldown,
        };
        accepted += 1;
        let step = window.min(Duration::from_secs(3600));
        let exercised = rt.block_on(
            AssertUnwindSafe(async {
                assert!(cooldown.check("k").is_fire());
                match cooldown.check_with("k", &1) {
                    Decision::Suppressed(s) => assert!(s.remaining <= window),
                    Decision::Fire(_) => assert!(window < Duration::from_nanos(2)),
                }
                let _ = cooldown.check_critical("k");
                if let Ok(r) = cooldown.reserve("r") {
                    let _ = r.fire();
                    r.commit();
                }
                if let Ok(r) = cooldown.reserve_with("rolled-back", &2) {
                    drop(r);
                }
                for key in 0..50u32 {
                    let _ = cooldown.check(&key.to_string());
                }
                assert!(cooldown.len() <= cooldown.max_keys());
                tokio::time::advance(step).await;
                for (_, digest) in cooldown.drain_digests() {
                    assert!(digest.first_suppressed <= digest.last_suppressed);
                }
                let _ = cooldown.sweep();
                let _ = cooldown.check("k");
            })
            .catch_unwind(),
        );
        if exercised.is_err() {
            eprintln!("case {case}: exercising panicked (window {window:?}, max_keys {keys:?})");
            panics += 1;
        }
    }
    (accepted, rejected, panics)
}

/// The child: runs the cases and prints the tally. Does nothing unless run by the parent.
#[test]
#[ignore = "run by `config_fuzz_never_panics_nor_aborts` in a child process"]
fn config_fuzz_child() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let (accepted, rejected, panics) = run_cases();
    println!("TALLY accepted={accepted} rejected={rejected} panics={panics}");
}

#[test]
fn config_fuzz_never_panics_nor_aborts() {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["config_fuzz_child", "--exact", "--ignored", "--nocapture"])
        .env(CHILD_ENV, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed ({:?}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let tally = stdout
        .lines()
        .find_map(|l| l.strip_prefix("TALLY "))
        .unwrap_or_else(|| panic!("no tally:\n{stdout}"));
    assert!(tally.ends_with(" panics=0"), "{tally}");
    let field = |name: &str| -> usize {
        tally
            .split_whitespace()
            .find_map(|f| f.strip_prefix(name))
            .unwrap()
            .parse()
            .unwrap()
    };
    let (accepted, rejected) = (field("accepted="), field("rejected="));
    assert_eq!(accepted + rejected, CASES, "{tally}");
    // Both sides are exercised.
    assert!(accepted > CASES / 10 && rejected > CASES / 10, "{tally}");
    eprintln!("cooldown config fuzz: {tally}");
}
