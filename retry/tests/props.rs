//! Property tests: jitter bounds, and the retry loop against a reference model.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use proptest::prelude::*;
use seawall_retry::{AttemptError, Backoff, Jitter, RetryError, RetryPolicy};

fn jitter() -> impl Strategy<Value = Jitter> {
    prop_oneof![
        Just(Jitter::None),
        Just(Jitter::Full),
        Just(Jitter::Equal),
        Just(Jitter::Decorrelated)
    ]
}

proptest! {
    /// Every jittered delay lies within its documented bounds, never above the cap.
    #[test]
    fn jittered_delays_lie_within_their_bounds(
        initial_ms in 0u64..5_000,
        extra_ms in 0u64..60_000,
        factor in 1.0f64..4.0,
        linear in any::<bool>(),
        kind in jitter(),
        seed in any::<u64>(),
    ) {
        let initial = Duration::from_millis(initial_ms);
        let max = initial + Duration::from_millis(extra_ms);
        let builder = if linear {
            Backoff::linear(initial, Duration::from_millis(extra_ms / 7))
        } else {
            Backoff::exponential(initial).factor(factor)
        }
        .max_delay(max);
        let bases: Vec<Duration> = builder.clone().build().unwrap().take(40).collect();
        let delays: Vec<Duration> = builder.jitter(kind).seed(seed).build().unwrap().take(40).collect();
        let mut prev = initial;
        for (base, d) in bases.iter().zip(&delays) {
            prop_assert!(*base <= max);
            prop_assert!(*d <= max, "{d:?} above cap {max:?}");
            match kind {
                Jitter::None => prop_assert_eq!(d, base),
                Jitter::Full => prop_assert!(*d <= *base),
                Jitter::Equal => prop_assert!(*d >= *base / 2 && *d <= *base),
                Jitter::Decorrelated => {
                    prop_assert!(*d >= initial);
                    prop_assert!(*d <= (prev * 3).min(max).max(initial));
                    prev = *d;
                }
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Ok,
    Transient,
    Permanent,
    Hint(u64),
    Hang,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        2 => Just(Step::Ok),
        4 => Just(Step::Transient),
        1 => Just(Step::Permanent),
        2 => (0u64..20_000).prop_map(Step::Hint),
        1 => Just(Step::Hang),
    ]
}

#[derive(Debug, Clone, PartialEq)]
enum Error {
    Transient,
    Permanent,
    Hint(Duration),
}

#[derive(Debug, PartialEq)]
enum Ending {
    Success,
    Exhausted,
    Permanent,
    Deadline(Duration),
    HintBeyondDeadline(Duration),
}

/// The reference model: the documented loop, as plain arithmetic.
fn model(
    script: &[Step],
    max_attempts: u32,
    initial: Duration,
    max_delay: Duration,
    max_hint: Duration,
    timeout: Duration,
    deadline: Option<Duration>,
) -> (Ending, Vec<Duration>, Vec<(u32, Duration)>) {
    let mut t = Duration::ZERO;
    let mut starts = vec![];
    let mut notified = vec![];
    let mut base = initial;
    for (i, s) in script.iter().enumerate() {
        let attempt = i as u32 + 1;
        starts.push(t);
        let hint = match s {
            Step::Ok => return (Ending::Success, starts, notified),
            Step::Permanent => return (Ending::Permanent, starts, notified),
            Step::Hang => {
                t += timeout;
                None
            }
            Step::Transient => None,
            Step::Hint(ms) => Some(Duration::from_millis(*ms)),
        };
        if attempt >= max_attempts {
            return (Ending::Exhausted, starts, notified);
        }
        let backoff = base.min(max_delay);
        base = base.saturating_mul(2);
        let hint = hint.map(|h| h.min(max_hint)).filter(|h| *h > backoff);
        let delay = hint.unwrap_or(backoff);
        if let Some(dl) = deadline
            && t + delay > dl
        {
            let ending = match hint {
                Some(h) => Ending::HintBeyondDeadline(h),
                None => Ending::Deadline(delay),
            };
            return (ending, starts, notified);
        }
        notified.push((attempt, delay));
        t += delay;
    }
    unreachable!("scripts are as long as max_attempts")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// The retry loop matches the model: same ending, attempt count, start instants and
    /// notifications.
    #[test]
    fn retry_loop_matches_the_model(
        max_attempts in 1u32..7,
        mut script in prop::collection::vec(step(), 7),
        initial_ms in 0u64..3_000,
        extra_ms in 0u64..10_000,
        deadline_ms in prop::option::of(0u64..40_000),
        max_hint_ms in 0u64..30_000,
    ) {
        script.truncate(max_attempts as usize);
        let initial = Duration::from_millis(initial_ms);
        let max_delay = initial + Duration::from_millis(extra_ms);
        let timeout = Duration::from_secs(2);
        let deadline = deadline_ms.map(Duration::from_millis);
        let max_hint = Duration::from_millis(max_hint_ms);
        let (ending, starts, notified) =
            model(&script, max_attempts, initial, max_delay, max_hint, timeout, deadline);

        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        let (result, got_starts, got_notified) = rt.block_on(async {
            let seen = Arc::new(Mutex::new(vec![]));
            let log = seen.clone();
            let mut b = RetryPolicy::builder()
                .max_attempts(max_attempts)
                .exponential(initial)
                .max_delay(max_delay)
                .max_hint(max_hint)
                .attempt_timeout(timeout);
            if let Some(d) = deadline {
                b = b.max_elapsed(d);
            }
            let policy = b.build().unwrap();
            let start = tokio::time::Instant::now();
            let mut starts = vec![];
            let mut i = 0;
            let result = policy
                .retry(|| {
                    starts.push(start.elapsed());
                    let s = script[i].clone();
                    i += 1;
                    async move {
                        match s {
                            Step::Ok => Ok(()),
                            Step::Transient => Err(Error::Transient),
                            Step::Permanent => Err(Error::Permanent),
                            Step::Hint(ms) => Err(Error::Hint(Duration::from_millis(ms))),
                            Step::Hang => std::future::pending().await,
                        }
                    }
                })
                .retry_if(|e| *e != Error::Permanent)
                .retry_after(|e| match e {
                    Error::Hint(d) => Some(*d),
                    _ => None,
                })
                .notify(move |a, _, d| log.lock().unwrap().push((a, d)))
                .await;
            let notified = seen.lock().unwrap().clone();
            (result, starts, notified)
        });
        let attempts = starts.len() as u32;
        match (&ending, &result) {
            (Ending::Success, Ok(())) => {}
            (Ending::Exhausted, Err(RetryError::Exhausted { attempts: a, last })) => {
                prop_assert_eq!(*a, attempts);
                prop_assert_eq!(last.is_timeout(), script[attempts as usize - 1] == Step::Hang);
            }
            (Ending::Permanent, Err(RetryError::Permanent { attempts: a, error })) => {
                prop_assert_eq!(*a, attempts);
                prop_assert_eq!(error, &Error::Permanent);
            }
            (Ending::Deadline(d), Err(RetryError::Deadline { attempts: a, next_delay, last })) => {
                prop_assert_eq!(*a, attempts);
                prop_assert_eq!(d, next_delay);
                if let AttemptError::Inner(e) = last {
                    prop_assert_ne!(e, &Error::Permanent);
                }
            }
            (
                Ending::HintBeyondDeadline(h),
                Err(RetryError::HintBeyondDeadline { attempts: a, hint, last }),
            ) => {
                prop_assert_eq!(*a, attempts);
                prop_assert_eq!(h, hint);
                prop_assert!(matches!(last, AttemptError::Inner(Error::Hint(_))));
            }
            (want, got) => prop_assert!(false, "model {want:?}, got {got:?}"),
        }
        prop_assert_eq!(got_starts, starts);
        prop_assert_eq!(got_notified, notified);
    }
}
