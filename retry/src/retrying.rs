//! The future returned by [`RetryPolicy::retry`]: the retry loop as a state machine.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use crate::error::{AttemptError, RetryError};
use crate::hooks::Hooks;
use crate::policy::{Delays, RetryPolicy, Step, after};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// The next poll starts an attempt.
    Idle,
    /// An attempt is running, under the timer when `timed` holds the attempt timeout.
    Running { timed: Option<Duration> },
    /// Sleeping on the timer before the next attempt.
    Sleeping,
    /// The result was returned.
    Done,
}

/// The default predicate type of [`Retrying`]: no predicate (every error is transient).
pub type NoRetryIf<E> = fn(&E) -> bool;
/// The default hint type of [`Retrying`]: no hint.
pub type NoRetryAfter<E> = fn(&E) -> Option<Duration>;
/// The default notify type of [`Retrying`]: no hook.
pub type NoNotify<E> = fn(u32, &AttemptError<E>, Duration);

pin_project! {
    /// The future returned by [`RetryPolicy::retry`]; await it for the call's result.
    ///
    /// Before awaiting, the call's typed hooks can be chained on: [`retry_if`](Self::retry_if)
    /// (which errors are transient), [`retry_after`](Self::retry_after) (a server's hint) and
    /// [`notify`](Self::notify) (observe each retry). They are stored unboxed in the future,
    /// so one [`RetryPolicy`] serves any error type at no cost.
    ///
    /// A small hand-written state machine: the policy reference, the operation, the running
    /// attempt's future, a 24-byte backoff cursor and a timer that is boxed on first use and
    /// then reused for every sleep and attempt timeout of the call. The success path touches
    /// none of the retry state, so it costs about what the bare `.await` costs.
    ///
    /// Polling it again after it returned `Ready` returns `Pending` (it does not call the
    /// operation again).
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct Retrying<'a, E, F, Fut, P = NoRetryIf<E>, H = NoRetryAfter<E>, N = NoNotify<E>> {
        pub(crate) policy: &'a RetryPolicy,
        pub(crate) op: F,
        #[pin]
        pub(crate) fut: Option<Fut>,
        pub(crate) attempt: u32,
        pub(crate) phase: Phase,
        pub(crate) deadline: Option<Instant>,
        pub(crate) delays: Rare<Delays>,
        pub(crate) timer: Timer,
        pub(crate) hooks: Hooks<P, H, N>,
        pub(crate) _error: PhantomData<fn() -> E>,
    }
}

impl<E, F, Fut, P, H, N> fmt::Debug for Retrying<'_, E, F, Fut, P, H, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retrying")
            .field("policy", &self.policy.name())
            .field("attempt", &self.attempt)
            .field("phase", &self.phase)
            .field("deadline", &self.deadline)
            .field("retry_if", &self.hooks.retry_if.is_some())
            .field("retry_after", &self.hooks.retry_after.is_some())
            .field("notify", &self.hooks.notify.is_some())
            .finish_non_exhaustive()
    }
}

/// An `Option` whose drop is one inlined test, with the value's own drop kept out of line.
///
/// The call's timer and its delay cursor are rarely set (a success sets neither), yet the drop
/// glue of `Option<Pin<Box<Sleep>>>` and `Option<Delays>` (a boxed iterator) made dropping a
/// finished `Retrying` an out-of-line call of ~20 instructions on every call.
pub(crate) struct Rare<T>(pub(crate) Option<T>);

impl<T> Rare<T> {
    pub(crate) const NONE: Rare<T> = Rare(None);
}

impl<T> Drop for Rare<T> {
    #[inline]
    fn drop(&mut self) {
        // Test before taking: the common (empty) case then writes nothing back.
        if self.0.is_some() {
            drop_cold(self.0.take());
        }
    }
}

#[cold]
#[inline(never)]
fn drop_cold<T>(value: Option<T>) {
    drop(value);
}

/// The call's timer: boxed on first use, then reused for every sleep and attempt timeout.
pub(crate) type Timer = Rare<Pin<Box<Sleep>>>;

impl Timer {
    /// Points the timer at `deadline` and returns it.
    fn arm(&mut self, deadline: Instant) -> &mut Pin<Box<Sleep>> {
        match &mut self.0 {
            Some(sleep) => {
                sleep.as_mut().reset(deadline);
                sleep
            }
            slot @ None => slot.insert(Box::pin(tokio::time::sleep_until(deadline))),
        }
    }

    fn get(&mut self) -> Option<&mut Pin<Box<Sleep>>> {
        self.0.as_mut()
    }
}

impl<'a, E, F, Fut, P, H, N> Retrying<'a, E, F, Fut, P, H, N> {
    fn map_hooks<P2, H2, N2>(
        self,
        f: impl FnOnce(Hooks<P, H, N>) -> Hooks<P2, H2, N2>,
    ) -> Retrying<'a, E, F, Fut, P2, H2, N2> {
        Retrying {
            policy: self.policy,
            op: self.op,
            fut: self.fut,
            attempt: self.attempt,
            phase: self.phase,
            deadline: self.deadline,
            delays: self.delays,
            timer: self.timer,
            hooks: f(self.hooks),
            _error: PhantomData,
        }
    }

    /// Classifies this call's errors: `true` means transient (retry), `false` permanent (stop
    /// at once with [`RetryError::Permanent`]). Without it every error is transient. Timeouts
    /// are always transient.
    ///
    /// # Examples
    /// ```
    /// use seawall_retry::{RetryError, RetryPolicy};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let policy = RetryPolicy::default();
    /// let r = policy
    ///     .retry(|| async { Err::<(), u16>(400) })
    ///     .retry_if(|status| *status >= 500)
    ///     .await;
    /// assert!(matches!(r, Err(RetryError::Permanent { attempts: 1, error: 400 })));
    /// # }
    /// ```
    pub fn retry_if<P2>(self, is_transient: P2) -> Retrying<'a, E, F, Fut, P2, H, N>
    where
        P2: FnMut(&E) -> bool,
    {
        self.map_hooks(|h| h.with_retry_if(is_transient))
    }

    /// Extracts a server's hint (a `Retry-After`) from this call's errors: the next delay is
    /// then at least the hint, itself capped at
    /// [`max_hint`](crate::RetryPolicyBuilder::max_hint) (steps 3 and 4 on [`RetryPolicy`]).
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// use seawall_retry::RetryPolicy;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), seawall_retry::ConfigError> {
    /// let policy = RetryPolicy::builder().constant(Duration::ZERO).build()?;
    /// let start = tokio::time::Instant::now();
    /// let mut first = true;
    /// let r = policy
    ///     .retry(|| {
    ///         let busy = std::mem::take(&mut first);
    ///         async move { if busy { Err(Duration::from_secs(2)) } else { Ok(()) } }
    ///     })
    ///     .retry_after(|wait| Some(*wait))
    ///     .await;
    /// assert_eq!(r, Ok(()));
    /// assert_eq!(start.elapsed(), Duration::from_secs(2));
    /// # Ok(()) }
    /// ```
    pub fn retry_after<H2>(self, hint: H2) -> Retrying<'a, E, F, Fut, P, H2, N>
    where
        H2: FnMut(&E) -> Option<Duration>,
    {
        self.map_hooks(|h| h.with_retry_after(hint))
    }

    /// Called before each retry's sleep with the number of the attempt that just failed
    /// (1-based), its failure, and the delay about to be slept. Not called when the policy
    /// gives up.
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// use seawall_retry::RetryPolicy;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), seawall_retry::ConfigError> {
    /// let policy = RetryPolicy::builder().constant(Duration::ZERO).build()?;
    /// let mut seen = Vec::new();
    /// let r = policy
    ///     .retry(|| async { Err::<(), _>("reset") })
    ///     .notify(|attempt, err, delay| seen.push((attempt, err.to_string(), delay)))
    ///     .await;
    /// assert!(r.is_err());
    /// assert_eq!(seen.len(), 2); // two retries, none after the last attempt
    /// assert_eq!(seen[0], (1, "reset".to_owned(), Duration::ZERO));
    /// # Ok(()) }
    /// ```
    pub fn notify<N2>(self, notify: N2) -> Retrying<'a, E, F, Fut, P, H, N2>
    where
        N2: FnMut(u32, &AttemptError<E>, Duration),
    {
        self.map_hooks(|h| h.with_notify(notify))
    }
}

impl<E, T, F, Fut, P, H, N> Future for Retrying<'_, E, F, Fut, P, H, N>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    P: FnMut(&E) -> bool,
    H: FnMut(&E) -> Option<Duration>,
    N: FnMut(u32, &AttemptError<E>, Duration),
{
    type Output = Result<T, RetryError<E>>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.as_mut().project();
        let policy = *this.policy;
        if *this.attempt == 0 && policy.inner().plain {
            // The first attempt of a policy without timeout, deadline or budget is polled
            // right here, so that a success costs about what a bare `.await` costs.
            // The call's state is written only as far as the outcome needs it.
            let mut fut = this.fut;
            fut.set(Some((this.op)()));
            if let Some(f) = fut.as_mut().as_pin_mut() {
                match f.poll(cx) {
                    Poll::Pending => {
                        *this.attempt = 1;
                        *this.phase = Phase::Running { timed: None };
                        return Poll::Pending;
                    }
                    Poll::Ready(Ok(v)) => {
                        fut.set(None);
                        *this.phase = Phase::Done;
                        policy.on_success(1);
                        return Poll::Ready(Ok(v));
                    }
                    Poll::Ready(Err(e)) => {
                        fut.set(None);
                        *this.attempt = 1;
                        return self.drive(cx, Some(AttemptError::Inner(e)));
                    }
                }
            }
        }
        self.drive(cx, None)
    }
}

impl<E, T, F, Fut, P, H, N> Retrying<'_, E, F, Fut, P, H, N>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    P: FnMut(&E) -> bool,
    H: FnMut(&E) -> Option<Duration>,
    N: FnMut(u32, &AttemptError<E>, Duration),
{
    /// The general state machine; `failed` is an attempt failure still to be handled. Kept out
    /// of line so that `poll`'s first-attempt fast path stays a small function.
    #[inline(never)]
    fn drive(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut failed: Option<AttemptError<E>>,
    ) -> Poll<Result<T, RetryError<E>>> {
        let mut this = self.project();
        let policy = *this.policy;
        let inner = policy.inner();
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
                            if let Some(timer) = this.timer.get() {
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
                        if let Some(limit) = inner.attempt_timeout {
                            this.timer.arm(after(Instant::now(), limit));
                            timed = Some(limit);
                        }
                        *this.phase = Phase::Running { timed };
                    }
                    let Some(fut) = this.fut.as_mut().as_pin_mut() else {
                        *this.phase = Phase::Idle;
                        continue;
                    };
                    let outcome = match fut.poll(cx) {
                        Poll::Ready(r) => r.map_err(AttemptError::Inner),
                        Poll::Pending => {
                            let (Phase::Running { timed: Some(limit) }, Some(timer)) =
                                (*this.phase, this.timer.get())
                            else {
                                return Poll::Pending;
                            };
                            ready!(timer.as_mut().poll(cx));
                            Err(AttemptError::Timeout { after: limit })
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
            match policy.on_failure(
                attempt,
                &err,
                &mut this.delays.0,
                *this.deadline,
                this.hooks,
            ) {
                Step::Retry(delay) if delay.is_zero() => *this.phase = Phase::Idle,
                Step::Retry(delay) => {
                    this.timer.arm(after(Instant::now(), delay));
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
