//! The typed, per-call part of a retry: which errors are transient, the server's hint, and the
//! notify hook. Kept out of [`RetryPolicy`](crate::RetryPolicy) so that one policy serves calls
//! with different error types.

use std::time::Duration;

use crate::error::AttemptError;

/// The per-call hooks of [`Retrying`](crate::Retrying) and [`RetryingBlocking`](crate::RetryingBlocking).
/// `None` is the default: every error transient, no hint, no notification.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Hooks<P, H, N> {
    pub(crate) retry_if: Option<P>,
    pub(crate) retry_after: Option<H>,
    pub(crate) notify: Option<N>,
}

impl<P, H, N> Hooks<P, H, N> {
    pub(crate) const NONE: Self = Hooks {
        retry_if: None,
        retry_after: None,
        notify: None,
    };

    pub(crate) fn with_retry_if<P2>(self, p: P2) -> Hooks<P2, H, N> {
        Hooks {
            retry_if: Some(p),
            retry_after: self.retry_after,
            notify: self.notify,
        }
    }

    pub(crate) fn with_retry_after<H2>(self, h: H2) -> Hooks<P, H2, N> {
        Hooks {
            retry_if: self.retry_if,
            retry_after: Some(h),
            notify: self.notify,
        }
    }

    pub(crate) fn with_notify<N2>(self, n: N2) -> Hooks<P, H, N2> {
        Hooks {
            retry_if: self.retry_if,
            retry_after: self.retry_after,
            notify: Some(n),
        }
    }
}

/// What the typed hooks say about one failed attempt.
pub(crate) enum Verdict {
    /// The error is permanent: stop now.
    Permanent,
    /// Transient, with the server's hint if there is one.
    Transient(Option<Duration>),
}

impl<P, H, N> Hooks<P, H, N> {
    /// Classifies a failure (timeouts are always transient and carry no hint).
    pub(crate) fn classify<E>(&mut self, err: &AttemptError<E>) -> Verdict
    where
        P: FnMut(&E) -> bool,
        H: FnMut(&E) -> Option<Duration>,
    {
        match err {
            AttemptError::Inner(e) => {
                if let Some(pred) = &mut self.retry_if
                    && !pred(e)
                {
                    return Verdict::Permanent;
                }
                Verdict::Transient(self.retry_after.as_mut().and_then(|h| h(e)))
            }
            AttemptError::Timeout { .. } => Verdict::Transient(None),
        }
    }

    pub(crate) fn notify<E>(&mut self, attempt: u32, err: &AttemptError<E>, delay: Duration)
    where
        N: FnMut(u32, &AttemptError<E>, Duration),
    {
        if let Some(notify) = &mut self.notify {
            notify(attempt, err, delay);
        }
    }
}
