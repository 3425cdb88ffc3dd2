//! Invalid configurations are rejected by `build`, naming the field.

use std::time::Duration;

use seawall_circuit_breaker::{CircuitBreaker, Window};

fn field(b: seawall_circuit_breaker::Builder) -> &'static str {
    b.build().unwrap_err().field()
}

#[test]
fn each_invalid_field_is_named() {
    let b = CircuitBreaker::builder;
    assert_eq!(field(b().probes(0)), "probes");
    assert_eq!(field(b().successes_to_close(0)), "successes_to_close");
    assert_eq!(field(b().consecutive_failures(0)), "consecutive_failures");
    for bad in [0.0, -0.5, 1.5, f64::NAN] {
        assert_eq!(
            field(b().failure_rate(bad, Window::count(10))),
            "failure_rate.threshold"
        );
    }
    assert_eq!(
        field(b().failure_rate(0.5, Window::count(0))),
        "failure_rate.window"
    );
    assert_eq!(
        field(b().failure_rate(0.5, Window::count(10).min_calls(20))),
        "failure_rate.window"
    );
    assert_eq!(
        field(b().failure_rate(0.5, Window::time(Duration::ZERO, 10))),
        "failure_rate.window"
    );
    assert_eq!(
        field(b().failure_rate(0.5, Window::time(Duration::from_secs(30), 0))),
        "failure_rate.window"
    );
    assert_eq!(
        field(b().slow_call_rate(Duration::from_secs(1), 0.0, Window::count(5))),
        "slow_call_rate.rate"
    );
    assert_eq!(
        field(b().slow_call_rate(Duration::ZERO, 0.5, Window::count(5))),
        "slow_call_rate.threshold"
    );
    assert_eq!(
        field(b().slow_call_rate(Duration::from_secs(1), 0.5, Window::count(2).min_calls(3))),
        "slow_call_rate.window"
    );
    assert_eq!(
        field(b().slow_calls_as_failures(Duration::ZERO)),
        "slow_calls_as_failures"
    );
    assert_eq!(
        field(b().open_durations(Vec::<Duration>::new())),
        "open_durations"
    );
    assert_eq!(field(b().jitter(1.5)), "jitter");
    assert_eq!(field(b().jitter(-0.1)), "jitter");

    let e = b().probes(0).build().unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid circuit breaker config: `probes` must be at least 1"
    );
}

#[test]
fn edge_values_are_accepted() {
    let b = CircuitBreaker::builder;
    assert!(b().failure_rate(1.0, Window::count(1)).build().is_ok());
    assert!(b().jitter(1.0).jitter(0.0).build().is_ok());
    assert!(b().open_duration(Duration::ZERO).build().is_ok());
    assert!(
        b().failure_rate(
            0.01,
            Window::time(Duration::from_secs(30), 10).min_calls(1000)
        )
        .build()
        .is_ok()
    );
}
