//! The behavioural contract of a cooldown, written once as generic async test
//! bodies and run against every backend: `conformance_memory.rs` (the
//! in-memory [`Cooldown`](seawall_cooldown::Cooldown), paused clock),
//! `conformance_redis.rs` (the [`RedisCooldown`](seawall_cooldown::RedisCooldown),
//! a real server, real time) and `conformance_cluster.rs` (the same on a Redis
//! Cluster).
//!
//! A backend is reached through [`Backend`], a test-side trait both cooldowns
//! implement with `String` keys; a [`Fixture`] makes a fresh, isolated
//! cooldown and lets time pass. Times are compared within [`Fixture::SLACK`]:
//! zero on the paused clock (so the memory run asserts exact instants), a few
//! milliseconds for Redis, whose windows run on the server's wall clock.

#![allow(dead_code)]

use std::time::Duration;

use seawall_cooldown::{Decision, Digest, Fire, Suppressed};
use tokio::time::Instant;

#[cfg(feature = "redis")]
pub(crate) mod redis;

/// A won reservation, as the suite drives it.
pub(crate) trait Reserved: Send {
    fn fire(&self) -> &Fire;
    async fn commit(self);
    async fn rollback(self);
}

/// The cooldown operations the suite exercises.
pub(crate) trait Backend {
    type Res: Reserved;
    async fn check(&self, key: &str) -> Decision;
    async fn critical(&self, key: &str) -> Fire;
    async fn reserve(&self, key: &str) -> Result<Self::Res, Suppressed>;
    async fn drain(&self) -> Vec<(String, Digest)>;
}

/// Makes cooldowns and lets time pass, per backend.
pub(crate) trait Fixture {
    type C: Backend;
    /// The window every test uses.
    const WINDOW: Duration;
    /// How far a duration or an instant may be from the expected one.
    const SLACK: Duration;
    /// A fresh cooldown with [`WINDOW`](Self::WINDOW), sharing no state with
    /// any other test.
    async fn cooldown(&self) -> Self::C;
    /// Lets `d` pass.
    async fn pass(&self, d: Duration);
    /// Waits until work a dropped reservation handed off (a rollback) is done.
    async fn settle(&self);
}

#[track_caller]
pub(crate) fn fire(d: Decision) -> Fire {
    match d {
        Decision::Fire(f) => f,
        other => panic!("expected a fire, got {other:?}"),
    }
}

#[track_caller]
pub(crate) fn suppressed(d: Decision) -> Suppressed {
    match d {
        Decision::Suppressed(s) => s,
        other => panic!("expected a suppression, got {other:?}"),
    }
}

#[track_caller]
fn near(actual: Duration, expected: Duration, slack: Duration) {
    assert!(
        actual.abs_diff(expected) <= slack,
        "{actual:?} is not within {slack:?} of {expected:?}"
    );
}

#[track_caller]
fn near_instant(actual: Instant, expected: Instant, slack: Duration) {
    let diff = if actual > expected {
        actual - expected
    } else {
        expected - actual
    };
    assert!(diff <= slack, "instant off by {diff:?} (slack {slack:?})");
}

/// `part` tenths of the window.
fn tenths<F: Fixture>(part: u32) -> Duration {
    F::WINDOW * part / 10
}

pub(crate) async fn fire_then_suppress_then_digest<F: Fixture>(fx: &F) {
    let (w, slack) = (F::WINDOW, F::SLACK);
    let c = fx.cooldown().await;
    let t0 = Instant::now();
    let first = fire(c.check("db").await);
    assert_eq!(
        (
            first.suppressed_since_last,
            first.last_fired,
            first.bypassed,
            first.degraded
        ),
        (0, None, false, false)
    );
    assert_eq!(first.digest, None);

    fx.pass(tenths::<F>(2)).await;
    let t1 = Instant::now();
    for i in 1..=3u64 {
        let s = suppressed(c.check("db").await);
        assert_eq!((s.suppressed, s.degraded), (i, false));
        near(s.remaining, w.saturating_sub(t0.elapsed()), slack);
    }
    let t2 = Instant::now();

    fx.pass(tenths::<F>(8)).await;
    let next = fire(c.check("db").await);
    assert_eq!(
        (next.suppressed_since_last, next.bypassed, next.degraded),
        (3, false, false)
    );
    near_instant(next.last_fired.expect("last fired"), t0, slack);
    let d = next.digest.expect("digest");
    assert_eq!((d.count, d.last_payload), (3, None));
    near_instant(d.first_suppressed, t1, slack);
    near_instant(d.last_suppressed, t2, slack);
    near_instant(d.last_fired.expect("digest last fired"), t0, slack);

    // The new window counts from one again.
    assert_eq!(suppressed(c.check("db").await).suppressed, 1);
}

pub(crate) async fn reserve_then_commit_starts_the_window<F: Fixture>(fx: &F) {
    let (w, slack) = (F::WINDOW, F::SLACK);
    let c = fx.cooldown().await;
    let r = c.reserve("db").await.expect("the first reservation wins");
    assert_eq!(
        (
            r.fire().suppressed_since_last,
            r.fire().last_fired,
            r.fire().degraded
        ),
        (0, None, false)
    );
    // While the send is in flight, events are suppressed for a whole window.
    let s = suppressed(c.check("db").await);
    assert_eq!((s.suppressed, s.remaining), (1, w));
    let lost = c.reserve("db").await.err().expect("one send at a time");
    assert_eq!((lost.suppressed, lost.remaining), (2, w));

    fx.pass(tenths::<F>(5)).await;
    let tc = Instant::now();
    r.commit().await;
    fx.pass(tenths::<F>(7)).await;
    // 1.2 windows after the reservation, 0.7 after the commit: still quiet.
    let s = suppressed(c.check("db").await);
    assert_eq!(s.suppressed, 3);
    near(s.remaining, w.saturating_sub(tc.elapsed()), slack);

    fx.pass(tenths::<F>(3)).await;
    let f = fire(c.check("db").await);
    assert_eq!(f.suppressed_since_last, 3);
    near_instant(f.last_fired.expect("last fired"), tc, slack);
}

pub(crate) async fn rollback_puts_the_digest_back<F: Fixture>(fx: &F) {
    let (w, slack) = (F::WINDOW, F::SLACK);
    let c = fx.cooldown().await;
    let t0 = Instant::now();
    assert!(c.check("db").await.is_fire());
    fx.pass(tenths::<F>(2)).await;
    let t1 = Instant::now();
    assert_eq!(suppressed(c.check("db").await).suppressed, 1);
    assert_eq!(suppressed(c.check("db").await).suppressed, 2);
    fx.pass(w).await;

    let r = c.reserve("db").await.expect("window over");
    assert_eq!(r.fire().suppressed_since_last, 2);
    near_instant(r.fire().last_fired.expect("last fired"), t0, slack);
    assert!(
        c.drain().await.is_empty(),
        "the reservation holds the digest"
    );
    let t2 = Instant::now();
    let s = suppressed(c.check("db").await);
    assert_eq!((s.suppressed, s.remaining), (1, w));
    r.rollback().await;

    // Nothing is lost: the taken digest and the new event are reported together.
    let digests = c.drain().await;
    assert_eq!(digests.len(), 1, "{digests:?}");
    let (key, d) = &digests[0];
    assert_eq!((key.as_str(), d.count), ("db", 3));
    near_instant(d.first_suppressed, t1, slack);
    near_instant(d.last_suppressed, t2, slack);
    // And the key may fire at once.
    let f = fire(c.check("db").await);
    assert_eq!((f.suppressed_since_last, f.digest), (0, None));
}

pub(crate) async fn dropped_reservation_rolls_back<F: Fixture>(fx: &F) {
    let w = F::WINDOW;
    let c = fx.cooldown().await;
    let r = c.reserve("cpu").await.expect("first wins");
    let s = suppressed(c.check("cpu").await);
    assert_eq!((s.suppressed, s.remaining), (1, w));
    drop(r); // the send failed, or its future was cancelled
    fx.settle().await;
    let f = fire(c.check("cpu").await);
    assert_eq!((f.suppressed_since_last, f.last_fired), (1, None));
    assert_eq!(f.digest.map(|d| d.count), Some(1));
}

pub(crate) async fn drain_reports_quiet_keys_exactly_once<F: Fixture>(fx: &F) {
    let slack = F::SLACK;
    let c = fx.cooldown().await;
    let t0 = Instant::now();
    assert!(c.check("disk").await.is_fire());
    assert!(c.check("cpu").await.is_fire());
    fx.pass(tenths::<F>(2)).await;
    let t1 = Instant::now();
    assert_eq!(suppressed(c.check("disk").await).suppressed, 1);
    assert_eq!(suppressed(c.check("disk").await).suppressed, 2);
    assert!(c.drain().await.is_empty(), "window still open");

    fx.pass(F::WINDOW).await;
    let digests = c.drain().await;
    assert_eq!(digests.len(), 1, "cpu had nothing to report: {digests:?}");
    let (key, d) = &digests[0];
    assert_eq!((key.as_str(), d.count), ("disk", 2));
    near_instant(d.first_suppressed, t1, slack);
    near_instant(d.last_suppressed, t1, slack);
    near_instant(d.last_fired.expect("last fired"), t0, slack);

    // Reported once: neither a second drain nor the next fire repeats it.
    assert!(c.drain().await.is_empty());
    let f = fire(c.check("disk").await);
    assert_eq!((f.suppressed_since_last, f.digest), (0, None));
    assert_eq!(fire(c.check("cpu").await).suppressed_since_last, 0);
}

pub(crate) async fn critical_bypasses_and_restarts_the_window<F: Fixture>(fx: &F) {
    let (w, slack) = (F::WINDOW, F::SLACK);
    let c = fx.cooldown().await;
    let t0 = Instant::now();
    let f = c.critical("db").await;
    assert_eq!(
        (f.bypassed, f.suppressed_since_last, f.degraded),
        (false, 0, false)
    );
    assert_eq!(suppressed(c.check("db").await).suppressed, 1);

    fx.pass(tenths::<F>(5)).await;
    let tc = Instant::now();
    let f = c.critical("db").await;
    assert_eq!((f.bypassed, f.suppressed_since_last), (true, 1));
    near_instant(f.last_fired.expect("last fired"), t0, slack);
    assert_eq!(f.digest.map(|d| d.count), Some(1));

    // The window restarted at the critical fire.
    fx.pass(tenths::<F>(7)).await;
    let s = suppressed(c.check("db").await);
    assert_eq!(s.suppressed, 1);
    near(s.remaining, w.saturating_sub(tc.elapsed()), slack);
    fx.pass(tenths::<F>(3)).await;
    assert_eq!(fire(c.check("db").await).suppressed_since_last, 1);

    // A critical event fires even while a send is in flight.
    let r = c.reserve("other").await.expect("free key");
    let f = c.critical("other").await;
    assert_eq!((f.bypassed, f.suppressed_since_last), (true, 0));
    r.commit().await;
    assert!(c.check("other").await.is_suppressed());
}

pub(crate) async fn two_keys_are_independent<F: Fixture>(fx: &F) {
    let c = fx.cooldown().await;
    assert!(c.check("a").await.is_fire());
    assert!(c.check("b").await.is_fire());
    assert_eq!(suppressed(c.check("a").await).suppressed, 1);
    assert_eq!(suppressed(c.check("a").await).suppressed, 2);
    assert_eq!(suppressed(c.check("b").await).suppressed, 1);
    let r = c.reserve("c").await.expect("c is free");
    assert_eq!(suppressed(c.check("a").await).suppressed, 3);
    // A critical event on b leaves a alone.
    assert_eq!(c.critical("b").await.suppressed_since_last, 1);
    assert_eq!(suppressed(c.check("a").await).suppressed, 4);
    r.commit().await;

    fx.pass(F::WINDOW).await;
    let mut digests: Vec<(String, u64)> = c
        .drain()
        .await
        .into_iter()
        .map(|(k, d)| (k, d.count))
        .collect();
    digests.sort();
    assert_eq!(digests, [("a".to_owned(), 4)]);
}

/// Instantiates every conformance test for a fixture expression, each with
/// the given attributes (the test attribute, `#[ignore]`).
#[macro_export]
macro_rules! conformance_suite {
    ($fixture:expr, $(#[$attr:meta])*) => {
        $crate::conformance_suite!(@tests $fixture, [$(#[$attr])*],
            fire_then_suppress_then_digest,
            reserve_then_commit_starts_the_window,
            rollback_puts_the_digest_back,
            dropped_reservation_rolls_back,
            drain_reports_quiet_keys_exactly_once,
            critical_bypasses_and_restarts_the_window,
            two_keys_are_independent
        );
    };
    (@tests $fixture:expr, $attrs:tt, $($name:ident),*) => {
        $( $crate::conformance_suite!(@one $fixture, $attrs, $name); )*
    };
    (@one $fixture:expr, [$(#[$attr:meta])*], $name:ident) => {
        $(#[$attr])*
        async fn $name() {
            conformance::$name(&$fixture).await;
        }
    };
}
