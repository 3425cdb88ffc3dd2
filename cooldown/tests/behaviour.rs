//! Behaviour through the public API, on a paused tokio clock.

use std::time::Duration;

use seawall_cooldown::{ConfigError, Cooldown, Decision, Fire, MAX_WINDOW, Suppressed};
use tokio::time::{Instant, advance};

const WINDOW: Duration = Duration::from_secs(1800);

fn cooldown() -> Cooldown<&'static str> {
    Cooldown::builder().window(WINDOW).build().unwrap()
}

#[track_caller]
fn fire<P: std::fmt::Debug>(d: Decision<P>) -> Fire<P> {
    match d {
        Decision::Fire(f) => f,
        other => panic!("expected a fire, got {other:?}"),
    }
}

#[track_caller]
fn suppressed<P: std::fmt::Debug>(d: Decision<P>) -> Suppressed {
    match d {
        Decision::Suppressed(s) => s,
        other => panic!("expected a suppression, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn fire_suppress_n_then_next_fire_reports_n() {
    let c = cooldown();
    let t0 = Instant::now();
    let first = fire(c.check(&"db"));
    assert_eq!(first.suppressed_since_last, 0);
    assert_eq!(first.last_fired, None);
    assert_eq!(first.digest, None);
    assert!(!first.bypassed);

    for i in 1..=7u64 {
        advance(Duration::from_secs(100)).await;
        let s = suppressed(c.check(&"db"));
        assert_eq!(s.suppressed, i);
        assert_eq!(s.remaining, WINDOW - Duration::from_secs(100 * i));
    }
    // One nanosecond before the window ends: still suppressed.
    advance(WINDOW - Duration::from_secs(700) - Duration::from_nanos(1)).await;
    let s = suppressed(c.check(&"db"));
    assert_eq!((s.suppressed, s.remaining), (8, Duration::from_nanos(1)));

    advance(Duration::from_nanos(1)).await;
    let next = fire(c.check(&"db"));
    assert_eq!(next.suppressed_since_last, 8);
    assert_eq!(next.last_fired, Some(t0));
    let digest = next.digest.expect("digest");
    assert_eq!(digest.count, 8);
    assert_eq!(digest.first_suppressed, t0 + Duration::from_secs(100));
    assert_eq!(
        digest.last_suppressed,
        t0 + WINDOW - Duration::from_nanos(1)
    );
    assert_eq!(digest.last_fired, Some(t0));
    assert_eq!(digest.last_payload, None);

    // The new window counts from zero.
    assert_eq!(suppressed(c.check(&"db")).suppressed, 1);
    // Other keys are independent.
    assert!(c.check(&"cache").is_fire());
    assert_eq!(c.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn dropped_reservation_rolls_back() {
    let c = cooldown();
    let r = c.reserve(&"db").expect("first wins");
    assert_eq!(r.fire().suppressed_since_last, 0);
    assert_eq!(r.key(), &"db");
    // While the send is in flight, events are suppressed and counted.
    let s = suppressed(c.check(&"db"));
    assert_eq!((s.suppressed, s.remaining), (1, WINDOW));
    drop(r);
    // Rolled back: the next event fires at once and reports the one suppressed.
    let f = fire(c.check(&"db"));
    assert_eq!(f.suppressed_since_last, 1);
    assert_eq!(f.last_fired, None);
}

#[tokio::test(start_paused = true)]
async fn cancelled_send_rolls_back() {
    let c = cooldown();
    let send = {
        let c = c.clone();
        async move {
            let r = c.reserve(&"db").unwrap();
            tokio::time::sleep(Duration::from_secs(60)).await; // a slow send
            r.commit();
        }
    };
    assert!(
        tokio::time::timeout(Duration::from_secs(5), send)
            .await
            .is_err()
    );
    assert!(
        c.reserve(&"db").is_ok(),
        "the cancelled send left the key free"
    );
}

#[tokio::test(start_paused = true)]
async fn rollback_returns_the_digest_it_took() {
    let c = cooldown();
    let t0 = Instant::now();
    c.check(&"db");
    advance(Duration::from_secs(1)).await;
    c.check(&"db");
    c.check(&"db");
    advance(WINDOW).await;
    let r = c.reserve(&"db").unwrap();
    assert_eq!(r.fire().suppressed_since_last, 2);
    assert_eq!(r.fire().last_fired, Some(t0));
    assert!(
        c.drain_digests().is_empty(),
        "the reservation holds the digest"
    );
    r.rollback();
    let digests = c.drain_digests();
    assert_eq!(digests.len(), 1);
    assert_eq!(digests[0].1.count, 2);
    assert_eq!(digests[0].1.first_suppressed, t0 + Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn commit_starts_the_window_at_commit_time() {
    let c = cooldown();
    let r = c.reserve(&"db").unwrap();
    advance(Duration::from_secs(10)).await;
    r.commit();
    advance(WINDOW - Duration::from_secs(5)).await;
    assert_eq!(suppressed(c.check(&"db")).remaining, Duration::from_secs(5));
    advance(Duration::from_secs(5)).await;
    assert_eq!(fire(c.check(&"db")).suppressed_since_last, 1);
}

#[tokio::test(start_paused = true)]
async fn two_concurrent_reservations_one_wins() {
    let c = cooldown();
    let attempt = |c: Cooldown<&'static str>| async move {
        let r = c.reserve(&"db");
        tokio::task::yield_now().await; // both hold their result at once
        r.map(|r| r.commit())
    };
    let (a, b) = tokio::join!(attempt(c.clone()), attempt(c.clone()));
    assert_eq!(u8::from(a.is_ok()) + u8::from(b.is_ok()), 1, "{a:?} {b:?}");
    let lost = a.err().or(b.err()).unwrap();
    assert_eq!((lost.suppressed, lost.remaining), (1, WINDOW));
    assert!(c.check(&"db").is_suppressed(), "the winner committed");
}

#[tokio::test(start_paused = true)]
async fn digest_for_a_key_that_went_quiet() {
    let c: Cooldown<&str, String> = Cooldown::builder()
        .window(WINDOW)
        .payload::<String>()
        .build()
        .unwrap();
    let t0 = Instant::now();
    assert!(c.check_with(&"disk", &"91%".to_owned()).is_fire());
    assert!(c.check(&"cpu").is_fire());
    for (i, p) in ["93%", "95%", "97%"].iter().enumerate() {
        advance(Duration::from_secs(60)).await;
        assert_eq!(
            suppressed(c.check_with(&"disk", &(*p).to_owned())).suppressed,
            i as u64 + 1
        );
    }
    assert!(c.drain_digests().is_empty(), "window still open");
    advance(WINDOW).await;
    let digests = c.drain_digests();
    assert_eq!(digests.len(), 1, "cpu had nothing to report");
    let (key, d) = &digests[0];
    assert_eq!(*key, "disk");
    assert_eq!(d.count, 3);
    assert_eq!(d.first_suppressed, t0 + Duration::from_secs(60));
    assert_eq!(d.last_suppressed, t0 + Duration::from_secs(180));
    assert_eq!(d.last_fired, Some(t0));
    assert_eq!(d.last_payload.as_deref(), Some("97%"));
    // Reported once: neither a second drain nor the next fire repeats it.
    assert!(c.drain_digests().is_empty());
    assert_eq!(c.len(), 0, "drain also forgets finished keys");
    let f = fire(c.check(&"disk"));
    assert_eq!((f.suppressed_since_last, f.digest), (0, None));
}

#[tokio::test(start_paused = true)]
async fn critical_bypasses_and_restarts_the_window() {
    let c = cooldown();
    let t0 = Instant::now();
    let f = c.check_critical(&"db");
    assert!(!f.bypassed, "nothing to bypass yet");
    c.check(&"db");
    advance(Duration::from_secs(100)).await;
    let f = c.check_critical(&"db");
    assert!(f.bypassed);
    assert_eq!(f.suppressed_since_last, 1);
    assert_eq!(f.last_fired, Some(t0));
    // The window restarted at the critical fire.
    advance(WINDOW - Duration::from_secs(1)).await;
    assert!(c.check(&"db").is_suppressed());
    advance(Duration::from_secs(1)).await;
    assert!(c.check(&"db").is_fire());
    // A critical event fires even while a send is in flight.
    let r = c.reserve(&"other").unwrap();
    assert!(c.check_critical(&"other").bypassed);
    r.commit();
}

#[tokio::test(start_paused = true)]
async fn expired_keys_are_forgotten_without_help() {
    let c = cooldown();
    for k in ["a", "b", "c"] {
        c.check(&k);
    }
    c.check(&"a"); // a has a digest pending
    assert_eq!(c.len(), 3);
    advance(WINDOW).await;
    // The first call after a window sweeps: b and c are done, a has a digest.
    c.check(&"d");
    assert_eq!(c.len(), 2);
    assert_eq!(fire(c.check(&"a")).suppressed_since_last, 1);
}

#[tokio::test(start_paused = true)]
async fn max_keys_evicts_the_longest_quiet_keys() {
    // 100 keys: one shard holding 100, evicting 12 at a time.
    let c: Cooldown<u32> = Cooldown::builder()
        .window(WINDOW)
        .max_keys(100)
        .build()
        .unwrap();
    for k in 0..100 {
        assert!(c.check(&k).is_fire());
        advance(Duration::from_millis(1)).await;
    }
    c.check(&5); // 5 is no longer the quietest
    assert_eq!(c.len(), 100);
    assert!(c.check(&100).is_fire());
    assert_eq!(c.len(), 89);
    // 0..=4 and 6..=12 were evicted (12 keys); 5 and 13.. were kept.
    for k in [5, 13, 99, 100] {
        assert!(c.check(&k).is_suppressed(), "{k} kept");
    }
    for k in [0, 4, 6, 12] {
        assert!(c.check(&k).is_fire(), "{k} evicted");
    }
    for k in 1000..5000 {
        c.check(&k);
        assert!(c.len() <= 100);
    }
}

#[tokio::test(start_paused = true)]
async fn a_full_store_drops_finished_keys_before_evicting() {
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = seawall_cooldown::Metrics::register(&mut registry);
    let evictions = || {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("seawall_cooldown_evictions_total{cooldown=\"default\"} "))
            .unwrap()
            .to_owned()
    };
    let c: Cooldown<u32> = Cooldown::builder()
        .window(WINDOW)
        .max_keys(10)
        .metrics(metrics)
        .build()
        .unwrap();
    for k in 0..10 {
        c.check(&k);
    }
    c.check(&3); // 3 will have a digest to report
    advance(WINDOW).await;
    // Full: the new key makes room by forgetting the 9 finished keys only.
    assert!(c.check(&10).is_fire());
    assert_eq!(c.len(), 2);
    assert_eq!(evictions(), "0");
    for k in 11..19 {
        c.check(&k);
    }
    assert_eq!(c.len(), 10);
    // Full of live keys: the next one evicts the quietest, 3, with its digest.
    c.check(&19);
    assert_eq!(c.len(), 10);
    assert_eq!(evictions(), "1");
    assert!(c.drain_digests().is_empty(), "3's digest was evicted");
    assert!(c.check(&10).is_suppressed());
}

#[test]
fn invalid_config_names_the_field() {
    let err = |b: seawall_cooldown::CooldownBuilder<u8>| b.build().unwrap_err();
    let e: ConfigError = err(Cooldown::builder().window(Duration::ZERO));
    assert_eq!(e.field(), "window");
    assert_eq!(
        e.to_string(),
        format!("invalid `window`: must be in 1ns..={MAX_WINDOW:?} (100 years), got 0ns")
    );
    let long = MAX_WINDOW + Duration::from_secs(1);
    let e = err(Cooldown::builder().window(long));
    assert_eq!(e.field(), "window");
    assert!(e.reason().ends_with(&format!("got {long:?}")), "{e}");
    let e = err(Cooldown::builder().window(Duration::MAX));
    assert_eq!(e.field(), "window");
    let e = err(Cooldown::builder().max_keys(0));
    assert_eq!(
        (e.field(), e.reason()),
        ("max_keys", "must be in 1..=1073741824, got 0")
    );
    let e = err(Cooldown::builder().name(""));
    assert_eq!((e.field(), e.reason()), ("name", "must not be empty"));
    assert_eq!(e.to_string(), "invalid `name`: must not be empty");
    let c: Cooldown<u8> = Cooldown::builder().build().unwrap();
    assert_eq!(
        (c.name(), c.window(), c.max_keys()),
        ("default", WINDOW, 100_000)
    );
}

/// Every lookup takes a borrowed form of the key: `&str` for a `Cooldown<String>` (this
/// compiling is the API proof), and a key already tracked is found without building a
/// `String`. The owned form still works.
#[tokio::test(start_paused = true)]
async fn string_keys_are_looked_up_by_str() {
    let c: Cooldown<String, &str> = Cooldown::builder().payload::<&str>().build().unwrap();
    let key: &str = "db-down";
    assert!(c.check(key).is_fire());
    assert!(c.check_with(key, &"again").is_suppressed());
    assert!(c.check(&"db-down".to_owned()).is_suppressed());
    assert!(c.reserve(key).is_err());
    assert!(c.reserve_with(key, &"and again").is_err());
    assert!(c.check_critical(key).bypassed);
    tokio::time::advance(WINDOW).await;
    let sending = c.reserve("disk-full").unwrap();
    assert_eq!(sending.key(), "disk-full");
    sending.commit();
    let Decision::Fire(fire) = c.check(key) else {
        panic!("the window ended")
    };
    assert_eq!(fire.suppressed_since_last, 0); // the critical fire reported them
    assert_eq!(c.len(), 2);
}

/// Outside a runtime (and on multi-thread runtimes) the cooldown reads the TSC
/// clock, not tokio's: its windows still run on real time. Real time, because
/// that is what this tests (a spin, not a sleep: a few milliseconds).
#[test]
fn window_runs_on_real_time_outside_a_runtime() {
    let window = Duration::from_millis(5);
    let cooldown = Cooldown::builder().window(window).build().unwrap();
    let start = std::time::Instant::now();
    assert!(cooldown.check(&"k").is_fire());
    let s = cooldown
        .check(&"k")
        .suppressed()
        .expect("inside the window");
    assert!(s.remaining <= window && s.remaining > Duration::ZERO);
    while start.elapsed() < window + Duration::from_millis(2) {
        std::hint::spin_loop();
    }
    let fire = cooldown
        .check(&"k")
        .fire()
        .expect("the window ended in real time");
    assert_eq!(fire.suppressed_since_last, 1);
    let digest = fire.digest.unwrap();
    assert!(digest.first_suppressed >= fire.last_fired.unwrap());
}
