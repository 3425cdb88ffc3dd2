//! The metric families appear in an encoded registry with the right values.

use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;
use seawall_keyed_lock::{KeyedLock, Metrics};
use tokio::time::advance;

fn line<'a>(text: &'a str, prefix: &str) -> &'a str {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix} in\n{text}"))
}

#[tokio::test(start_paused = true)]
async fn families_count_grants_contention_timeouts_expiry_and_holders() {
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let locks = KeyedLock::<u64>::builder()
        .name("users")
        .ttl(Duration::from_secs(10))
        .metrics(metrics.clone())
        .build()
        .unwrap();
    let other = KeyedLock::<u64>::builder()
        .name("orders")
        .metrics(metrics)
        .build()
        .unwrap();

    let a = locks.lock(&1).await; // acquired 1, held 1
    let _b = other.lock(&1).await; // other lock's own series
    assert!(locks.try_lock(&1).is_err()); // contended 1
    assert!(
        locks
            .lock_timeout(&1, Duration::from_secs(1))
            .await
            .is_err()
    ); // contended 2, timeouts 1
    let l2 = locks.clone();
    let waiter = tokio::spawn(async move { l2.lock(&1).await });
    tokio::task::yield_now().await;
    advance(Duration::from_secs(2)).await;
    drop(a); // queued 2 s: acquired 2, contended 3, wait histogram 1 observation
    let c = waiter.await.unwrap();
    // c expires, a new acquirer takes over: expired 1, acquired 3
    advance(Duration::from_secs(11)).await;
    let d = locks.try_lock(&1).unwrap();
    drop(c); // stale: no change
    let e = locks.lock(&2).await; // acquired 4
    advance(Duration::from_secs(11)).await;
    drop(e); // released after its TTL: expired 2
    // held: d only

    let mut text = String::new();
    encode(&mut text, &registry).unwrap();
    assert_eq!(
        line(&text, "seawall_keyed_lock_acquired_total{lock=\"users\"}"),
        "seawall_keyed_lock_acquired_total{lock=\"users\"} 4"
    );
    assert_eq!(
        line(&text, "seawall_keyed_lock_acquired_total{lock=\"orders\"}"),
        "seawall_keyed_lock_acquired_total{lock=\"orders\"} 1"
    );
    assert_eq!(
        line(&text, "seawall_keyed_lock_contended_total{lock=\"users\"}"),
        "seawall_keyed_lock_contended_total{lock=\"users\"} 3"
    );
    assert_eq!(
        line(&text, "seawall_keyed_lock_timeouts_total{lock=\"users\"}"),
        "seawall_keyed_lock_timeouts_total{lock=\"users\"} 1"
    );
    assert_eq!(
        line(&text, "seawall_keyed_lock_expired_total{lock=\"users\"}"),
        "seawall_keyed_lock_expired_total{lock=\"users\"} 2"
    );
    assert_eq!(
        line(&text, "seawall_keyed_lock_held{lock=\"users\"}"),
        "seawall_keyed_lock_held{lock=\"users\"} 1"
    );
    assert_eq!(
        line(
            &text,
            "seawall_keyed_lock_wait_seconds_count{lock=\"users\"}"
        ),
        "seawall_keyed_lock_wait_seconds_count{lock=\"users\"} 1"
    );
    assert_eq!(
        line(&text, "seawall_keyed_lock_wait_seconds_sum{lock=\"users\"}"),
        "seawall_keyed_lock_wait_seconds_sum{lock=\"users\"} 2.0"
    );
    drop(d);
    let mut text = String::new();
    encode(&mut text, &registry).unwrap();
    assert_eq!(
        line(&text, "seawall_keyed_lock_held{lock=\"users\"}"),
        "seawall_keyed_lock_held{lock=\"users\"} 0"
    );
}
