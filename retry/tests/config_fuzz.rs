//! Config fuzz (issue 13 §2): random builder inputs — zero, huge, `Duration::MAX`,
//! NaN / infinite / negative ratios and factors, empty and 100 kB names — for every builder.
//! Each case builds, and whatever was accepted is exercised (delays drawn, budget deposits and
//! withdrawals, retried calls with hints, timeouts and deadlines on paused time). The test
//! counts panics and requires 0; a rejected setting must name its setter and state a range.
//!
//! Seeded (`SEED`, `CASES`), so a failure reproduces; `CONFIG_FUZZ_TRACE=1` prints each case's
//! seed and policy (this is how a case that hung the paused clock, an attempt timeout of ~10^11
//! years, was found: timers are now capped at 30 years). Nothing in this crate allocates by an
//! input's size except the name (copied once), so no case can abort and none needs a child
//! process.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use seawall_retry::{Backoff, BackoffBuilder, Jitter, RetryBudget, RetryError, RetryPolicy};

const SEED: u64 = 0x5EA_3A11;
const CASES: usize = 3000;

fn duration(rng: &mut StdRng) -> Duration {
    match rng.random_range(0..9) {
        0 => Duration::ZERO,
        1 => Duration::from_nanos(1),
        2 => Duration::from_millis(rng.random_range(0..5_000)),
        3 => Duration::from_secs(rng.random_range(0..100_000)),
        4 => Duration::from_nanos(u64::MAX),
        5 => Duration::from_nanos(u64::MAX) + Duration::from_nanos(1),
        6 => Duration::MAX,
        7 => Duration::new(rng.random(), rng.random_range(0..1_000_000_000)),
        _ => Duration::from_secs(1),
    }
}

fn float(rng: &mut StdRng) -> f64 {
    match rng.random_range(0..12) {
        0 => f64::NAN,
        1 => f64::INFINITY,
        2 => f64::NEG_INFINITY,
        3 => -1.0,
        4 => 0.0,
        5 => -0.0,
        6 => 0.5,
        7 => 1.0,
        8 => 1e300,
        9 => f64::MAX,
        10 => f64::MIN_POSITIVE,
        _ => rng.random_range(0.0..2000.0),
    }
}

fn count(rng: &mut StdRng) -> u32 {
    match rng.random_range(0..6) {
        0 => 0,
        1 => 1,
        2 => 3,
        3 => u32::MAX,
        4 => 1_000_001,
        _ => rng.random(),
    }
}

fn name(rng: &mut StdRng) -> String {
    match rng.random_range(0..4) {
        0 => String::new(),
        1 => "x".repeat(100 * 1024),
        2 => "upstream \"quoted\" \n newline".to_owned(),
        _ => "default".to_owned(),
    }
}

fn jitter(rng: &mut StdRng) -> Jitter {
    [
        Jitter::None,
        Jitter::Full,
        Jitter::Equal,
        Jitter::Decorrelated,
    ][rng.random_range(0..4)]
}

fn backoff(rng: &mut StdRng) -> BackoffBuilder {
    let mut b = match rng.random_range(0..4) {
        0 => Backoff::constant(duration(rng)),
        1 => Backoff::linear(duration(rng), duration(rng)),
        2 => Backoff::exponential(duration(rng)),
        _ => BackoffBuilder::new(),
    };
    if rng.random_bool(0.5) {
        b = b.factor(float(rng));
    }
    if rng.random_bool(0.5) {
        b = b.max_delay(duration(rng));
    }
    if rng.random_bool(0.5) {
        b = b.jitter(jitter(rng));
    }
    if rng.random_bool(0.5) {
        b = b.seed(rng.random());
    }
    b
}

#[derive(Debug, Clone, PartialEq)]
enum E {
    Transient,
    Permanent,
    Busy(Duration),
}

impl std::fmt::Display for E {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

/// One case: returns `(built, rejected)` counts for the builders it tried.
fn case(rng: &mut StdRng) -> (u32, u32) {
    let (mut built, mut rejected) = (0, 0);
    let mut check = |r: Result<(), seawall_retry::ConfigError>| match r {
        Ok(()) => built += 1,
        Err(e) => {
            assert!(!e.field().is_empty() && !e.reason().is_empty(), "{e:?}");
            assert!(
                e.to_string()
                    .starts_with(&format!("invalid `{}`: ", e.field()))
            );
            rejected += 1;
        }
    };

    // BackoffBuilder: build, then draw delays (none above the cap).
    let b = backoff(rng);
    check(b.build().map(|it| {
        let cap = it.max_delay();
        for d in it.take(64) {
            assert!(d <= cap, "{d:?} above {cap:?}");
        }
    }));

    // RetryBudgetBuilder: build, then deposit and withdraw on paused time.
    let budget = RetryBudget::builder()
        .ratio(float(rng))
        .min_per_second(count(rng))
        .max_tokens(count(rng))
        .build();
    let budget = match budget {
        Ok(budget) => {
            check(Ok(()));
            for _ in 0..rng.random_range(0..50) {
                budget.deposit();
                let _ = budget.try_withdraw();
            }
            assert!(budget.tokens().is_finite() && budget.tokens() >= 0.0);
            Some(budget)
        }
        Err(e) => {
            check(Err(e));
            None
        }
    };

    // RetryPolicyBuilder: every setter, then retried calls.
    let mut p = RetryPolicy::builder()
        .name(name(rng))
        .max_attempts(count(rng))
        .backoff(backoff(rng));
    if rng.random_bool(0.3) {
        p = p.constant(Duration::ZERO);
    }
    if rng.random_bool(0.3) {
        p = p.factor(float(rng));
    }
    if rng.random_bool(0.3) {
        p = p.max_delay(duration(rng));
    }
    if rng.random_bool(0.5) {
        p = p.max_hint(duration(rng));
    }
    if rng.random_bool(0.3) {
        p = p.jitter(jitter(rng)).seed(rng.random());
    }
    let timed = rng.random_bool(0.4);
    if timed {
        p = p.attempt_timeout(duration(rng));
    }
    if rng.random_bool(0.4) {
        p = p.max_elapsed(duration(rng));
    }
    if let Some(budget) = budget.filter(|_| rng.random_bool(0.5)) {
        p = p.budget(budget);
    }
    if rng.random_bool(0.2) {
        p = p.metrics(seawall_retry::Metrics::register(&mut Default::default()));
    }
    let policy = match p.build() {
        Ok(policy) => {
            check(Ok(()));
            policy
        }
        Err(e) => {
            check(Err(e));
            return (built, rejected);
        }
    };
    // A script of at most 4 failures (so u32::MAX attempts ends), some hanging (only under an
    // attempt timeout: a paused runtime with nothing to wake it would park for good), some
    // hinted with huge hints, then a success.
    let script: Vec<Option<E>> = (0..rng.random_range(0..5))
        .map(|_| match rng.random_range(0..5) {
            0 if timed => None,
            1 => Some(E::Permanent),
            2 => Some(E::Busy(duration(rng))),
            _ => Some(E::Transient),
        })
        .collect();
    if std::env::var_os("CONFIG_FUZZ_TRACE").is_some() {
        eprintln!("  timed {timed} script {script:?}");
        eprintln!(
            "  {:.300}",
            format!("{policy:?}").replace(&"x".repeat(1000), "")
        );
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let result = rt.block_on(async {
        let mut i = 0;
        policy
            .retry(|| {
                let step = script.get(i).cloned();
                i += 1;
                async move {
                    match step {
                        None => Ok(i),
                        Some(None) => std::future::pending().await,
                        Some(Some(e)) => Err(e),
                    }
                }
            })
            .retry_if(|e| *e != E::Permanent)
            .retry_after(|e| match e {
                E::Busy(d) => Some(*d),
                _ => None,
            })
            .notify(|_, _, _| {})
            .await
    });
    if let Err(e) = &result {
        assert!(e.attempts() >= 1 && e.attempts() <= policy.max_attempts());
        let _ = e.to_string();
        if let RetryError::HintBeyondDeadline { last, .. } = e {
            assert!(matches!(last.error(), Some(E::Busy(_))));
        }
    }
    // The blocking form, where it cannot sleep for long: an immediate success.
    assert_eq!(policy.retry_blocking(|| Ok::<_, E>(7)).run(), Ok(7));
    assert!(matches!(result, Ok(n) if n == script.len() + 1) || result.is_err());
    (built, rejected)
}

#[test]
fn random_builder_inputs_never_panic() {
    let mut rng = StdRng::seed_from_u64(SEED);
    let (mut built, mut rejected, mut panics) = (0, 0, Vec::new());
    for n in 0..CASES {
        let case_seed: u64 = rng.random();
        let mut case_rng = StdRng::seed_from_u64(case_seed);
        if std::env::var_os("CONFIG_FUZZ_TRACE").is_some() {
            eprintln!("case {n} seed {case_seed}");
        }
        match catch_unwind(AssertUnwindSafe(|| case(&mut case_rng))) {
            Ok((b, r)) => {
                built += b;
                rejected += r;
            }
            Err(_) => panics.push((n, case_seed)),
        }
    }
    eprintln!(
        "config fuzz: {CASES} cases, {built} builds accepted, {rejected} rejected, {} panics",
        panics.len()
    );
    assert!(
        panics.is_empty(),
        "panicking cases (index, seed): {panics:?}"
    );
    // The generator reaches both sides of every bound.
    assert!(built > 1000 && rejected > 1000, "{built} / {rejected}");
}
