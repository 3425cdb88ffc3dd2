//! The keyed breaker: independence of keys, forgetting, `max_keys`, metrics without key
//! labels, transitions with their key, overrides, configuration bounds.

use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;
use seawall_circuit_breaker::{
    CircuitBreaker, Error, KeyedCircuitBreaker, KeyedCircuitBreakerBuilder, KeyedTransition,
    Metrics, Outcome, Reason, State,
};

fn hosts(threshold: u32) -> KeyedCircuitBreaker<String> {
    CircuitBreaker::builder()
        .name("hosts")
        .consecutive_failures(threshold)
        .open_duration(Duration::from_secs(10))
        .keyed()
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn one_failing_key_does_not_cut_off_the_others() {
    let hosts = hosts(2);
    for _ in 0..2 {
        let r = hosts
            .call("down", || async { Err::<(), _>("refused") })
            .await;
        assert_eq!(r, Err(Error::Inner("refused")));
    }
    let r = hosts.call("down", || async { Ok::<_, ()>(()) }).await;
    assert_eq!(
        r,
        Err(Error::Open {
            retry_after: Duration::from_secs(10)
        })
    );
    for host in ["a", "b", "c"] {
        assert_eq!(hosts.call(host, || async { Ok::<_, ()>(1) }).await, Ok(1));
    }
    assert_eq!(hosts.state("down"), State::Open);
    assert_eq!(hosts.state("a"), State::Closed);
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(hosts.state("down"), State::HalfOpen);
    assert_eq!(hosts.call("down", || async { Ok::<_, ()>(2) }).await, Ok(2));
    assert_eq!(hosts.state("down"), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn idle_keys_are_forgotten_and_others_are_kept() {
    let hosts = hosts(3);
    hosts.try_acquire("clean").unwrap().success();
    hosts.try_acquire("one-failure").unwrap().failure();
    for _ in 0..3 {
        hosts.try_acquire("open").unwrap().failure();
    }
    let held = hosts.try_acquire("in-flight").unwrap();
    let handle = hosts.get("handle-held");
    assert!(handle.is_none());
    let handle = hosts.get_or_create("handle-held").unwrap();
    assert_eq!(hosts.len(), 5);
    assert_eq!(hosts.forget_idle(), 1); // only "clean"
    assert!(hosts.get("clean").is_none());
    for kept in ["one-failure", "open", "in-flight", "handle-held"] {
        assert!(hosts.get(kept).is_some(), "{kept}");
    }
    held.success();
    drop(handle);
    hosts.try_acquire("one-failure").unwrap().success(); // clears the failure
    assert_eq!(hosts.forget_idle(), 3);
    assert_eq!(hosts.len(), 1);
    assert_eq!(hosts.open_keys(), vec![("open".to_owned(), State::Open)]);
}

#[tokio::test(start_paused = true)]
async fn shards_forget_idle_keys_without_being_asked() {
    let hosts = hosts(3);
    for i in 0..10_000 {
        hosts
            .call(&format!("host-{i}"), || async { Ok::<_, ()>(()) })
            .await
            .unwrap();
    }
    // Each shard sweeps whenever it has doubled past max_keys / 64 (156 of the default
    // 10 000), sparing once a key used since its previous sweep: at most about half of
    // max_keys is kept, without anyone asking.
    assert!(hosts.len() <= 5_000, "{} keys tracked", hosts.len());
    assert_eq!(hosts.untracked_calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_full_keyed_breaker_passes_new_keys_through_untracked_and_counts_them() {
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let hosts: KeyedCircuitBreaker<String> = CircuitBreaker::builder()
        .name("hosts")
        .consecutive_failures(1)
        .metrics(metrics)
        .keyed()
        .max_keys(2)
        .build()
        .unwrap();
    hosts.try_acquire("down-1").unwrap().failure();
    hosts.try_acquire("down-2").unwrap().failure();
    let r = hosts.call("new", || async { Err::<(), _>("boom") }).await;
    assert_eq!(r, Err(Error::Inner("boom")));
    assert_eq!(hosts.untracked_calls(), 1);
    assert_eq!(hosts.len(), 2);
    assert_eq!(hosts.state("new"), State::Closed);
    assert_eq!(hosts.state("down-1"), State::Open);
    assert_eq!(hosts.state("down-2"), State::Open);
    // Once a slot holds an idle breaker, a new key takes it (after the full-sweep backoff).
    hosts.get("down-1").unwrap().reset();
    tokio::time::advance(Duration::from_secs(1)).await;
    hosts.try_acquire("new").unwrap().failure();
    assert_eq!(hosts.state("new"), State::Open);
    assert!(hosts.get("down-1").is_none());
    assert_eq!(hosts.untracked_calls(), 1);

    let mut text = String::new();
    encode(&mut text, &registry).unwrap();
    assert!(
        text.contains(
            r#"seawall_circuit_breaker_calls_total{breaker="hosts",outcome="untracked"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains(
            r#"seawall_circuit_breaker_calls_total{breaker="hosts",outcome="failure"} 3"#
        ),
        "{text}"
    );
}

#[tokio::test(start_paused = true)]
async fn metrics_count_keys_per_state_at_scrape_time_and_never_name_a_key() {
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let hosts: KeyedCircuitBreaker<String> = CircuitBreaker::builder()
        .name("hosts")
        .consecutive_failures(1)
        .open_duration(Duration::from_secs(5))
        .metrics(metrics)
        .keyed()
        .build()
        .unwrap();
    hosts.try_acquire("secret-a").unwrap().failure();
    hosts.try_acquire("secret-b").unwrap().failure();
    hosts.try_acquire("secret-c").unwrap().failure();
    hosts.try_acquire("secret-d").unwrap().success();
    let _ = hosts.try_acquire("secret-a").unwrap_err();
    let scrape = || {
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        text
    };
    let text = scrape();
    assert!(
        !text.contains("secret"),
        "a key leaked into a label:\n{text}"
    );
    for line in [
        r#"seawall_circuit_breaker_keys{breaker="hosts",state="open"} 3"#,
        r#"seawall_circuit_breaker_keys{breaker="hosts",state="closed"} 1"#,
        r#"seawall_circuit_breaker_keys{breaker="hosts",state="half_open"} 0"#,
        r#"seawall_circuit_breaker_calls_total{breaker="hosts",outcome="failure"} 3"#,
        r#"seawall_circuit_breaker_calls_total{breaker="hosts",outcome="success"} 1"#,
        r#"seawall_circuit_breaker_calls_total{breaker="hosts",outcome="rejected"} 1"#,
        r#"seawall_circuit_breaker_transitions_total{breaker="hosts",from="closed",to="open"} 3"#,
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
    // The keyed breaker has no single state: no state gauge is made for it.
    assert!(
        !text.contains(r#"seawall_circuit_breaker_state{breaker="hosts""#),
        "{text}"
    );
    // Computed at scrape time: the open duration passes with no call.
    tokio::time::advance(Duration::from_secs(5)).await;
    let text = scrape();
    assert!(
        text.contains(r#"seawall_circuit_breaker_keys{breaker="hosts",state="half_open"} 3"#),
        "{text}"
    );
    assert!(text.contains(r#"seawall_circuit_breaker_transitions_total{breaker="hosts",from="open",to="half_open"} 3"#), "{text}");
}

#[tokio::test(start_paused = true)]
async fn transitions_carry_their_key_including_time_driven_ones() {
    let hosts = hosts(1);
    let mut events = hosts.subscribe();
    hosts.try_acquire("eu").unwrap().failure();
    let t: KeyedTransition<String> = events.try_recv().unwrap();
    assert_eq!(t.key, "eu");
    assert_eq!(
        (t.transition.from, t.transition.to),
        (State::Closed, State::Open)
    );
    assert_eq!(&*t.transition.breaker, "hosts");
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(hosts.open_keys(), vec![("eu".to_owned(), State::HalfOpen)]);
    let t = events.try_recv().unwrap();
    assert_eq!(t.key, "eu");
    assert_eq!(
        t.transition.reason,
        Reason::OpenElapsed {
            open_for: Duration::from_secs(10)
        }
    );
    assert!(events.try_recv().is_err());
}

#[tokio::test(start_paused = true)]
async fn an_override_gives_one_key_its_own_open_duration() {
    let hosts: KeyedCircuitBreaker<String> = CircuitBreaker::builder()
        .consecutive_failures(1)
        .open_duration(Duration::from_secs(10))
        .keyed()
        .override_key(
            "slow-to-recover".to_owned(),
            CircuitBreaker::builder()
                .consecutive_failures(1)
                .open_duration(Duration::from_secs(60)),
        )
        .build()
        .unwrap();
    hosts.try_acquire("normal").unwrap().failure();
    hosts.try_acquire("slow-to-recover").unwrap().failure();
    assert_eq!(
        hosts
            .try_acquire("slow-to-recover")
            .unwrap_err()
            .retry_after,
        Duration::from_secs(60)
    );
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(hosts.state("normal"), State::HalfOpen);
    assert_eq!(hosts.state("slow-to-recover"), State::Open);
    // Forgotten and re-created, an overridden key keeps its override.
    hosts.get("slow-to-recover").unwrap().reset();
    hosts.forget_idle();
    hosts.try_acquire("slow-to-recover").unwrap().failure();
    assert_eq!(
        hosts
            .try_acquire("slow-to-recover")
            .unwrap_err()
            .retry_after,
        Duration::from_secs(60)
    );
}

#[tokio::test(start_paused = true)]
async fn call_with_classifies_and_a_dropped_call_frees_the_probe() {
    let hosts = hosts(1);
    let r = hosts
        .call_with(
            "eu",
            |r: &Result<(), u16>| Outcome::of_error(r, |_| Outcome::Ignored),
            || async { Err(404) },
        )
        .await;
    assert_eq!(r, Err(Error::Inner(404)));
    assert_eq!(hosts.state("eu"), State::Closed);
    hosts.try_acquire("eu").unwrap().failure();
    tokio::time::advance(Duration::from_secs(10)).await;
    {
        let fut = hosts.call("eu", std::future::pending::<Result<(), ()>>);
        let mut fut = std::pin::pin!(fut);
        assert!(futures::poll!(fut.as_mut()).is_pending());
        assert_eq!(hosts.try_acquire("eu").unwrap_err().state, State::HalfOpen);
    }
    // The dropped probe freed its slot.
    assert!(hosts.try_acquire("eu").unwrap().is_probe());
}

#[test]
fn keys_are_looked_up_by_borrowed_forms() {
    let hosts = hosts(1);
    let owned = String::from("eu");
    hosts.try_acquire(owned.as_str()).unwrap().failure();
    assert_eq!(hosts.state(&owned), State::Open);
    let ids: KeyedCircuitBreaker<u64> = KeyedCircuitBreaker::builder().build().unwrap();
    ids.try_acquire(&7).unwrap().success();
    assert_eq!(ids.len(), 1);
}

#[test]
fn configuration_is_checked_by_build() {
    for (max_keys, ok) in [
        (0, false),
        (1, true),
        (KeyedCircuitBreakerBuilder::<u8>::MAX_KEYS, true),
        (KeyedCircuitBreakerBuilder::<u8>::MAX_KEYS + 1, false),
        (usize::MAX, false),
    ] {
        let r = KeyedCircuitBreaker::<u8>::builder()
            .max_keys(max_keys)
            .build();
        match r {
            Ok(k) => {
                assert!(ok, "{max_keys} accepted");
                // Nothing is allocated up front for the bound.
                assert_eq!((k.len(), k.max_keys()), (0, max_keys));
                k.try_acquire(&1).unwrap().success();
            }
            Err(e) => {
                assert!(!ok, "{max_keys} rejected: {e}");
                assert_eq!(e.field(), "max_keys");
                assert_eq!(
                    e.reason(),
                    format!("must be in 1..=100000000, got {max_keys}")
                );
            }
        }
    }
    // The per-key configuration is checked as CircuitBreaker's, field names unchanged.
    let e = CircuitBreaker::builder()
        .jitter(f64::NAN)
        .keyed::<u8>()
        .build()
        .unwrap_err();
    assert_eq!(e.field(), "jitter");
    let e = CircuitBreaker::builder()
        .open_duration(Duration::MAX)
        .keyed::<u8>()
        .build()
        .unwrap_err();
    assert_eq!(e.field(), "open_duration");
    // An override is checked too, under its own setter's name.
    let e = KeyedCircuitBreaker::<u8>::builder()
        .override_key(3, CircuitBreaker::builder().probes(0))
        .build()
        .unwrap_err();
    assert_eq!(e.field(), "override_key");
    assert_eq!(
        e.reason(),
        "invalid `probes` for one key: must be in 1..=10000, got 0"
    );
    // The breaker setter replaces the configuration, name included.
    let k = KeyedCircuitBreaker::<u8>::builder()
        .breaker(CircuitBreaker::builder().name("x").consecutive_failures(0))
        .build()
        .unwrap_err();
    assert_eq!(k.field(), "consecutive_failures");
}

#[test]
fn keyed_types_are_send_sync_static() {
    fn send_sync_static<T: Send + Sync + 'static>() {}
    send_sync_static::<KeyedCircuitBreaker<String>>();
    send_sync_static::<KeyedCircuitBreakerBuilder<String>>();
    send_sync_static::<KeyedTransition<String>>();
    fn send<T: Send>(_: &T) {}
    let hosts = hosts(1);
    send(&hosts.call("a", || async { Ok::<_, ()>(()) }));
}
