//! The metric families, as an encoded registry shows them.

use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;
use seawall_retry::{Metrics, RetryBudget, RetryPolicy};

#[derive(Debug, PartialEq)]
enum E {
    Transient,
    Permanent,
}

#[tokio::test(start_paused = true)]
async fn families_count_attempts_and_calls_by_outcome() {
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let a = RetryPolicy::builder()
        .name("a")
        .constant(Duration::from_millis(10))
        .attempt_timeout(Duration::from_secs(1))
        .max_elapsed(Duration::from_secs(5))
        .metrics(metrics.clone())
        .build()
        .unwrap();

    // Every call through `a` classifies the same way.
    macro_rules! hooked {
        ($fut:expr) => {
            $fut.retry_if(|e: &E| *e == E::Transient)
                .retry_after(|_| Some(Duration::from_secs(3)))
        };
    }
    // first_try
    assert_eq!(hooked!(a.retry(|| async { Ok::<_, E>(1) })).await, Ok(1));
    // timeout, then success after retry (hint 3 s does not apply to timeouts)
    let mut n = 0;
    let r = hooked!(a.retry(|| {
        n += 1;
        let hang = n == 1;
        async move {
            if hang {
                std::future::pending::<()>().await;
            }
            Ok::<_, E>(2)
        }
    }))
    .await;
    assert_eq!(r, Ok(2));
    // permanent
    assert!(
        hooked!(a.retry(|| async { Err::<(), _>(E::Permanent) }))
            .await
            .is_err()
    );
    // transient, hint 3 s, transient, then the next hinted 3 s would overrun 5 s
    let err = hooked!(a.retry(|| async { Err::<(), _>(E::Transient) }))
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "hint_beyond_deadline");

    let b = RetryPolicy::builder()
        .name("b")
        .constant(Duration::ZERO)
        .budget(
            RetryBudget::builder()
                .ratio(0.5)
                .min_per_second(0)
                .build()
                .unwrap(),
        )
        .metrics(metrics.clone())
        .build()
        .unwrap();
    // deposit 0.5: first retry refused
    assert_eq!(
        b.retry(|| async { Err::<(), _>(E::Transient) })
            .await
            .unwrap_err()
            .reason(),
        "budget"
    );
    // deposit 0.5 (balance 1): one retry, then refused
    assert_eq!(
        b.retry(|| async { Err::<(), _>(E::Transient) })
            .await
            .unwrap_err()
            .attempts(),
        2
    );
    let c = RetryPolicy::builder()
        .name("c")
        .max_attempts(2)
        .constant(Duration::ZERO)
        .metrics(metrics)
        .build()
        .unwrap();
    assert_eq!(
        c.retry(|| async { Err::<(), _>(E::Transient) })
            .await
            .unwrap_err()
            .reason(),
        "exhausted"
    );

    let mut text = String::new();
    encode(&mut text, &registry).unwrap();
    let expect = [
        r#"seawall_retry_attempts_total{policy="a",outcome="success"} 2"#,
        r#"seawall_retry_attempts_total{policy="a",outcome="timeout"} 1"#,
        r#"seawall_retry_attempts_total{policy="a",outcome="permanent"} 1"#,
        r#"seawall_retry_attempts_total{policy="a",outcome="transient"} 2"#,
        r#"seawall_retry_calls_total{policy="a",result="first_try"} 1"#,
        r#"seawall_retry_calls_total{policy="a",result="after_retry"} 1"#,
        r#"seawall_retry_calls_total{policy="a",result="permanent"} 1"#,
        r#"seawall_retry_calls_total{policy="a",result="deadline"} 0"#,
        r#"seawall_retry_calls_total{policy="a",result="hint_beyond_deadline"} 1"#,
        r#"seawall_retry_calls_total{policy="a",result="exhausted"} 0"#,
        r#"seawall_retry_attempts_total{policy="b",outcome="transient"} 3"#,
        r#"seawall_retry_calls_total{policy="b",result="budget"} 2"#,
        r#"seawall_retry_budget_tokens{policy="b"} 0.0"#,
        r#"seawall_retry_attempts_total{policy="c",outcome="transient"} 2"#,
        r#"seawall_retry_calls_total{policy="c",result="exhausted"} 1"#,
        "# TYPE seawall_retry_attempts counter",
        "# TYPE seawall_retry_calls counter",
        "# TYPE seawall_retry_budget_tokens gauge",
    ];
    for line in expect {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    assert!(
        !text.contains(r#"seawall_retry_budget_tokens{policy="a"}"#),
        "no budget gauge without a budget"
    );
}
