//! The blocking form of the retry loop, for synchronous code.

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use crate::error::{AttemptError, RetryError};
use crate::hooks::Hooks;
use crate::policy::{RetryPolicy, Step};
use crate::retrying::{NoNotify, NoRetryAfter, NoRetryIf};

/// A blocking retry, returned by [`RetryPolicy::retry_blocking`]: chain the call's hooks
/// ([`retry_if`](Self::retry_if), [`retry_after`](Self::retry_after),
/// [`notify`](Self::notify)), then [`run`](Self::run) it.
#[must_use = "a blocking retry does nothing until `run` is called"]
pub struct RetryingBlocking<'a, E, F, P = NoRetryIf<E>, H = NoRetryAfter<E>, N = NoNotify<E>> {
    policy: &'a RetryPolicy,
    op: F,
    hooks: Hooks<P, H, N>,
    _error: PhantomData<fn() -> E>,
}

impl<E, F, P, H, N> fmt::Debug for RetryingBlocking<'_, E, F, P, H, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryingBlocking")
            .field("policy", &self.policy.name())
            .finish_non_exhaustive()
    }
}

impl<'a, E, F> RetryingBlocking<'a, E, F> {
    pub(crate) fn new(policy: &'a RetryPolicy, op: F) -> Self {
        RetryingBlocking {
            policy,
            op,
            hooks: Hooks::NONE,
            _error: PhantomData,
        }
    }
}

impl<'a, E, F, P, H, N> RetryingBlocking<'a, E, F, P, H, N> {
    /// As [`Retrying::retry_if`](crate::Retrying::retry_if): `true` means transient.
    ///
    /// # Examples
    /// ```
    /// use seawall_retry::{RetryError, RetryPolicy};
    /// let r = RetryPolicy::default()
    ///     .retry_blocking(|| Err::<(), _>("bad request"))
    ///     .retry_if(|e| *e != "bad request")
    ///     .run();
    /// assert!(matches!(r, Err(RetryError::Permanent { attempts: 1, .. })));
    /// ```
    pub fn retry_if<P2>(self, is_transient: P2) -> RetryingBlocking<'a, E, F, P2, H, N>
    where
        P2: FnMut(&E) -> bool,
    {
        RetryingBlocking {
            policy: self.policy,
            op: self.op,
            hooks: self.hooks.with_retry_if(is_transient),
            _error: PhantomData,
        }
    }

    /// As [`Retrying::retry_after`](crate::Retrying::retry_after): a server's hint.
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// use seawall_retry::RetryPolicy;
    /// let policy = RetryPolicy::builder().constant(Duration::ZERO).build()?;
    /// let mut n = 0;
    /// let r = policy
    ///     .retry_blocking(|| { n += 1; if n == 1 { Err(Duration::from_millis(1)) } else { Ok(n) } })
    ///     .retry_after(|wait| Some(*wait))
    ///     .run();
    /// assert_eq!(r, Ok(2));
    /// # Ok::<(), seawall_retry::ConfigError>(())
    /// ```
    pub fn retry_after<H2>(self, hint: H2) -> RetryingBlocking<'a, E, F, P, H2, N>
    where
        H2: FnMut(&E) -> Option<Duration>,
    {
        RetryingBlocking {
            policy: self.policy,
            op: self.op,
            hooks: self.hooks.with_retry_after(hint),
            _error: PhantomData,
        }
    }

    /// As [`Retrying::notify`](crate::Retrying::notify): observes each retry.
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// use seawall_retry::RetryPolicy;
    /// let policy = RetryPolicy::builder().constant(Duration::ZERO).build()?;
    /// let mut retries = 0;
    /// let _ = policy.retry_blocking(|| Err::<(), _>(())).notify(|_, _, _| retries += 1).run();
    /// assert_eq!(retries, 2);
    /// # Ok::<(), seawall_retry::ConfigError>(())
    /// ```
    pub fn notify<N2>(self, notify: N2) -> RetryingBlocking<'a, E, F, P, H, N2>
    where
        N2: FnMut(u32, &AttemptError<E>, Duration),
    {
        RetryingBlocking {
            policy: self.policy,
            op: self.op,
            hooks: self.hooks.with_notify(notify),
            _error: PhantomData,
        }
    }

    /// Runs the operation until it succeeds or the policy gives up, sleeping the thread between
    /// attempts (never for a zero delay).
    ///
    /// # Errors
    /// As [`RetryPolicy::retry`].
    ///
    /// # Panics
    /// Never by itself (a panic in `op` or in a hook propagates).
    ///
    /// # Examples
    /// ```
    /// use seawall_retry::RetryPolicy;
    /// assert_eq!(RetryPolicy::default().retry_blocking(|| Ok::<_, ()>(1)).run(), Ok(1));
    /// ```
    pub fn run<T>(mut self) -> Result<T, RetryError<E>>
    where
        F: FnMut() -> Result<T, E>,
        P: FnMut(&E) -> bool,
        H: FnMut(&E) -> Option<Duration>,
        N: FnMut(u32, &AttemptError<E>, Duration),
    {
        let policy = self.policy;
        let deadline = if policy.inner().needs_start {
            policy.start()
        } else {
            None
        };
        let mut delays = None;
        let mut attempt: u32 = 1;
        loop {
            let err = match (self.op)() {
                Ok(v) => {
                    policy.on_success(attempt);
                    return Ok(v);
                }
                Err(e) => AttemptError::Inner(e),
            };
            match policy.on_failure(attempt, &err, &mut delays, deadline, &mut self.hooks) {
                Step::Retry(delay) => {
                    if !delay.is_zero() {
                        std::thread::sleep(delay);
                    }
                }
                Step::Stop(stop) => return Err(policy.stop(stop, attempt, err)),
            }
            attempt = attempt.saturating_add(1);
        }
    }
}
