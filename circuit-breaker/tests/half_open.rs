//! Never stuck half-open, and a state that does not lag: the maximum probe duration, and
//! `state()`, `subscribe` and the state gauge moving with time when no call comes.

use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;
use seawall_circuit_breaker::{CircuitBreaker, Error, Metrics, Reason, State, Transition};
use tokio::sync::broadcast;
use tokio::time::{Instant, advance};

const S30: Duration = Duration::from_secs(30);

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn drain(rx: &mut broadcast::Receiver<Transition>) -> Vec<Transition> {
    std::iter::from_fn(|| rx.try_recv().ok()).collect()
}

fn tripped() -> CircuitBreaker {
    let b = CircuitBreaker::builder()
        .consecutive_failures(1)
        .build()
        .unwrap();
    b.try_acquire().unwrap().failure();
    b
}

/// A probe that is alive but never reports (no caller timeout) counts as failed after the
/// default maximum probe duration, 30 s: the breaker reopens as of that moment and the next
/// half-open period lets a new probe through. Before the fix it stayed half-open forever.
#[tokio::test(start_paused = true)]
async fn a_hung_probe_counts_as_failed_after_the_default_30s() {
    let b = tripped();
    let mut rx = b.subscribe();
    advance(S30).await;
    let probe_at = Instant::now();
    let mut hung = Box::pin(b.call(std::future::pending::<Result<(), &str>>));
    assert!(futures::poll!(hung.as_mut()).is_pending());
    assert_eq!(b.try_acquire().unwrap_err().state, State::HalfOpen);

    advance(S30 - Duration::from_millis(1)).await;
    assert_eq!(b.state(), State::HalfOpen);
    advance(Duration::from_millis(1)).await;
    // No call came: state() alone sees the probe time out.
    assert_eq!(b.state(), State::Open);
    let ts = drain(&mut rx);
    assert_eq!(ts.len(), 2, "{ts:?}");
    assert_eq!(ts[0].reason, Reason::OpenElapsed { open_for: S30 });
    assert_eq!((ts[1].from, ts[1].to), (State::HalfOpen, State::Open));
    assert_eq!(ts[1].reason, Reason::ProbeTimedOut { after: S30 });
    assert_eq!(ts[1].at, probe_at + S30);
    assert_eq!(ts[1].open_for, Some(S30));
    assert_eq!(
        b.call(|| async { Ok::<_, &str>(()) }).await,
        Err(Error::Open { retry_after: S30 })
    );

    // Its slot is free: after the next open duration a new probe passes and closes it,
    // while the hung call is still pending.
    advance(S30).await;
    b.call(|| async { Ok::<_, &str>(()) }).await.unwrap();
    assert_eq!(b.state(), State::Closed);
    assert!(futures::poll!(hung.as_mut()).is_pending());
    drop(hung); // abandoned late: changes nothing
    assert_eq!(b.state(), State::Closed);
}

/// A verdict that arrives after the probe's deadline is too late, whether or not anything
/// looked at the breaker in between: the state is a function of time, not of observation.
#[tokio::test(start_paused = true)]
async fn a_late_verdict_is_ignored_even_unobserved() {
    let b = CircuitBreaker::builder()
        .consecutive_failures(1)
        .max_probe_duration(secs(5))
        .build()
        .unwrap();
    b.try_acquire().unwrap().failure();
    advance(S30).await;
    let probe = b.try_acquire().unwrap();
    assert!(probe.is_probe());
    advance(secs(10)).await;
    probe.success();
    assert_eq!(b.state(), State::Open);
    // Reopened at the deadline, 5 s ago, so 25 s are left.
    assert_eq!(b.try_acquire().unwrap_err().retry_after, secs(25));
}

/// A verdict just before the deadline counts as usual.
#[tokio::test(start_paused = true)]
async fn a_verdict_before_the_deadline_counts() {
    let b = CircuitBreaker::builder()
        .consecutive_failures(1)
        .max_probe_duration(secs(5))
        .build()
        .unwrap();
    b.try_acquire().unwrap().failure();
    advance(S30).await;
    let probe = b.try_acquire().unwrap();
    advance(secs(5) - Duration::from_nanos(1)).await;
    probe.success();
    assert_eq!(b.state(), State::Closed);
}

/// With several probes, one hung probe reopens the breaker (as a failed probe would); the
/// other probe's later verdict belongs to a finished period and changes nothing.
#[tokio::test(start_paused = true)]
async fn one_hung_probe_among_several() {
    let b = CircuitBreaker::builder()
        .consecutive_failures(1)
        .probes(2)
        .successes_to_close(2)
        .open_duration(secs(10))
        .max_probe_duration(secs(3))
        .build()
        .unwrap();
    b.try_acquire().unwrap().failure();
    advance(secs(10)).await;
    let hung = b.try_acquire().unwrap();
    advance(secs(1)).await;
    let quick = b.try_acquire().unwrap();
    advance(secs(2)).await; // hung's deadline
    assert_eq!(b.state(), State::Open);
    quick.success();
    assert_eq!(b.state(), State::Open);
    drop(hung);
    advance(secs(10)).await;
    // Both slots are free again.
    let p1 = b.try_acquire().unwrap();
    let p2 = b.try_acquire().unwrap();
    p1.success();
    p2.success();
    assert_eq!(b.state(), State::Closed);
}

/// Polly's "should allow single execution per break duration in half-open state", with the
/// maximum probe duration set to the break duration: a probe that never completes lets a
/// new one through after another break duration (here: it reopens, then half-opens).
#[tokio::test(start_paused = true)]
async fn polly_single_execution_per_break_duration() {
    let b = CircuitBreaker::builder()
        .consecutive_failures(1)
        .open_duration(secs(30))
        .max_probe_duration(secs(30))
        .build()
        .unwrap();
    b.try_acquire().unwrap().failure();
    advance(secs(30)).await;
    let _hung = b.try_acquire().unwrap();
    assert!(b.try_acquire().is_err());
    advance(secs(60)).await;
    let next = b
        .try_acquire()
        .expect("a new probe after the hung one timed out");
    assert!(next.is_probe());
}

/// resilience4j's `maxWaitDurationInHalfOpenState` test, translated: a half-open breaker
/// whose probe never reports moves to open by itself once the wait has passed, and
/// `state()` says so without a call.
#[tokio::test(start_paused = true)]
async fn r4j_max_wait_in_half_open_moves_to_open() {
    let b = CircuitBreaker::builder()
        .consecutive_failures(1)
        .open_duration(secs(5))
        .max_probe_duration(secs(1))
        .build()
        .unwrap();
    b.try_acquire().unwrap().failure();
    advance(secs(5)).await;
    let _probe = b.try_acquire().unwrap();
    assert_eq!(b.state(), State::HalfOpen);
    advance(secs(1)).await;
    assert_eq!(b.state(), State::Open);
}

/// `state()` reports half-open once the open duration has passed, without a call, and the
/// transition is emitted then, dated to when it became due.
#[tokio::test(start_paused = true)]
async fn state_and_subscribe_follow_time_without_calls() {
    let b = tripped();
    let opened = Instant::now();
    let mut rx = b.subscribe();
    advance(secs(45)).await;
    assert_eq!(b.state(), State::HalfOpen);
    let ts = drain(&mut rx);
    assert_eq!(ts.len(), 1);
    assert_eq!((ts[0].from, ts[0].to), (State::Open, State::HalfOpen));
    assert_eq!(ts[0].at, opened + S30);
}

fn lines(registry: &Registry) -> Vec<String> {
    let mut text = String::new();
    encode(&mut text, registry).unwrap();
    text.lines().map(str::to_owned).collect()
}

/// The state gauge is computed at scrape time: it reads half_open once the open duration
/// has passed although no call came, and open again when the probe hangs.
#[tokio::test(start_paused = true)]
async fn the_state_gauge_is_computed_at_scrape_time() {
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let b = CircuitBreaker::builder()
        .name("llm")
        .consecutive_failures(1)
        .metrics(metrics)
        .build()
        .unwrap();
    let mut rx = b.subscribe();
    b.try_acquire().unwrap().failure();
    let has = |lines: &[String], want: &str| {
        assert!(
            lines.iter().any(|l| l == want),
            "missing {want:?} in\n{}",
            lines.join("\n")
        );
    };
    let l = lines(&registry);
    has(
        &l,
        r#"seawall_circuit_breaker_state{breaker="llm",state="open"} 1"#,
    );

    advance(S30).await;
    let l = lines(&registry);
    has(
        &l,
        r#"seawall_circuit_breaker_state{breaker="llm",state="open"} 0"#,
    );
    has(
        &l,
        r#"seawall_circuit_breaker_state{breaker="llm",state="half_open"} 1"#,
    );
    has(
        &l,
        r#"seawall_circuit_breaker_transitions_total{breaker="llm",from="open",to="half_open"} 1"#,
    );
    // The scrape emitted the transition.
    let ts = drain(&mut rx);
    assert_eq!(ts.last().map(|t| t.to), Some(State::HalfOpen));

    let probe = b.try_acquire().unwrap();
    advance(S30).await;
    let l = lines(&registry);
    has(
        &l,
        r#"seawall_circuit_breaker_state{breaker="llm",state="open"} 1"#,
    );
    has(
        &l,
        r#"seawall_circuit_breaker_transitions_total{breaker="llm",from="half_open",to="open"} 1"#,
    );
    drop(probe);

    // A dropped breaker is no longer refreshed, and scraping still works.
    drop(b);
    let _ = lines(&registry);
}
