//! Every transition through the public API, on paused tokio time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use seawall_circuit_breaker::{
    CircuitBreaker, Error, Outcome, Reason, Rejected, State, Transition, Window,
};
use tokio::sync::broadcast;
use tokio::time::{Instant, advance};

const S30: Duration = Duration::from_secs(30);

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

async fn fail(b: &CircuitBreaker) -> Result<(), Error<&'static str>> {
    b.call(|| async { Err("down") }).await
}

async fn succeed(b: &CircuitBreaker) -> Result<(), Error<&'static str>> {
    b.call(|| async { Ok(()) }).await
}

fn drain(rx: &mut broadcast::Receiver<Transition>) -> Vec<(State, State, Reason)> {
    let mut out = Vec::new();
    while let Ok(t) = rx.try_recv() {
        out.push((t.from, t.to, t.reason));
    }
    out
}

fn rejected(b: &CircuitBreaker) -> Rejected {
    b.try_acquire().expect_err("expected a rejection")
}

#[tokio::test(start_paused = true)]
async fn five_consecutive_failures_open_it() {
    let b = CircuitBreaker::builder().name("audit").build().unwrap();
    let mut rx = b.subscribe();
    for _ in 0..4 {
        assert_eq!(fail(&b).await, Err(Error::Inner("down")));
        assert_eq!(b.state(), State::Closed);
    }
    let before = Instant::now();
    assert_eq!(fail(&b).await, Err(Error::Inner("down")));
    assert_eq!(b.state(), State::Open);

    let t = rx.try_recv().unwrap();
    assert_eq!(&*t.breaker, "audit");
    assert_eq!((t.from, t.to), (State::Closed, State::Open));
    assert_eq!(t.reason, Reason::ConsecutiveFailures { count: 5 });
    assert_eq!(t.open_for, Some(S30));
    assert_eq!(t.at, before);
    assert!(rx.try_recv().is_err());

    // Rejected without running the call, with the time left.
    let ran = AtomicU32::new(0);
    let r = b
        .call(|| async {
            ran.fetch_add(1, Ordering::SeqCst);
            Ok::<(), &str>(())
        })
        .await;
    assert_eq!(r, Err(Error::Open { retry_after: S30 }));
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    advance(secs(10)).await;
    let r = rejected(&b);
    assert_eq!((r.retry_after, r.state), (secs(20), State::Open));
}

#[tokio::test(start_paused = true)]
async fn a_success_resets_the_consecutive_count() {
    let b = CircuitBreaker::builder().build().unwrap();
    for _ in 0..4 {
        fail(&b).await.unwrap_err();
    }
    succeed(&b).await.unwrap();
    for _ in 0..4 {
        fail(&b).await.unwrap_err();
    }
    assert_eq!(b.state(), State::Closed);
    fail(&b).await.unwrap_err();
    assert_eq!(b.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn after_30s_one_probe_passes_and_its_success_closes() {
    let b = CircuitBreaker::builder().build().unwrap();
    let mut rx = b.subscribe();
    for _ in 0..5 {
        fail(&b).await.unwrap_err();
    }
    advance(secs(30) - Duration::from_millis(1)).await;
    assert_eq!(rejected(&b).retry_after, Duration::from_millis(1));
    advance(Duration::from_millis(1)).await;

    let probe = b.try_acquire().unwrap();
    assert!(probe.is_probe());
    assert_eq!(probe.state(), State::HalfOpen);
    assert_eq!(b.state(), State::HalfOpen);
    // Only one probe at a time (the default).
    let r = rejected(&b);
    assert_eq!((r.state, r.retry_after), (State::HalfOpen, S30));
    assert!(matches!(
        succeed(&b).await,
        Err(Error::Open { retry_after }) if retry_after == S30
    ));

    probe.success();
    assert_eq!(b.state(), State::Closed);
    assert_eq!(
        drain(&mut rx),
        [
            (
                State::Closed,
                State::Open,
                Reason::ConsecutiveFailures { count: 5 }
            ),
            (
                State::Open,
                State::HalfOpen,
                Reason::OpenElapsed { open_for: S30 }
            ),
            (
                State::HalfOpen,
                State::Closed,
                Reason::ProbesSucceeded { successes: 1 }
            ),
        ]
    );
    // Closed again: calls pass, and it takes five new failures to trip.
    for _ in 0..4 {
        fail(&b).await.unwrap_err();
    }
    assert_eq!(b.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_failed_probe_reopens_with_the_next_backed_off_duration() {
    let b = CircuitBreaker::builder()
        .consecutive_failures(1)
        .open_durations([1, 2, 4].map(secs))
        .build()
        .unwrap();
    let mut rx = b.subscribe();
    fail(&b).await.unwrap_err();
    let mut opened_for = vec![];
    for expected in [1, 2, 4, 4] {
        let r = rejected(&b);
        assert_eq!((r.state, r.retry_after), (State::Open, secs(expected)));
        advance(secs(expected) - Duration::from_millis(1)).await;
        assert_eq!(b.state(), State::Open);
        advance(Duration::from_millis(1)).await;
        // The probe fails: open again, for longer.
        assert_eq!(fail(&b).await, Err(Error::Inner("down")));
        assert_eq!(b.state(), State::Open);
        let ts: Vec<Transition> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        opened_for.extend(ts.iter().filter_map(|t| t.open_for));
        assert_eq!(ts.last().unwrap().reason, Reason::ProbeFailed);
    }
    assert_eq!(opened_for, [1, 2, 4, 4, 4].map(secs));

    // A success closes it and restarts the sequence.
    advance(secs(4)).await;
    succeed(&b).await.unwrap();
    assert_eq!(b.state(), State::Closed);
    fail(&b).await.unwrap_err();
    assert_eq!(rejected(&b).retry_after, secs(1));
}

#[tokio::test(start_paused = true)]
async fn a_dropped_probe_future_frees_the_slot() {
    let b = CircuitBreaker::builder()
        .consecutive_failures(1)
        .build()
        .unwrap();
    fail(&b).await.unwrap_err();
    advance(S30).await;

    let mut probe = Box::pin(b.call(std::future::pending::<Result<(), ()>>));
    assert!(futures::poll!(probe.as_mut()).is_pending());
    assert_eq!(b.state(), State::HalfOpen);
    assert_eq!(rejected(&b).state, State::HalfOpen);
    drop(probe);

    // The slot is free: the next call probes, and its success closes the breaker.
    assert_eq!(b.state(), State::HalfOpen);
    succeed(&b).await.unwrap();
    assert_eq!(b.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_probe_cancelled_by_a_timeout_frees_the_slot() {
    let b = CircuitBreaker::builder()
        .consecutive_failures(1)
        .build()
        .unwrap();
    fail(&b).await.unwrap_err();
    advance(S30).await;
    let slow_probe = b.call(|| async {
        tokio::time::sleep(secs(60)).await;
        Ok::<_, ()>(())
    });
    assert!(tokio::time::timeout(secs(1), slow_probe).await.is_err());
    let probe = b.try_acquire().expect("slot freed by the cancelled probe");
    assert!(probe.is_probe());
}

#[tokio::test(start_paused = true)]
async fn dropped_and_ignored_permits_free_probe_slots() {
    let b = CircuitBreaker::builder()
        .consecutive_failures(1)
        .build()
        .unwrap();
    fail(&b).await.unwrap_err();
    advance(S30).await;
    let p = b.try_acquire().unwrap();
    assert!(b.try_acquire().is_err());
    drop(p);
    let p = b.try_acquire().unwrap();
    assert!(b.try_acquire().is_err());
    p.ignore();
    assert_eq!(b.state(), State::HalfOpen);
    let p = b.try_acquire().unwrap();
    p.failure();
    assert_eq!(b.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn several_probes_and_successes_to_close() {
    let b = CircuitBreaker::builder()
        .consecutive_failures(1)
        .probes(2)
        .successes_to_close(3)
        .open_duration(secs(5))
        .build()
        .unwrap();
    fail(&b).await.unwrap_err();
    advance(secs(5)).await;
    let p1 = b.try_acquire().unwrap();
    let p2 = b.try_acquire().unwrap();
    assert!(p1.is_probe() && p2.is_probe());
    assert_eq!(rejected(&b).state, State::HalfOpen);
    p1.success();
    assert_eq!(b.state(), State::HalfOpen);
    let p3 = b.try_acquire().unwrap();
    p2.success();
    assert_eq!(b.state(), State::HalfOpen);
    p3.success();
    assert_eq!(b.state(), State::Closed);

    // Any failure reopens, even after successes.
    fail(&b).await.unwrap_err();
    advance(secs(5)).await;
    let p1 = b.try_acquire().unwrap();
    let p2 = b.try_acquire().unwrap();
    p1.success();
    p2.failure();
    assert_eq!(b.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn force_open_disable_and_reset() {
    let b = CircuitBreaker::builder()
        .consecutive_failures(2)
        .build()
        .unwrap();
    let mut rx = b.subscribe();
    b.force_open();
    assert_eq!(b.state(), State::ForcedOpen);
    advance(secs(3600)).await;
    let r = rejected(&b);
    assert_eq!((r.state, r.retry_after), (State::ForcedOpen, S30));
    assert_eq!(succeed(&b).await, Err(Error::Open { retry_after: S30 }));
    b.force_open(); // no-op, no event

    b.disable();
    assert_eq!(b.state(), State::Disabled);
    for _ in 0..10 {
        assert_eq!(fail(&b).await, Err(Error::Inner("down")));
    }
    let p = b.try_acquire().unwrap();
    assert_eq!(p.state(), State::Disabled);
    p.failure();
    assert_eq!(b.state(), State::Disabled);

    b.reset();
    assert_eq!(b.state(), State::Closed);
    fail(&b).await.unwrap_err();
    b.reset(); // already closed: forgets the failure, no event
    fail(&b).await.unwrap_err();
    assert_eq!(b.state(), State::Closed);
    fail(&b).await.unwrap_err();
    assert_eq!(b.state(), State::Open);
    b.reset();
    assert_eq!(b.state(), State::Closed);
    assert_eq!(
        drain(&mut rx),
        [
            (State::Closed, State::ForcedOpen, Reason::ForcedOpen),
            (State::ForcedOpen, State::Disabled, Reason::Disabled),
            (State::Disabled, State::Closed, Reason::Reset),
            (
                State::Closed,
                State::Open,
                Reason::ConsecutiveFailures { count: 2 }
            ),
            (State::Open, State::Closed, Reason::Reset),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn verdicts_from_an_earlier_state_do_not_count() {
    let b = CircuitBreaker::builder()
        .consecutive_failures(2)
        .build()
        .unwrap();
    let stale_success = b.try_acquire().unwrap();
    let stale_failure = b.try_acquire().unwrap();
    fail(&b).await.unwrap_err();
    fail(&b).await.unwrap_err();
    assert_eq!(b.state(), State::Open);
    stale_success.success(); // granted while closed: must not close an open breaker
    assert_eq!(b.state(), State::Open);
    b.reset();
    fail(&b).await.unwrap_err();
    stale_failure.failure(); // from before the reset: not the second failure in a row
    assert_eq!(b.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn classification_decides_what_counts() {
    let b = CircuitBreaker::builder()
        .consecutive_failures(2)
        .build()
        .unwrap();
    let ignore_404 = |r: &Result<(), u16>| {
        Outcome::of_error(r, |e| {
            if *e == 404 {
                Outcome::Ignored
            } else {
                Outcome::Failure
            }
        })
    };
    for _ in 0..5 {
        let r = b.call_with(ignore_404, || async { Err(404) }).await;
        assert_eq!(r, Err(Error::Inner(404)));
    }
    assert_eq!(b.state(), State::Closed);
    b.call_with(ignore_404, || async { Err(503) })
        .await
        .unwrap_err();
    // An Ok value can be a failure too.
    let empty_is_failure = |r: &Result<Vec<u8>, ()>| match r {
        Ok(v) if v.is_empty() => Outcome::Failure,
        r => Outcome::of(r),
    };
    let r = b.call_with(empty_is_failure, || async { Ok(vec![]) }).await;
    assert_eq!(r, Ok(vec![]));
    assert_eq!(b.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn failure_rate_over_a_count_window() {
    let b = CircuitBreaker::builder()
        .failure_rate(0.5, Window::count(4))
        .build()
        .unwrap();
    let mut rx = b.subscribe();
    for ok in [true, true, true, false] {
        let _ = if ok {
            succeed(&b).await
        } else {
            fail(&b).await
        };
    }
    assert_eq!(b.state(), State::Closed); // 25 %
    fail(&b).await.unwrap_err(); // window S S F F: 50 %
    assert_eq!(b.state(), State::Open);
    assert_eq!(
        rx.try_recv().unwrap().reason,
        Reason::FailureRate {
            rate: 0.5,
            calls: 4
        }
    );
    // Closing clears the window.
    advance(S30).await;
    succeed(&b).await.unwrap();
    fail(&b).await.unwrap_err();
    fail(&b).await.unwrap_err();
    fail(&b).await.unwrap_err();
    assert_eq!(b.state(), State::Closed); // 3 calls < min_calls 4
}

#[tokio::test(start_paused = true)]
async fn failure_rate_over_a_time_window() {
    let b = CircuitBreaker::builder()
        .failure_rate(0.5, Window::time(secs(10), 10).min_calls(4))
        .build()
        .unwrap();
    for _ in 0..3 {
        fail(&b).await.unwrap_err();
    }
    assert_eq!(b.state(), State::Closed); // below min_calls
    advance(secs(11)).await; // the failures leave the window
    fail(&b).await.unwrap_err();
    succeed(&b).await.unwrap();
    succeed(&b).await.unwrap();
    assert_eq!(b.state(), State::Closed);
    fail(&b).await.unwrap_err(); // 2 of 4 within 10 s
    assert_eq!(b.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn slow_calls_as_failures() {
    let b = CircuitBreaker::builder()
        .consecutive_failures(2)
        .slow_calls_as_failures(secs(1))
        .build()
        .unwrap();
    let slow_ok = || async {
        tokio::time::sleep(secs(2)).await;
        Ok::<_, &str>(())
    };
    assert_eq!(b.call(slow_ok).await, Ok(()));
    succeed(&b).await.unwrap(); // fast: resets the count
    b.call(slow_ok).await.unwrap();
    assert_eq!(b.state(), State::Closed);
    b.call(slow_ok).await.unwrap();
    assert_eq!(b.state(), State::Open);
    // A slow probe reopens.
    advance(S30).await;
    b.call(slow_ok).await.unwrap();
    assert_eq!(b.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn slow_call_rate_trips_on_its_own() {
    let b = CircuitBreaker::builder()
        .slow_call_rate(secs(1), 0.5, Window::count(4))
        .build()
        .unwrap();
    let mut rx = b.subscribe();
    let slow_ok = || async {
        tokio::time::sleep(secs(1)).await;
        Ok::<_, &str>(())
    };
    succeed(&b).await.unwrap();
    succeed(&b).await.unwrap();
    b.call(slow_ok).await.unwrap();
    assert_eq!(b.state(), State::Closed);
    b.call(slow_ok).await.unwrap();
    assert_eq!(b.state(), State::Open);
    assert_eq!(
        rx.try_recv().unwrap().reason,
        Reason::SlowCallRate {
            rate: 0.5,
            calls: 4
        }
    );
}

#[tokio::test(start_paused = true)]
async fn jitter_shortens_within_bounds_and_is_seedable() {
    let durations = |seed| {
        let b = CircuitBreaker::builder()
            .consecutive_failures(1)
            .jitter(0.5)
            .seed(seed)
            .build()
            .unwrap();
        let mut rx = b.subscribe();
        let mut out = vec![];
        for _ in 0..8 {
            let p = b.try_acquire().unwrap();
            p.failure();
            out.push(rx.try_recv().unwrap().open_for.unwrap());
            b.reset();
            let _ = rx.try_recv();
        }
        out
    };
    let a = durations(7);
    assert_eq!(a, durations(7));
    assert_ne!(a, durations(8));
    assert!(a.iter().all(|d| *d >= secs(15) && *d <= S30), "{a:?}");
    assert!(a.iter().any(|d| *d != a[0]));
}

#[tokio::test(start_paused = true)]
async fn clones_share_one_breaker() {
    let b = CircuitBreaker::builder()
        .name("shared")
        .consecutive_failures(1)
        .build()
        .unwrap();
    let c = b.clone();
    let handle = tokio::spawn(async move { fail(&c).await });
    handle.await.unwrap().unwrap_err();
    assert_eq!(b.state(), State::Open);
    assert_eq!(b.name(), "shared");
    let shared = Arc::new(b);
    assert!(format!("{shared:?}").contains("Open"));
}

#[tokio::test(start_paused = true)]
async fn a_probe_from_an_earlier_half_open_period_keeps_its_slot() {
    let b = CircuitBreaker::builder()
        .consecutive_failures(1)
        .probes(2)
        .open_duration(secs(1))
        .build()
        .unwrap();
    fail(&b).await.unwrap_err();
    advance(secs(1)).await;
    let slow_probe = b.try_acquire().unwrap();
    b.try_acquire().unwrap().failure(); // reopens while `slow_probe` is still running
    assert_eq!(b.state(), State::Open);
    advance(secs(1)).await;
    // The dependency already has one probe in flight: only one more may start.
    let p = b.try_acquire().unwrap();
    assert_eq!(rejected(&b).state, State::HalfOpen);
    // The old probe's verdict frees its slot but does not decide this period.
    slow_probe.success();
    assert_eq!(b.state(), State::HalfOpen);
    let q = b.try_acquire().unwrap();
    assert!(q.is_probe());
    p.success();
    assert_eq!(b.state(), State::Closed);
    drop(q);
}

#[test]
fn reasons_read_as_sentences() {
    let cases = [
        (
            Reason::ConsecutiveFailures { count: 5 },
            "5 consecutive failures",
        ),
        (
            Reason::OpenElapsed {
                open_for: Duration::from_micros(992_285_648),
            },
            "open for 992285 ms, probing",
        ),
        (
            Reason::OpenElapsed {
                open_for: Duration::from_nanos(992_285_648),
            },
            "open for 992 ms, probing",
        ),
        (Reason::ProbeFailed, "a probe failed"),
    ];
    for (reason, text) in cases {
        assert_eq!(reason.to_string(), text);
    }
}
