//! Config fuzz (issue 13 §2): random `KeyedLockBuilder` inputs — zero, huge and `Duration::MAX`
//! TTLs, shard counts from 0 to `usize::MAX`, empty and 100 kB names — and random per-call TTLs
//! and timeouts. Each case builds; a rejected setting must be a `ConfigError` naming its setter
//! with the ``invalid `field`: `` Display, and whatever was accepted is exercised on paused
//! time (try_lock, lock, lock_timeout, enqueue, extend, take-over after expiry, purge).
//! Panics are counted and must be 0.
//!
//! Seeded (`SEED`, `CASES`), so a failure reproduces. `shards` sizes an allocation, so an
//! unchecked value could abort the process (not a catchable panic): the cases run in a child
//! process (this test binary re-run with `CHILD_ENV` set), and the parent asserts that the
//! child exited normally and reported 0 panics.

use std::panic::AssertUnwindSafe;
use std::process::Command;
use std::time::Duration;

use futures::FutureExt as _;
use seawall_keyed_lock::KeyedLock;

const SEED: u64 = 0x5EA_10C4;
const CASES: usize = 1000;
const CHILD_ENV: &str = "SEAWALL_KEYED_LOCK_CONFIG_FUZZ_CHILD";

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
    match rng.below(9) {
        0 => Duration::ZERO,
        1 => Duration::from_nanos(1),
        2 => Duration::from_millis(rng.below(5_000)),
        3 => Duration::from_secs(rng.below(100_000)),
        4 => Duration::from_nanos(u64::MAX),
        5 => Duration::from_secs(86_400 * 365 * 1000),
        6 => Duration::MAX,
        7 => Duration::new(rng.next(), (rng.below(1_000_000_000)) as u32),
        _ => Duration::from_secs(1),
    }
}

fn shards(rng: &mut Rng) -> Option<usize> {
    match rng.below(10) {
        0 => None,
        1 => Some(0),
        2 => Some(1),
        3 => Some(3),
        4 => Some(1 << rng.below(17)),
        5 => Some(1 << 17),
        6 => Some(usize::MAX),
        7 => Some(usize::MAX / 2 + 1), // a power of two
        8 => Some(rng.next() as usize),
        _ => Some(65_536),
    }
}

fn name(rng: &mut Rng) -> String {
    match rng.below(6) {
        0 => String::new(),
        1 => "a".to_owned(),
        2 => "x".repeat(256),
        3 => "n".repeat(100 * 1024),
        4 => "lock \u{1F512} \"quoted\" {braces}\n".to_owned(),
        _ => "users".to_owned(),
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
        let (n, ttl, sh) = (name(&mut rng), duration(&mut rng), shards(&mut rng));
        let calls: Vec<Duration> = (0..4).map(|_| duration(&mut rng)).collect();
        let built = std::panic::catch_unwind(|| {
            let mut b = KeyedLock::<String>::builder().name(n.clone()).ttl(ttl);
            if let Some(s) = sh {
                b = b.shards(s);
            }
            b.build()
        });
        let locks = match built {
            Err(_) => {
                eprintln!("case {case}: build panicked (ttl {ttl:?}, shards {sh:?})");
                panics += 1;
                continue;
            }
            Ok(Err(e)) => {
                rejected += 1;
                assert!(
                    ["name", "ttl", "shards"].contains(&e.field()),
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
            Ok(Ok(locks)) => locks,
        };
        accepted += 1;
        let exercised = rt.block_on(
            AssertUnwindSafe(async {
                let [t1, t2, t3, wait] = [calls[0], calls[1], calls[2], calls[3]];
                let g = locks.lock("k").await;
                assert!(locks.try_lock("k").is_err());
                let _ = g.remaining();
                let _ = g.is_expired();
                // A timed wait behind a live holder, bounded to keep paused time sane.
                let bounded = wait.min(Duration::from_secs(3600));
                let _ = locks.lock_timeout_with_ttl("k", bounded, t1).await;
                let place = locks.enqueue_with_ttl("k", t2);
                drop(g);
                let mut g = place.await;
                let _ = g.extend(t3).await;
                let _ = g.deadline();
                std::mem::forget(g); // a crashed holder
                tokio::time::advance(Duration::from_secs(3600)).await;
                let _ = locks.purge_expired();
                let g = locks.lock_timeout("k", Duration::from_secs(1)).await;
                drop(g);
                let g = locks.lock_with_ttl("other", Duration::MAX).await;
                assert!(!g.is_expired());
                drop(g);
                let _ = locks.with_lock("w", async |g| g.token()).await;
                let _ = locks.len();
            })
            .catch_unwind(),
        );
        if exercised.is_err() {
            eprintln!("case {case}: exercising panicked (ttl {ttl:?}, calls {calls:?})");
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
    let accepted: usize = tally
        .split_whitespace()
        .find_map(|f| f.strip_prefix("accepted="))
        .unwrap()
        .parse()
        .unwrap();
    let rejected: usize = tally
        .split_whitespace()
        .find_map(|f| f.strip_prefix("rejected="))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(accepted + rejected, CASES, "{tally}");
    // Both sides are exercised.
    assert!(accepted > CASES / 10 && rejected > CASES / 10, "{tally}");
    eprintln!("keyed-lock config fuzz: {tally}");
}
