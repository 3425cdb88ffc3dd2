//! `seawall-retry` demo: a flaky upstream, retried with exponential backoff and jitter, first
//! alone and then during an outage with and without a shared retry budget.
//!
//! Run with `cargo run -p seawall-examples --bin retry`. Every duration is the production value
//! divided by 100 (a 10 ms backoff instead of 1 s, a 50 ms attempt timeout instead of 5 s, ...),
//! so the whole demo runs in real time and finishes well within a second.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use seawall_retry::{AttemptError, Jitter, RetryBudget, RetryError, RetryPolicy};
use tokio::time::Instant;

/// What the flaky upstream fails with.
#[derive(Debug, Clone, PartialEq)]
enum UpstreamError {
    /// Connection reset: worth retrying.
    Reset,
    /// 429 with a Retry-After: worth retrying, not before the hint.
    TooBusy { retry_after: Duration },
    /// 400: retrying will not help.
    BadRequest,
}

impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Reset => f.write_str("connection reset"),
            Self::TooBusy { retry_after } => {
                write!(f, "429 too busy (retry after {retry_after:?})")
            }
            Self::BadRequest => f.write_str("400 bad request"),
        }
    }
}

/// 400 is permanent; everything else is worth retrying (the per-call `retry_if`).
fn is_transient(e: &UpstreamError) -> bool {
    *e != UpstreamError::BadRequest
}

/// The 429's Retry-After (the per-call `retry_after`).
fn hint(e: &UpstreamError) -> Option<Duration> {
    match e {
        UpstreamError::TooBusy { retry_after } => Some(*retry_after),
        _ => None,
    }
}

fn policy(budget: Option<RetryBudget>) -> RetryPolicy {
    let mut b = RetryPolicy::builder()
        .name("upstream")
        .max_attempts(4)
        .exponential(Duration::from_millis(10))
        .max_delay(Duration::from_millis(200))
        .jitter(Jitter::Equal)
        .seed(7) // reproducible output; leave unset in production
        .attempt_timeout(Duration::from_millis(50))
        .max_elapsed(Duration::from_millis(300))
        .max_hint(Duration::from_secs(3));
    if let Some(budget) = budget {
        b = b.budget(budget);
    }
    b.build().expect("valid policy")
}

fn describe(r: &Result<&'static str, RetryError<UpstreamError>>) -> String {
    match r {
        Ok(v) => format!("ok: {v}"),
        Err(e) => format!("{} — {e}", e.reason()),
    }
}

/// Runs one call against a scripted upstream: attempt `i` behaves as `script[i]`.
async fn scripted(title: &str, script: Vec<Option<Result<&'static str, UpstreamError>>>) {
    let start = Instant::now();
    println!("\n{title}");
    let policy = policy(None);
    let script = Arc::new(script);
    let n = AtomicU32::new(0);
    let result = policy
        .retry(|| {
            let i = n.fetch_add(1, Ordering::Relaxed) as usize;
            let step = script
                .get(i)
                .cloned()
                .unwrap_or(Some(Err(UpstreamError::Reset)));
            async move {
                println!(
                    "  [{:>7.3}s] attempt {}",
                    start.elapsed().as_secs_f64(),
                    i + 1
                );
                match step {
                    Some(r) => r,
                    // Hangs: the 50 ms attempt timeout cuts it off.
                    None => std::future::pending().await,
                }
            }
        })
        .retry_if(is_transient)
        .retry_after(hint)
        .notify(|attempt, err: &AttemptError<UpstreamError>, delay| {
            println!(
                "  [{:>7.3}s] attempt {attempt} failed: {err}; retrying in {delay:?}",
                start.elapsed().as_secs_f64()
            );
        })
        .await;
    println!(
        "  [{:>7.3}s] outcome: {}",
        start.elapsed().as_secs_f64(),
        describe(&result)
    );
}

/// `callers` concurrent calls while the upstream is down; returns (attempts, calls by reason).
async fn outage(budget: Option<RetryBudget>, callers: u32) -> (u32, Vec<(&'static str, u32)>) {
    let policy = policy(budget);
    let attempts = Arc::new(AtomicU32::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..callers {
        let policy = policy.clone();
        let attempts = attempts.clone();
        tasks.spawn(async move {
            policy
                .retry(|| {
                    attempts.fetch_add(1, Ordering::Relaxed);
                    async { Err::<&'static str, _>(UpstreamError::Reset) }
                })
                .retry_if(is_transient)
                .retry_after(hint)
                .await
        });
    }
    let mut reasons: Vec<(&'static str, u32)> = Vec::new();
    while let Some(r) = tasks.join_next().await {
        let reason = match r.expect("task") {
            Ok(_) => "ok",
            Err(e) => e.reason(),
        };
        match reasons.iter_mut().find(|(k, _)| *k == reason) {
            Some((_, n)) => *n += 1,
            None => reasons.push((reason, 1)),
        }
    }
    (attempts.load(Ordering::Relaxed), reasons)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let wall = std::time::Instant::now();
    println!("seawall-retry demo (durations are production values / 100, in real time)");
    println!("policy: 4 attempts, exponential 10 ms x2 with equal jitter, max delay 200 ms,");
    println!("        50 ms attempt timeout, 300 ms deadline, 400 permanent, 429 hint honoured");
    println!("        (up to 3 s; a hint that would end past the deadline stops the call)");

    scripted(
        "1. Flaky, then fine:",
        vec![
            Some(Err(UpstreamError::Reset)),
            Some(Err(UpstreamError::Reset)),
            Some(Ok("reply")),
        ],
    )
    .await;
    scripted(
        "2. Hangs once, then answers 429 with Retry-After 150 ms, then fine:",
        vec![
            None,
            Some(Err(UpstreamError::TooBusy {
                retry_after: Duration::from_millis(150),
            })),
            Some(Ok("reply")),
        ],
    )
    .await;
    scripted(
        "3. Bad request: permanent, no retry:",
        vec![Some(Err(UpstreamError::BadRequest))],
    )
    .await;
    scripted(
        "4. Down for good: gives up after 4 attempts, no sleep after the last:",
        vec![],
    )
    .await;
    scripted(
        "5. Hangs twice, then 429 asking for 500 ms: the hint would end past the 300 ms deadline, so it stops now:",
        vec![
            None,
            None,
            Some(Err(UpstreamError::TooBusy {
                retry_after: Duration::from_millis(500),
            })),
        ],
    )
    .await;

    let callers = 500;
    println!("\n6. Outage: {callers} concurrent callers, upstream down, every attempt fails.");
    let (attempts, reasons) = outage(None, callers).await;
    println!(
        "   without a budget: {attempts} attempts for {callers} calls ({} retries, {:.0}% extra load) {reasons:?}",
        attempts - callers,
        f64::from(attempts - callers) * 100.0 / f64::from(callers)
    );
    let budget = RetryBudget::default();
    let (attempts, reasons) = outage(Some(budget.clone()), callers).await;
    println!(
        "   with RetryBudget::default() (20 % of calls + 10/s): {attempts} attempts ({} retries, {:.0}% extra load) {reasons:?}",
        attempts - callers,
        f64::from(attempts - callers) * 100.0 / f64::from(callers)
    );
    println!("   budget tokens left: {:.1}", budget.tokens());
    println!("\nwall time: {:?}", wall.elapsed());
}
