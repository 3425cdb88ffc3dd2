//! The retry policy and its loop.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use crate::backoff::{Backoff, BackoffBuilder, Cursor, Jitter, Schedule};
use crate::budget::RetryBudget;
use crate::error::{AttemptError, ConfigError, RetryError};
use crate::metrics::{Metrics, PolicyMetrics};

type Predicate<E> = dyn Fn(&E) -> bool + Send + Sync;
type Hint<E> = dyn Fn(&E) -> Option<Duration> + Send + Sync;
type Notify<E> = dyn Fn(u32, &AttemptError<E>, Duration) + Send + Sync;
type BoxedDelays = Box<dyn Iterator<Item = Duration> + Send>;
type DelayFactory = dyn Fn() -> BoxedDelays + Send + Sync;

/// The default cap on a server's hint ([`RetryPolicyBuilder::max_hint`]).
const DEFAULT_MAX_HINT: Duration = Duration::from_secs(300);

/// How to retry a fallible async (or blocking) operation: how many attempts, how long to wait
/// between them, which errors are worth retrying, and when to give up.
///
/// Build it once ([`RetryPolicy::builder`]), keep it (cloning is an `Arc` clone), and wrap each
/// call in [`retry`](Self::retry). `E` is the operation's error type; it comes back unchanged
/// inside [`RetryError`].
///
/// The loop, after an attempt fails:
///
/// 1. a permanent error (the [`retry_if`](RetryPolicyBuilder::retry_if) predicate says `false`)
///    stops with [`RetryError::Permanent`]; a timed-out attempt is always transient;
/// 2. after `max_attempts` attempts (or when a custom backoff runs out) it stops with
///    [`RetryError::Exhausted`];
/// 3. the delay is the backoff's next delay (capped at `max_delay`), raised to the server's
///    hint ([`retry_after`](RetryPolicyBuilder::retry_after)) if there is one, the hint first
///    capped at its own cap [`max_hint`](RetryPolicyBuilder::max_hint) (5 min by default, not
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
/// The success path reads no clock, creates no timer (unless `attempt_timeout` or
/// `max_elapsed` is set) and allocates nothing.
pub struct RetryPolicy<E> {
    inner: Arc<Inner<E>>,
}

struct Inner<E> {
    name: String,
    max_attempts: u32,
    backoff: Delays0,
    max_delay: Duration,
    max_hint: Duration,
    attempt_timeout: Option<Duration>,
    max_elapsed: Option<Duration>,
    budget: Option<RetryBudget>,
    /// A budget or a deadline needs work when a call starts.
    needs_start: bool,
    /// No timeout, no budget, no deadline: the first attempt takes the inline fast path.
    plain: bool,
    retry_if: Option<Box<Predicate<E>>>,
    retry_after: Option<Box<Hint<E>>>,
    notify: Option<Box<Notify<E>>>,
    metrics: Option<PolicyMetrics>,
}

/// The template each call's delay iterator starts from.
enum Delays0 {
    Builtin(Schedule),
    Custom(Box<DelayFactory>),
}

/// One call's delay iterator, created at the first failure.
enum Delays {
    Builtin(Cursor),
    Custom(BoxedDelays),
}

impl<E> Clone for RetryPolicy<E> {
    fn clone(&self) -> Self {
        RetryPolicy {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<E> fmt::Debug for RetryPolicy<E> {
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
            .field("retry_if", &i.retry_if.is_some())
            .field("retry_after", &i.retry_after.is_some())
            .field("notify", &i.notify.is_some())
            .field("metrics", &i.metrics.is_some())
            .finish()
    }
}

/// What happens after a failed attempt.
enum Step {
    Retry(Duration),
    Stop(Stop),
}

#[derive(Clone, Copy)]
enum Stop {
    Exhausted,
    Permanent,
    Deadline(Duration),
    HintBeyondDeadline(Duration),
    Budget,
}

/// Points the call's (lazily boxed, then reused) timer at `deadline` and returns it.
fn arm(timer: &mut Option<Pin<Box<Sleep>>>, deadline: Instant) -> &mut Pin<Box<Sleep>> {
    match timer {
        Some(sleep) => {
            sleep.as_mut().reset(deadline);
            sleep
        }
        None => timer.insert(Box::pin(tokio::time::sleep_until(deadline))),
    }
}

impl<E> RetryPolicy<E> {
    /// A builder with the defaults listed on [`RetryPolicyBuilder`].
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// use seawall_retry::{Jitter, RetryPolicy};
    ///
    /// #[derive(Debug)]
    /// enum ApiError { Busy { retry_after: Duration }, BadRequest }
    ///
    /// let policy = RetryPolicy::<ApiError>::builder()
    ///     .name("upstream")
    ///     .max_attempts(4)
    ///     .exponential(Duration::from_millis(100))
    ///     .jitter(Jitter::Full)
    ///     .attempt_timeout(Duration::from_secs(30))
    ///     .retry_if(|e| !matches!(e, ApiError::BadRequest))
    ///     .retry_after(|e| match e {
    ///         ApiError::Busy { retry_after } => Some(*retry_after),
    ///         _ => None,
    ///     })
    ///     .build()?;
    /// assert_eq!(policy.name(), "upstream");
    /// # Ok::<(), seawall_retry::ConfigError>(())
    /// ```
    pub fn builder() -> RetryPolicyBuilder<E> {
        RetryPolicyBuilder::default()
    }

    /// The policy's name (the `policy` label of its metrics, and a field of its events).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The most attempts one call makes, including the first.
    pub fn max_attempts(&self) -> u32 {
        self.inner.max_attempts
    }

    /// The attached retry budget, if any.
    pub fn budget(&self) -> Option<&RetryBudget> {
        self.inner.budget.as_ref()
    }

    /// Runs `op` until it succeeds or the policy gives up, sleeping between attempts.
    ///
    /// `op` is called once per attempt and returns a fresh future each time. If
    /// `attempt_timeout` is set, each attempt's future is wrapped in [`tokio::time::timeout`];
    /// a timed-out attempt is dropped and counts as a transient failure.
    ///
    /// # Errors
    /// A [`RetryError`] telling why it stopped ([`Exhausted`](RetryError::Exhausted),
    /// [`Permanent`](RetryError::Permanent), [`Deadline`](RetryError::Deadline),
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
    /// let policy = RetryPolicy::<&str>::builder()
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
    pub fn retry<T, F, Fut>(&self, op: F) -> Retrying<'_, E, F, Fut>
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
            delays: None,
            timer: None,
        }
    }

    /// The blocking form of [`retry`](Self::retry), for synchronous code: runs `op` until it
    /// succeeds or the policy gives up, sleeping the thread between attempts.
    ///
    /// `attempt_timeout` does not apply (a synchronous call cannot be interrupted); every other
    /// setting does. Do not call it on an async runtime's worker thread.
    ///
    /// # Errors
    /// As [`retry`](Self::retry).
    ///
    /// # Panics
    /// Never by itself (a panic in `op` or in a hook propagates).
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// use seawall_retry::RetryPolicy;
    ///
    /// let policy = RetryPolicy::<String>::builder().constant(Duration::ZERO).build()?;
    /// let mut n = 0;
    /// let v = policy.retry_blocking(|| {
    ///     n += 1;
    ///     if n < 3 { Err(format!("try {n} failed")) } else { Ok(n) }
    /// });
    /// assert_eq!(v, Ok(3));
    /// # Ok::<(), seawall_retry::ConfigError>(())
    /// ```
    pub fn retry_blocking<T, F>(&self, mut op: F) -> Result<T, RetryError<E>>
    where
        F: FnMut() -> Result<T, E>,
    {
        let mut deadline = None;
        if self.inner.budget.is_some() || self.inner.max_elapsed.is_some() {
            deadline = self.start();
        }
        let mut delays = None;
        let mut attempt: u32 = 1;
        loop {
            let err = match op() {
                Ok(v) => {
                    self.on_success(attempt);
                    return Ok(v);
                }
                Err(e) => AttemptError::Failed(e),
            };
            match self.on_failure(attempt, &err, &mut delays, deadline) {
                Step::Retry(delay) => {
                    if !delay.is_zero() {
                        std::thread::sleep(delay);
                    }
                }
                Step::Stop(stop) => return Err(self.stop(stop, attempt, err)),
            }
            attempt += 1;
        }
    }

    /// Deposits into the budget and computes the deadline (only called when either is set).
    #[cold]
    #[inline(never)]
    fn start(&self) -> Option<Instant> {
        let inner = &*self.inner;
        if let Some(budget) = &inner.budget {
            let units = budget.deposit_and_get();
            if let Some(m) = &inner.metrics {
                m.budget_tokens.set(RetryBudget::units_to_tokens(units));
            }
        }
        inner
            .max_elapsed
            .and_then(|d| Instant::now().checked_add(d))
    }

    #[inline]
    fn on_success(&self, attempt: u32) {
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

    #[cold]
    #[inline(never)]
    fn on_failure(
        &self,
        attempt: u32,
        err: &AttemptError<E>,
        delays: &mut Option<Delays>,
        deadline: Option<Instant>,
    ) -> Step {
        let inner = &*self.inner;
        let metrics = inner.metrics.as_ref();
        let hint = match err {
            AttemptError::Failed(e) => {
                if let Some(pred) = &inner.retry_if
                    && !pred(e)
                {
                    if let Some(m) = metrics {
                        m.attempt_permanent.inc();
                    }
                    return Step::Stop(Stop::Permanent);
                }
                if let Some(m) = metrics {
                    m.attempt_transient.inc();
                }
                inner.retry_after.as_ref().and_then(|h| h(e))
            }
            AttemptError::TimedOut(_) => {
                if let Some(m) = metrics {
                    m.attempt_timeout.inc();
                }
                None
            }
        };
        if attempt >= inner.max_attempts {
            return Step::Stop(Stop::Exhausted);
        }
        let delays = delays.get_or_insert_with(|| match &inner.backoff {
            Delays0::Builtin(s) => Delays::Builtin(s.start()),
            Delays0::Custom(f) => Delays::Custom(f()),
        });
        let next = match (delays, &inner.backoff) {
            (Delays::Builtin(cursor), Delays0::Builtin(s)) => Some(s.next(cursor)),
            (Delays::Custom(it), _) => it.next(),
            (Delays::Builtin(_), Delays0::Custom(_)) => None,
        };
        let Some(backoff) = next else {
            return Step::Stop(Stop::Exhausted);
        };
        let hint = hint.map(|h| h.min(inner.max_hint)).filter(|h| *h > backoff);
        let delay = hint.unwrap_or(backoff);
        if let Some(deadline) = deadline {
            let ends = Instant::now().checked_add(delay);
            if ends.is_none_or(|ends| ends > deadline) {
                return Step::Stop(match hint {
                    Some(hint) => Stop::HintBeyondDeadline(hint),
                    None => Stop::Deadline(delay),
                });
            }
        }
        if let Some(budget) = &inner.budget {
            let allowed = budget.try_withdraw();
            if let Some(m) = metrics {
                m.budget_tokens.set(budget.tokens());
            }
            if !allowed {
                return Step::Stop(Stop::Budget);
            }
        }
        if let Some(notify) = &inner.notify {
            notify(attempt, err, delay);
        }
        tracing::debug!(
            policy = %inner.name,
            attempt,
            delay = ?delay,
            timeout = err.is_timeout(),
            "retrying"
        );
        Step::Retry(delay)
    }

    #[cold]
    #[inline(never)]
    fn stop(&self, stop: Stop, attempts: u32, last: AttemptError<E>) -> RetryError<E> {
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
                AttemptError::Failed(error) => RetryError::Permanent { attempts, error },
                // Timeouts are never classified permanent; keep the value anyway.
                last @ AttemptError::TimedOut(_) => RetryError::Exhausted { attempts, last },
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The next poll starts an attempt.
    Idle,
    /// An attempt is running, under the timer when `timed` holds the attempt timeout.
    Running { timed: Option<Duration> },
    /// Sleeping on the timer before the next attempt.
    Sleeping,
    /// The result was returned.
    Done,
}

pin_project! {
    /// The future returned by [`RetryPolicy::retry`].
    ///
    /// A small hand-written state machine: the policy reference, the operation, the running
    /// attempt's future, a 24-byte backoff cursor and a timer that is boxed on first use and
    /// then reused for every sleep and attempt timeout of the call. The success path touches
    /// none of the retry state, so it costs about what the bare `.await` costs.
    ///
    /// Polling it again after it returned `Ready` returns `Pending` (it does not call the
    /// operation again).
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct Retrying<'a, E, F, Fut> {
        policy: &'a RetryPolicy<E>,
        op: F,
        #[pin]
        fut: Option<Fut>,
        attempt: u32,
        phase: Phase,
        deadline: Option<Instant>,
        delays: Option<Delays>,
        timer: Option<Pin<Box<Sleep>>>,
    }
}

impl<E, F, Fut> fmt::Debug for Retrying<'_, E, F, Fut> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retrying")
            .field("policy", &self.policy.name())
            .field("attempt", &self.attempt)
            .field("phase", &self.phase)
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl<E, T, F, Fut> Future for Retrying<'_, E, F, Fut>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    type Output = Result<T, RetryError<E>>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.as_mut().project();
        let policy = *this.policy;
        if *this.attempt == 0 && policy.inner.plain {
            // The first attempt of a policy without timeout, deadline or budget is polled
            // right here, so that a success costs about what a bare `.await` costs.
            *this.attempt = 1;
            *this.phase = Phase::Running { timed: None };
            let mut fut = this.fut;
            fut.set(Some((this.op)()));
            if let Some(f) = fut.as_mut().as_pin_mut() {
                match f.poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(v)) => {
                        fut.set(None);
                        *this.phase = Phase::Done;
                        policy.on_success(1);
                        return Poll::Ready(Ok(v));
                    }
                    Poll::Ready(Err(e)) => {
                        fut.set(None);
                        return self.drive(cx, Some(AttemptError::Failed(e)));
                    }
                }
            }
        }
        self.drive(cx, None)
    }
}

impl<E, T, F, Fut> Retrying<'_, E, F, Fut>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    /// The general state machine; `failed` is an attempt failure still to be handled.
    fn drive(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut failed: Option<AttemptError<E>>,
    ) -> Poll<Result<T, RetryError<E>>> {
        let mut this = self.project();
        let policy = *this.policy;
        let inner = &*policy.inner;
        loop {
            let err = match failed.take() {
                Some(err) => err,
                None => {
                    // Starting an attempt falls straight through to polling it.
                    let begin = match *this.phase {
                        Phase::Done => return Poll::Pending,
                        Phase::Running { .. } => false,
                        Phase::Idle => true,
                        Phase::Sleeping => {
                            if let Some(timer) = this.timer.as_mut() {
                                ready!(timer.as_mut().poll(cx));
                            }
                            true
                        }
                    };
                    if begin {
                        if *this.attempt == 0 && inner.needs_start {
                            *this.deadline = policy.start();
                        }
                        *this.attempt += 1;
                        this.fut.set(Some((this.op)()));
                        let mut timed = None;
                        if let Some(limit) = inner.attempt_timeout
                            && let Some(at) = Instant::now().checked_add(limit)
                        {
                            arm(this.timer, at);
                            timed = Some(limit);
                        }
                        *this.phase = Phase::Running { timed };
                    }
                    let Some(fut) = this.fut.as_mut().as_pin_mut() else {
                        *this.phase = Phase::Idle;
                        continue;
                    };
                    let outcome = match fut.poll(cx) {
                        Poll::Ready(r) => r.map_err(AttemptError::Failed),
                        Poll::Pending => {
                            let (Phase::Running { timed: Some(limit) }, Some(timer)) =
                                (*this.phase, this.timer.as_mut())
                            else {
                                return Poll::Pending;
                            };
                            ready!(timer.as_mut().poll(cx));
                            Err(AttemptError::TimedOut(limit))
                        }
                    };
                    this.fut.set(None);
                    match outcome {
                        Ok(v) => {
                            *this.phase = Phase::Done;
                            policy.on_success(*this.attempt);
                            return Poll::Ready(Ok(v));
                        }
                        Err(e) => e,
                    }
                }
            };
            let attempt = *this.attempt;
            match policy.on_failure(attempt, &err, this.delays, *this.deadline) {
                Step::Retry(delay) if delay.is_zero() => *this.phase = Phase::Idle,
                Step::Retry(delay) => {
                    arm(this.timer, Instant::now() + delay);
                    *this.phase = Phase::Sleeping;
                }
                Step::Stop(stop) => {
                    *this.phase = Phase::Done;
                    return Poll::Ready(Err(policy.stop(stop, attempt, err)));
                }
            }
        }
    }
}

/// Builds a [`RetryPolicy`].
///
/// # Default
/// | setting | default |
/// |---|---|
/// | `name` | `"default"` |
/// | `max_attempts` | 3 (the first attempt and two retries) |
/// | backoff | exponential from 1 s, factor 2: 1 s, 2 s, 4 s, ... |
/// | `max_delay` | 30 s, or the initial delay if that is longer |
/// | `max_hint` | 5 min |
/// | `jitter` | [`Jitter::None`] (set [`Jitter::Full`] when many clients retry the same thing) |
/// | `seed` | none (each call draws from a fresh seed) |
/// | `attempt_timeout` | none |
/// | `max_elapsed` | none |
/// | `budget` | none |
/// | `retry_if` | every error is transient |
/// | `retry_after` | no hints |
/// | `notify` | none |
/// | `metrics` | none |
///
/// The backoff setters ([`constant`](Self::constant), [`linear`](Self::linear),
/// [`exponential`](Self::exponential), [`factor`](Self::factor),
/// [`max_delay`](Self::max_delay), [`jitter`](Self::jitter), [`seed`](Self::seed)) may come in
/// any order; [`backoff`](Self::backoff) and [`backoff_fn`](Self::backoff_fn) replace the
/// schedule wholesale.
pub struct RetryPolicyBuilder<E> {
    name: String,
    max_attempts: u32,
    backoff: BackoffBuilder,
    factor: Option<f64>,
    max_delay: Option<Duration>,
    max_hint: Duration,
    jitter: Option<Jitter>,
    seed: Option<u64>,
    custom: Option<Box<DelayFactory>>,
    attempt_timeout: Option<Duration>,
    max_elapsed: Option<Duration>,
    budget: Option<RetryBudget>,
    retry_if: Option<Box<Predicate<E>>>,
    retry_after: Option<Box<Hint<E>>>,
    notify: Option<Box<Notify<E>>>,
    metrics: Option<Metrics>,
}

impl<E> Default for RetryPolicyBuilder<E> {
    fn default() -> Self {
        RetryPolicyBuilder {
            name: "default".to_owned(),
            max_attempts: 3,
            backoff: BackoffBuilder::default(),
            factor: None,
            max_delay: None,
            max_hint: DEFAULT_MAX_HINT,
            jitter: None,
            seed: None,
            custom: None,
            attempt_timeout: None,
            max_elapsed: None,
            budget: None,
            retry_if: None,
            retry_after: None,
            notify: None,
            metrics: None,
        }
    }
}

impl<E> fmt::Debug for RetryPolicyBuilder<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryPolicyBuilder")
            .field("name", &self.name)
            .field("max_attempts", &self.max_attempts)
            .field("backoff", &self.backoff)
            .field("custom_backoff", &self.custom.is_some())
            .field("attempt_timeout", &self.attempt_timeout)
            .field("max_elapsed", &self.max_elapsed)
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

impl<E> RetryPolicyBuilder<E> {
    /// Names the policy: the `policy` label of its metrics and a field of its tracing events.
    /// Keep it a fixed, low-cardinality name such as `"upstream"`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The most attempts per call, including the first (3 means up to 2 retries).
    pub fn max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = max_attempts;
        self
    }

    /// Uses a prepared schedule (its jitter, cap and seed included); later backoff setters
    /// adjust it.
    pub fn backoff(mut self, backoff: BackoffBuilder) -> Self {
        self.backoff = backoff;
        self.custom = None;
        self
    }

    /// Uses a custom schedule: `make` is called (at the first failure of each call) for a fresh
    /// iterator of delays. A finite iterator also ends the retries when it runs out. This boxes
    /// the iterator once per failing call; the built-in schedules allocate nothing.
    ///
    /// # Examples
    /// ```
    /// # use std::time::Duration;
    /// let policy = seawall_retry::RetryPolicy::<()>::builder()
    ///     .backoff_fn(|| [10, 50, 250].into_iter().map(Duration::from_millis))
    ///     .build()?;
    /// # Ok::<(), seawall_retry::ConfigError>(())
    /// ```
    pub fn backoff_fn<F, I>(mut self, make: F) -> Self
    where
        F: Fn() -> I + Send + Sync + 'static,
        I: Iterator<Item = Duration> + Send + 'static,
    {
        self.custom = Some(Box::new(move || Box::new(make()) as BoxedDelays));
        self
    }

    /// The same delay before every retry.
    pub fn constant(mut self, delay: Duration) -> Self {
        self.backoff = Backoff::constant(delay);
        self.custom = None;
        self
    }

    /// `initial`, then `initial + step`, `initial + 2 × step`, ...
    pub fn linear(mut self, initial: Duration, step: Duration) -> Self {
        self.backoff = Backoff::linear(initial, step);
        self.custom = None;
        self
    }

    /// `initial`, then `initial × factor`, ... (factor 2 unless [`factor`](Self::factor) says
    /// otherwise).
    pub fn exponential(mut self, initial: Duration) -> Self {
        self.backoff = Backoff::exponential(initial);
        self.custom = None;
        self
    }

    /// The growth factor of the exponential schedule (finite, >= 1).
    pub fn factor(mut self, factor: f64) -> Self {
        self.factor = Some(factor);
        self
    }

    /// The cap on every backoff delay (not on a server's hint: see
    /// [`max_hint`](Self::max_hint)).
    pub fn max_delay(mut self, max_delay: Duration) -> Self {
        self.max_delay = Some(max_delay);
        self
    }

    /// The cap on a server's hint ([`retry_after`](Self::retry_after)), separate from
    /// `max_delay`: a hint above it is waited out only up to this long. A hint that would end
    /// past the deadline stops the call with [`RetryError::HintBeyondDeadline`].
    pub fn max_hint(mut self, max_hint: Duration) -> Self {
        self.max_hint = max_hint;
        self
    }

    /// The jitter kind ([`Jitter`]).
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = Some(jitter);
        self
    }

    /// Seeds the jitter: every call then sees the same delay sequence (for tests and demos).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Bounds each attempt: an attempt still running after `timeout` is dropped and counts as
    /// a transient failure ([`AttemptError::TimedOut`]). Not applied by
    /// [`retry_blocking`](RetryPolicy::retry_blocking).
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = Some(timeout);
        self
    }

    /// A total deadline, `max_elapsed` after the call starts: no sleep is started that would end
    /// past it (the call stops with [`RetryError::Deadline`] instead). An attempt already
    /// running is not cut short; combine with [`attempt_timeout`](Self::attempt_timeout).
    pub fn max_elapsed(mut self, max_elapsed: Duration) -> Self {
        self.max_elapsed = Some(max_elapsed);
        self
    }

    /// Attaches a shared [`RetryBudget`]: every call deposits, every retry withdraws.
    pub fn budget(mut self, budget: RetryBudget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Classifies errors: `true` means transient (retry), `false` permanent (stop at once).
    /// Timeouts are always transient.
    pub fn retry_if<F>(mut self, is_transient: F) -> Self
    where
        F: Fn(&E) -> bool + Send + Sync + 'static,
    {
        self.retry_if = Some(Box::new(is_transient));
        self
    }

    /// Extracts a server's hint (a `Retry-After`) from an error: the next delay is then at least
    /// the hint (itself capped at [`max_hint`](Self::max_hint)).
    pub fn retry_after<F>(mut self, hint: F) -> Self
    where
        F: Fn(&E) -> Option<Duration> + Send + Sync + 'static,
    {
        self.retry_after = Some(Box::new(hint));
        self
    }

    /// Called before each retry's sleep with the number of the attempt that just failed
    /// (1-based), its failure, and the delay about to be slept. Not called when the policy
    /// gives up.
    pub fn notify<F>(mut self, notify: F) -> Self
    where
        F: Fn(u32, &AttemptError<E>, Duration) + Send + Sync + 'static,
    {
        self.notify = Some(Box::new(notify));
        self
    }

    /// Records this policy's metrics in `metrics` (labelled with its name).
    pub fn metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Validates the configuration and builds the policy.
    ///
    /// # Errors
    /// [`ConfigError::ZeroAttempts`] (`max_attempts`), [`ConfigError::Factor`] (`factor` NaN,
    /// infinite or below 1), [`ConfigError::MaxDelayBelowInitial`] (`max_delay`).
    ///
    /// # Panics
    /// Never.
    ///
    /// # Examples
    /// ```
    /// # use std::time::Duration;
    /// let err = seawall_retry::RetryPolicy::<()>::builder().max_attempts(0).build().unwrap_err();
    /// assert_eq!(err.field(), "max_attempts");
    /// ```
    pub fn build(self) -> Result<RetryPolicy<E>, ConfigError> {
        if self.max_attempts == 0 {
            return Err(ConfigError::ZeroAttempts);
        }
        let mut b = self.backoff;
        if let Some(f) = self.factor {
            b = b.factor(f);
        }
        if let Some(d) = self.max_delay {
            b = b.max_delay(d);
        }
        if let Some(j) = self.jitter {
            b = b.jitter(j);
        }
        if let Some(s) = self.seed {
            b = b.seed(s);
        }
        let built = b.build()?;
        let max_delay = built.max_delay();
        let backoff = match self.custom {
            Some(f) => Delays0::Custom(f),
            None => Delays0::Builtin(built.schedule()),
        };
        let metrics = self
            .metrics
            .map(|m| m.resolve(&self.name, self.budget.is_some()));
        if let (Some(m), Some(budget)) = (&metrics, &self.budget) {
            m.budget_tokens.set(budget.tokens());
        }
        Ok(RetryPolicy {
            inner: Arc::new(Inner {
                name: self.name,
                max_attempts: self.max_attempts,
                backoff,
                max_delay,
                max_hint: self.max_hint,
                attempt_timeout: self.attempt_timeout,
                max_elapsed: self.max_elapsed,
                needs_start: self.budget.is_some() || self.max_elapsed.is_some(),
                plain: self.budget.is_none()
                    && self.max_elapsed.is_none()
                    && self.attempt_timeout.is_none(),
                budget: self.budget,
                retry_if: self.retry_if,
                retry_after: self.retry_after,
                notify: self.notify,
                metrics,
            }),
        })
    }
}
