//! Invalid configurations are rejected by `build`, naming the setter and the allowed range.

use std::time::Duration;

use seawall_circuit_breaker::{
    CircuitBreaker, CircuitBreakerBuilder, SlowCalls, TripPolicy, Window,
};

fn err(b: CircuitBreakerBuilder) -> (&'static str, String) {
    let e = b.build().unwrap_err();
    (e.field(), e.reason().to_owned())
}

fn field(b: CircuitBreakerBuilder) -> &'static str {
    err(b).0
}

#[test]
fn each_invalid_setting_is_named_by_its_setter() {
    let b = CircuitBreaker::builder;
    assert_eq!(
        err(b().probes(0)),
        ("probes", "must be in 1..=10000, got 0".into())
    );
    assert_eq!(field(b().probes(10_001)), "probes");
    assert_eq!(field(b().successes_to_close(0)), "successes_to_close");
    assert_eq!(field(b().consecutive_failures(0)), "consecutive_failures");
    assert_eq!(
        field(b().trip_policy(TripPolicy::ConsecutiveFailures(0))),
        "trip_policy"
    );
    for bad in [0.0, -0.5, 1.5, f64::NAN, f64::INFINITY] {
        let (f, reason) = err(b().failure_rate(bad, Window::count(10)));
        assert_eq!(f, "failure_rate");
        assert!(
            reason.starts_with("threshold must be in (0, 1], got"),
            "{reason}"
        );
    }
    assert_eq!(
        err(b().failure_rate(0.5, Window::count(0))),
        (
            "failure_rate",
            "window calls must be in 1..=100000, got 0".into()
        )
    );
    assert_eq!(
        field(b().failure_rate(0.5, Window::count(10).min_calls(20))),
        "failure_rate"
    );
    assert_eq!(
        field(b().failure_rate(0.5, Window::time(Duration::ZERO, 10))),
        "failure_rate"
    );
    assert_eq!(
        field(b().failure_rate(0.5, Window::time(Duration::from_secs(30), 0))),
        "failure_rate"
    );
    assert_eq!(
        field(b().trip_policy(TripPolicy::FailureRate {
            threshold: 0.5,
            window: Window::count(u32::MAX)
        })),
        "trip_policy"
    );
    assert_eq!(
        field(b().slow_call_rate(Duration::from_secs(1), 0.0, Window::count(5))),
        "slow_call_rate"
    );
    assert_eq!(
        field(b().slow_call_rate(Duration::ZERO, 0.5, Window::count(5))),
        "slow_call_rate"
    );
    assert_eq!(
        field(b().slow_call_rate(Duration::from_secs(1), 0.5, Window::count(2).min_calls(3))),
        "slow_call_rate"
    );
    assert_eq!(
        field(b().slow_calls_as_failures(Duration::ZERO)),
        "slow_calls_as_failures"
    );
    assert_eq!(
        field(b().slow_calls(Some(SlowCalls::AsFailures {
            threshold: Duration::MAX
        }))),
        "slow_calls"
    );
    assert_eq!(
        field(b().open_durations(Vec::<Duration>::new())),
        "open_durations"
    );
    assert_eq!(
        err(b().open_duration(Duration::MAX)),
        (
            "open_duration",
            format!(
                "open duration must be in 0 s..=365 days, got {:?}",
                Duration::MAX
            )
        )
    );
    assert_eq!(field(b().jitter(1.5)), "jitter");
    assert_eq!(field(b().jitter(-0.1)), "jitter");
    assert_eq!(field(b().jitter(f64::NAN)), "jitter");
    assert_eq!(
        field(b().max_probe_duration(Duration::ZERO)),
        "max_probe_duration"
    );
    assert_eq!(
        field(b().max_probe_duration(Duration::MAX)),
        "max_probe_duration"
    );

    let e = b().probes(0).build().unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid `probes`: must be in 1..=10000, got 0"
    );
}

/// Issue 13 §2: these passed validation and then tried to allocate 64 GiB (time window) or
/// 4 GiB (count window) in `build`.
#[test]
fn huge_windows_are_rejected_not_allocated() {
    let b = CircuitBreaker::builder;
    let (f, reason) = err(b().failure_rate(0.5, Window::time(Duration::from_secs(1), u32::MAX)));
    assert_eq!(f, "failure_rate");
    assert_eq!(reason, "window buckets must be in 1..=1000, got 4294967295");
    let (f, reason) = err(b().slow_call_rate(Duration::from_secs(1), 0.5, Window::count(u32::MAX)));
    assert_eq!(f, "slow_call_rate");
    assert_eq!(reason, "window calls must be in 1..=100000, got 4294967295");
}

#[test]
fn edge_values_are_accepted() {
    let b = CircuitBreaker::builder;
    assert!(b().failure_rate(1.0, Window::count(1)).build().is_ok());
    assert!(
        b().failure_rate(1.0, Window::count(Window::MAX_CALLS))
            .build()
            .is_ok()
    );
    assert!(
        b().failure_rate(1.0, Window::time(Window::MAX_DURATION, Window::MAX_BUCKETS))
            .build()
            .is_ok()
    );
    assert!(b().jitter(1.0).jitter(0.0).build().is_ok());
    assert!(b().open_duration(Duration::ZERO).build().is_ok());
    assert!(
        b().open_duration(CircuitBreakerBuilder::MAX_DURATION)
            .jitter(1.0)
            .build()
            .is_ok()
    );
    assert!(
        b().probes(CircuitBreakerBuilder::MAX_PROBES)
            .build()
            .is_ok()
    );
    assert!(
        b().max_probe_duration(Duration::from_nanos(1))
            .build()
            .is_ok()
    );
    assert!(
        b().failure_rate(
            0.01,
            Window::time(Duration::from_secs(30), 10).min_calls(1000)
        )
        .build()
        .is_ok()
    );
}

/// Issue 13 §2: `open_duration(Duration::MAX)` with jitter panicked in `Duration::mul_f64`
/// during the trip, and the breaker stayed closed. Now the fixed duration is bounded by
/// `build`, and a sequence's huge durations are cut to 365 days: the trip works.
#[test]
fn huge_open_durations_with_jitter_trip_without_panicking() {
    let b = CircuitBreaker::builder()
        .consecutive_failures(1)
        .open_durations([Duration::MAX])
        .jitter(0.5)
        .seed(1)
        .build()
        .unwrap();
    let mut rx = b.subscribe();
    b.try_acquire().unwrap().failure();
    assert_eq!(b.state(), seawall_circuit_breaker::State::Open);
    let open_for = rx.try_recv().unwrap().open_for.unwrap();
    assert!(
        open_for <= CircuitBreakerBuilder::MAX_DURATION,
        "{open_for:?}"
    );
    assert!(b.try_acquire().unwrap_err().retry_after <= CircuitBreakerBuilder::MAX_DURATION);
}
