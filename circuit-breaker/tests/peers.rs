//! Scenarios from the peers' test suites, translated to this API, on paused tokio time.
//!
//! Each test names where it came from: resilience4j's `CircuitBreakerStateMachineTest` and
//! sliding-window tests (`resilience4j-circuitbreaker`), Polly's `AdvancedCircuitBreakerSpecs`
//! (`test/Polly.Specs/CircuitBreaker`). Where our semantics differ on purpose (any failed
//! probe reopens, instead of a failure rate over the probes), the test says so.

use std::time::Duration;

use seawall_circuit_breaker::{CircuitBreaker, Error, Reason, State, Window};
use tokio::time::advance;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

async fn fail(b: &CircuitBreaker) {
    assert_eq!(
        b.call(|| async { Err::<(), _>("down") }).await,
        Err(Error::Inner("down"))
    );
}

async fn succeed(b: &CircuitBreaker) {
    assert_eq!(b.call(|| async { Ok::<_, &str>(()) }).await, Ok(()));
}

async fn slow(b: &CircuitBreaker, d: Duration) {
    b.call(|| async move {
        tokio::time::sleep(d).await;
        Ok::<_, &str>(())
    })
    .await
    .unwrap();
}

/// resilience4j: count-based window of 5, failure-rate threshold 50 %, minimum calls 5;
/// F, F, F, S, S: the fifth call (a success) fills the window at 60 % and opens it.
#[tokio::test(start_paused = true)]
async fn r4j_count_window_opens_when_a_success_fills_it() {
    let b = CircuitBreaker::builder()
        .failure_rate(0.5, Window::count(5))
        .build()
        .unwrap();
    let mut rx = b.subscribe();
    for _ in 0..3 {
        fail(&b).await;
    }
    succeed(&b).await;
    assert_eq!(b.state(), State::Closed);
    succeed(&b).await;
    assert_eq!(b.state(), State::Open);
    assert_eq!(
        rx.try_recv().unwrap().reason,
        Reason::FailureRate {
            rate: 0.6,
            calls: 5
        }
    );
}

/// resilience4j: slow-call rate threshold 50 % over a count window of 10; five slow calls
/// then five fast ones: the tenth (fast) call fills the window at 50 % slow and opens it.
#[tokio::test(start_paused = true)]
async fn r4j_slow_calls_then_fast_ones_open_when_the_window_fills() {
    let b = CircuitBreaker::builder()
        .slow_call_rate(secs(1), 0.5, Window::count(10))
        .build()
        .unwrap();
    for _ in 0..5 {
        slow(&b, secs(2)).await;
    }
    for _ in 0..4 {
        succeed(&b).await;
    }
    assert_eq!(b.state(), State::Closed);
    succeed(&b).await;
    assert_eq!(b.state(), State::Open);
}

/// resilience4j: the minimum number of calls below the window size (window 10, minimum 5):
/// four failures keep it closed, the fifth opens it.
#[tokio::test(start_paused = true)]
async fn r4j_minimum_number_of_calls() {
    let b = CircuitBreaker::builder()
        .failure_rate(0.5, Window::count(10).min_calls(5))
        .build()
        .unwrap();
    for _ in 0..4 {
        fail(&b).await;
    }
    assert_eq!(b.state(), State::Closed);
    fail(&b).await;
    assert_eq!(b.state(), State::Open);
}

/// resilience4j, time-based window: failures that fill the window to its minimum on a
/// success open it (the rate is evaluated when the minimum is reached, not on the next
/// failure).
#[tokio::test(start_paused = true)]
async fn r4j_time_window_reaching_min_calls_on_a_success() {
    let b = CircuitBreaker::builder()
        .failure_rate(0.5, Window::time(secs(10), 10).min_calls(4))
        .build()
        .unwrap();
    fail(&b).await;
    fail(&b).await;
    fail(&b).await;
    assert_eq!(b.state(), State::Closed);
    succeed(&b).await; // 4 calls, 75 %
    assert_eq!(b.state(), State::Open);
}

/// Polly `AdvancedCircuitBreaker` (threshold 0.5, sampling 10 s, minimum throughput 4):
/// "failure threshold equalled and throughput threshold equalled within timeslice in same
/// window": S, S, F, F opens on the fourth call.
#[tokio::test(start_paused = true)]
async fn polly_threshold_equalled_in_one_window() {
    let b = CircuitBreaker::builder()
        .failure_rate(0.5, Window::time(secs(10), 10).min_calls(4))
        .build()
        .unwrap();
    succeed(&b).await;
    succeed(&b).await;
    fail(&b).await;
    assert_eq!(b.state(), State::Closed);
    fail(&b).await;
    assert_eq!(b.state(), State::Open);
}

/// Polly: "... in different windows": F, F, F, then 6 s later a fourth failure in a later
/// bucket of the same sampling duration opens it.
#[tokio::test(start_paused = true)]
async fn polly_threshold_reached_across_buckets() {
    let b = CircuitBreaker::builder()
        .failure_rate(0.5, Window::time(secs(10), 10).min_calls(4))
        .build()
        .unwrap();
    for _ in 0..3 {
        fail(&b).await;
    }
    advance(secs(6)).await;
    assert_eq!(b.state(), State::Closed);
    fail(&b).await;
    assert_eq!(b.state(), State::Open);
}

/// Polly: "throughput threshold not met before timeslice expires": S, S, F, then after the
/// sampling duration a failure: the first three have left the window, so it stays closed.
#[tokio::test(start_paused = true)]
async fn polly_throughput_not_met_before_the_timeslice_expires() {
    let b = CircuitBreaker::builder()
        .failure_rate(0.5, Window::time(secs(10), 10).min_calls(4))
        .build()
        .unwrap();
    succeed(&b).await;
    succeed(&b).await;
    fail(&b).await;
    advance(secs(10)).await;
    fail(&b).await;
    assert_eq!(b.state(), State::Closed);
}
