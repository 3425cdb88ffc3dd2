//! The retry loop through the public API, on paused tokio time.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use seawall_retry::{AttemptError, RetryError, RetryPolicy};
use tokio::time::Instant;

#[derive(Debug, Clone, PartialEq)]
enum ApiError {
    Unavailable,
    BadRequest,
    Busy(Duration),
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

type Outcome = (Result<u32, RetryError<ApiError>>, Vec<Duration>, Duration);

/// Runs `policy` against a script of results (one per attempt, `None` = never completes) and
/// returns the outcome and the offsets (from the start) at which each attempt began.
/// `BadRequest` is permanent, `Busy(d)` carries a hint of `d`.
async fn run(policy: &RetryPolicy, script: Vec<Option<Result<u32, ApiError>>>) -> Outcome {
    run_with(policy, script, |_, _, _| {}).await
}

/// [`run`] with a notify hook.
async fn run_with(
    policy: &RetryPolicy,
    script: Vec<Option<Result<u32, ApiError>>>,
    notify: impl FnMut(u32, &AttemptError<ApiError>, Duration),
) -> Outcome {
    let start = Instant::now();
    let starts = Arc::new(Mutex::new(Vec::new()));
    let script = Arc::new(Mutex::new(script.into_iter()));
    let result = policy
        .retry(|| {
            let starts = starts.clone();
            let script = script.clone();
            async move {
                starts.lock().unwrap().push(start.elapsed());
                let next = script.lock().unwrap().next().expect("script too short");
                match next {
                    Some(r) => r,
                    None => std::future::pending().await,
                }
            }
        })
        .retry_if(|e| *e != ApiError::BadRequest)
        .retry_after(|e| match e {
            ApiError::Busy(d) => Some(*d),
            _ => None,
        })
        .notify(notify)
        .await;
    let starts = starts.lock().unwrap().clone();
    (result, starts, start.elapsed())
}

fn fail(n: usize) -> Vec<Option<Result<u32, ApiError>>> {
    vec![Some(Err(ApiError::Unavailable)); n]
}

#[tokio::test(start_paused = true)]
async fn defaults_make_three_attempts_one_then_two_seconds_apart_and_never_sleep_after_the_last() {
    let policy = RetryPolicy::builder().build().unwrap();
    let (result, starts, elapsed) = run(&policy, fail(3)).await;
    assert_eq!(starts, [secs(0.0), secs(1.0), secs(3.0)]);
    assert_eq!(elapsed, secs(3.0), "no 4 s sleep after the final attempt");
    assert_eq!(
        result,
        Err(RetryError::Exhausted {
            attempts: 3,
            last: AttemptError::Inner(ApiError::Unavailable)
        })
    );
}

#[tokio::test(start_paused = true)]
async fn retries_after_1_2_4_seconds() {
    let policy = RetryPolicy::builder().max_attempts(4).build().unwrap();
    let mut script = fail(3);
    script.push(Some(Ok(7)));
    let (result, starts, elapsed) = run(&policy, script).await;
    assert_eq!(result, Ok(7));
    assert_eq!(starts, [secs(0.0), secs(1.0), secs(3.0), secs(7.0)]);
    assert_eq!(elapsed, secs(7.0));
}

#[tokio::test(start_paused = true)]
async fn deadline_stops_before_a_sleep_that_would_overrun_it() {
    let policy = RetryPolicy::builder()
        .max_attempts(10)
        .max_elapsed(secs(5.0))
        .build()
        .unwrap();
    let (result, starts, elapsed) = run(&policy, fail(10)).await;
    assert_eq!(starts, [secs(0.0), secs(1.0), secs(3.0)]);
    assert_eq!(
        elapsed,
        secs(3.0),
        "gave up at once instead of sleeping 4 s"
    );
    assert_eq!(
        result,
        Err(RetryError::Deadline {
            attempts: 3,
            next_delay: secs(4.0),
            last: AttemptError::Inner(ApiError::Unavailable)
        })
    );
}

#[tokio::test(start_paused = true)]
async fn a_sleep_ending_exactly_at_the_deadline_is_allowed() {
    let policy = RetryPolicy::builder()
        .max_attempts(10)
        .max_elapsed(secs(3.0))
        .build()
        .unwrap();
    let (result, starts, _) = run(&policy, fail(10)).await;
    assert_eq!(starts, [secs(0.0), secs(1.0), secs(3.0)]);
    assert_eq!(result.unwrap_err().reason(), "deadline");
}

#[tokio::test(start_paused = true)]
async fn attempt_timeout_is_a_transient_failure() {
    let policy = RetryPolicy::builder()
        .attempt_timeout(secs(30.0))
        .build()
        .unwrap();
    let (result, starts, elapsed) = run(&policy, vec![None, Some(Ok(1))]).await;
    assert_eq!(result, Ok(1));
    assert_eq!(starts, [secs(0.0), secs(31.0)]);
    assert_eq!(elapsed, secs(31.0));

    let (result, starts, elapsed) = run(&policy, vec![None, None, None]).await;
    assert_eq!(starts, [secs(0.0), secs(31.0), secs(63.0)]);
    assert_eq!(elapsed, secs(93.0));
    assert_eq!(
        result,
        Err(RetryError::Exhausted {
            attempts: 3,
            last: AttemptError::Timeout { after: secs(30.0) }
        })
    );
}

#[tokio::test(start_paused = true)]
async fn server_hint_longer_than_backoff_is_honoured_and_capped_at_max_hint() {
    let policy = RetryPolicy::builder()
        .max_attempts(5)
        .max_delay(secs(10.0))
        .max_hint(secs(10.0))
        .build()
        .unwrap();
    let script = vec![
        Some(Err(ApiError::Busy(secs(5.0)))), // hint 5 s > backoff 1 s: 5 s
        Some(Err(ApiError::Busy(secs(0.5)))), // hint 0.5 s < backoff 2 s: 2 s
        Some(Err(ApiError::Busy(secs(60.0)))), // hint 60 s capped at max_hint: 10 s
        Some(Err(ApiError::Unavailable)),     // no hint: backoff 8 s
        Some(Ok(3)),
    ];
    let (result, starts, _) = run(&policy, script).await;
    assert_eq!(result, Ok(3));
    assert_eq!(
        starts,
        [secs(0.0), secs(5.0), secs(7.0), secs(17.0), secs(25.0)]
    );
}

#[tokio::test(start_paused = true)]
async fn hint_past_the_deadline_stops_with_hint_beyond_deadline() {
    let policy = RetryPolicy::builder()
        .max_elapsed(secs(10.0))
        .max_delay(secs(60.0))
        .build()
        .unwrap();
    let (result, starts, elapsed) = run(&policy, vec![Some(Err(ApiError::Busy(secs(20.0))))]).await;
    assert_eq!(starts, [secs(0.0)]);
    assert_eq!(elapsed, Duration::ZERO);
    assert!(matches!(
        result,
        Err(RetryError::HintBeyondDeadline { attempts: 1, hint, .. }) if hint == secs(20.0)
    ));
}

#[tokio::test(start_paused = true)]
async fn permanent_error_stops_at_once() {
    let policy = RetryPolicy::builder().max_attempts(5).build().unwrap();
    let (result, starts, elapsed) = run(&policy, vec![Some(Err(ApiError::BadRequest))]).await;
    assert_eq!(starts, [secs(0.0)]);
    assert_eq!(elapsed, Duration::ZERO);
    assert_eq!(
        result,
        Err(RetryError::Permanent {
            attempts: 1,
            error: ApiError::BadRequest
        })
    );

    let script = vec![
        Some(Err(ApiError::Unavailable)),
        Some(Err(ApiError::BadRequest)),
    ];
    let (result, starts, _) = run(&policy, script).await;
    assert_eq!(starts, [secs(0.0), secs(1.0)]);
    assert_eq!(result.unwrap_err().attempts(), 2);
}

#[test]
fn zero_delay_never_touches_the_timer() {
    // A runtime without a time driver: any sleep or timer would panic.
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let policy = RetryPolicy::builder()
        .max_attempts(50)
        .constant(Duration::ZERO)
        .build()
        .unwrap();
    let mut calls = 0;
    let result = rt.block_on(policy.retry(|| {
        calls += 1;
        let r = if calls < 50 {
            Err(ApiError::Unavailable)
        } else {
            Ok(calls)
        };
        async move { r }
    }));
    assert_eq!(result, Ok(50));
}

#[tokio::test(start_paused = true)]
async fn notify_sees_each_retry_with_attempt_error_and_delay() {
    let mut seen = Vec::new();
    let policy = RetryPolicy::builder()
        .max_attempts(4)
        .attempt_timeout(secs(10.0))
        .build()
        .unwrap();
    let script = vec![
        Some(Err(ApiError::Unavailable)),
        None,
        Some(Err(ApiError::Unavailable)),
        Some(Err(ApiError::Unavailable)),
    ];
    let (result, _, _) = run_with(&policy, script, |attempt, err, delay| {
        seen.push((attempt, err.clone(), delay));
    })
    .await;
    assert_eq!(result.unwrap_err().reason(), "exhausted");
    assert_eq!(
        seen,
        [
            (1, AttemptError::Inner(ApiError::Unavailable), secs(1.0)),
            (2, AttemptError::Timeout { after: secs(10.0) }, secs(2.0)),
            (3, AttemptError::Inner(ApiError::Unavailable), secs(4.0)),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn finite_custom_backoff_ends_the_retries() {
    let policy = RetryPolicy::builder()
        .max_attempts(10)
        .backoff_fn(|| [100, 300].into_iter().map(Duration::from_millis))
        .build()
        .unwrap();
    let (result, starts, _) = run(&policy, fail(10)).await;
    assert_eq!(starts, [secs(0.0), secs(0.1), secs(0.4)]);
    assert!(matches!(
        result,
        Err(RetryError::Exhausted { attempts: 3, .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn dropping_the_future_mid_sleep_stops_all_further_attempts() {
    let policy = RetryPolicy::builder().max_attempts(10).build().unwrap();
    let calls = Arc::new(Mutex::new(0));
    let c = calls.clone();
    let fut = policy.retry(move || {
        *c.lock().unwrap() += 1;
        async { Err::<(), _>(ApiError::Unavailable) }
    });
    // Attempts at 0 s and 1 s, then asleep for 2 s when cancelled at 1.5 s.
    assert!(tokio::time::timeout(secs(1.5), fut).await.is_err());
    assert_eq!(*calls.lock().unwrap(), 2);
    tokio::time::sleep(secs(60.0)).await;
    assert_eq!(*calls.lock().unwrap(), 2);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_future_mid_attempt_drops_the_attempt() {
    struct Flag(Arc<Mutex<bool>>);
    impl Drop for Flag {
        fn drop(&mut self) {
            *self.0.lock().unwrap() = true;
        }
    }
    let dropped = Arc::new(Mutex::new(false));
    let policy = RetryPolicy::builder().build().unwrap();
    let d = dropped.clone();
    let fut = policy.retry(move || {
        let flag = Flag(d.clone());
        async move {
            let _flag = flag;
            std::future::pending::<Result<(), ApiError>>().await
        }
    });
    assert!(tokio::time::timeout(secs(1.0), fut).await.is_err());
    assert!(*dropped.lock().unwrap());
}

#[test]
fn blocking_form_retries_and_classifies() {
    let policy = RetryPolicy::builder()
        .max_attempts(4)
        .constant(Duration::ZERO)
        .build()
        .unwrap();
    let mut n = 0;
    let r = policy
        .retry_blocking(|| {
            n += 1;
            if n < 4 {
                Err(ApiError::Unavailable)
            } else {
                Ok(n)
            }
        })
        .run();
    assert_eq!(r, Ok(4));

    let mut n = 0;
    let r: Result<(), _> = policy
        .retry_blocking(|| {
            n += 1;
            Err(if n == 1 {
                ApiError::Unavailable
            } else {
                ApiError::BadRequest
            })
        })
        .retry_if(|e| *e != ApiError::BadRequest)
        .run();
    assert_eq!(
        r,
        Err(RetryError::Permanent {
            attempts: 2,
            error: ApiError::BadRequest
        })
    );

    let r: Result<(), _> = policy.retry_blocking(|| Err(ApiError::Unavailable)).run();
    assert_eq!(
        r.unwrap_err().into_last_error(),
        Some(ApiError::Unavailable)
    );
}

#[test]
fn config_errors_name_the_field() {
    let b = || RetryPolicy::builder();
    assert_eq!(
        b().max_attempts(0).build().unwrap_err().field(),
        "max_attempts"
    );
    assert_eq!(b().factor(0.9).build().unwrap_err().field(), "factor");
    assert_eq!(b().factor(f64::NAN).build().unwrap_err().field(), "factor");
    assert_eq!(
        b().exponential(secs(2.0))
            .max_delay(secs(1.0))
            .build()
            .unwrap_err()
            .field(),
        "max_delay"
    );
    // Backoff setters may come in any order.
    let p = b()
        .factor(3.0)
        .max_delay(secs(100.0))
        .exponential(secs(1.0))
        .build()
        .unwrap();
    assert_eq!(p.max_attempts(), 3);
}

#[tokio::test(start_paused = true)]
async fn backoff_setters_apply_in_any_order() {
    let policy = RetryPolicy::builder()
        .max_attempts(4)
        .factor(3.0)
        .exponential(secs(0.5))
        .build()
        .unwrap();
    let (_, starts, _) = run(&policy, fail(4)).await;
    assert_eq!(starts, [secs(0.0), secs(0.5), secs(2.0), secs(6.5)]);
}

#[tokio::test(start_paused = true)]
async fn attempts_that_are_pending_at_first_poll_work_on_the_fast_path_too() {
    // No timeout, budget or deadline: the first attempt is polled on the inline fast path.
    let policy = RetryPolicy::builder().build().unwrap();
    let start = Instant::now();
    let mut n = 0;
    let result = policy
        .retry(|| {
            n += 1;
            let n = n;
            async move {
                tokio::time::sleep(secs(0.5)).await;
                if n < 3 {
                    Err(ApiError::Unavailable)
                } else {
                    Ok(n)
                }
            }
        })
        .await;
    assert_eq!(result, Ok(3));
    // 0.5 + 1 + 0.5 + 2 + 0.5
    assert_eq!(start.elapsed(), secs(4.5));
}

/// Issue 13 §4: a `Retry-After: 120` behind a rate limiter must not be retried after 30 s (the
/// default `max_delay`): hints have their own, more generous cap (5 min by default).
#[tokio::test(start_paused = true)]
async fn hint_beyond_max_delay_is_honoured_up_to_its_own_cap() {
    let policy = RetryPolicy::builder().max_attempts(3).build().unwrap();
    let script = vec![
        Some(Err(ApiError::Busy(secs(120.0)))), // above max_delay (30 s): 120 s
        Some(Err(ApiError::Busy(secs(3600.0)))), // above the hint cap (5 min): 300 s
        Some(Ok(3)),
    ];
    let (result, starts, _) = run(&policy, script).await;
    assert_eq!(result, Ok(3));
    assert_eq!(starts, [secs(0.0), secs(120.0), secs(420.0)]);
}

/// Issue 13 §4: a hint that would end past the deadline stops the call with an error that says
/// so, instead of retrying early (before, the hint was cut to `max_delay` and retried at 30 s).
#[tokio::test(start_paused = true)]
async fn hint_that_would_overrun_the_deadline_stops_with_a_clear_error() {
    let policy = RetryPolicy::builder()
        .max_elapsed(secs(60.0))
        .build()
        .unwrap();
    let (result, starts, elapsed) = run(
        &policy,
        vec![Some(Err(ApiError::Busy(secs(120.0)))), Some(Ok(1))],
    )
    .await;
    assert_eq!(starts, [secs(0.0)]);
    assert_eq!(elapsed, Duration::ZERO);
    let err = result.unwrap_err();
    assert_eq!(err.reason(), "hint_beyond_deadline", "{err:?}");
    assert_eq!(err.attempts(), 1);
    assert_eq!(err.last_error(), Some(&ApiError::Busy(secs(120.0))));
}

/// Issue 13 §2: `Duration::MAX` hints, caps and timeouts saturate (30 years) instead of
/// overflowing `Instant + Duration` or setting a timer a paused clock never reaches.
#[tokio::test(start_paused = true)]
async fn huge_hints_and_timeouts_saturate() {
    let policy = RetryPolicy::builder()
        .max_delay(Duration::MAX)
        .max_hint(Duration::MAX)
        .attempt_timeout(Duration::MAX)
        .build()
        .unwrap();
    let script = vec![None, Some(Err(ApiError::Busy(Duration::MAX))), Some(Ok(3))];
    let (result, starts, _) = run(&policy, script).await;
    assert_eq!(result, Ok(3));
    let years_30 = Duration::from_secs(86_400 * 365 * 30);
    // The hung attempt times out after 30 years, the backoff waits 1 s, the hint 30 years.
    assert_eq!(
        starts,
        [
            Duration::ZERO,
            years_30 + secs(1.0),
            years_30 + secs(1.0) + years_30
        ]
    );
}

/// Issue 12: one policy serves calls with different error types, each with its own typed
/// predicate and hint.
#[tokio::test(start_paused = true)]
async fn one_policy_serves_calls_with_different_error_types() {
    #[derive(Debug, PartialEq)]
    enum DbError {
        Deadlock,
        Syntax,
    }
    let policy = RetryPolicy::builder().build().unwrap();
    let start = Instant::now();
    let mut n = 0;
    let db = policy
        .retry(|| {
            n += 1;
            let e = if n == 1 {
                DbError::Deadlock
            } else {
                DbError::Syntax
            };
            async move { Err::<(), _>(e) }
        })
        .retry_if(|e| *e == DbError::Deadlock)
        .await;
    assert_eq!(
        db,
        Err(RetryError::Permanent {
            attempts: 2,
            error: DbError::Syntax
        })
    );
    assert_eq!(start.elapsed(), secs(1.0));
    let api = policy
        .retry(|| async { Err::<(), _>(ApiError::Busy(secs(10.0))) })
        .retry_after(|e| match e {
            ApiError::Busy(d) => Some(*d),
            _ => None,
        })
        .await;
    assert_eq!(api.unwrap_err().attempts(), 3);
    assert_eq!(start.elapsed(), secs(21.0));
}
