//! The metric families appear in an encoded registry with the right values.

use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;
use seawall_circuit_breaker::{CircuitBreaker, Metrics, Outcome};

fn encoded(registry: &Registry) -> Vec<String> {
    let mut text = String::new();
    encode(&mut text, registry).unwrap();
    text.lines()
        .filter(|l| l.starts_with("seawall_circuit_breaker_"))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(start_paused = true)]
async fn families_count_calls_states_and_transitions() {
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let audit = CircuitBreaker::builder()
        .name("audit")
        .consecutive_failures(2)
        .metrics(metrics.clone())
        .build()
        .unwrap();
    // A second breaker on the same families is told apart by its label.
    let _other = CircuitBreaker::builder()
        .name("llm")
        .metrics(metrics)
        .build()
        .unwrap();

    audit.call(|| async { Ok::<_, ()>(()) }).await.unwrap();
    let _ = audit
        .call_with(|_: &Result<(), ()>| Outcome::Ignored, || async { Err(()) })
        .await;
    for _ in 0..2 {
        let _ = audit.call(|| async { Err::<(), _>(()) }).await;
    }
    for _ in 0..3 {
        audit.try_acquire().unwrap_err();
    }
    tokio::time::advance(Duration::from_secs(30)).await;
    drop(audit.try_acquire().unwrap()); // abandoned probe
    audit.try_acquire().unwrap().success();

    let lines = encoded(&registry);
    let has = |want: &str| {
        assert!(
            lines.iter().any(|l| l == want),
            "missing {want:?} in\n{}",
            lines.join("\n")
        );
    };
    has(r#"seawall_circuit_breaker_calls_total{breaker="audit",outcome="success"} 2"#);
    has(r#"seawall_circuit_breaker_calls_total{breaker="audit",outcome="failure"} 2"#);
    has(r#"seawall_circuit_breaker_calls_total{breaker="audit",outcome="ignored"} 1"#);
    has(r#"seawall_circuit_breaker_calls_total{breaker="audit",outcome="rejected"} 3"#);
    has(r#"seawall_circuit_breaker_calls_total{breaker="audit",outcome="abandoned"} 1"#);
    has(r#"seawall_circuit_breaker_calls_total{breaker="llm",outcome="success"} 0"#);
    has(r#"seawall_circuit_breaker_state{breaker="audit",state="closed"} 1"#);
    has(r#"seawall_circuit_breaker_state{breaker="audit",state="open"} 0"#);
    has(r#"seawall_circuit_breaker_state{breaker="audit",state="half_open"} 0"#);
    has(r#"seawall_circuit_breaker_state{breaker="audit",state="forced_open"} 0"#);
    has(r#"seawall_circuit_breaker_state{breaker="audit",state="disabled"} 0"#);
    has(r#"seawall_circuit_breaker_state{breaker="llm",state="closed"} 1"#);
    has(r#"seawall_circuit_breaker_transitions_total{breaker="audit",from="closed",to="open"} 1"#);
    has(
        r#"seawall_circuit_breaker_transitions_total{breaker="audit",from="open",to="half_open"} 1"#,
    );
    has(
        r#"seawall_circuit_breaker_transitions_total{breaker="audit",from="half_open",to="closed"} 1"#,
    );
    let transition_series = lines
        .iter()
        .filter(|l| l.starts_with("seawall_circuit_breaker_transitions_total{"))
        .count();
    assert_eq!(transition_series, 3);

    audit.force_open();
    let lines = encoded(&registry);
    assert!(lines.contains(
        &r#"seawall_circuit_breaker_state{breaker="audit",state="forced_open"} 1"#.to_owned()
    ));
    assert!(lines.contains(
        &r#"seawall_circuit_breaker_state{breaker="audit",state="closed"} 0"#.to_owned()
    ));
}
