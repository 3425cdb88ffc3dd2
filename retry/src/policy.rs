//! The retry policy and the steps of its loop.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::backoff::{Cursor, Schedule};
use crate::blocking::RetryingBlocking;
use crate::budget::RetryBudget;
use crate::builder::RetryPolicyBuilder;
use crate::error::{AttemptError, RetryError};
use crate::hooks::{Hooks, Verdict};
use crate::metrics::PolicyMetrics;
use crate::retrying::{Phase, Rare, Retrying};

pub(crate) type BoxedDelays = Box<dyn Iterator<Item = Duration> + Send>;
pub(crate) type DelayFactory = dyn Fn() -> BoxedDelays + Send + Sync;

/// How to retry a fallible async (or blocking) operation: how many attempts, how long to wait
/// between them, and when to give up.
///
/// Build it once ([`RetryPolicy::builder`]), keep it (cloning is an `Arc` clone), and wrap each
/// call in [`retry`](Self::retry). The policy is not tied to an error type: one policy serves
/// calls whose errors differ. What depends on the error — which errors are transient
/// ([`retry_if`](Retrying::retry_if)), the server's hint
/// ([`retry_after`](Retrying::retry_after)), the [`notify`](Retrying::notify) hook — is given
/// per call, typed and without boxing. The error comes back unchanged inside [`RetryError`].
///
/// The loop, after an attempt fails:
///
/// 1. a permanent error (the call's [`retry_if`](Retrying::retry_if) predicate says `false`)
///    stops with [`RetryError::Permanent`]; a timed-out attempt is always transient;
/// 2. after `max_attempts` attempts (or when a custom backoff runs out) it stops with
///    [`RetryError::Exhausted`];
/// 3. the delay is the backoff's next delay (capped at `max_delay`), raised to the server's
///    hint ([`retry_after`](Retrying::retry_after)) if there is one, the hint first capped at
///    its own cap [`max_hint`](RetryPolicyBuilder::max_hint) (5 min by default, not
///    `max_delay`: a `Retry-After: 120` is waited out, not retried into another 429 after
///    30 s): `max(backoff, min(hint, max_hint))`;
/// 4. if that delay would end past the deadline (`max_elapsed` after the call started), it
///    stops without sleeping: with [`RetryError::HintBeyondDeadline`] when the hint set the
///    delay (retrying earlier than the server asked would only be refused again), otherwise
///    with [`RetryError::Deadline`];
/// 5. if a [`RetryBudget`] is attached and refuses, it stops with [`RetryError::Budget`];
/// 6. otherwise it calls the notify hook, emits a `tracing` event, sleeps (not at all for a
///    zero delay: no timer is touched) and tries again.
///
/// Durations saturate: a sleep or attempt timeout longer than 30 years (e.g. from
/// `Duration::MAX` settings) is set for 30 years, and a deadline too far away to represent is
/// no deadline; nothing overflows.
///
/// The success path reads no clock, creates no timer (unless `attempt_timeout` or
/// `max_elapsed` is set) and allocates nothing.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use seawall_retry::{RetryError, RetryPolicy};
///
/// #[derive(Debug, PartialEq)]
/// enum DbError { Deadlock, Syntax }
/// #[derive(Debug, PartialEq)]
/// enum HttpError { Status(u16) }
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), seawall_retry::ConfigError> {
/// let policy = RetryPolicy::builder().constant(Duration::from_millis(10)).build()?;
///
/// // One policy, two error types, each with its own typed predicate.
/// let db = policy
///     .retry(|| async { Err::<(), _>(DbError::Syntax) })
///     .retry_if(|e| *e == DbError::Deadlock)
///     .await;
/// assert!(matches!(db, Err(RetryError::Permanent { attempts: 1, .. })));
///
/// let http = policy
///     .retry(|| async { Err::<(), _>(HttpError::Status(503)) })
///     .retry_if(|HttpError::Status(s)| *s >= 500)
///     .await;
/// assert!(matches!(http, Err(RetryError::Exhausted { attempts: 3, .. })));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RetryPolicy {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) name: String,
    pub(crate) max_attempts: u32,
    pub(crate) backoff: Delays0,
    /// Every delay of a constant schedule without jitter: no cursor is kept for it.
    pub(crate) fixed_delay: Option<Duration>,
    pub(crate) max_delay: Duration,
    pub(crate) max_hint: Duration,
    pub(crate) attempt_timeout: Option<Duration>,
    pub(crate) max_elapsed: Option<Duration>,
    pub(crate) budget: Option<RetryBudget>,
    /// A budget or a deadline needs work when a call starts.
    pub(crate) needs_start: bool,
    /// No timeout, no budget, no deadline: the first attempt takes the inline fast path.
    pub(crate) plain: bool,
    pub(crate) metrics: Option<PolicyMetrics>,
}

/// The template each call's delay iterator starts from.
pub(crate) enum Delays0 {
    Builtin(Schedule),
    Custom(Box<DelayFactory>),
}

/// One call's delay iterator, created at the first failure.
pub(crate) enum Delays {
    Builtin(Cursor),
    Custom(BoxedDelays),
}

impl fmt::Debug for RetryPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &*self.inner;
        f.debug_struct("RetryPolicy")
            .field("name", &i.name)
            .field("max_attempts", &i.max_attempts)
            .field(
                "backoff",
                &match &i.backoff {
                    Delays0::Builtin(b) => format!("{b:?}"),
                    Delays0::Custom(_) => "custom".to_owned(),
                },
            )
            .field("max_delay", &i.max_delay)
            .field("max_hint", &i.max_hint)
            .field("attempt_timeout", &i.attempt_timeout)
            .field("max_elapsed", &i.max_elapsed)
            .field("budget", &i.budget)
            .field("metrics", &i.metrics.is_some())
            .finish()
    }
}

impl Default for RetryPolicy {
    /// The policy production services used: 3 attempts, 1 s then 2 s apart (see the defaults
    /// on [`RetryPolicyBuilder`]).
    fn default() -> Self {
        RetryPolicyBuilder::new().build_valid()
    }
}

/// What happens after a failed attempt.
pub(crate) enum Step {
    Retry(Duration),
    Stop(Stop),
}

#[derive(Clone, Copy)]
pub(crate) enum Stop {
    Exhausted,
    Permanent,
    Deadline(Duration),
    HintBeyondDeadline(Duration),
    Budget,
}

/// Tokio's own "far future": the longest a timer of this crate is set for.
const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

/// When a timer for `d` from `now` fires: `now + d`, saturating at 30 years from now. Longer
/// timers are not only unrepresentable near `Duration::MAX`: far beyond tokio's own far
/// future, a paused clock never reaches them.
pub(crate) fn after(now: Instant, d: Duration) -> Instant {
    now.checked_add(d.min(FAR_FUTURE)).unwrap_or(now)
}

impl RetryPolicy {
    pub(crate) fn from_inner(inner: Inner) -> Self {
        RetryPolicy {
            inner: Arc::new(inner),
        }
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }

    /// A builder with the defaults listed on [`RetryPolicyBuilder`].
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// use seawall_retry::{Jitter, RetryPolicy};
    ///
    /// let policy = RetryPolicy::builder()
    ///     .name("upstream")
    ///     .max_attempts(4)
    ///     .exponential(Duration::from_millis(100))
    ///     .jitter(Jitter::Full)
    ///     .attempt_timeout(Duration::from_secs(30))
    ///     .build()?;
    /// assert_eq!(policy.name(), "upstream");
    /// # Ok::<(), seawall_retry::ConfigError>(())
    /// ```
    pub fn builder() -> RetryPolicyBuilder {
        RetryPolicyBuilder::new()
    }

    /// The policy's name (the `policy` label of its metrics, and a field of its events).
    ///
    /// # Examples
    /// ```
    /// assert_eq!(seawall_retry::RetryPolicy::default().name(), "default");
    /// ```
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The most attempts one call makes, including the first.
    ///
    /// # Examples
    /// ```
    /// assert_eq!(seawall_retry::RetryPolicy::default().max_attempts(), 3);
    /// ```
    pub fn max_attempts(&self) -> u32 {
        self.inner.max_attempts
    }

    /// The attached retry budget, if any.
    ///
    /// # Examples
    /// ```
    /// use seawall_retry::{RetryBudget, RetryPolicy};
    /// assert!(RetryPolicy::default().budget().is_none());
    /// let policy = RetryPolicy::builder().budget(RetryBudget::default()).build()?;
    /// assert!(policy.budget().is_some());
    /// # Ok::<(), seawall_retry::ConfigError>(())
    /// ```
    pub fn budget(&self) -> Option<&RetryBudget> {
        self.inner.budget.as_ref()
    }

    /// Runs `op` until it succeeds or the policy gives up, sleeping between attempts.
    ///
    /// `op` is called once per attempt and returns a fresh future each time. If
    /// `attempt_timeout` is set, each attempt's future is raced against a timer; a timed-out
    /// attempt is dropped and counts as a transient failure.
    ///
    /// Every error is transient unless the returned future is told otherwise with
    /// [`retry_if`](Retrying::retry_if); [`retry_after`](Retrying::retry_after) reads a
    /// server's hint and [`notify`](Retrying::notify) observes each retry. Chain them before
    /// awaiting.
    ///
    /// # Errors
    /// A [`RetryError`] telling why it stopped ([`Exhausted`](RetryError::Exhausted),
    /// [`Permanent`](RetryError::Permanent), [`Deadline`](RetryError::Deadline),
    /// [`HintBeyondDeadline`](RetryError::HintBeyondDeadline),
    /// [`Budget`](RetryError::Budget)), holding the last attempt's error.
    ///
    /// # Panics
    /// Never by itself (a panic in `op` or in a hook propagates). Needs a tokio runtime with the
    /// time driver enabled only when it actually sleeps for a non-zero delay or applies
    /// `attempt_timeout`.
    ///
    /// # Cancel safety
    /// Dropping the returned future at any point is fine: it drops the running attempt's future
    /// (cancelling that attempt the way dropping it always does) or the pending sleep, and
    /// nothing else is left behind. A retry token already taken from the budget for the
    /// abandoned retry is not returned. Whether the *operation* is safe to abandon halfway is
    /// the operation's own property.
    ///
    /// # Examples
    /// ```
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// use std::time::Duration;
    /// use seawall_retry::{RetryError, RetryPolicy};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let policy = RetryPolicy::builder()
    ///     .max_attempts(3)
    ///     .constant(Duration::ZERO)
    ///     .build()?;
    ///
    /// let calls = AtomicU32::new(0);
    /// let answer = policy
    ///     .retry(|| async {
    ///         match calls.fetch_add(1, Ordering::Relaxed) {
    ///             0 | 1 => Err("connection reset"),
    ///             _ => Ok(42),
    ///         }
    ///     })
    ///     .await;
    /// assert_eq!(answer, Ok(42));
    ///
    /// let err = policy.retry(|| async { Err::<(), _>("down") }).await.unwrap_err();
    /// assert!(matches!(err, RetryError::Exhausted { attempts: 3, .. }));
    /// assert_eq!(err.into_last_error(), Some("down"));
    /// # Ok(()) }
    /// ```
    #[inline]
    pub fn retry<T, E, F, Fut>(&self, op: F) -> Retrying<'_, E, F, Fut>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        Retrying {
            policy: self,
            op,
            fut: None,
            attempt: 0,
            phase: Phase::Idle,
            deadline: None,
            delays: Rare::NONE,
            timer: Rare::NONE,
            hooks: Hooks::NONE,
            _error: PhantomData,
        }
    }

    /// The blocking form of [`retry`](Self::retry), for synchronous code: call
    /// [`run`](RetryingBlocking::run) on the result to run `op` until it succeeds or the policy
    /// gives up, sleeping the thread between attempts.
    ///
    /// `attempt_timeout` does not apply (a synchronous call cannot be interrupted); every other
    /// setting does. Do not run it on an async runtime's worker thread.
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// use seawall_retry::RetryPolicy;
    ///
    /// let policy = RetryPolicy::builder().constant(Duration::ZERO).build()?;
    /// let mut n = 0;
    /// let v = policy
    ///     .retry_blocking(|| {
    ///         n += 1;
    ///         if n < 3 { Err(format!("try {n} failed")) } else { Ok(n) }
    ///     })
    ///     .run();
    /// assert_eq!(v, Ok(3));
    /// # Ok::<(), seawall_retry::ConfigError>(())
    /// ```
    pub fn retry_blocking<T, E, F>(&self, op: F) -> RetryingBlocking<'_, E, F>
    where
        F: FnMut() -> Result<T, E>,
    {
        RetryingBlocking::new(self, op)
    }

    /// Deposits into the budget and computes the deadline (only called when either is set).
    #[cold]
    #[inline(never)]
    pub(crate) fn start(&self) -> Option<Instant> {
        let inner = &*self.inner;
        if let Some(budget) = &inner.budget {
            let units = budget.deposit_and_get();
            if let Some(m) = &inner.metrics {
                m.budget_tokens.set(RetryBudget::units_to_tokens(units));
            }
        }
        // An unrepresentable deadline is no deadline.
        inner
            .max_elapsed
            .and_then(|d| Instant::now().checked_add(d))
    }

    #[inline]
    pub(crate) fn on_success(&self, attempt: u32) {
        if let Some(m) = &self.inner.metrics {
            m.attempt_success.inc();
            if attempt == 1 {
                m.call_first_try.inc();
            } else {
                m.call_after_retry.inc();
            }
        }
        if attempt > 1 {
            tracing::debug!(policy = %self.inner.name, attempts = attempt, "retry succeeded");
        }
    }

    /// Steps 1 to 6 for one failed attempt: the typed part (classification, hint, notify)
    /// around [`next_step`](Self::next_step).
    pub(crate) fn on_failure<E, P, H, N>(
        &self,
        attempt: u32,
        err: &AttemptError<E>,
        delays: &mut Option<Delays>,
        deadline: Option<Instant>,
        hooks: &mut Hooks<P, H, N>,
    ) -> Step
    where
        P: FnMut(&E) -> bool,
        H: FnMut(&E) -> Option<Duration>,
        N: FnMut(u32, &AttemptError<E>, Duration),
    {
        let metrics = self.inner.metrics.as_ref();
        let hint = match hooks.classify(err) {
            Verdict::Permanent => {
                if let Some(m) = metrics {
                    m.attempt_permanent.inc();
                }
                return Step::Stop(Stop::Permanent);
            }
            Verdict::Transient(hint) => {
                if let Some(m) = metrics {
                    if err.is_timeout() {
                        m.attempt_timeout.inc();
                    } else {
                        m.attempt_transient.inc();
                    }
                }
                hint
            }
        };
        let step = self.next_step(attempt, hint, delays, deadline, err.is_timeout());
        if let Step::Retry(delay) = step {
            hooks.notify(attempt, err, delay);
        }
        step
    }

    /// Steps 2 to 5 (and the event of step 6), which do not depend on the error type.
    #[cold]
    #[inline(never)]
    fn next_step(
        &self,
        attempt: u32,
        hint: Option<Duration>,
        delays: &mut Option<Delays>,
        deadline: Option<Instant>,
        timeout: bool,
    ) -> Step {
        let inner = &*self.inner;
        // 2. attempts
        if attempt >= inner.max_attempts {
            return Step::Stop(Stop::Exhausted);
        }
        let next = if let Some(fixed) = inner.fixed_delay {
            Some(fixed)
        } else {
            let delays = delays.get_or_insert_with(|| match &inner.backoff {
                Delays0::Builtin(s) => Delays::Builtin(s.start()),
                Delays0::Custom(f) => Delays::Custom(f()),
            });
            match (delays, &inner.backoff) {
                (Delays::Builtin(cursor), Delays0::Builtin(s)) => Some(s.next(cursor)),
                (Delays::Custom(it), _) => it.next(),
                (Delays::Builtin(_), Delays0::Custom(_)) => None,
            }
        };
        let Some(backoff) = next else {
            return Step::Stop(Stop::Exhausted);
        };
        // 3. max(backoff, min(hint, max_hint))
        let hint = hint.map(|h| h.min(inner.max_hint)).filter(|h| *h > backoff);
        let delay = hint.unwrap_or(backoff);
        // 4. deadline
        if let Some(deadline) = deadline {
            let ends = Instant::now().checked_add(delay);
            if ends.is_none_or(|ends| ends > deadline) {
                return Step::Stop(match hint {
                    Some(hint) => Stop::HintBeyondDeadline(hint),
                    None => Stop::Deadline(delay),
                });
            }
        }
        // 5. budget
        if let Some(budget) = &inner.budget {
            let allowed = budget.try_withdraw();
            if let Some(m) = &inner.metrics {
                m.budget_tokens.set(budget.tokens());
            }
            if !allowed {
                return Step::Stop(Stop::Budget);
            }
        }
        // 6. (the caller notifies and sleeps)
        tracing::debug!(
            policy = %inner.name,
            attempt,
            delay = ?delay,
            timeout,
            "retrying"
        );
        Step::Retry(delay)
    }

    #[cold]
    #[inline(never)]
    pub(crate) fn stop<E>(
        &self,
        stop: Stop,
        attempts: u32,
        last: AttemptError<E>,
    ) -> RetryError<E> {
        let inner = &*self.inner;
        let err = match stop {
            Stop::Exhausted => RetryError::Exhausted { attempts, last },
            Stop::Deadline(next_delay) => RetryError::Deadline {
                attempts,
                next_delay,
                last,
            },
            Stop::HintBeyondDeadline(hint) => RetryError::HintBeyondDeadline {
                attempts,
                hint,
                last,
            },
            Stop::Budget => RetryError::Budget { attempts, last },
            Stop::Permanent => match last {
                AttemptError::Inner(error) => RetryError::Permanent { attempts, error },
                // Timeouts are never classified permanent; keep the value anyway.
                last @ AttemptError::Timeout { .. } => RetryError::Exhausted { attempts, last },
            },
        };
        if let Some(m) = &inner.metrics {
            match &err {
                RetryError::Exhausted { .. } => m.call_exhausted.inc(),
                RetryError::Permanent { .. } => m.call_permanent.inc(),
                RetryError::Deadline { .. } => m.call_deadline.inc(),
                RetryError::HintBeyondDeadline { .. } => m.call_hint_beyond_deadline.inc(),
                RetryError::Budget { .. } => m.call_budget.inc(),
            };
        }
        match &err {
            RetryError::Permanent { .. } => {
                tracing::debug!(policy = %inner.name, attempts, reason = "permanent", "not retrying");
            }
            RetryError::Deadline { next_delay, .. } => tracing::warn!(
                policy = %inner.name,
                attempts,
                reason = "deadline",
                next_delay = ?next_delay,
                "giving up"
            ),
            other => tracing::warn!(
                policy = %inner.name,
                attempts,
                reason = other.reason(),
                "giving up"
            ),
        }
        err
    }
}
