//! The retry budget under a simulated outage with many concurrent callers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use seawall_retry::{RetryBudget, RetryError, RetryPolicy};

#[derive(Debug, Clone, Copy, PartialEq)]
struct Down;

struct Outcome {
    calls: u32,
    attempts: u32,
    budget_stops: u32,
    exhausted: u32,
}

/// `calls` concurrent callers against a dependency that is down, each allowed 4 attempts with no
/// delay, all sharing `budget` (but each with its own policy, as separate services would).
async fn outage(budget: RetryBudget, calls: u32) -> Outcome {
    let attempts = Arc::new(AtomicU32::new(0));
    let mut set = tokio::task::JoinSet::new();
    for i in 0..calls {
        let policy = RetryPolicy::builder()
            .name(format!("svc{}", i % 4))
            .max_attempts(4)
            .constant(Duration::ZERO)
            .budget(budget.clone())
            .build()
            .unwrap();
        let attempts = attempts.clone();
        set.spawn(async move {
            policy
                .retry(|| {
                    attempts.fetch_add(1, Ordering::Relaxed);
                    async {
                        tokio::task::yield_now().await;
                        Err::<(), _>(Down)
                    }
                })
                .await
        });
    }
    let mut out = Outcome {
        calls,
        attempts: 0,
        budget_stops: 0,
        exhausted: 0,
    };
    while let Some(r) = set.join_next().await {
        match r.unwrap() {
            Err(RetryError::Budget { .. }) => out.budget_stops += 1,
            Err(RetryError::Exhausted { attempts: 4, .. }) => out.exhausted += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    out.attempts = attempts.load(Ordering::Relaxed);
    out
}

#[tokio::test(start_paused = true)]
async fn outage_retries_stay_within_ratio_plus_floor() {
    let budget = RetryBudget::default(); // ratio 0.2, 10/s floor, starts empty
    let out = outage(budget.clone(), 400).await;
    let retries = out.attempts - out.calls;
    // No time passed (paused clock, zero delays): bound = 0.2 × calls + one second of floor.
    let bound = out.calls / 5 + 10;
    assert!(
        retries <= bound,
        "{retries} retries > bound {bound} (without a budget: 1200)"
    );
    // The budget was really spent, not just refused.
    assert!(
        retries >= bound - 4,
        "{retries} retries, expected close to {bound}"
    );
    assert_eq!(out.budget_stops + out.exhausted, out.calls);
    assert!(
        out.budget_stops >= out.calls - bound,
        "{} budget stops",
        out.budget_stops
    );
    assert!(budget.tokens() < 1.0);
}

#[tokio::test(start_paused = true)]
async fn floor_refills_with_time_during_a_long_outage() {
    let budget = RetryBudget::builder()
        .ratio(0.0)
        .min_per_second(10)
        .build()
        .unwrap();
    let first = outage(budget.clone(), 50).await;
    assert_eq!(
        first.attempts - first.calls,
        10,
        "a one-second burst of the floor"
    );
    tokio::time::advance(Duration::from_millis(500)).await;
    let second = outage(budget.clone(), 50).await;
    assert_eq!(second.attempts - second.calls, 5, "half a second refills 5");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_callers_on_many_threads_respect_the_bound() {
    let budget = RetryBudget::builder()
        .ratio(0.1)
        .min_per_second(5)
        .max_tokens(20)
        .build()
        .unwrap();
    // A healthy period first fills the bucket up to max_tokens.
    for _ in 0..1000 {
        budget.deposit();
    }
    assert_eq!(budget.tokens(), 20.0);
    let start = std::time::Instant::now();
    let out = outage(budget, 2000).await;
    let secs = start.elapsed().as_secs_f64();
    let retries = f64::from(out.attempts - out.calls);
    let bound = 20.0 + 0.1 * f64::from(out.calls) + 5.0 * (secs + 1.0);
    assert!(retries <= bound, "{retries} retries > bound {bound}");
    assert!(
        retries >= 200.0,
        "{retries} retries: the ratio tokens were not spent"
    );
}
