//! loom models of the packed atomic state word and the half-open probe slots, run on the
//! real code (`src/sync.rs` swaps in loom's atomics and mutex):
//!
//! ```sh
//! RUSTFLAGS="--cfg loom" cargo test -p seawall-circuit-breaker --test loom --release
//! ```
//!
//! The models use open durations of zero or 30 s and the default 30 s maximum probe
//! duration, so the (real) clock never changes a branch while a model runs.
#![cfg(loom)]

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use loom::thread;
use seawall_circuit_breaker::{CircuitBreaker, Reason, State, Transition};
use tokio::sync::broadcast;

fn drain(rx: &mut broadcast::Receiver<Transition>) -> Vec<(State, State, Reason)> {
    std::iter::from_fn(|| rx.try_recv().ok())
        .map(|t| (t.from, t.to, t.reason))
        .collect()
}

/// Runs `f` under loom and checks that more than one interleaving was explored (a model
/// that explores one is not testing a race); prints the count.
fn model(name: &str, f: impl Fn() + Sync + Send + 'static) {
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&runs);
    loom::model(move || {
        counter.fetch_add(1, SeqCst);
        f();
    });
    let runs = runs.load(SeqCst);
    eprintln!("{name}: {runs} interleavings");
    assert!(runs > 1, "{name} explored {runs} interleaving");
}

fn breaker(failures: u32, probes: u32, open: &[u64]) -> CircuitBreaker {
    CircuitBreaker::builder()
        .consecutive_failures(failures)
        .probes(probes)
        .open_durations(
            open.iter()
                .map(|s| Duration::from_secs(*s))
                .collect::<Vec<_>>(),
        )
        .seed(1)
        .build()
        .unwrap()
}

/// Two failures racing on the lock-free closed path reach the threshold together: the
/// breaker trips exactly once, with the count of both.
#[test]
fn concurrent_failures_trip_exactly_once() {
    model("concurrent_failures_trip_exactly_once", || {
        let b = breaker(2, 1, &[30]);
        let mut rx = b.subscribe();
        let b1 = b.clone();
        let t = thread::spawn(move || b1.try_acquire().unwrap().failure());
        b.try_acquire().unwrap().failure();
        t.join().unwrap();
        assert_eq!(b.state(), State::Open);
        assert_eq!(
            drain(&mut rx),
            [(
                State::Closed,
                State::Open,
                Reason::ConsecutiveFailures { count: 2 }
            )]
        );
    });
}

/// A success racing the failure that reaches the threshold. Three linearizations are
/// valid: the failure and its trip first (open; the success, from a closed generation that
/// is gone, changes nothing), the success first (closed with one failure counted), or the
/// failure counted and then reset by the success before the trip check (closed with none
/// counted). Never a trip that is not emitted, an event without the state, or a count that
/// is neither.
#[test]
fn a_success_racing_the_tripping_failure() {
    model("a_success_racing_the_tripping_failure", || {
        let b = breaker(2, 1, &[30]);
        b.try_acquire().unwrap().failure();
        let mut rx = b.subscribe();
        let ok = b.try_acquire().unwrap();
        let b1 = b.clone();
        let t = thread::spawn(move || b1.try_acquire().unwrap().failure());
        ok.success();
        t.join().unwrap();
        let events = drain(&mut rx);
        match b.state() {
            State::Open => assert_eq!(
                events,
                [(
                    State::Closed,
                    State::Open,
                    Reason::ConsecutiveFailures { count: 2 }
                )]
            ),
            State::Closed => {
                assert!(events.is_empty(), "{events:?}");
                // One or zero failures are counted: one or two more trip it.
                b.try_acquire().unwrap().failure();
                if b.state() == State::Closed {
                    b.try_acquire().unwrap().failure();
                }
                assert_eq!(b.state(), State::Open);
            }
            s => panic!("unexpected {s:?}"),
        }
    });
}

/// Two callers race for the single probe slot of a half-open breaker: exactly one gets it.
#[test]
fn one_probe_slot_one_probe() {
    model("one_probe_slot_one_probe", || {
        let b = breaker(1, 1, &[0]);
        b.try_acquire().unwrap().failure();
        let b1 = b.clone();
        let t = thread::spawn(move || b1.try_acquire().ok());
        let mine = b.try_acquire().ok();
        let theirs = t.join().unwrap();
        let probes = [&mine, &theirs]
            .iter()
            .filter(|p| p.as_ref().is_some_and(|p| p.is_probe()))
            .count();
        assert_eq!(probes, 1);
        assert_eq!(mine.is_some() as u32 + theirs.is_some() as u32, 1);
    });
}

/// A probe's success (which closes the breaker and frees the slot) races another caller:
/// the caller is rejected (slot still taken) or gets a closed-state permit, never a second
/// probe while the first is alive.
#[test]
fn a_closing_probe_racing_a_new_caller() {
    model("a_closing_probe_racing_a_new_caller", || {
        let b = breaker(1, 1, &[0]);
        b.try_acquire().unwrap().failure();
        let probe = b.try_acquire().unwrap();
        assert!(probe.is_probe());
        let b1 = b.clone();
        let t = thread::spawn(move || b1.try_acquire().map(|p| p.state()));
        probe.success();
        let other = t.join().unwrap();
        match other {
            Ok(state) => assert_eq!(state, State::Closed),
            Err(r) => assert_eq!(r.state, State::HalfOpen),
        }
        assert_eq!(b.state(), State::Closed);
    });
}

/// Two probes of one half-open period report at once, one success and one failure (two
/// slots, one success closes): exactly one of them decides, and the last event matches
/// the state.
#[test]
fn probes_reporting_at_once_decide_once() {
    model("probes_reporting_at_once_decide_once", || {
        let b = breaker(1, 2, &[0, 30]);
        b.try_acquire().unwrap().failure();
        let good = b.try_acquire().unwrap();
        let bad = b.try_acquire().unwrap();
        assert!(good.is_probe() && bad.is_probe());
        let mut rx = b.subscribe();
        let t = thread::spawn(move || bad.failure());
        good.success();
        t.join().unwrap();
        let events = drain(&mut rx);
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0].1, b.state());
        assert!(matches!(
            events[0],
            (
                State::HalfOpen,
                State::Closed,
                Reason::ProbesSucceeded { .. }
            ) | (State::HalfOpen, State::Open, Reason::ProbeFailed)
        ));
    });
}

/// A dropped probe (abandoned) frees its slot while another caller asks: that caller gets
/// the probe or is rejected, and afterwards a probe can always be taken.
#[test]
fn an_abandoned_probe_frees_its_slot() {
    model("an_abandoned_probe_frees_its_slot", || {
        let b = breaker(1, 1, &[0]);
        b.try_acquire().unwrap().failure();
        let probe = b.try_acquire().unwrap();
        let b1 = b.clone();
        let t = thread::spawn(move || b1.try_acquire().ok());
        drop(probe);
        let theirs = t.join().unwrap();
        match theirs {
            Some(p) => {
                assert!(p.is_probe());
                assert!(b.try_acquire().is_err());
            }
            None => assert!(b.try_acquire().unwrap().is_probe()),
        }
        assert_eq!(b.state(), State::HalfOpen);
    });
}

/// `reset()` racing a trip: whatever the order, the state ends where the last emitted
/// transition says (closed if none), and the word never shows a state nobody set.
#[test]
fn reset_racing_a_trip() {
    model("reset_racing_a_trip", || {
        let b = breaker(1, 1, &[30]);
        let mut rx = b.subscribe();
        let permit = b.try_acquire().unwrap();
        let b1 = b.clone();
        let t = thread::spawn(move || b1.reset());
        permit.failure();
        t.join().unwrap();
        let events = drain(&mut rx);
        let last = events.last().map_or(State::Closed, |e| e.1);
        assert_eq!(b.state(), last, "{events:?}");
    });
}

/// Three threads on the closed path: two failures and a success race at a threshold of 2.
/// The breaker trips at most once, and only with an event; if it stays closed, at most one
/// failure is left counted.
#[test]
fn three_threads_on_the_closed_path() {
    model("three_threads_on_the_closed_path", || {
        let b = breaker(2, 1, &[30]);
        let mut rx = b.subscribe();
        let (b1, b2) = (b.clone(), b.clone());
        let f1 = thread::spawn(move || b1.try_acquire().map(|p| p.failure()).is_ok());
        let f2 = thread::spawn(move || b2.try_acquire().map(|p| p.failure()).is_ok());
        if let Ok(p) = b.try_acquire() {
            p.success();
        }
        f1.join().unwrap();
        f2.join().unwrap();
        let events = drain(&mut rx);
        match b.state() {
            State::Open => assert_eq!(events.len(), 1, "{events:?}"),
            State::Closed => {
                assert!(events.is_empty(), "{events:?}");
                b.try_acquire().unwrap().failure();
                if b.state() == State::Closed {
                    b.try_acquire().unwrap().failure();
                }
                assert_eq!(b.state(), State::Open);
            }
            s => panic!("unexpected {s:?}"),
        }
    });
}
